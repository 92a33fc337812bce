"""REDIS_URL parsing (minishop/redis_client.py), and `rediss://` against a real TLS redis-server:
the key-value store and Flask-Limiter's storage both speak TLS to it, and refuse a server whose
certificate they cannot verify."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from minishop import config
from minishop.kvstore import RedisStore, store_for
from minishop.redis_client import MasterFollowingConnection, SentinelUrl, client_for
from tests.ci import require_binaries
from tests.platform.processes import free_port
from tests.platform.redis_servers import redis_process, server_arguments


def test_a_sentinel_url_names_sentinels_master_database_and_credentials() -> None:
    target = SentinelUrl.parse("redis+sentinel://app:s%40cret@10.0.0.1:26380,10.0.0.2/shop/3")
    assert target == SentinelUrl(
        (("10.0.0.1", 26380), ("10.0.0.2", 26379)), "shop", 3, "app", "s@cret"
    )
    assert target.limits_uri() == "redis+sentinel://app:s%40cret@10.0.0.1:26380,10.0.0.2:26379/shop"
    assert SentinelUrl.parse("redis+sentinel://h:1/shop").db == 0


@pytest.mark.parametrize(
    "url", ["redis+sentinel://h:1/", "redis+sentinel:///shop", "redis+sentinel://h:1/shop/x"]
)
def test_a_malformed_sentinel_url_stops_the_settings(url: str) -> None:
    with pytest.raises(ValueError, match=r"redis\+sentinel|database"):
        config.TestingSettings(REDIS_URL=url)


def test_the_limiter_gets_the_sentinel_url_of_limits_and_our_timeouts_everywhere() -> None:
    settings = config.TestingSettings(
        REDIS_URL="redis+sentinel://:pw@127.0.0.1:26379/shop/2", REDIS_TIMEOUT_SECONDS=0.25
    )
    storage = settings.rate_limit_storage("/unused")
    timeouts = {"socket_timeout": 0.25, "socket_connect_timeout": 0.25}
    assert storage == {
        "RATELIMIT_STORAGE_URI": "redis+sentinel://:pw@127.0.0.1:26379/shop",
        "RATELIMIT_STORAGE_OPTIONS": timeouts
        | {
            "sentinel_kwargs": timeouts,
            "use_replicas": False,
            "connection_class": MasterFollowingConnection,
            "db": 2,
        },
    }
    limits_storage = storage_from_string(
        storage["RATELIMIT_STORAGE_URI"], **storage["RATELIMIT_STORAGE_OPTIONS"]
    )
    sentinel = limits_storage.sentinel  # type: ignore[attr-defined]
    assert sentinel.sentinel_kwargs == timeouts | {"password": "pw"}
    assert sentinel.connection_kwargs == timeouts | {
        "password": "pw",
        "db": 2,
        "connection_class": MasterFollowingConnection,
    }
    assert limits_storage.storage.connection_pool.connection_class is MasterFollowingConnection  # type: ignore[attr-defined]


def test_the_store_client_follows_the_sentinels_with_our_timeouts() -> None:
    client = client_for("redis+sentinel://:pw@127.0.0.1:26379,127.0.0.2:26379/shop/2", 0.25)
    pool = client.connection_pool
    assert pool.service_name == "shop"  # type: ignore[attr-defined]
    kwargs = pool.connection_kwargs
    assert (kwargs["db"], kwargs["password"], kwargs["decode_responses"]) == (2, "pw", True)
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (0.25, 0.25)
    assert pool.connection_class is MasterFollowingConnection
    for sentinel in pool.sentinel_manager.sentinels:  # type: ignore[attr-defined]
        sentinel_kwargs = sentinel.connection_pool.connection_kwargs
        assert (sentinel_kwargs["socket_timeout"], sentinel_kwargs["password"]) == (0.25, "pw")


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key: (certificate, key) PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "minishop test redis")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "redis.crt", folder / "redis.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server that speaks only TLS; the URL trusts its certificate."""
    require_binaries("redis-server")
    folder = tmp_path_factory.mktemp("redis-tls")
    cert, key = self_signed(folder)
    port = free_port()
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}&ssl_cert_reqs=required"
    arguments = [
        *server_arguments(0, folder),
        "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-auth-clients", "no",
    ]  # fmt: skip
    with redis_process(arguments, folder / "redis.log", lambda: client_for(url, 1.0)):
        yield url


def test_the_store_speaks_tls_to_a_rediss_url(tls_url: str) -> None:
    store = store_for(tls_url, 1.0, key_prefix="tls:", embedded_path="")
    assert isinstance(store, RedisStore)
    assert store.set_if_absent("marker", "1", 30)
    assert store.get("marker") == "1"
    connection = store.client.connection_pool.get_connection()
    try:
        assert isinstance(connection, redis.SSLConnection)
        assert connection._sock is not None
        assert connection._sock.version() in {"TLSv1.2", "TLSv1.3"}  # type: ignore[attr-defined]
    finally:
        store.client.connection_pool.release(connection)


def test_the_limiter_counts_on_the_tls_server(tls_url: str) -> None:
    uri, options = (
        config.TestingSettings(REDIS_URL=tls_url, REDIS_TIMEOUT_SECONDS=0.5)
        .rate_limit_storage("/unused")
        .values()
    )
    limiter = MovingWindowRateLimiter(storage_from_string(uri, **options))
    limit = RateLimitItemPerMinute(3)
    assert [limiter.hit(limit, "tls-test") for _ in range(4)] == [True, True, True, False]
    assert client_for(tls_url, 1.0).keys("LIMITS:*tls-test*")


def test_a_server_it_cannot_verify_is_refused(tls_url: str) -> None:
    """Without the CA, the default verification fails: TLS is not merely on, it is checked."""
    unverified = tls_url.split("?")[0]
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        client_for(unverified, 1.0).ping()
