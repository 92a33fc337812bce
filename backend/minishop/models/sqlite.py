"""Every SQLite connection keeps the promises a MariaDB one keeps.

SQLite ignores FOREIGN KEY clauses unless each connection turns them on: without this, deleting a
category that still has products succeeded there and left orphans, where MariaDB answers 409.
WAL lets the other workers read while one writes, and a writer waits up to BUSY_TIMEOUT_MS for
the write lock instead of failing with "database is locked". It can wait only because
pysqlite begins a transaction at its first write, not its first read (a read transaction that
then writes gets SQLITE_BUSY at once): keep that default (tests/api/test_payment_embedded.py).
Commits stay fully synchronous: orders and payments must survive a power cut too.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

BUSY_TIMEOUT_MS = 5000


@event.listens_for(Engine, "connect")
def _configure_sqlite(dbapi_connection: Any, connection_record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
    finally:
        cursor.close()
