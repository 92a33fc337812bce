"""Pooled database connections are pinged only after sitting idle, not on every checkout.

`pool_pre_ping` costs a round trip per request (a COM_PING before every order). Under load a
connection goes back into the pool and out again within milliseconds, and a ping then tells
nothing new; after an idle spell (a database restart, a failover, `wait_timeout` closing it) it
may find the connection dead. So: ping a connection on checkout only when it was idle longer than
`idle_seconds`; a dead one is discarded and the pool connects afresh (SQLAlchemy's
DisconnectionError protocol). A database restart within that window still costs the request
that first meets a dead connection: it fails (5xx), and SQLAlchemy then invalidates the pool.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

IDLE_SINCE = "minishop_idle_since"


def ping_when_idle(engine: Engine, idle_seconds: float) -> None:
    """Install the check on `engine`'s pool (0: ping on every checkout, as pool_pre_ping)."""

    @event.listens_for(engine, "checkin")
    def _idle_from_now(_dbapi: Any, record: ConnectionPoolEntry) -> None:
        record.info[IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(
        dbapi: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
    ) -> None:
        idle_since = record.info.pop(IDLE_SINCE, None)
        if idle_since is None or time.monotonic() - idle_since <= idle_seconds:
            return  # new, or back in use within moments
        try:
            engine.dialect.do_ping(dbapi)
        except Exception as exc:  # whatever the driver raises for a dead socket
            raise DisconnectionError(f"pooled connection failed its ping: {exc}") from exc
