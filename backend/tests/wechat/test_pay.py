"""Our WeChat Pay v3 client against the emulator: signing, answer verification, retries, errors,
and notifications captured from the emulator on a real loopback notify_url."""

from __future__ import annotations

import base64
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from prometheus_client import REGISTRY

from minishop.errors import ErrorCode
from minishop.wechat.pay import (
    Notification,
    PayCredentials,
    PayNotificationError,
    RefundResult,
    Transaction,
    WeChatPayClient,
    WeChatPayError,
    WeChatPayUnavailableError,
    decrypt_aes_gcm,
)
from wechat_emulator.testing import (
    EmulatorControl,
    EmulatorControlError,
    EmulatorProcess,
    PayKeys,
    Receiver,
    notify_receiver,
)

OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
OTHER_KEY_ID = "PUB_KEY_ID_0119000000012026000000000000000099"
OWN_KEY_ID = "PUB_KEY_ID_0119000000012026000000000000000042"
NOTIFY_URL = "http://127.0.0.1:9/pay/notify"  # for orders whose notification nobody reads

ClientFactory = Callable[..., WeChatPayClient]


# --- the merchant's configuration: the emulator's keys, written to PEM files as in production ---


def _public_pem(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@pytest.fixture()
def pay_keys(emulator: EmulatorControl) -> PayKeys:
    return emulator.pay_keys()


@pytest.fixture()
def make_client(
    emulator_process: EmulatorProcess, pay_keys: PayKeys, tmp_path: Path
) -> ClientFactory:
    """A client of the emulator; `certificate=True` leaves the platform public key out."""
    assert pay_keys.merchant_private_key is not None
    private_key = tmp_path / "apiclient_key.pem"
    private_key.write_text(pay_keys.merchant_private_key)
    platform_key = tmp_path / "pub_key.pem"
    platform_key.write_text(pay_keys.platform_public_key)

    def make(
        *,
        certificate: bool = False,
        public_key_id: str | None = None,
        public_key_pem: str | None = None,
        api_base: str | None = None,
        total_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> WeChatPayClient:
        public_key_file: str | None = str(platform_key)
        if public_key_pem is not None:
            public_key_file = str(tmp_path / f"pub_key_{secrets.token_hex(4)}.pem")
            Path(public_key_file).write_text(public_key_pem)
        credentials = PayCredentials.load(
            mchid=pay_keys.mchid,
            appid=pay_keys.appid,
            merchant_serial=pay_keys.merchant_serial,
            private_key_file=str(private_key),
            apiv3_key=pay_keys.apiv3_key,
            public_key_id=None if certificate else public_key_id or pay_keys.public_key_id,
            public_key_file=None if certificate else public_key_file,
        )
        return WeChatPayClient(
            api_base or emulator_process.base_url,
            credentials,
            connect_timeout=1.0,
            total_timeout=total_timeout,
            clock=clock,
        )

    return make


@pytest.fixture()
def pay(make_client: ClientFactory) -> WeChatPayClient:
    return make_client()


def _expiry() -> datetime:
    return datetime.now(UTC) + timedelta(minutes=15)


def _create(
    pay: WeChatPayClient, out_trade_no: str, total_fen: int = 990, notify_url: str = NOTIFY_URL
) -> str:
    return pay.create_jsapi(
        out_trade_no=out_trade_no,
        description="MiniShop 龙井茶",
        total_fen=total_fen,
        openid=OPENID,
        time_expire=_expiry(),
        notify_url=notify_url,
    )


def _pay_error(call: Callable[[], object]) -> WeChatPayError:
    with pytest.raises(WeChatPayError) as caught:
        call()
    assert caught.value.code == ErrorCode.WECHAT_ERROR
    return caught.value


def _calls(emulator: EmulatorControl, api: str) -> list[tuple[int, str | None]]:
    return [(call["status"], call["code"]) for call in emulator.calls(api)]


# --- a merchant's notify_url on loopback ---


@contextmanager
def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on a free loopback port; yields http://127.0.0.1:PORT."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    """Records each notification's headers and raw body, and answers 204."""
    with notify_receiver() as receiver:
        yield receiver


@pytest.fixture()
def captured(
    pay: WeChatPayClient, emulator: EmulatorControl, receiver: Receiver
) -> tuple[dict[str, str], bytes]:
    """A real TRANSACTION.SUCCESS notification (headers as received, raw body)."""
    _create(pay, "order-0001", notify_url=receiver.url)
    emulator.pay_succeed("order-0001")
    (received,) = receiver.wait_for(1)
    return received.headers, received.body


def _refused(
    pay: WeChatPayClient, headers: dict[str, str], body: bytes, status: int, code: str
) -> PayNotificationError:
    with pytest.raises(PayNotificationError) as caught:
        pay.parse_notification(headers, body)
    assert (caught.value.http_status, caught.value.code) == (status, code)
    return caught.value


# --- AES-GCM and credentials ---


def test_the_public_aes_gcm_vector_decrypts() -> None:
    key, nonce, associated = b"testAPIv3Key0000", "wCq51qZv4Yfg", "Dl56FrqWQJF1t9LtC3vEUsniZKvbqdR8"
    ciphertext = "FsdXzxryWfKwvLJKf8LG/ToRPTRh8RN9wROC"
    assert decrypt_aes_gcm(key, nonce, associated, ciphertext) == b"Hello World"
    with pytest.raises(ValueError, match="authentication failed"):
        decrypt_aes_gcm(key, nonce, "other associated data", ciphertext)
    with pytest.raises(ValueError, match="authentication failed"):
        decrypt_aes_gcm(b"testAPIv3Key0001", nonce, associated, ciphertext)


def test_credentials_name_the_setting_that_is_wrong(pay_keys: PayKeys, tmp_path: Path) -> None:
    assert pay_keys.merchant_private_key is not None
    private_key = tmp_path / "apiclient_key.pem"
    private_key.write_text(pay_keys.merchant_private_key)
    public_key = tmp_path / "pub_key.pem"
    public_key.write_text(pay_keys.platform_public_key)
    certificate = tmp_path / "platform_cert.pem"
    certificate.write_text(pay_keys.platform_certificate)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    good: dict[str, Any] = {
        "mchid": pay_keys.mchid,
        "appid": pay_keys.appid,
        "merchant_serial": pay_keys.merchant_serial,
        "private_key_file": str(private_key),
        "apiv3_key": pay_keys.apiv3_key,
        "public_key_id": pay_keys.public_key_id,
        "public_key_file": str(public_key),
    }
    loaded = PayCredentials.load(**good)
    assert loaded.apiv3_key == pay_keys.apiv3_key.encode()
    assert loaded.platform_public_key is not None
    assert _public_pem(loaded.platform_public_key) == pay_keys.platform_public_key
    # A certificate holding the key works as the public key file too.
    from_certificate = PayCredentials.load(**good | {"public_key_file": str(certificate)})
    assert from_certificate.platform_public_key is not None
    assert _public_pem(from_certificate.platform_public_key) == pay_keys.platform_public_key
    certificate_mode = PayCredentials.load(
        **good | {"public_key_id": None, "public_key_file": None}
    )
    assert certificate_mode.platform_public_key is None

    wrong: list[tuple[dict[str, Any], str]] = [
        ({"private_key_file": str(tmp_path / "missing.pem")}, "WECHATPAY_PRIVATE_KEY_FILE"),
        ({"private_key_file": str(garbage)}, "WECHATPAY_PRIVATE_KEY_FILE"),
        ({"private_key_file": str(public_key)}, "WECHATPAY_PRIVATE_KEY_FILE"),
        ({"public_key_file": str(garbage)}, "WECHATPAY_PUBLIC_KEY_FILE"),
        ({"public_key_file": str(private_key)}, "WECHATPAY_PUBLIC_KEY_FILE"),
        ({"public_key_file": str(tmp_path / "missing.pem")}, "WECHATPAY_PUBLIC_KEY_FILE"),
        ({"public_key_file": None}, "WECHATPAY_PUBLIC_KEY_ID and WECHATPAY_PUBLIC_KEY_FILE"),
        ({"public_key_id": None}, "WECHATPAY_PUBLIC_KEY_ID and WECHATPAY_PUBLIC_KEY_FILE"),
        ({"apiv3_key": pay_keys.apiv3_key[:31]}, "WECHATPAY_APIV3_KEY"),
    ]
    for change, setting in wrong:
        with pytest.raises(ValueError, match=setting) as caught:
            PayCredentials.load(**good | change)
        assert pay_keys.apiv3_key[:31] not in str(caught.value)


# --- the calls ---


def test_create_is_idempotent_and_query_follows_the_payment(
    pay: WeChatPayClient, emulator: EmulatorControl, pay_keys: PayKeys
) -> None:
    expiry = datetime(2099, 11, 30, 15, 45, tzinfo=UTC)
    create: dict[str, Any] = {
        "out_trade_no": "order-0001",
        "description": "MiniShop 龙井茶",
        "total_fen": 990,
        "openid": OPENID,
        "time_expire": expiry,
        "notify_url": NOTIFY_URL,
    }
    prepay_id = pay.create_jsapi(**create)
    assert prepay_id.startswith("wx")
    assert pay.create_jsapi(**create) == prepay_id
    body = emulator.calls("pay_jsapi")[0]["json"]
    assert body["time_expire"] == "2099-11-30T23:45:00+08:00"
    assert body["amount"] == {"total": 990, "currency": "CNY"}
    assert body["payer"] == {"openid": OPENID}
    assert (body["appid"], body["mchid"]) == (pay_keys.appid, pay_keys.mchid)

    unpaid = pay.query("order-0001")
    assert unpaid == Transaction(
        out_trade_no="order-0001",
        trade_state="NOTPAY",
        appid=pay_keys.appid,
        mchid=pay_keys.mchid,
        transaction_id=None,
        total_fen=990,
        payer_total_fen=None,
        currency="CNY",
        success_time=None,
        openid=OPENID,
    )
    transaction = emulator.pay_succeed("order-0001", payer_total=900)["transaction"]
    paid = pay.query("order-0001")
    assert paid.trade_state == "SUCCESS"
    assert paid.transaction_id == transaction["transaction_id"]
    assert paid.payer_total_fen == 900
    assert paid.success_time is not None
    assert paid.success_time.utcoffset() == timedelta(hours=8)
    assert paid.success_time == datetime.fromisoformat(transaction["success_time"])
    assert _calls(emulator, "pay_query") == [(200, None), (200, None)]


def test_create_refusals_are_50200_with_wechats_code(
    pay: WeChatPayClient, emulator: EmulatorControl
) -> None:
    error = _pay_error(lambda: _create(pay, "abc"))  # out_trade_no shorter than 6
    assert (error.http_status, error.pay_code, error.api) == (400, "PARAM_ERROR", "pay_jsapi")
    assert "out_trade_no" in error.pay_message
    _create(pay, "order-0001", total_fen=990)
    error = _pay_error(lambda: _create(pay, "order-0001", total_fen=991))
    assert (error.http_status, error.pay_code) == (400, "PARAM_ERROR")
    with pytest.raises(ValueError, match="aware"):
        pay.create_jsapi(
            out_trade_no="order-0002",
            description="x",
            total_fen=1,
            openid=OPENID,
            time_expire=datetime(2099, 1, 1),  # naive: the point of the test
            notify_url=NOTIFY_URL,
        )
    error = _pay_error(lambda: pay.query("order-9999"))
    assert (error.http_status, error.pay_code, error.api) == (404, "ORDER_NOT_EXIST", "pay_query")
    assert error.message == "WeChat Pay error ORDER_NOT_EXIST from pay_query"


def test_close_an_unpaid_order_and_a_paid_one_is_orderpaid(
    pay: WeChatPayClient, emulator: EmulatorControl
) -> None:
    _create(pay, "order-0001")
    pay.close("order-0001")
    assert pay.query("order-0001").trade_state == "CLOSED"
    pay.close("order-0001")  # closing twice is fine
    assert _calls(emulator, "pay_close") == [(204, None), (204, None)]

    _create(pay, "order-0002")
    emulator.pay_succeed("order-0002")
    error = _pay_error(lambda: pay.close("order-0002"))
    assert (error.http_status, error.pay_code, error.api) == (400, "ORDERPAID", "pay_close")
    assert pay.query("order-0002").trade_state == "SUCCESS"


def test_refund_and_query_refund(pay: WeChatPayClient, emulator: EmulatorControl) -> None:
    _create(pay, "order-0001", total_fen=990)
    transaction_id = emulator.pay_succeed("order-0001")["transaction"]["transaction_id"]
    request: dict[str, Any] = {
        "out_trade_no": "order-0001",
        "out_refund_no": "refund-0001",
        "refund_fen": 300,
        "total_fen": 990,
        "reason": "缺货",
        "notify_url": "",
    }
    created = pay.refund(**request)
    assert created.status == "PROCESSING"
    assert (created.out_refund_no, created.out_trade_no) == ("refund-0001", "order-0001")
    assert (created.refund_fen, created.total_fen) == (300, 990)
    assert created.transaction_id == transaction_id
    assert created.refund_id is not None
    sent = emulator.calls("pay_refund")[0]["json"]
    assert sent["amount"] == {"refund": 300, "total": 990, "currency": "CNY"}
    assert "notify_url" not in sent

    again = pay.refund(**request)
    assert again.refund_id == created.refund_id
    settled = pay.query_refund("refund-0001")
    assert settled.status == "SUCCESS"
    assert settled.refund_id == created.refund_id
    assert settled.success_time is not None and settled.success_time.tzinfo is not None

    error = _pay_error(lambda: pay.query_refund("refund-9999"))
    assert (error.http_status, error.pay_code, error.api) == (
        404,
        "ORDER_NOT_EXIST",
        "pay_refund_query",
    )
    error = _pay_error(lambda: pay.refund(**request | {"refund_fen": 800}))
    assert (error.http_status, error.pay_code) == (400, "PARAM_ERROR")


def test_payment_params_are_accepted_by_wx_request_payment(
    pay: WeChatPayClient, emulator: EmulatorControl
) -> None:
    prepay_id = _create(pay, "order-0001")
    params = pay.payment_params(prepay_id)
    assert set(params) == {"timeStamp", "nonceStr", "package", "signType", "paySign"}
    assert params["package"] == f"prepay_id={prepay_id}"
    assert params["signType"] == "RSA"
    assert len(params["timeStamp"]) == 10
    assert emulator.request_payment(params)["out_trade_no"] == "order-0001"
    with pytest.raises(EmulatorControlError) as caught:
        emulator.request_payment(params | {"nonceStr": params["nonceStr"] + "x"})
    assert caught.value.status == 400


# --- answer verification ---


def test_certificate_mode_downloads_the_certificates_once(
    make_client: ClientFactory, emulator: EmulatorControl
) -> None:
    emulator.pay_settings(serial_mode="certificate")
    pay = make_client(certificate=True)
    _create(pay, "order-0001")
    assert pay.query("order-0001").trade_state == "NOTPAY"
    pay.close("order-0001")
    assert _calls(emulator, "pay_certificates") == [(200, None)]
    assert len(emulator.calls("pay_query")) == 1


def test_certificate_mode_refuses_a_serial_it_cannot_find_and_asks_once_a_minute(
    make_client: ClientFactory, emulator: EmulatorControl
) -> None:
    _create(make_client(), "order-0001")
    pay = make_client(certificate=True)  # the emulator answers with its public key id
    for _ in range(2):
        error = _pay_error(lambda: pay.query("order-0001"))
        assert error.pay_code == "INVALID_RESPONSE_SIGNATURE"
        assert "unknown Wechatpay-Serial PUB_KEY_ID_" in error.pay_message
    assert len(emulator.calls("pay_certificates")) == 1


def test_signtest_probe_answers_are_refused(
    pay: WeChatPayClient, emulator: EmulatorControl
) -> None:
    _create(pay, "order-0001")
    emulator.pay_settings(signtest_answers=1)
    error = _pay_error(lambda: pay.query("order-0001"))
    assert (error.http_status, error.pay_code) == (200, "INVALID_RESPONSE_SIGNATURE")
    assert "WECHATPAY/SIGNTEST/" in error.pay_message
    assert pay.query("order-0001").trade_state == "NOTPAY"  # the probe is over


def test_answers_with_a_stale_timestamp_are_refused(
    make_client: ClientFactory, emulator: EmulatorControl
) -> None:
    _create(make_client(), "order-0001")
    ahead = make_client(clock=lambda: time.time() + 301)
    error = _pay_error(lambda: ahead.query("order-0001"))
    assert error.pay_code == "INVALID_RESPONSE_SIGNATURE"
    assert "away from now" in error.pay_message
    # Signed timestamps are whole seconds taken a moment ago: behind needs a margin.
    behind = make_client(clock=lambda: time.time() - 305)
    assert _pay_error(lambda: behind.query("order-0001")).pay_code == "INVALID_RESPONSE_SIGNATURE"
    assert make_client(clock=lambda: time.time() + 290).query("order-0001").trade_state == "NOTPAY"


def test_answers_from_an_unknown_serial_or_key_are_refused(
    make_client: ClientFactory, emulator: EmulatorControl
) -> None:
    _create(make_client(), "order-0001")
    error = _pay_error(lambda: make_client(public_key_id=OTHER_KEY_ID).query("order-0001"))
    assert error.pay_code == "INVALID_RESPONSE_SIGNATURE"
    assert "unknown Wechatpay-Serial" in error.pay_message
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    impostor = make_client(public_key_pem=_public_pem(other_key))
    error = _pay_error(lambda: impostor.query("order-0001"))
    assert error.pay_message == "the signature does not verify"


# --- the time budget and retries (emulator faults) ---


def test_a_delay_beyond_the_budget_is_50400_within_the_budget(
    make_client: ClientFactory, emulator: EmulatorControl
) -> None:
    pay = make_client(total_timeout=0.6)
    emulator.faults("pay_query", delay_ms=3000, times=2)
    started = time.monotonic()
    with pytest.raises(WeChatPayUnavailableError) as caught:
        pay.query("order-0001")
    elapsed = time.monotonic() - started
    assert 0.55 < elapsed < 1.1  # a second full attempt would take 1.2 s
    assert caught.value.code == ErrorCode.WECHAT_TIMEOUT
    assert caught.value.api == "pay_query"


def test_an_unreachable_host_is_retried_once_then_50400(make_client: ClientFactory) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pay = make_client(api_base=f"http://127.0.0.1:{port}")
    with pytest.raises(WeChatPayUnavailableError) as caught:
        pay.close("order-0001")
    assert caught.value.api == "pay_close"


def test_a_one_off_system_error_is_retried(pay: WeChatPayClient, emulator: EmulatorControl) -> None:
    _create(pay, "order-0001")
    emulator.faults("pay_query", errcode=500)
    assert pay.query("order-0001").trade_state == "NOTPAY"
    assert _calls(emulator, "pay_query") == [(500, "SYSTEM_ERROR"), (200, None)]


def test_system_errors_twice_are_50200_after_one_retry(
    pay: WeChatPayClient, emulator: EmulatorControl
) -> None:
    emulator.faults("pay_query", errcode=500, times=3)
    error = _pay_error(lambda: pay.query("order-0001"))
    assert (error.http_status, error.pay_code) == (500, "SYSTEM_ERROR")
    assert len(emulator.calls("pay_query")) == 2


def test_a_rate_limited_refund_is_retried_with_the_same_out_refund_no(
    pay: WeChatPayClient, emulator: EmulatorControl
) -> None:
    _create(pay, "order-0001")
    emulator.pay_succeed("order-0001")
    emulator.faults("pay_refund", errcode=429)
    refund = pay.refund(
        out_trade_no="order-0001",
        out_refund_no="refund-0001",
        refund_fen=990,
        total_fen=990,
        reason="",
        notify_url="",
    )
    assert refund.refund_fen == 990
    calls = emulator.calls("pay_refund")
    assert [(c["status"], c["code"]) for c in calls] == [(429, "RATELIMIT_EXCEEDED"), (200, None)]
    assert calls[1]["json"]["out_refund_no"] == "refund-0001"


def test_client_errors_are_not_retried(pay: WeChatPayClient, emulator: EmulatorControl) -> None:
    emulator.faults("pay_query", errcode=403)
    error = _pay_error(lambda: pay.query("order-0001"))
    assert (error.http_status, error.pay_code) == (403, "NO_AUTH")
    assert len(emulator.calls("pay_query")) == 1


def test_answers_that_are_not_wechat_pay_answers(
    pay: WeChatPayClient, emulator: EmulatorControl
) -> None:
    emulator.faults("pay_query", http_status=502, times=2)  # a proxy's bare 502, twice
    error = _pay_error(lambda: pay.query("order-0001"))
    assert (error.http_status, error.pay_code) == (502, "UNEXPECTED_RESPONSE")
    assert len(emulator.calls("pay_query")) == 2
    emulator.faults("pay_query", http_status=200)  # a signed but empty 200
    error = _pay_error(lambda: pay.query("order-0001"))
    assert (error.http_status, error.pay_code) == (200, "INVALID_RESPONSE")


def _wechat_calls(api: str, outcome: str) -> float:
    labels = {"api": api, "outcome": outcome}
    return REGISTRY.get_sample_value("minishop_wechat_calls_total", labels) or 0.0


def test_each_call_is_counted_by_outcome(pay: WeChatPayClient, emulator: EmulatorControl) -> None:
    before = {name: _wechat_calls("pay_query", name) for name in ("ok", "error")}
    _create(pay, "order-0001")
    pay.query("order-0001")
    _pay_error(lambda: pay.query("order-9999"))
    assert _wechat_calls("pay_query", "ok") == before["ok"] + 1
    assert _wechat_calls("pay_query", "error") == before["error"] + 1


@dataclass
class Gateway:
    """An egress gateway at <url>/wechatpay forwarding to the emulator's /v3/... as it is."""

    url: str = ""
    paths: list[str] = field(default_factory=list)
    drop_headers: set[str] = field(default_factory=set)  # lower case, from the answers


@pytest.fixture()
def gateway(emulator_process: EmulatorProcess) -> Iterator[Gateway]:
    gateway = Gateway()
    upstream = requests.Session()
    upstream.trust_env = False

    class Handler(BaseHTTPRequestHandler):
        def forward(self) -> None:
            gateway.paths.append(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            names = ("Authorization", "Accept", "Content-Type", "User-Agent")
            answer = upstream.request(
                self.command,
                emulator_process.base_url + self.path.removeprefix("/wechatpay"),
                data=body or None,
                headers={name: self.headers[name] for name in names if name in self.headers},
                timeout=5,
            )
            self.send_response(answer.status_code)
            for name, value in answer.headers.items():
                lower = name.lower()
                relayed = lower.startswith("wechatpay-") or lower == "content-type"
                if relayed and lower not in gateway.drop_headers:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        def do_GET(self) -> None:
            self.forward()

        def do_POST(self) -> None:
            self.forward()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with _serve(Handler) as url, upstream:
        gateway.url = f"{url}/wechatpay/"
        yield gateway


def test_a_path_in_api_base_is_kept_and_the_wechat_path_signed(
    make_client: ClientFactory, emulator: EmulatorControl, gateway: Gateway
) -> None:
    """WeChat checks the signature against the path it receives: /v3/..., not the gateway's."""
    pay = make_client(api_base=gateway.url)
    _create(pay, "order-0001")
    assert pay.query("order-0001").trade_state == "NOTPAY"
    assert gateway.paths == [
        "/wechatpay/v3/pay/transactions/jsapi",
        f"/wechatpay/v3/pay/transactions/out-trade-no/order-0001?mchid={pay.credentials.mchid}",
    ]


@pytest.mark.parametrize(
    "name", ["wechatpay-timestamp", "wechatpay-nonce", "wechatpay-signature", "wechatpay-serial"]
)
def test_an_answer_without_a_signature_header_is_refused(
    make_client: ClientFactory, emulator: EmulatorControl, gateway: Gateway, name: str
) -> None:
    pay = make_client(api_base=gateway.url)
    _create(pay, "order-0001")
    gateway.drop_headers.add(name)
    error = _pay_error(lambda: pay.query("order-0001"))
    assert (error.http_status, error.pay_code) == (200, "INVALID_RESPONSE_SIGNATURE")
    assert error.pay_message == f"{name} missing"
    error = _pay_error(lambda: pay.close("order-0001"))  # a 204 is signed too
    assert (error.http_status, error.pay_code) == (204, "INVALID_RESPONSE_SIGNATURE")


# --- notifications ---


def test_a_payment_notification_verifies_and_decrypts(
    pay: WeChatPayClient,
    emulator: EmulatorControl,
    receiver: Receiver,
) -> None:
    _create(pay, "order-0001", total_fen=990, notify_url=receiver.url)
    paid = emulator.pay_succeed("order-0001", payer_total=900)
    (received,) = receiver.wait_for(1)
    notification = pay.parse_notification(received.headers, received.body)
    assert notification.id == paid["notification_id"]
    assert notification.event_type == "TRANSACTION.SUCCESS"
    assert notification.resource == pay.query("order-0001")
    assert isinstance(notification.resource, Transaction)
    assert notification.resource.payer_total_fen == 900


def test_a_notification_in_certificate_mode(
    make_client: ClientFactory, emulator: EmulatorControl, receiver: Receiver
) -> None:
    emulator.pay_settings(serial_mode="certificate")
    pay = make_client(certificate=True)
    _create(pay, "order-0001", notify_url=receiver.url)
    emulator.pay_succeed("order-0001")
    (received,) = receiver.wait_for(1)
    notification = pay.parse_notification(received.headers, received.body)
    assert notification.resource.out_trade_no == "order-0001"


@pytest.mark.parametrize("outcome", ["SUCCESS", "ABNORMAL"])
def test_a_refund_notification_is_a_refund_result(
    pay: WeChatPayClient, emulator: EmulatorControl, receiver: Receiver, outcome: str
) -> None:
    _create(pay, "order-0001", total_fen=990)
    emulator.pay_succeed("order-0001")
    emulator.set_refund_outcome(outcome)
    created = pay.refund(
        out_trade_no="order-0001",
        out_refund_no="refund-0001",
        refund_fen=500,
        total_fen=990,
        reason="买家取消",
        notify_url=receiver.url,
    )
    (received,) = receiver.wait_for(1)
    notification = pay.parse_notification(received.headers, received.body)
    assert notification.event_type == f"REFUND.{outcome}"
    refund = notification.resource
    assert isinstance(refund, RefundResult)
    assert refund.status == outcome
    assert (refund.out_refund_no, refund.refund_id) == ("refund-0001", created.refund_id)
    assert (refund.out_trade_no, refund.refund_fen, refund.total_fen) == ("order-0001", 500, 990)
    assert (refund.success_time is not None) == (outcome == "SUCCESS")


def test_a_tampered_body_is_sign_error(
    pay: WeChatPayClient, captured: tuple[dict[str, str], bytes]
) -> None:
    headers, body = captured
    pay.parse_notification(headers, body)  # the untouched one is fine
    reserialised = json.dumps(json.loads(body), indent=1).encode()  # the same JSON, other bytes
    for tampered in (body + b" ", reserialised, body.replace(b"TRANSACTION", b"TRANSACTIOM")):
        refusal = _refused(pay, headers, tampered, 401, "SIGN_ERROR")
        assert refusal.message == "the signature does not verify"


def test_a_corrupt_signature_is_sign_error(
    pay: WeChatPayClient, emulator: EmulatorControl, receiver: Receiver
) -> None:
    _create(pay, "order-0001", notify_url=receiver.url)
    emulator.pay_succeed("order-0001", corrupt_signature=True)
    (received,) = receiver.wait_for(1)
    _refused(pay, received.headers, received.body, 401, "SIGN_ERROR")


def test_a_stale_notification_is_sign_error(
    make_client: ClientFactory, captured: tuple[dict[str, str], bytes]
) -> None:
    headers, body = captured
    for shift in (301, -305):  # the notification was signed (whole seconds) a moment ago
        pay = make_client(clock=lambda shift=shift: time.time() + shift)
        refusal = _refused(pay, headers, body, 401, "SIGN_ERROR")
        assert "away from now" in refusal.message


@pytest.mark.parametrize(
    "name", ["Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature", "Wechatpay-Serial"]
)
def test_a_missing_header_is_sign_error(
    pay: WeChatPayClient, captured: tuple[dict[str, str], bytes], name: str
) -> None:
    headers, body = captured
    kept = {key: value for key, value in headers.items() if key.lower() != name.lower()}
    assert len(kept) == len(headers) - 1
    refusal = _refused(pay, kept, body, 401, "SIGN_ERROR")
    assert name.lower() in refusal.message


def test_probes_unknown_serials_and_other_signature_types_are_sign_error(
    make_client: ClientFactory, captured: tuple[dict[str, str], bytes]
) -> None:
    headers = {key.lower(): value for key, value in captured[0].items()}
    body = captured[1]
    pay = make_client()
    probe = headers | {
        "wechatpay-signature": "WECHATPAY/SIGNTEST/" + headers["wechatpay-signature"]
    }
    assert "SIGNTEST" in _refused(pay, probe, body, 401, "SIGN_ERROR").message
    # "²" and 5,000 digits pass str.isdigit() but not int(): refused, not a ValueError (a 500).
    for timestamp in ("soon", "\u00b2", "9" * 5000):
        not_a_number = headers | {"wechatpay-timestamp": timestamp}
        assert "not a number" in _refused(pay, not_a_number, body, 401, "SIGN_ERROR").message
    other_type = headers | {"wechatpay-signature-type": "WECHATPAY2-SM2-WITH-SM3"}
    assert "Signature-Type" in _refused(pay, other_type, body, 401, "SIGN_ERROR").message
    other_serial = make_client(public_key_id=OTHER_KEY_ID)
    assert "unknown" in _refused(other_serial, headers, body, 401, "SIGN_ERROR").message


# Malformed notifications must be signed to get past the signature check: these are signed with
# a platform key of our own, configured as the client's WeChat Pay public key.


@pytest.fixture()
def own_platform_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture()
def own_platform_client(
    make_client: ClientFactory, own_platform_key: rsa.RSAPrivateKey
) -> WeChatPayClient:
    return make_client(
        public_key_id=OWN_KEY_ID, public_key_pem=_public_pem(own_platform_key.public_key())
    )


def _signed(key: rsa.RSAPrivateKey, body: bytes) -> dict[str, str]:
    timestamp, nonce = str(int(time.time())), secrets.token_hex(16).upper()
    message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
    signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return {
        "Wechatpay-Timestamp": timestamp,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": base64.b64encode(signature).decode(),
        "Wechatpay-Serial": OWN_KEY_ID,
        "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
    }


def _envelope(apiv3_key: bytes, plaintext: Any, **resource: str) -> dict[str, Any]:
    nonce = secrets.token_hex(6)
    data = json.dumps(plaintext).encode()
    ciphertext = AESGCM(apiv3_key).encrypt(nonce.encode(), data, b"transaction")
    return {
        "id": "EV-2018022511223320873",
        "create_time": "2026-11-30T23:45:00+08:00",
        "resource_type": "encrypt-resource",
        "event_type": "TRANSACTION.SUCCESS",
        "summary": "支付成功",
        "resource": {
            "original_type": "transaction",
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": base64.b64encode(ciphertext).decode(),
            "associated_data": "transaction",
            "nonce": nonce,
        }
        | resource,
    }


TRANSACTION = {
    "appid": "wx0000000000000000",
    "mchid": "1900000001",
    "out_trade_no": "order-0001",
    "transaction_id": "4200000000000000000000000001",
    "trade_state": "SUCCESS",
    "success_time": "2026-11-30T23:45:00+08:00",
    "payer": {"openid": OPENID},
    "amount": {"total": 990, "payer_total": 990, "currency": "CNY", "payer_currency": "CNY"},
}


def test_a_notification_signed_by_our_own_key_is_read(
    own_platform_client: WeChatPayClient, own_platform_key: rsa.RSAPrivateKey
) -> None:
    """The crafted notifications below differ from this one only where they say."""
    pay = own_platform_client
    body = json.dumps(_envelope(pay.credentials.apiv3_key, TRANSACTION)).encode()
    notification = pay.parse_notification(_signed(own_platform_key, body), body)
    assert notification == Notification(
        id="EV-2018022511223320873",
        event_type="TRANSACTION.SUCCESS",
        resource=Transaction(
            out_trade_no="order-0001",
            trade_state="SUCCESS",
            appid="wx0000000000000000",
            mchid="1900000001",
            transaction_id="4200000000000000000000000001",
            total_fen=990,
            payer_total_fen=990,
            currency="CNY",
            success_time=datetime(2026, 11, 30, 15, 45, tzinfo=UTC),
            openid=OPENID,
        ),
    )


def _malformed_bodies(apiv3_key: bytes) -> dict[str, bytes]:
    def encoded(envelope: Any) -> bytes:
        return json.dumps(envelope).encode()

    good = _envelope(apiv3_key, TRANSACTION)
    return {
        "not JSON": b"{not json",
        "not an object": b"[]",
        "no resource": encoded({key: value for key, value in good.items() if key != "resource"}),
        "wrong algorithm": encoded(_envelope(apiv3_key, TRANSACTION, algorithm="AEAD_SM4_GCM")),
        "other key": encoded(_envelope(b"0" * 32, TRANSACTION)),
        "other nonce": encoded(_envelope(apiv3_key, TRANSACTION, nonce="000000000000")),
        "other associated data": encoded(_envelope(apiv3_key, TRANSACTION, associated_data="x")),
        "ciphertext not base64": encoded(_envelope(apiv3_key, TRANSACTION, ciphertext="@@@@")),
        "plaintext not JSON": encoded(_envelope(apiv3_key, "a string")),
        "plaintext without amount": encoded(
            _envelope(apiv3_key, {k: v for k, v in TRANSACTION.items() if k != "amount"})
        ),
        "naive success_time": encoded(
            _envelope(apiv3_key, TRANSACTION | {"success_time": "2026-11-30T23:45:00"})
        ),
        "unknown original_type": encoded(_envelope(apiv3_key, TRANSACTION, original_type="x")),
    }


def test_malformed_notifications_are_param_error(
    own_platform_client: WeChatPayClient, own_platform_key: rsa.RSAPrivateKey
) -> None:
    pay = own_platform_client
    for case, body in _malformed_bodies(pay.credentials.apiv3_key).items():
        with pytest.raises(PayNotificationError) as caught:
            pay.parse_notification(_signed(own_platform_key, body), body)
        assert (caught.value.http_status, caught.value.code) == (400, "PARAM_ERROR"), case
