from __future__ import annotations

from typing import Any

from sqlalchemy import select

from minishop.extensions import db
from minishop.models import User


def test_grant_admin_creates_or_promotes_the_user(app: Any) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["grant-admin", "o-operator-openid"])
    assert result.exit_code == 0, result.output
    assert "is now admin" in result.output
    user = db.session.scalars(select(User).where(User.openid == "o-operator-openid")).one()
    assert user.role == "admin"

    again = runner.invoke(args=["grant-admin", "o-operator-openid"])
    assert again.exit_code == 0
    assert db.session.scalar(select(db.func.count()).select_from(User)) == 1
