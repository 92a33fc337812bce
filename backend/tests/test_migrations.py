"""Migrations build exactly the schema the models describe, and take it down again."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask_migrate import downgrade, upgrade
from pytest_mysql.executor import MySQLExecutor
from sqlalchemy import delete, inspect, select, text
from sqlalchemy.exc import IntegrityError

from minishop import config, create_app
from minishop.extensions import db
from minishop.models import Category, Product
from tests.conftest import MIGRATIONS_DIR, create_database


def schema_differences() -> list[Any]:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, db.metadata))


def table_names() -> set[str]:
    return set(inspect(db.engine).get_table_names())


@pytest.fixture()
def mariadb_migration_app(mariadb: MySQLExecutor) -> Any:
    url = create_database(mariadb, "minishop_migrations")
    return create_app(config.TestingSettings(DATABASE_URL=url))


def test_mariadb_upgrade_matches_models_then_downgrade_empties(mariadb_migration_app: Any) -> None:
    with mariadb_migration_app.app_context():
        assert table_names() == set()
        upgrade(directory=MIGRATIONS_DIR)
        assert table_names() == set(db.metadata.tables) | {"alembic_version"}
        assert schema_differences() == []

        storage = db.session.execute(
            text(
                "SELECT TABLE_NAME, ENGINE, TABLE_COLLATION FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME != 'alembic_version'"
            )
        ).all()
        assert {(engine, collation) for _, engine, collation in storage} == {
            ("InnoDB", "utf8mb4_unicode_ci")
        }
        db.session.commit()

        downgrade(directory=MIGRATIONS_DIR, revision="base")
        assert table_names() == {"alembic_version"}
        db.engine.dispose()


def test_sqlite_upgrade_and_downgrade(tmp_path: Any) -> None:
    """`make run` migrates an embedded SQLite file with the same scripts."""
    app = create_app(config.TestingSettings(DATABASE_URL=f"sqlite:///{tmp_path / 'm.db'}"))
    with app.app_context():
        upgrade(directory=MIGRATIONS_DIR)
        assert table_names() == set(db.metadata.tables) | {"alembic_version"}
        assert schema_differences() == []
        downgrade(directory=MIGRATIONS_DIR, revision="base")
        assert table_names() == {"alembic_version"}


ALTER_REFERENCED_TABLE = '''"""widen category names: SQLite rebuilds a table products point at"""

import sqlalchemy as sa
from alembic import op

revision = "b47c4e5f0a11"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("categories", recreate="always") as batch_op:
        batch_op.alter_column("name", existing_type=sa.String(64), type_=sa.String(80))


def downgrade() -> None:
    with op.batch_alter_table("categories", recreate="always") as batch_op:
        batch_op.alter_column("name", existing_type=sa.String(80), type_=sa.String(64))
'''


def test_sqlite_rebuilds_a_referenced_table_with_its_rows_and_enforces_keys_after(
    tmp_path: Path,
) -> None:
    """Batch mode copies a table, drops the old one and renames the copy, while the rows of
    other tables point at it: that must work on a populated file, and leave keys enforced."""
    migrations = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, migrations)
    head = ScriptDirectory(str(migrations)).get_current_head()
    (migrations / "versions" / "29991231_b47c4e5f0a11_widen.py").write_text(
        ALTER_REFERENCED_TABLE.replace("{head}", str(head))
    )
    app = create_app(config.TestingSettings(DATABASE_URL=f"sqlite:///{tmp_path / 'm.db'}"))
    with app.app_context():
        upgrade(directory=str(migrations), revision=str(head))
        tea = Category(name="Tea", sort=1)
        db.session.add(tea)
        db.session.flush()
        db.session.add(Product(category_id=tea.id, title="Longjing", price_fen=100, stock=1))
        db.session.commit()

        upgrade(directory=str(migrations))
        downgrade(directory=str(migrations), revision=str(head))
        upgrade(directory=str(migrations))

        assert db.session.scalars(select(Product.category_id)).all() == [tea.id]
        assert db.session.execute(text("PRAGMA foreign_key_check")).all() == []
        with pytest.raises(IntegrityError):  # on the connection the migrations used, too
            db.session.execute(delete(Category))
        db.session.rollback()
        db.engine.dispose()
