"""Fuzzing: schemathesis drives every operation of /openapi.json against real gunicorn.

Twice: on MariaDB with Redis, and on the embedded default (SQLite, no Redis), whose driver fails
differently on out-of-range values. Requests are logged in (as an admin, so the back office is
reached too) and signed: a `requests` auth hook signs the exact prepared request, as the
mini-program would. Each operation gets a bounded number of schema-valid and schema-violating
examples, without shrinking, so each run stays within a minute or so. Pass: no 5xx, schema-valid
requests are not refused as invalid (positive data acceptance, below), every response conforms
to the document (status, content type, schema, headers) and every JSON answer is the envelope
whose code matches the status.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks
from schemathesis.config import PositiveDataAcceptanceConfig, SchemathesisConfig
from schemathesis.core.failures import FailureGroup

from minishop import config, create_app
from minishop.domain.auth import grant_admin
from minishop.domain.seeding import seed_demo_catalog
from minishop.extensions import db
from minishop.security.signature import sign_headers
from tests.conftest import embedded_settings, gunicorn_server
from wechat_emulator.testing import EmulatorControl

EXAMPLES_PER_MODE = 12
ENVELOPE_KEYS = {"code", "message", "data", "request_id"}
LOGOUT = "/api/v1/auth/logout"
# Answers WeChat Pay in WeChat's own format (docs/api.md), which its OpenAPI responses describe.
WECHAT_NOTIFY = "/api/v1/payments/wechat/notify"


class SignedAdmin(requests.auth.AuthBase):
    """Bearer token and signature of the prepared request (the exact bytes that are sent)."""

    def __init__(self, base_url: str, emulator: EmulatorControl) -> None:
        self.base_url = base_url
        self.emulator = emulator
        self.openid = "o-fuzzing-admin"
        self.log_in()

    def log_in(self) -> None:
        code = self.emulator.new_login_code(openid=self.openid).code
        answer = requests.post(
            f"{self.base_url}/api/v1/auth/login", json={"code": code}, timeout=10
        )
        answer.raise_for_status()
        self.data: dict[str, Any] = answer.json()["data"]

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        url = urlsplit(request.url or "")
        body = request.body or b""
        raw = body.encode() if isinstance(body, str) else body
        request.headers["Authorization"] = f"Bearer {self.data['access_token']}"
        request.headers.update(
            sign_headers(
                request.method or "GET", unquote(url.path), url.query, raw, self.data["sign_key"]
            )
        )
        return request


@schemathesis.check
def envelope_conformance(ctx: Any, response: Any, case: Any) -> bool | None:
    """JSON answers are the envelope; errors always are, with the code of their HTTP status."""
    is_json = response.headers.get("content-type", [""])[0].startswith("application/json")
    if case.path in ("/openapi.json", WECHAT_NOTIFY) or (
        response.status_code < 400 and not is_json
    ):
        return None
    body = response.json()
    assert isinstance(body, dict) and set(body) == ENVELOPE_KEYS, f"not an envelope: {body}"
    if response.status_code < 400:
        assert body["code"] == 0, body
    else:
        assert body["code"] // 100 == response.status_code, body
    return None


# positive_data_acceptance fails a schema-valid request answered with a status outside a list.
# For every operation the list is schemathesis's default: 2xx, 3xx, 401, 403, 404 (generated ids
# rarely exist), 409 (states, duplicate names, stale versions), 429, and 5xx (which
# not_a_server_error judges instead), so a 400, 405, 413, 415 or 422 there fails the run. The
# operations below may also refuse a well-formed request for something no schema can describe;
# their lists add exactly that, and nothing else:
# - a wx.login or getPhoneNumber code is opaque: WeChat (the emulator) decides whether it is
#   valid, and an invalid one is 40000 by the contract;
# - an order names products by id: one that does not exist or is off sale, and a total beyond
#   2^31-1 fen, are 40000 on `items` by the contract (generated ids rarely exist);
# - an upload's type is judged from its bytes (41500) and an image's size from its pixels (41300).
VALID_DATA_STATUSES = PositiveDataAcceptanceConfig().expected_statuses
FUZZ_CONFIG = SchemathesisConfig.from_dict(
    {
        "operations": [
            {
                "include-name": name,
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": VALID_DATA_STATUSES + also}
                },
            }
            for name, also in [
                ("POST /api/v1/auth/login", ["400"]),
                ("POST /api/v1/users/me/phone", ["400"]),
                ("POST /api/v1/orders", ["400"]),
                ("POST /api/v1/files", ["413", "415"]),
            ]
        ]
    }
)

CHECKS = [
    checks.not_a_server_error,
    checks.positive_data_acceptance,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    envelope_conformance,
]


@dataclass(frozen=True)
class FuzzTarget:
    base_url: str
    settings: config.TestingSettings

    def prepare(self, admin_openid: str) -> None:
        """The demo catalog, so some generated ids exist, and the fuzzer's user made an admin."""
        app = create_app(self.settings)
        with app.app_context():
            seed_demo_catalog(db.session())
            grant_admin(db.session(), admin_openid)
            db.engine.dispose()


@pytest.fixture(scope="module", params=["mariadb", "sqlite"])
def fuzz_server(
    request: pytest.FixtureRequest,
    settings: config.TestingSettings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FuzzTarget]:
    """gunicorn with uploads in a temporary folder, so fuzzed files never land in the tree."""
    tmp: Path = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    if request.param == "sqlite":
        settings = embedded_settings(settings, tmp)
    with gunicorn_server(settings, tmp, UPLOAD_DIR=str(tmp / "uploads")) as base_url:
        yield FuzzTarget(base_url, settings)


def test_fuzz_every_operation(fuzz_server: FuzzTarget, emulator: EmulatorControl, app: Any) -> None:
    """`app` empties MariaDB and Redis first; the SQLite run has a fresh database of its own."""
    base_url = fuzz_server.base_url
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=FUZZ_CONFIG)
    auth = SignedAdmin(base_url, emulator)
    fuzz_server.prepare(auth.openid)
    failures: list[str] = []
    with requests.Session() as session:
        session.auth = auth
        for result in schema.get_all_operations():
            operation = result.ok()
            strategy = st.one_of(
                operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
                operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
            )

            @hypothesis_settings(
                max_examples=2 * EXAMPLES_PER_MODE,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def run(case: Any) -> None:
                response = case.call(base_url=base_url, session=session, timeout=10)
                if case.path == LOGOUT and response.status_code == 200:
                    auth.log_in()  # the fuzzer just ended our session
                case.validate_response(response, checks=CHECKS)

            try:
                run()
            except (FailureGroup, AssertionError) as exc:
                failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
