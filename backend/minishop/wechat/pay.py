"""WeChat Pay API v3 (api.mch.weixin.qq.com, or the emulator in tests): JSAPI orders and refunds.

Our own client rather than the wechatpayv3 package (README, "WeChat Pay"): a base URL for the
emulator, typed errors, one time budget per call, and answers are never trusted unverified.

- Requests are signed with the merchant key over `METHOD\\nPATH\\nTIMESTAMP\\nNONCE\\nBODY\\n`,
  the body being the exact bytes sent. `api_base` stands in for `https://api.mch.weixin.qq.com`;
  a path it carries (an egress gateway that forwards to WeChat) is part of the URL but not of
  the signed path, which is WeChat Pay's own (`/v3/...`, as WeChat receives it).
- Every 2xx answer (204 too) must carry a platform signature over `TIMESTAMP\\nNONCE\\nBODY\\n`
  that verifies, with a timestamp less than 300 s from `clock()`, a known serial and no
  `WECHATPAY/SIGNTEST/` probe; otherwise the call fails with WeChatPayError.
  Public-key mode knows one key id; certificate mode downloads /v3/certificates when it meets
  an unknown serial (lazily, at most once a minute) and decrypts them with the APIv3 key.
- Each call has a total budget (`total_timeout`) covering its one retry. Every call here is safe
  to repeat (the same create parameters answer the same prepay_id, the same out_refund_no the
  same refund, query and close are idempotent), so a timeout or connection error, a 5xx and a
  429 are retried once while the budget lasts. A refund that ends in WeChatPayUnavailableError
  has an unknown outcome: ask again with the same out_refund_no.

Nothing secret is logged: no Authorization header, key or signature.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from requests.adapters import HTTPAdapter

from minishop.observability import metrics
from minishop.wechat.errors import (
    PayNotificationError,
    WeChatPayError,
    WeChatPayUnavailableError,
)

__all__ = [
    "Notification",
    "PayCredentials",
    "PayNotificationError",
    "RefundResult",
    "Transaction",
    "WeChatPayClient",
    "WeChatPayError",
    "WeChatPayUnavailableError",
    "decrypt_aes_gcm",
]

log = logging.getLogger(__name__)

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
AES_ALGORITHM = "AEAD_AES_256_GCM"
MAX_SKEW_SECONDS = 300
# Unix seconds in ASCII digits: str.isdigit() also accepts "²", and 5,000 digits, which int()
# refuses with a ValueError (a 500 for a forged notification).
TIMESTAMP_PATTERN = re.compile(r"[0-9]{1,12}")
SIGNTEST_PREFIX = "WECHATPAY/SIGNTEST/"
CERTIFICATE_REFETCH_SECONDS = 60.0
CHINA = timezone(timedelta(hours=8))  # WeChat Pay's times are China time with an offset
USER_AGENT = f"minishop-wechatpay/1 {requests.utils.default_user_agent()}"

JSAPI = "pay_jsapi"
QUERY = "pay_query"
CLOSE = "pay_close"
REFUND = "pay_refund"
REFUND_QUERY = "pay_refund_query"
CERTIFICATES = "pay_certificates"

INVALID_SIGNATURE = "INVALID_RESPONSE_SIGNATURE"
INVALID_RESPONSE = "INVALID_RESPONSE"
UNEXPECTED_RESPONSE = "UNEXPECTED_RESPONSE"

_SIGNED_HEADERS = (
    "wechatpay-timestamp",
    "wechatpay-nonce",
    "wechatpay-signature",
    "wechatpay-serial",
)
_T = TypeVar("_T")


@dataclass(frozen=True)
class PayCredentials:
    """What the merchant configures; `platform_public_key` None means certificate mode."""

    mchid: str
    appid: str
    merchant_serial: str
    merchant_private_key: rsa.RSAPrivateKey
    apiv3_key: bytes  # exactly 32 bytes
    platform_public_key_id: str | None  # "PUB_KEY_ID_..." (public-key mode)
    platform_public_key: rsa.RSAPublicKey | None

    @classmethod
    def load(
        cls,
        *,
        mchid: str,
        appid: str,
        merchant_serial: str,
        private_key_file: str,
        apiv3_key: str,
        public_key_id: str | None,
        public_key_file: str | None,
    ) -> PayCredentials:
        """Read the PEM files; a ValueError names the setting that is wrong (never its value)."""
        key = apiv3_key.encode()
        if len(key) != 32:
            raise ValueError("WECHATPAY_APIV3_KEY must be exactly 32 bytes")
        if bool(public_key_id) != bool(public_key_file):
            raise ValueError(
                "WECHATPAY_PUBLIC_KEY_ID and WECHATPAY_PUBLIC_KEY_FILE go together: set both "
                "(public-key mode) or neither (certificate mode)"
            )
        platform_key = None
        if public_key_file:
            platform_key = _load_public_key("WECHATPAY_PUBLIC_KEY_FILE", public_key_file)
        return cls(
            mchid=mchid,
            appid=appid,
            merchant_serial=merchant_serial,
            merchant_private_key=_load_private_key("WECHATPAY_PRIVATE_KEY_FILE", private_key_file),
            apiv3_key=key,
            platform_public_key_id=public_key_id or None,
            platform_public_key=platform_key,
        )


def _read(setting: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{setting}: cannot read {path} ({exc.strerror})") from None


def _load_private_key(setting: str, path: str) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(_read(setting, path), password=None)
    except (ValueError, TypeError):  # TypeError: the key is password-protected
        raise ValueError(f"{setting}: {path} is not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{setting}: {path} is not an RSA private key")
    return key


def _load_public_key(setting: str, path: str) -> rsa.RSAPublicKey:
    """WeChat Pay's public key (pub_key.pem), or a certificate holding it."""
    data = _read(setting, path)
    try:
        key: object = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            key = x509.load_pem_x509_certificate(data).public_key()
        except ValueError:
            raise ValueError(f"{setting}: {path} is not a PEM public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError(f"{setting}: {path} is not an RSA public key")
    return key


@dataclass(frozen=True)
class Transaction:
    """The query-order shape (also a TRANSACTION.* notification's plaintext)."""

    out_trade_no: str
    trade_state: str  # SUCCESS|REFUND|NOTPAY|CLOSED|REVOKED|USERPAYING|PAYERROR
    appid: str
    mchid: str
    transaction_id: str | None
    total_fen: int
    payer_total_fen: int | None
    currency: str
    success_time: datetime | None
    openid: str | None


@dataclass(frozen=True)
class RefundResult:
    """A refund's create/query answer, or a REFUND.* notification's plaintext."""

    out_refund_no: str
    refund_id: str | None
    out_trade_no: str
    transaction_id: str | None
    status: str  # SUCCESS|CLOSED|PROCESSING|ABNORMAL
    refund_fen: int
    total_fen: int
    success_time: datetime | None


@dataclass(frozen=True)
class Notification:
    id: str
    event_type: str  # TRANSACTION.SUCCESS, REFUND.SUCCESS, REFUND.ABNORMAL, REFUND.CLOSED
    resource: Transaction | RefundResult


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


KeyLookup = Callable[[str], rsa.RSAPublicKey | None]


def decrypt_aes_gcm(key: bytes, nonce: str, associated_data: str, ciphertext: str) -> bytes:
    """WeChat Pay's AEAD: base64(ciphertext + 16-byte tag); ValueError when it does not open.

    Any key length AESGCM accepts (WeChat uses the 32-byte APIv3 key: AES-256).
    """
    try:
        return AESGCM(key).decrypt(
            nonce.encode(), base64.b64decode(ciphertext, validate=True), associated_data.encode()
        )
    except InvalidTag:
        raise ValueError("AES-GCM authentication failed") from None


def _sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def _verifies(key: rsa.RSAPublicKey, message: bytes, signature: str) -> bool:
    try:
        key.verify(
            base64.b64decode(signature, validate=True), message, padding.PKCS1v15(), hashes.SHA256()
        )
    except (InvalidSignature, ValueError):  # binascii.Error is a ValueError
        return False
    return True


class WeChatPayClient:
    """One per process: a pooled session, shared by every thread."""

    def __init__(
        self,
        api_base: str,
        credentials: PayCredentials,
        *,
        connect_timeout: float,
        total_timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api_base = api_base.rstrip("/")
        self.credentials = credentials
        self.connect_timeout = connect_timeout
        self.total_timeout = total_timeout
        # Judges the timestamps WeChat signs (answers, notifications); ours are real time.
        self.clock = clock
        self.session = requests.Session()
        self.session.mount("http://", HTTPAdapter(pool_connections=4, pool_maxsize=32))
        self.session.mount("https://", HTTPAdapter(pool_connections=4, pool_maxsize=32))
        self._certificate_lock = threading.Lock()
        self._certificates: dict[str, rsa.RSAPublicKey] = {}
        self._certificates_fetched_at: float | None = None

    # --- the calls ---

    def create_jsapi(
        self,
        *,
        out_trade_no: str,
        description: str,
        total_fen: int,
        openid: str,
        time_expire: datetime,
        notify_url: str,
    ) -> str:
        """A JSAPI order's prepay_id; the same parameters again answer the same prepay_id."""
        if time_expire.tzinfo is None:
            raise ValueError("time_expire must be an aware datetime")
        answer = self._call(
            JSAPI,
            "POST",
            "/v3/pay/transactions/jsapi",
            {
                "appid": self.credentials.appid,
                "mchid": self.credentials.mchid,
                "description": description,
                "out_trade_no": out_trade_no,
                "time_expire": time_expire.astimezone(CHINA).isoformat(timespec="seconds"),
                "notify_url": notify_url,
                "amount": {"total": total_fen, "currency": "CNY"},
                "payer": {"openid": openid},
            },
        )
        return _parse(JSAPI, answer, lambda data: _required(data, "prepay_id", str))

    def query(self, out_trade_no: str) -> Transaction:
        path = f"/v3/pay/transactions/out-trade-no/{_segment(out_trade_no)}"
        answer = self._call(QUERY, "GET", f"{path}?mchid={_segment(self.credentials.mchid)}")
        return _parse(QUERY, answer, _transaction)

    def close(self, out_trade_no: str) -> None:
        """Close an unpaid order (204, again if already closed); a paid one: pay_code ORDERPAID."""
        path = f"/v3/pay/transactions/out-trade-no/{_segment(out_trade_no)}/close"
        self._call(CLOSE, "POST", path, {"mchid": self.credentials.mchid})

    def refund(
        self,
        *,
        out_trade_no: str,
        out_refund_no: str,
        refund_fen: int,
        total_fen: int,
        reason: str,
        notify_url: str,
    ) -> RefundResult:
        """Refund part or all of a paid order; the same out_refund_no answers the same refund."""
        body: dict[str, Any] = {"out_trade_no": out_trade_no, "out_refund_no": out_refund_no}
        if reason:
            body["reason"] = reason
        if notify_url:
            body["notify_url"] = notify_url
        body["amount"] = {"refund": refund_fen, "total": total_fen, "currency": "CNY"}
        answer = self._call(REFUND, "POST", "/v3/refund/domestic/refunds", body)
        return _parse(REFUND, answer, _refund_answer)

    def query_refund(self, out_refund_no: str) -> RefundResult:
        path = f"/v3/refund/domestic/refunds/{_segment(out_refund_no)}"
        return _parse(REFUND_QUERY, self._call(REFUND_QUERY, "GET", path), _refund_answer)

    def payment_params(self, prepay_id: str) -> dict[str, str]:
        """What the mini-program hands to wx.requestPayment, signed with the merchant key."""
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        package = f"prepay_id={prepay_id}"
        message = f"{self.credentials.appid}\n{timestamp}\n{nonce}\n{package}\n".encode()
        return {
            "timeStamp": timestamp,
            "nonceStr": nonce,
            "package": package,
            "signType": "RSA",
            "paySign": _sign(self.credentials.merchant_private_key, message),
        }

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify a notification over its RAW body, then decrypt it.

        PayNotificationError (401 SIGN_ERROR, 400 PARAM_ERROR) for one to refuse; the caller
        logs and counts it. In certificate mode an unknown serial may need /v3/certificates: if
        that download fails, WeChatPayUnavailableError or WeChatPayError propagates (answer 5xx;
        WeChat retries).
        """
        deadline = time.monotonic() + self.total_timeout
        lowered = {name.lower(): value for name, value in headers.items()}
        failure = self._signature_failure(
            lowered, body, lambda serial: self._platform_key(serial, deadline)
        )
        if failure is not None:
            raise PayNotificationError(401, "SIGN_ERROR", failure)
        try:
            return self._decrypt_notification(body)
        except (ValueError, TypeError) as exc:
            raise PayNotificationError(400, "PARAM_ERROR", str(exc)) from None

    # --- notifications ---

    def _decrypt_notification(self, body: bytes) -> Notification:
        envelope = json.loads(body)
        if not isinstance(envelope, dict):
            raise ValueError("the notification is not a JSON object")
        resource = _required(envelope, "resource", dict)
        original_type = _required(resource, "original_type", str)
        plaintext = json.loads(self._decrypt_resource(resource))
        if not isinstance(plaintext, dict):
            raise ValueError("the resource plaintext is not a JSON object")
        parsed: Transaction | RefundResult
        if original_type == "transaction":
            parsed = _transaction(plaintext)
        elif original_type == "refund":
            parsed = _refund_notification(plaintext)
        else:
            raise ValueError(f"unknown resource original_type {original_type!r}")
        return Notification(
            id=_required(envelope, "id", str),
            event_type=_required(envelope, "event_type", str),
            resource=parsed,
        )

    def _decrypt_resource(self, resource: Mapping[str, Any]) -> bytes:
        """An `encrypt-resource` (notifications, certificates), opened with the APIv3 key."""
        algorithm = _required(resource, "algorithm", str)
        if algorithm != AES_ALGORITHM:
            raise ValueError(f"resource algorithm {algorithm!r} is not {AES_ALGORITHM}")
        return decrypt_aes_gcm(
            self.credentials.apiv3_key,
            _required(resource, "nonce", str),
            _optional(resource, "associated_data", str) or "",
            _required(resource, "ciphertext", str),
        )

    # --- signatures ---

    def _signature_failure(
        self, headers: Mapping[str, str], body: bytes, key_for: KeyLookup
    ) -> str | None:
        """Why WeChat's signature over `body` is not to be trusted, or None when it is."""
        missing = [name for name in _SIGNED_HEADERS if not headers.get(name)]
        if missing:
            return f"{', '.join(missing)} missing"
        signature_type = headers.get("wechatpay-signature-type", SIGNATURE_TYPE)
        if signature_type != SIGNATURE_TYPE:
            return f"Wechatpay-Signature-Type {signature_type!r} is not {SIGNATURE_TYPE}"
        signature = headers["wechatpay-signature"]
        if signature.startswith(SIGNTEST_PREFIX):
            return f"a {SIGNTEST_PREFIX} probe signature"
        timestamp = headers["wechatpay-timestamp"]
        if not TIMESTAMP_PATTERN.fullmatch(timestamp):
            return "Wechatpay-Timestamp is not a number"
        skew = abs(self.clock() - int(timestamp))
        if skew >= MAX_SKEW_SECONDS:
            return f"Wechatpay-Timestamp is {int(skew)} s away from now"
        serial = headers["wechatpay-serial"]
        key = key_for(serial)
        if key is None:
            return f"unknown Wechatpay-Serial {serial}"
        message = f"{timestamp}\n{headers['wechatpay-nonce']}\n".encode() + body + b"\n"
        if not _verifies(key, message, signature):
            return "the signature does not verify"
        return None

    def _verify_answer(self, api: str, answer: _Answer, key_for: KeyLookup) -> None:
        failure = self._signature_failure(answer.headers, answer.body, key_for)
        if failure is not None:
            log.warning("WeChat Pay answer to %s refused: %s", api, failure)
            raise WeChatPayError(api, answer.status, INVALID_SIGNATURE, failure)

    def _platform_key(self, serial: str, deadline: float) -> rsa.RSAPublicKey | None:
        credentials = self.credentials
        if credentials.platform_public_key is not None:
            known = serial == credentials.platform_public_key_id
            return credentials.platform_public_key if known else None
        # Threads meeting a new serial together wait for one download rather than each failing.
        if not self._certificate_lock.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            raise WeChatPayUnavailableError(CERTIFICATES)
        try:
            key = self._certificates.get(serial.upper())
            fetched_at = self._certificates_fetched_at
            recent = fetched_at is not None and (
                time.monotonic() - fetched_at < CERTIFICATE_REFETCH_SECONDS
            )
            if key is not None or recent:
                return key
            try:
                self._certificates = self._download_certificates(deadline)
            except WeChatPayError:
                # An answer, if a bad one, counts: a misconfigured client asks once a minute.
                self._certificates_fetched_at = time.monotonic()
                raise
            self._certificates_fetched_at = time.monotonic()
            return self._certificates.get(serial.upper())
        finally:
            self._certificate_lock.release()

    def _download_certificates(self, deadline: float) -> dict[str, rsa.RSAPublicKey]:
        """The platform certificates, serial → key; the answer is verified with them."""
        with metrics.wechat_call(CERTIFICATES):
            answer = self._exchange(CERTIFICATES, "GET", "/v3/certificates", b"", deadline)
            keys = _parse(CERTIFICATES, answer, self._certificate_keys)
            self._verify_answer(CERTIFICATES, answer, lambda serial: keys.get(serial.upper()))
            return keys

    def _certificate_keys(self, data: Mapping[str, Any]) -> dict[str, rsa.RSAPublicKey]:
        keys: dict[str, rsa.RSAPublicKey] = {}
        now = datetime.fromtimestamp(self.clock(), UTC)
        for entry in _required(data, "data", list):
            if not isinstance(entry, dict):
                raise ValueError("a certificate entry is not an object")
            serial = _required(entry, "serial_no", str)
            pem = self._decrypt_resource(_required(entry, "encrypt_certificate", dict))
            certificate = x509.load_pem_x509_certificate(pem)
            key = certificate.public_key()
            if certificate.serial_number != int(serial, 16) or not isinstance(
                key, rsa.RSAPublicKey
            ):
                raise ValueError(f"certificate {serial} is not an RSA certificate of that serial")
            if certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
                keys[serial.upper()] = key
        return keys

    # --- HTTP ---

    def _call(self, api: str, method: str, path: str, payload: Any = None) -> _Answer:
        """Send, retry once if worthwhile, and verify the 2xx answer's signature."""
        # WeChat reads raw UTF-8 (a description in Chinese stays readable in its records).
        data = (
            b""
            if payload is None
            else json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        )
        deadline = time.monotonic() + self.total_timeout
        with metrics.wechat_call(api):
            answer = self._exchange(api, method, path, data, deadline)
            self._verify_answer(api, answer, lambda serial: self._platform_key(serial, deadline))
            return answer

    def _exchange(self, api: str, method: str, path: str, data: bytes, deadline: float) -> _Answer:
        """A 2xx answer, else the last failure once the retry or the budget is spent."""
        failure: WeChatPayError | WeChatPayUnavailableError | None = None
        for _attempt in (1, 2):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                answer = self._send(method, path, data, remaining)
            except (
                requests.Timeout,
                requests.ConnectionError,
                requests.exceptions.ChunkedEncodingError,
            ):
                failure = WeChatPayUnavailableError(api)
                continue
            if 200 <= answer.status < 300:
                return answer
            failure = _error(api, answer)
            if not (answer.status == 429 or answer.status >= 500):
                break
        raise failure or WeChatPayUnavailableError(api)

    def _send(self, method: str, path: str, data: bytes, remaining: float) -> _Answer:
        headers = {
            "Authorization": self._authorization(method, path, data),
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        if data:
            headers["Content-Type"] = "application/json"
        response = self.session.request(
            method,
            self.api_base + path,
            data=data or None,
            headers=headers,
            timeout=(min(self.connect_timeout, remaining), remaining),
            allow_redirects=False,
        )
        return _Answer(
            response.status_code,
            {name.lower(): value for name, value in response.headers.items()},
            response.content,
        )

    def _authorization(self, method: str, path: str, data: bytes) -> str:
        credentials = self.credentials
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        message = f"{method}\n{path}\n{timestamp}\n{nonce}\n".encode() + data + b"\n"
        fields = {
            "mchid": credentials.mchid,
            "nonce_str": nonce,
            "signature": _sign(credentials.merchant_private_key, message),
            "timestamp": timestamp,
            "serial_no": credentials.merchant_serial,
        }
        return (
            SIGNATURE_TYPE + " " + ",".join(f'{name}="{value}"' for name, value in fields.items())
        )


def _segment(value: str) -> str:
    """One path or query value, percent-encoded so the URL sent is the path signed."""
    return quote(value, safe="")


def _error(api: str, answer: _Answer) -> WeChatPayError:
    """A non-2xx answer: WeChat Pay's `{"code", "message"}`, or whatever a proxy said."""
    try:
        data = json.loads(answer.body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("code"), str):
        return WeChatPayError(api, answer.status, data["code"], str(data.get("message", "")))
    return WeChatPayError(
        api, answer.status, UNEXPECTED_RESPONSE, f"HTTP {answer.status} without a WeChat Pay error"
    )


def _parse(api: str, answer: _Answer, read: Callable[[Mapping[str, Any]], _T]) -> _T:
    """A verified answer's JSON object read by `read`; anything malformed is INVALID_RESPONSE."""
    try:
        data = json.loads(answer.body)
        if not isinstance(data, dict):
            raise ValueError("the answer is not a JSON object")
        return read(data)
    except (ValueError, TypeError) as exc:
        raise WeChatPayError(api, answer.status, INVALID_RESPONSE, str(exc)) from None


def _required(data: Mapping[str, Any], name: str, kind: type[_T]) -> _T:
    value = data.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{name} is missing or not a {kind.__name__}")
    return value


def _optional(data: Mapping[str, Any], name: str, kind: type[_T]) -> _T | None:
    return None if data.get(name) is None else _required(data, name, kind)


def _time(data: Mapping[str, Any], name: str) -> datetime | None:
    text = _optional(data, name, str)
    if text is None:
        return None
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{name} has no UTC offset")
    return moment


def _transaction(data: Mapping[str, Any]) -> Transaction:
    amount = _required(data, "amount", dict)
    payer = _optional(data, "payer", dict) or {}
    return Transaction(
        out_trade_no=_required(data, "out_trade_no", str),
        trade_state=_required(data, "trade_state", str),
        appid=_required(data, "appid", str),
        mchid=_required(data, "mchid", str),
        transaction_id=_optional(data, "transaction_id", str),
        total_fen=_required(amount, "total", int),
        payer_total_fen=_optional(amount, "payer_total", int),
        currency=_optional(amount, "currency", str) or "CNY",
        success_time=_time(data, "success_time"),
        openid=_optional(payer, "openid", str),
    )


def _refund(data: Mapping[str, Any], status_field: str) -> RefundResult:
    amount = _required(data, "amount", dict)
    return RefundResult(
        out_refund_no=_required(data, "out_refund_no", str),
        refund_id=_optional(data, "refund_id", str),
        out_trade_no=_required(data, "out_trade_no", str),
        transaction_id=_optional(data, "transaction_id", str),
        status=_required(data, status_field, str),
        refund_fen=_required(amount, "refund", int),
        total_fen=_required(amount, "total", int),
        success_time=_time(data, "success_time"),
    )


def _refund_answer(data: Mapping[str, Any]) -> RefundResult:
    return _refund(data, "status")


def _refund_notification(data: Mapping[str, Any]) -> RefundResult:
    """A REFUND.* plaintext names the status `refund_status`."""
    return _refund(data, "refund_status")
