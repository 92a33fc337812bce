"""Configuration: what is fixed for the life of the process, and knobs tests turn at run time."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

# MiniShop's development defaults; the real values live in the deployment's secrets.
DEFAULT_APPID = "wx0000000000000000"
DEFAULT_SECRET = "dev-only-wechat-app-secret-never-use-in-prod"  # noqa: S105 (public dev default)
DEFAULT_CORPID = "ww0000000000000000"
DEFAULT_CORPSECRET = "dev-only-wecom-corp-secret-never-use-in-prod"
DEFAULT_AGENTID = 1000002

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
class EmulatorConfig:
    """The one registered mini-program and the one WeCom app, plus the initial settings."""

    appid: str = DEFAULT_APPID
    secret: str = DEFAULT_SECRET
    corpid: str = DEFAULT_CORPID
    corpsecret: str = DEFAULT_CORPSECRET
    agentid: int = DEFAULT_AGENTID
    settings: Settings = field(default_factory=Settings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EmulatorConfig:
        """The defaults, overridden by WECHAT_APPID, WECHAT_SECRET, WECOM_CORPID, WECOM_CORPSECRET
        and WECOM_AGENTID (an empty variable counts as unset)."""
        env = os.environ if environ is None else environ
        agentid = env.get("WECOM_AGENTID") or str(DEFAULT_AGENTID)
        if not agentid.isdigit():
            raise ValueError(f"WECOM_AGENTID must be a positive integer, not {agentid!r}")
        return cls(
            appid=env.get("WECHAT_APPID") or DEFAULT_APPID,
            secret=env.get("WECHAT_SECRET") or DEFAULT_SECRET,
            corpid=env.get("WECOM_CORPID") or DEFAULT_CORPID,
            corpsecret=env.get("WECOM_CORPSECRET") or DEFAULT_CORPSECRET,
            agentid=int(agentid),
        )
