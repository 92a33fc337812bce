"""The waiting side of the token manager: what a worker does while another one refreshes.

On the embedded store (the SQLite file workers share without Redis); test_access_token.py runs
the manager on Redis through the app.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from minishop.kvstore import SQLiteStore
from minishop.wechat.access_token import AccessTokenManager
from minishop.wechat.client import StableToken
from minishop.wechat.errors import WeChatUnavailableError


def manager(store: SQLiteStore, fetch_result: StableToken | None = None) -> AccessTokenManager:
    def fetch() -> StableToken:
        if fetch_result is None:
            raise WeChatUnavailableError("stable_token")
        return fetch_result

    return AccessTokenManager(store, "wx-test", fetch, refresh_ahead_seconds=300, wait_seconds=1.0)


@pytest.fixture()
def store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(str(tmp_path / "kv.db"))


def test_a_waiter_takes_the_token_the_lock_holder_stores(store: SQLiteStore) -> None:
    holder = manager(store, StableToken("from-holder", 7200))
    waiter = manager(store)  # would fail if it fetched by itself
    assert store.set_if_absent(holder.lock_key, "holder", 10)

    def finish_refresh() -> None:
        time.sleep(0.2)
        store.set(
            holder.key, '{"token": "from-holder", "expires_at": %f}' % (time.time() + 7200), 60
        )

    threading.Thread(target=finish_refresh).start()
    assert waiter.get() == "from-holder"


def test_a_waiter_gives_up_after_its_budget(store: SQLiteStore) -> None:
    waiter = manager(store)
    assert store.set_if_absent(waiter.lock_key, "someone-else", 10)
    started = time.monotonic()
    with pytest.raises(WeChatUnavailableError):
        waiter.get()
    assert time.monotonic() - started < 1.5


def test_a_token_near_expiry_is_still_served_while_someone_else_refreshes(
    store: SQLiteStore,
) -> None:
    waiter = manager(store)
    store.set(waiter.key, '{"token": "old", "expires_at": %f}' % (time.time() + 60), 60)
    assert store.set_if_absent(waiter.lock_key, "someone-else", 10)
    assert waiter.get() == "old"


def test_invalidate_only_drops_the_rejected_token(store: SQLiteStore) -> None:
    tokens = manager(store, StableToken("fresh", 7200))
    assert tokens.get() == "fresh"
    tokens.invalidate("some-older-token")
    assert store.get(tokens.key) is not None
    tokens.invalidate("fresh")
    assert store.get(tokens.key) is None
