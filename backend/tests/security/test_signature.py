"""Request signatures: the shared vectors, then every way a request can fail the check (40102)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from minishop import config, create_app
from minishop.errors import AppError
from minishop.security import signature
from tests.conftest import bearer
from tests.signing import json_bytes, send_signed, signed_headers
from tests.test_errors import assert_envelope
from wechat_emulator.testing import EmulatorControl

LogIn = Callable[..., dict[str, Any]]
# A copy of the design's shared vectors (shared/vectors/), kept in the repository so that every CI
# runner has them.
VECTORS_FILE = Path(__file__).resolve().parents[3] / "docs" / "request-signature-vectors.json"
VECTORS = json.loads(VECTORS_FILE.read_text())
CASES = VECTORS["cases"]
ME = "/api/v1/users/me"
LOGOUT = "/api/v1/auth/logout"


def python_signing(case: dict[str, Any]) -> dict[str, str]:
    """What the Python helper makes of a vector-shaped case: the vectors' `expected` fields."""
    body = case["body"].encode()
    stamp = str(case["timestamp"])
    args = (case["method"], case["path"], case["query"])
    return {
        "canonical_query": signature.canonical_query(case["query"]),
        "string_to_sign": signature.string_to_sign(*args, stamp, case["nonce"], body),
        "signature": signature.sign_headers(
            *args, body, VECTORS["sign_key"], case["timestamp"], case["nonce"]
        )["X-Signature"],
    }


@pytest.mark.parametrize("case", CASES, ids=[f"{c['method']} {c['path']}" for c in CASES])
def test_the_helper_and_the_check_reproduce_every_vector(case: dict[str, Any]) -> None:
    expected = case["expected"]
    assert python_signing(case) == expected
    seen: list[str] = []
    signature.verify(
        case["method"],
        case["path"],
        case["query"],
        case["body"].encode(),
        {"X-Timestamp": str(case["timestamp"]), "X-Nonce": case["nonce"]}
        | {"X-Signature": expected["signature"]},
        VECTORS["sign_key"],
        now=case["timestamp"] + 1,
        remember_nonce=lambda nonce: seen.append(nonce) is None,
    )
    assert seen == [case["nonce"]]


def patch_me(client: FlaskClient, headers: dict[str, str], body: bytes) -> Any:
    return client.patch(ME, data=body, headers=headers, content_type="application/json")


NICKNAME = json_bytes({"nickname": "tea lover"})


def test_a_valid_signature_is_accepted(client: FlaskClient, log_in: LogIn) -> None:
    data = log_in()
    response = patch_me(client, signed_headers(data, "PATCH", ME, NICKNAME), NICKNAME)
    assert assert_envelope(response, 200, 0)["data"]["nickname"] == "tea lover"


@pytest.mark.parametrize("missing", signature.HEADERS)
def test_each_missing_header_is_40102(client: FlaskClient, log_in: LogIn, missing: str) -> None:
    data = log_in()
    headers = signed_headers(data, "PATCH", ME, NICKNAME)
    del headers[missing]
    body = assert_envelope(patch_me(client, headers, NICKNAME), 401, 40102)
    assert body["message"] == f"bad request signature: missing {missing} header"


@pytest.mark.parametrize(
    ("skew", "status", "code"),
    [(-301, 401, 40102), (301, 401, 40102), (-298, 200, 0), (298, 200, 0)],
    ids=["301s-old", "301s-ahead", "298s-old", "298s-ahead"],
)
def test_the_timestamp_must_be_within_300_seconds(
    client: FlaskClient, log_in: LogIn, skew: int, status: int, code: int
) -> None:
    data = log_in()
    stamp = int(time.time()) + skew
    headers = bearer(data) | signature.sign_headers(
        "PATCH", ME, "", NICKNAME, data["sign_key"], timestamp=stamp
    )
    counted = stale_count()
    body = assert_envelope(patch_me(client, headers, NICKNAME), status, code)
    if code:
        assert body["message"] == "bad request signature: stale timestamp"
    assert stale_count() == counted + (1 if code else 0)


def stale_count() -> float:
    labels = {"reason": "stale"}
    return REGISTRY.get_sample_value("minishop_bad_signatures_total", labels) or 0.0


def test_a_replayed_request_is_40102(client: FlaskClient, log_in: LogIn) -> None:
    data = log_in()
    headers = signed_headers(data, "PATCH", ME, NICKNAME)
    assert_envelope(patch_me(client, headers, NICKNAME), 200, 0)
    body = assert_envelope(patch_me(client, headers, NICKNAME), 401, 40102)
    assert body["message"] == "bad request signature: replayed nonce"


def test_a_nonce_is_per_session(client: FlaskClient, log_in: LogIn) -> None:
    """Two sessions may pick the same nonce: each session's replay memory is its own."""
    first, second = log_in(), log_in()
    stamp = int(time.time())
    for data in (first, second):
        headers = bearer(data) | signature.sign_headers(
            "PATCH", ME, "", NICKNAME, data["sign_key"], timestamp=stamp, nonce="SameNonce12345678"
        )
        assert_envelope(patch_me(client, headers, NICKNAME), 200, 0)


