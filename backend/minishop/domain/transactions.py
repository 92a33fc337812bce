"""Run a unit of work as one transaction, retried when MySQL picks it as a deadlock victim.

Rows are always locked in a fixed order (products by id), so deadlocks should not happen; this
is the safety net that keeps one from ever reaching a client as an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)
T = TypeVar("T")

DEADLOCK = 1213
LOCK_WAIT_TIMEOUT = 1205
ATTEMPTS = 3


def _mysql_errno(exc: OperationalError) -> object:
    args = exc.orig.args if exc.orig is not None else ()
    return args[0] if args else None


def in_transaction(session: Session, work: Callable[[], T]) -> T:
    """`work` runs and is committed; on a deadlock it is rolled back and run again (3 tries)."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            result = work()
            session.commit()
            return result
        except OperationalError as exc:
            session.rollback()
            errno = _mysql_errno(exc)
            if attempt == ATTEMPTS or errno not in (DEADLOCK, LOCK_WAIT_TIMEOUT):
                raise
            log.warning("transaction retried after MySQL error %s", errno)
        except BaseException:
            session.rollback()
            raise
    raise AssertionError("unreachable")  # pragma: no cover
