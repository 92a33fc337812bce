"""The emulated servers' memory: one store, one lock.

Rule: read or change anything reachable from `State` only while holding `State.lock`, and do a
whole check-then-change (redeem a code, consume a subscription) inside one `with state.lock:`,
so concurrent requests from gunicorn workers and Locust see WeChat's single-use guarantees.
The clock has its own lock and may be read anywhere.
"""

from __future__ import annotations

import base64
import secrets
import string
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Generic, TypeVar, cast

from flask import current_app

from .clock import Clock
from .config import EmulatorConfig, Settings
from .paycrypto import PayKeys

T = TypeVar("T")
V = TypeVar("V")

# Calls and messages kept for /__emulator/calls and /messages; older ones are dropped (load tests).
RECORD_LIMIT = 10_000
# How long a dead token is remembered, so it keeps answering "expired" rather than "unknown".
TOKEN_MEMORY_SECONDS = 86_400
DAY_SECONDS = 86_400
MINUTE_SECONDS = 60

_ID_ALPHABET = string.ascii_letters + string.digits + "-_"
_CODE_ALPHABET = string.ascii_letters + string.digits


def random_string(length: int, alphabet: str = _ID_ALPHABET) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def new_openid() -> str:
    """28 characters starting with "o", like WeChat's openids."""
    return "o" + random_string(27)


def new_session_key() -> str:
    """Base64 of 16 random bytes: an AES-128 key, as WeChat's session_key is."""
    return base64.b64encode(secrets.token_bytes(16)).decode()


def _drop_front(entries: dict[str, V], dead: Callable[[V], bool]) -> None:
    """Forget the oldest entries while they are dead.

    Entries sit in issue order, so the dead ones gather at the front: this keeps memory bounded
    under load at a cost proportional to what is dropped (a later TTL change may leave a few
    dead entries behind for a while, which only costs memory).
    """
    while entries:
        key = next(iter(entries))
        if not dead(entries[key]):
            return
        del entries[key]


class TokenStatus(Enum):
    VALID = "valid"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"


@dataclass
class Token:
    value: str
    expires_at: float
    # Set when a newer token is issued: the end of this token's grace period.
    superseded_at: float | None = None

    @property
    def dead_at(self) -> float:
        if self.superseded_at is None:
            return self.expires_at
        return min(self.expires_at, self.superseded_at)


class TokenTable:
    """The access tokens of one kind for one credential; only the newest one is current."""

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}
        self._current: Token | None = None

    def current(self, now: float) -> Token | None:
        """The newest token if it is still valid."""
        if self._current is not None and now < self._current.dead_at:
            return self._current
        return None

    def issue(self, now: float, ttl: int, grace: int) -> Token:
        """A new current token; the previous one stays valid for `grace` more seconds."""
        if self._current is not None:
            self._current.superseded_at = min(self._current.dead_at, now + grace)
        _drop_front(self._tokens, lambda token: token.dead_at + TOKEN_MEMORY_SECONDS <= now)
        token = Token(value=random_string(128), expires_at=now + ttl)
        self._tokens[token.value] = token
        self._current = token
        return token

    def status(self, value: str, now: float) -> TokenStatus:
        token = self._tokens.get(value)
        if token is None:
            return TokenStatus.UNKNOWN
        if now < token.dead_at:
            return TokenStatus.VALID
        if token.superseded_at is not None and token.superseded_at < token.expires_at:
            return TokenStatus.SUPERSEDED
        return TokenStatus.EXPIRED


@dataclass
class OneTimeCode(Generic[T]):
    payload: T
    expires_at: float
    used: bool = False


class CodeBook(Generic[T]):
    """Single-use codes that expire (wx.login codes, phone-number codes)."""

    def __init__(self) -> None:
        self._codes: dict[str, OneTimeCode[T]] = {}

    def issue(self, payload: T, now: float, ttl: int) -> str:
        _drop_front(self._codes, lambda entry: entry.expires_at <= now)
        code = random_string(32, _CODE_ALPHABET)
        self._codes[code] = OneTimeCode(payload=payload, expires_at=now + ttl)
        return code

    def lookup(self, code: str, now: float) -> OneTimeCode[T] | None:
        """The code's entry (check `.used`, set it to redeem), or None when unknown or expired."""
        entry = self._codes.get(code)
        if entry is None or entry.expires_at <= now:
            return None
        return entry


@dataclass
class User:
    """A WeChat user of the registered mini-program."""

    openid: str
    unionid: str | None = None
    session_key: str | None = None
    # When the user last opened the mini-program (wx.login); msg_sec_check needs a recent visit.
    last_visit: float = 0.0
    # Successful jscode2session calls in the last minute, for the per-user quota.
    recent_logins: deque[float] = field(default_factory=deque)
    # template_id -> sends left (one per "allow" in wx.requestSubscribeMessage).
    subscriptions: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PhoneNumber:
    pure: str
    country_code: str


@dataclass(frozen=True)
class Template:
    template_id: str
    # The template's keywords (thing1, time2...); None means any data keys are accepted.
    keywords: tuple[str, ...] | None