def test_a_failed_check_does_not_spend_the_nonce(client: FlaskClient, log_in: LogIn) -> None:
    data = log_in()
    headers = signed_headers(data, "PATCH", ME, NICKNAME)
    forged = headers | {"X-Signature": "0" * 64}
    assert_envelope(patch_me(client, forged, NICKNAME), 401, 40102)
    assert_envelope(patch_me(client, headers, NICKNAME), 200, 0)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(
            lambda client, headers: patch_me(client, headers, json_bytes({"nickname": "evil"})),
            id="body",
        ),
        pytest.param(
            lambda client, headers: client.patch(
                f"{ME}?role=admin", data=NICKNAME, headers=headers, content_type="application/json"
            ),
            id="query",
        ),
        pytest.param(
            lambda client, headers: client.post(
                f"{ME}/phone", data=NICKNAME, headers=headers, content_type="application/json"
            ),
            id="path",
        ),
    ],
)
def test_a_tampered_request_is_40102(
    client: FlaskClient, log_in: LogIn, tamper: Callable[[FlaskClient, dict[str, str]], Any]
) -> None:
    data = log_in()
    headers = signed_headers(data, "PATCH", ME, NICKNAME)
    body = assert_envelope(tamper(client, headers), 401, 40102)
    assert body["message"] == "bad request signature: signature mismatch"
    assert headers["X-Signature"] not in json.dumps(body)


def test_a_signature_made_with_another_sessions_key_is_40102(
    client: FlaskClient, log_in: LogIn
) -> None:
    mine, theirs = log_in(), log_in()
    headers = bearer(mine) | signature.sign_headers("PATCH", ME, "", NICKNAME, theirs["sign_key"])
    assert_envelope(patch_me(client, headers, NICKNAME), 401, 40102)


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Timestamp", "17e8"),
        ("X-Timestamp", "-5"),
        ("X-Nonce", "short"),
        ("X-Nonce", "has-dashes-in-it-0123"),
        ("X-Nonce", "n" * 65),
        ("X-Signature", "A" * 64),
        ("X-Signature", "abc"),
    ],
)
def test_malformed_headers_are_40102(
    client: FlaskClient, log_in: LogIn, header: str, value: str
) -> None:
    data = log_in()
    headers = signed_headers(data, "PATCH", ME, NICKNAME) | {header: value}
    body = assert_envelope(patch_me(client, headers, NICKNAME), 401, 40102)
    assert body["message"].startswith(f"bad request signature: malformed {header}")


def test_the_signature_is_checked_before_the_body(client: FlaskClient, log_in: LogIn) -> None:
    data = log_in()
    response = client.patch(ME, data="not json", headers=bearer(data), content_type="text/plain")
    assert_envelope(response, 401, 40102)


@pytest.mark.parametrize(
    ("method", "path"), [("POST", LOGOUT), ("PATCH", ME), ("POST", f"{ME}/phone")]
)
def test_the_signed_endpoints_refuse_unsigned_requests(
    client: FlaskClient, log_in: LogIn, method: str, path: str
) -> None:
    data = log_in()
    response = client.open(path, method=method, json={}, headers=bearer(data))
    assert_envelope(response, 401, 40102)


def test_signatures_can_be_switched_off_for_local_runs(
    settings: config.TestingSettings, client: FlaskClient, log_in: LogIn
) -> None:
    data = log_in()
    unsigned = create_app(settings.model_copy(update={"SIGNATURE_REQUIRED": False})).test_client()
    assert_envelope(unsigned.post(LOGOUT, headers=bearer(data)), 200, 0)
    assert config.DevelopmentSettings().SIGNATURE_REQUIRED is False
    assert config.ProductionSettings.model_fields["SIGNATURE_REQUIRED"].default is True


def test_logout_signed_with_the_helper(client: FlaskClient, log_in: LogIn) -> None:
    data = log_in()
    assert_envelope(send_signed(client, data, "POST", LOGOUT), 200, 0)


def test_the_check_never_calls_remember_nonce_for_a_bad_signature() -> None:
    calls: list[str] = []
    headers = signature.sign_headers("POST", "/x", "", b"", VECTORS["sign_key"])
    with pytest.raises(AppError):
        signature.verify(
            "POST",
            "/x",
            "",
            b"tampered",
            headers,
            VECTORS["sign_key"],
            now=time.time(),
            remember_nonce=lambda nonce: calls.append(nonce) is None,
        )
    assert calls == []


def test_the_same_signed_request_sent_at_once_passes_exactly_once(
    live_server: str, emulator: EmulatorControl, app: Any
) -> None:
    """Copies race through different gunicorn workers; Redis SET NX lets exactly one through."""
    code = emulator.new_login_code().code
    data = requests.post(f"{live_server}/api/v1/auth/login", json={"code": code}, timeout=10).json()
    headers = signed_headers(data["data"], "PATCH", ME, NICKNAME) | {
        "Content-Type": "application/json"
    }

    def send(_: int) -> int:
        return requests.patch(
            f"{live_server}{ME}", data=NICKNAME, headers=headers, timeout=10
        ).status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = sorted(pool.map(send, range(12)))
    assert statuses == [200] + [401] * 11
