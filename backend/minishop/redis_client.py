"""REDIS_URL, the one description of our Redis, turned into a redis-py client and into the
equivalent Flask-Limiter storage, so every Redis user (the key-value store and what sits on it:
the catalog cache, nonces, locks, the WeChat access token and /readyz; and the rate limiter)
reaches the same server the same way.

- `redis://[[user]:password@]host:port/db` and `rediss://...` (TLS; redis-py's query arguments
  such as `?ssl_ca_certs=/path/ca.pem&ssl_cert_reqs=required` pass through): `Redis.from_url`.
- `redis+sentinel://[[user]:password@]host:port[,host:port...]/<master-name>[/<db>]`: Redis
  Sentinel. The first part is Flask-Limiter's own sentinel URI (the `limits` library's
  `redis+sentinel://host:port,host:port/service_name`); `/<db>` is ours, and the limiter gets it
  as an option since `limits` would read it as part of the name. As in `limits`, the credentials
  are sent to the sentinels and to the master alike. The client is `Sentinel.master_for`: it asks
  the sentinels for the master on every new connection and drops its connections on a
  connection error or a READONLY reply (an old master demoted to replica), and our connections
  (`MasterFollowingConnection`, the limiter's too) ask every second as well, so after a
  failover, planned or not, the next commands reach the new master.

Every connection, to a sentinel or a Redis, gets REDIS_TIMEOUT_SECONDS as socket timeouts, so a
dead server fails fast into the callers' fallbacks instead of hanging a worker.
"""

from __future__ import annotations

import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import redis
import redis.sentinel

SENTINEL_SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379
# How stale a worker's idea of the Sentinel master may get while its connections still work.
MASTER_CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class SentinelUrl:
    """A parsed `redis+sentinel://` URL."""

    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    db: int
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SentinelUrl:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != SENTINEL_SCHEME:
            raise ValueError(f"not a {SENTINEL_SCHEME}:// URL")
        credentials, _, hosts = parsed.netloc.rpartition("@")
        sentinels = tuple(_host_port(location) for location in hosts.split(",") if location)
        parts = [part for part in parsed.path.split("/") if part]
        if not sentinels or not 1 <= len(parts) <= 2:
            raise ValueError(
                f"expected {SENTINEL_SCHEME}://[[user]:password@]host:port[,host:port...]"
                "/<master-name>[/<db>]"
            )
        if len(parts) == 2 and not parts[1].isdigit():
            raise ValueError(f"the database must be a number, not {parts[1]!r}")
        username, password = None, None
        if credentials:
            user, has_password, secret = credentials.partition(":")
            username = urllib.parse.unquote(user) or None
            password = urllib.parse.unquote(secret) if has_password else None
        db = int(parts[1]) if len(parts) == 2 else 0
        return cls(sentinels, urllib.parse.unquote(parts[0]), db, username, password)

    def auth(self) -> dict[str, str]:
        found = {"username": self.username, "password": self.password}
        return {name: value for name, value in found.items() if value}

    def limits_uri(self) -> str:
        """Flask-Limiter's spelling: `limits` reads the path as the name, so the db is left out."""
        credentials = ""
        if self.username or self.password:
            user = urllib.parse.quote(self.username or "", safe="")
            secret = urllib.parse.quote(self.password or "", safe="")
            credentials = f"{user}:{secret}@" if self.password else f"{user}@"
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"{SENTINEL_SCHEME}://{credentials}{hosts}/{self.master_name}"


class MasterFollowingConnection(redis.sentinel.SentinelManagedConnection):
    """Asks the sentinels, at most every MASTER_CHECK_SECONDS, whether it still talks to the master.

    redis-py asks them only when it opens a connection, and keeps a connection that works: after
    `SENTINEL FAILOVER` (a planned switch, both servers up) our long-lived connections went on
    writing to the old master for the ~8 s until the sentinel demoted it, and those writes (nonces,
    rate-limit hits) were lost with its data (tests/platform/test_redis_sentinel.py). Told of
    another address, it closes itself and the command goes to the new master. When no sentinel
    answers, it keeps the server it has.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self._next_master_check = 0.0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        now = time.monotonic()
        if (
            self._sock is not None
            and self.connection_pool.is_master
            and now >= self._next_master_check
        ):
            self._next_master_check = now + MASTER_CHECK_SECONDS
            try:
                master = self.connection_pool.get_master_address()
            except redis.ConnectionError:  # MasterNotFoundError: no sentinel answered
                master = None
            if master is not None and tuple(master) != (self.host, self.port):
                self.disconnect()
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


def _host_port(location: str) -> tuple[str, int]:
    probe = urllib.parse.urlsplit(f"//{location.strip()}")
    if not probe.hostname:
        raise ValueError(f"no host in sentinel address {location!r}")
    return probe.hostname, probe.port or DEFAULT_SENTINEL_PORT


def is_redis_url(url: str) -> bool:
    """Whether Flask-Limiter's storage `url` is a Redis that takes our timeouts."""
    return urllib.parse.urlsplit(url).scheme in ("redis", "rediss", SENTINEL_SCHEME)


def _timeouts(timeout_seconds: float) -> dict[str, float]:
    return {"socket_timeout": timeout_seconds, "socket_connect_timeout": timeout_seconds}


def client_for(url: str, timeout_seconds: float) -> redis.Redis:
    """A client (str replies) of the Redis that `url` names: the master, behind sentinels."""
    if urllib.parse.urlsplit(url).scheme != SENTINEL_SCHEME:
        return redis.Redis.from_url(url, decode_responses=True, **_timeouts(timeout_seconds))
    target = SentinelUrl.parse(url)
    sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(target.sentinels),
        sentinel_kwargs=_timeouts(timeout_seconds) | target.auth(),
        **_timeouts(timeout_seconds),
        **target.auth(),
    )
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        target.master_name,
        connection_class=MasterFollowingConnection,
        db=target.db,
        decode_responses=True,
    )
    return client


def limiter_storage(uri: str, timeout_seconds: float) -> tuple[str, dict[str, Any]]:
    """Flask-Limiter's storage URI and options for a Redis URL, with our socket timeouts.

    Sentinel: the options go to the master's connections, `sentinel_kwargs` to the sentinels'
    (`limits` would give those none), and counts are read from the master too (`limits` reads
    the window from a replica by default, which may lag behind the hits just written).
    """
    if urllib.parse.urlsplit(uri).scheme != SENTINEL_SCHEME:
        return uri, dict(_timeouts(timeout_seconds))
    target = SentinelUrl.parse(uri)
    options: dict[str, Any] = _timeouts(timeout_seconds) | {
        "sentinel_kwargs": _timeouts(timeout_seconds),
        "use_replicas": False,
        "connection_class": MasterFollowingConnection,
    }
    if target.db:
        options["db"] = target.db
    return target.limits_uri(), options
