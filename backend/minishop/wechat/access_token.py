"""One access token per appid, shared by every worker through the key-value store (Redis).

Several processes refreshing on their own is a known production failure: the last refresh wins
and the others loop on 40001. Here exactly one worker refreshes, under a short lock, when the
token is missing or within WECHAT_TOKEN_REFRESH_AHEAD_SECONDS of expiry; the others keep using
the current token, or wait briefly for the first one to appear.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from minishop.kvstore import KeyValueStore
from minishop.wechat.client import StableToken
from minishop.wechat.errors import WeChatUnavailableError

LOCK_TTL_SECONDS = 10.0
POLL_SECONDS = 0.05


@dataclass(frozen=True)
class CachedToken:
    raw: str
    token: str
    expires_at: float


class AccessTokenManager:
    def __init__(
        self,
        store: KeyValueStore,
        appid: str,
        fetch: Callable[[], StableToken],
        refresh_ahead_seconds: float,
        wait_seconds: float,
    ) -> None:
        self.store = store
        self.fetch = fetch
        self.refresh_ahead_seconds = refresh_ahead_seconds
        self.wait_seconds = wait_seconds
        self.key = f"wechat:access_token:{appid}"
        self.lock_key = f"{self.key}:lock"

    def _cached(self) -> CachedToken | None:
        raw = self.store.get(self.key)
        if raw is None:
            return None
        entry = json.loads(raw)
        return CachedToken(raw, str(entry["token"]), float(entry["expires_at"]))

    def get(self) -> str:
        cached = self._cached()
        now = time.time()
        if cached and cached.expires_at - now > self.refresh_ahead_seconds:
            return cached.token
        refreshed = self._refresh_if_lock_free()
        if refreshed:
            return refreshed
        if cached and cached.expires_at > now:
            return cached.token  # another worker is refreshing; this one is still valid
        return self._wait_for_token()

    def invalidate(self, rejected: str) -> None:
        """WeChat refused `rejected` (40001/42001): drop it so the next get() fetches anew."""
        cached = self._cached()
        if cached and cached.token == rejected:
            self.store.delete_if_equals(self.key, cached.raw)

    def _refresh_if_lock_free(self) -> str | None:
        owner = uuid.uuid4().hex
        if not self.store.set_if_absent(self.lock_key, owner, LOCK_TTL_SECONDS):
            return None
        try:
            cached = self._cached()
            if cached and cached.expires_at - time.time() > self.refresh_ahead_seconds:
                return cached.token  # refreshed by the previous lock holder meanwhile
            token = self.fetch()
            expires_at = time.time() + token.expires_in
            self.store.set(
                self.key,
                json.dumps({"token": token.access_token, "expires_at": expires_at}),
                ttl_seconds=token.expires_in,
            )
            return token.access_token
        finally:
            self.store.delete_if_equals(self.lock_key, owner)

    def _wait_for_token(self) -> str:
        deadline = time.monotonic() + self.wait_seconds
        while time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            cached = self._cached()
            if cached and cached.expires_at > time.time():
                return cached.token
            refreshed = self._refresh_if_lock_free()  # the refresher may have failed
            if refreshed:
                return refreshed
        raise WeChatUnavailableError("stable_token")
