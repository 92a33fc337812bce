"""Configuration: what is fixed for the life of the process, and knobs tests turn at run time."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

# MiniShop's development defaults; the real values live in the deployment's secrets.
DEFAULT_APPID = "wx0000000000000000"
DEFAULT_SECRET = "dev-only-wechat-app-secret-never-use-in-prod"  # noqa: S105 (public dev default)
DEFAULT_CORPID = "ww0000000000000000"
DEFAULT_CORPSECRET = "dev-only-wecom-corp-secret-never-use-in-prod"
DEFAULT_AGENTID = 1000002
# WeChat Pay v3 development defaults (public: never use them anywhere real).
DEFAULT_MCHID = "1900000001"
DEFAULT_MERCHANT_SERIAL = "DE7E000000000000000000000000000000000D01"
DEFAULT_APIV3_KEY = "devOnlyApiV3KeyNeverUseInProd000"
DEFAULT_PUBLIC_KEY_ID = "PUB_KEY_ID_0119000000012026000000000000000001"
DEFAULT_PLATFORM_SERIAL = "3E7E000000000000000000000000000000000D02"
_SERIAL = re.compile(r"[0-9A-F]{40}")
_PUBLIC_KEY_ID = re.compile(r"PUB_KEY_ID_[0-9]{1,64}")

Suggest = Literal["review", "risky"]


@dataclass(frozen=True)
class ContentRule:
    """A word msg_sec_check flags: content containing `keyword` (any case) gets `suggest`."""

    keyword: str
    suggest: Suggest
    label: int


# The first two are the risky samples in WeChat's own msgSecCheck documentation; the ASCII words
# make tests readable; the last two are everyday Chinese spam ("add me on WeChat", "order
# brushing") so a demo can show both outcomes.
DEFAULT_CONTENT_RULES: tuple[ContentRule, ...] = (
    ContentRule("特3456书yuuo莞6543李zxcz蒜7782法fgnv级", "risky", 20002),
    ContentRule("完2347全dfji试3726测asad感3847知qwez到", "risky", 20002),
    ContentRule("emulator-risky", "risky", 20006),
    ContentRule("emulator-review", "review", 10001),
    ContentRule("加微信", "review", 10001),
    ContentRule("刷单", "risky", 20008),
)


@dataclass(frozen=True)
class Settings:
    """Run-time knobs (POST /__emulator/config changes them; reset restores the startup values).

    Frozen: a request reads one consistent snapshot; a change swaps the whole object.
    A limit of 0 switches that check off.
    """

    token_ttl_seconds: int = 7200
    token_grace_seconds: int = 300
    code_ttl_seconds: int = 300
    login_quota_per_minute: int = 100
    visit_window_seconds: int = 7200
    force_refresh_daily_limit: int = 20
    force_refresh_interval_seconds: int = 30
    phone_country_code_type: Literal["string", "number"] = "string"
    content_rules: tuple[ContentRule, ...] = DEFAULT_CONTENT_RULES


@dataclass(frozen=True)
class PayConfig:
    """The one WeChat Pay merchant and the platform's identity (keys: see paykeys.py).

    Key files hold PEM; when a file is not given the emulator generates that key at start-up.
    """

    mchid: str = DEFAULT_MCHID
    merchant_serial: str = DEFAULT_MERCHANT_SERIAL
    merchant_public_key_file: str | None = None
    platform_private_key_file: str | None = None
    apiv3_key: str = DEFAULT_APIV3_KEY
    public_key_id: str = DEFAULT_PUBLIC_KEY_ID
    platform_serial: str = DEFAULT_PLATFORM_SERIAL
    # Multiplies WeChat's notification retry schedule (0.001 in tests: 15 s becomes 15 ms).
    retry_scale: float = 1.0

    def __post_init__(self) -> None:
        if not self.mchid.isdigit():
            raise ValueError(f"WECHATPAY_MCHID must be digits, not {self.mchid!r}")
        if not _SERIAL.fullmatch(self.merchant_serial):
            raise ValueError("WECHATPAY_MERCHANT_SERIAL must be 40 upper-case hex digits")
        if not _SERIAL.fullmatch(self.platform_serial) or self.platform_serial[0] > "7":
            raise ValueError(
                "EMULATOR_PAY_PLATFORM_SERIAL must be 40 upper-case hex digits, the first 0-7"
            )
        if len(self.apiv3_key) != 32 or not self.apiv3_key.isascii():
            raise ValueError("WECHATPAY_APIV3_KEY must be 32 ASCII characters")
        if not _PUBLIC_KEY_ID.fullmatch(self.public_key_id):
            raise ValueError("EMULATOR_PAY_PUBLIC_KEY_ID must be PUB_KEY_ID_ followed by digits")
        if not 0 < self.retry_scale <= 1000:
            raise ValueError("EMULATOR_PAY_RETRY_SCALE must be a number in (0, 1000]")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PayConfig:
        """WECHATPAY_MCHID, WECHATPAY_MERCHANT_SERIAL, WECHATPAY_APIV3_KEY and the EMULATOR_PAY_*
        variables (an empty variable counts as unset)."""
        scale = env.get("EMULATOR_PAY_RETRY_SCALE") or "1"
        try:
            retry_scale = float(scale)
        except ValueError:
            raise ValueError(f"EMULATOR_PAY_RETRY_SCALE must be a number, not {scale!r}") from None
        return cls(
            mchid=env.get("WECHATPAY_MCHID") or DEFAULT_MCHID,
            merchant_serial=env.get("WECHATPAY_MERCHANT_SERIAL") or DEFAULT_MERCHANT_SERIAL,
            merchant_public_key_file=env.get("EMULATOR_PAY_MERCHANT_PUBLIC_KEY") or None,
            platform_private_key_file=env.get("EMULATOR_PAY_PLATFORM_PRIVATE_KEY") or None,
            apiv3_key=env.get("WECHATPAY_APIV3_KEY") or DEFAULT_APIV3_KEY,
            public_key_id=env.get("EMULATOR_PAY_PUBLIC_KEY_ID") or DEFAULT_PUBLIC_KEY_ID,
            platform_serial=env.get("EMULATOR_PAY_PLATFORM_SERIAL") or DEFAULT_PLATFORM_SERIAL,
            retry_scale=retry_scale,
        )


@dataclass(frozen=True)
class EmulatorConfig:
    """The one registered mini-program and the one WeCom app, plus the initial settings."""

    appid: str = DEFAULT_APPID
    secret: str = DEFAULT_SECRET
    corpid: str = DEFAULT_CORPID
    corpsecret: str = DEFAULT_CORPSECRET
    agentid: int = DEFAULT_AGENTID
    settings: Settings = field(default_factory=Settings)
    pay: PayConfig = field(default_factory=lambda: PayConfig())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EmulatorConfig:
        """The defaults, overridden by WECHAT_APPID, WECHAT_SECRET, WECOM_CORPID, WECOM_CORPSECRET
        and WECOM_AGENTID (an empty variable counts as unset)."""
        env = os.environ if environ is None else environ
        agentid = env.get("WECOM_AGENTID") or str(DEFAULT_AGENTID)
        if not agentid.isdigit():
            raise ValueError(f"WECOM_AGENTID must be a positive integer, not {agentid!r}")
        return cls(
            pay=PayConfig.from_env(env),
            appid=env.get("WECHAT_APPID") or DEFAULT_APPID,
            secret=env.get("WECHAT_SECRET") or DEFAULT_SECRET,
            corpid=env.get("WECOM_CORPID") or DEFAULT_CORPID,
            corpsecret=env.get("WECOM_CORPSECRET") or DEFAULT_CORPSECRET,
            agentid=int(agentid),
        )
