"""Alembic environment, driven by Flask-Migrate (`flask --app minishop db ...`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from alembic import context
from alembic.autogenerate.api import AutogenContext
from flask import current_app
from sqlalchemy import Connection

import minishop.models  # noqa: F401  (registers every table on the metadata)
from minishop.models.types import UtcDateTime

log = logging.getLogger("alembic.env")
config = context.config
target_db = current_app.extensions["migrate"].db


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | bool:
    """Write UtcDateTime into migrations as plain SQLAlchemy types, so they never import app code."""
    if type_ == "type" and isinstance(obj, UtcDateTime):
        autogen_context.imports.add("from sqlalchemy.dialects import mysql")
        return 'sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")'
    return False


def skip_empty_autogenerate(context_: Any, revision: Any, directives: list[Any]) -> None:
    if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
        directives[:] = []
        log.info("No changes in schema detected.")


@contextmanager
def foreign_keys_off_on_sqlite(connection: Connection) -> Iterator[None]:
    """SQLite alters a table (batch mode) by copying it, dropping the old one and renaming the
    copy, while other tables still point at it: enforced foreign keys refuse the DROP. SQLite's
    own procedure turns them off meanwhile (outside a transaction, which ignores the pragma),
    checks them before committing (`check_foreign_keys`), and here the pooled connection gets
    them back afterwards.
    """
    if connection.dialect.name != "sqlite":
        yield
        return
    connection.exec_driver_sql("PRAGMA foreign_keys = OFF")
    connection.commit()
    try:
        yield
    finally:
        connection.exec_driver_sql("PRAGMA foreign_keys = ON")
        connection.commit()


def check_foreign_keys(connection: Connection) -> None:
    if connection.dialect.name != "sqlite":
        return
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise RuntimeError(f"the migration left rows with dangling foreign keys: {broken}")


def run_migrations_online() -> None:
    engine = target_db.engine
    options = dict(current_app.extensions["migrate"].configure_args)
    options.setdefault("process_revision_directives", skip_empty_autogenerate)
    # Autogenerate writes batch operations, which SQLite needs and MariaDB runs as plain ALTERs.
    options.setdefault("render_as_batch", True)
    with engine.connect() as connection, foreign_keys_off_on_sqlite(connection):
        context.configure(
            connection=connection,
            target_metadata=target_db.metadata,
            render_item=render_item,
            **options,
        )
        with context.begin_transaction():
            context.run_migrations()
            check_foreign_keys(connection)


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
