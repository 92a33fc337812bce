"""Migrations build exactly the schema the models describe, and take it down again."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from pytest_mysql.executor import MySQLExecutor
from sqlalchemy import inspect, text

from minishop import config, create_app
from minishop.extensions import db
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