@dataclass
class MiniProgramData:
    """What api.weixin.qq.com knows about the registered mini-program."""

    users: dict[str, User] = field(default_factory=dict)
    login_codes: CodeBook[str] = field(default_factory=CodeBook)  # payload: openid
    phone_codes: CodeBook[PhoneNumber] = field(default_factory=CodeBook)
    tokens: TokenTable = field(default_factory=TokenTable)  # /cgi-bin/token
    stable_tokens: TokenTable = field(default_factory=TokenTable)  # /cgi-bin/stable_token
    force_refreshes: deque[float] = field(default_factory=deque)  # in the last day
    templates: dict[str, Template] = field(default_factory=dict)


@dataclass
class WeComData:
    """What qyapi.weixin.qq.com knows: the WeCom app's tokens."""

    tokens: TokenTable = field(default_factory=TokenTable)


@dataclass
class PayOrder:
    """One JSAPI transaction, keyed by the merchant's out_trade_no."""

    out_trade_no: str
    appid: str
    mchid: str
    description: str
    notify_url: str
    total: int
    currency: str
    openid: str
    attach: str | None
    time_expire: str | None
    # When the order stops being payable (time_expire, in the emulator's clock), if given.
    expires_at: float | None
    # The request body as canonical JSON: a re-sent create must match it.
    parameters: str
    prepay_id: str
    prepay_expires_at: float
    trade_state: str = "NOTPAY"
    transaction_id: str | None = None
    success_time: str | None = None
    payer_total: int | None = None
    refunded: int = 0  # fen refunded or being refunded (refunds not CLOSED or ABNORMAL)


@dataclass
class PayRefund:
    refund_id: str
    out_refund_no: str
    out_trade_no: str
    transaction_id: str
    refund: int
    total: int
    currency: str
    reason: str | None
    notify_url: str | None
    parameters: str
    create_time: str
    status: str = "PROCESSING"
    success_time: str | None = None


@dataclass
class PayData:
    """What api.mch.weixin.qq.com knows: transactions, refunds, recently seen request nonces."""

    orders: dict[str, PayOrder] = field(default_factory=dict)
    refunds: dict[str, PayRefund] = field(default_factory=dict)  # by out_refund_no
    nonces: dict[str, float] = field(default_factory=dict)  # nonce -> real time first seen
    refund_outcome: str = "SUCCESS"
    serial_mode: str = "public_key"  # or "certificate": what Wechatpay-Serial names
    retry_scale: float = 1.0
    # How many of the next 2xx API answers carry a WECHATPAY/SIGNTEST/ probe signature.
    signtest_answers: int = 0
    # Set by reset: notification deliveries still waiting give up.
    cancelled: threading.Event = field(default_factory=threading.Event)

    def order_by_transaction(self, transaction_id: str) -> PayOrder | None:
        return next((o for o in self.orders.values() if o.transaction_id == transaction_id), None)


@dataclass(frozen=True)
class Fault:
    """A scripted misbehaviour for the next `remaining` calls of one API."""

    api: str
    remaining: int
    delay_ms: int = 0
    errcode: int | None = None
    http_status: int | None = None

    def effect(self) -> dict[str, Any]:
        return {"delay_ms": self.delay_ms, "errcode": self.errcode, "http_status": self.http_status}

    def as_json(self) -> dict[str, Any]:
        return {"api": self.api, "times": self.remaining, **self.effect()}


class FaultQueue:
    """Faults per API, applied in the order they were added."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[Fault]] = {}

    def add(self, fault: Fault) -> None:
        self._queues.setdefault(fault.api, deque()).append(fault)

    def take(self, api: str) -> Fault | None:
        """The fault for this call, if any, using up one of its `times`."""
        queue = self._queues.get(api)
        if not queue:
            return None
        fault = queue[0]
        if fault.remaining <= 1:
            queue.popleft()
        else:
            queue[0] = replace(fault, remaining=fault.remaining - 1)
        return fault

    def pending(self) -> list[Fault]:
        return [fault for queue in self._queues.values() for fault in queue]


class State:
    """Everything the emulated servers remember, behind one lock."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.clock = Clock()
        self.lock = threading.RLock()
        self.pay_keys = PayKeys.load(config.pay)
        self._forget()

    def _forget(self) -> None:
        self.settings: Settings = self.config.settings
        self.miniprogram = MiniProgramData()
        self.wecom = WeComData()
        self.pay = PayData(retry_scale=self.config.pay.retry_scale)
        self.faults = FaultQueue()
        self.calls: deque[dict[str, Any]] = deque(maxlen=RECORD_LIMIT)
        self.messages: deque[dict[str, Any]] = deque(maxlen=RECORD_LIMIT)

    def reset(self) -> None:
        """Forget everything: users, codes, tokens, templates, orders, refunds, pending
        notifications, faults, records, settings, clock (the pay keys stay)."""
        with self.lock:
            self.pay.cancelled.set()
            self._forget()
            self.clock.reset()


def current_state() -> State:
    return cast(State, current_app.extensions["wechat_emulator"])
