"""Can this instance serve traffic? Each dependency is probed with a short timeout."""

from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.orm import Session

from minishop.kvstore import KeyValueStore

log = logging.getLogger(__name__)

OK = "ok"
UNAVAILABLE = "unavailable"


def _database_answers(session: Session) -> bool:
    try:
        session.execute(text("SELECT 1"))
        return True
    except Exception as exc:  # any failure means "not ready"; the reason goes to the log
        log.warning("readiness: database unavailable: %s", type(exc).__name__)
        session.rollback()
        return False


def _cache_answers(store: KeyValueStore) -> bool:
    try:
        return store.ping()
    except Exception as exc:
        log.warning("readiness: cache unavailable: %s", type(exc).__name__)
        return False


def check_dependencies(session: Session, store: KeyValueStore) -> dict[str, str]:
    return {
        "database": OK if _database_answers(session) else UNAVAILABLE,
        "cache": OK if _cache_answers(store) else UNAVAILABLE,
    }
