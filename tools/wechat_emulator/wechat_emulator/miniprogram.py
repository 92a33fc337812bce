"""api.weixin.qq.com: the mini-program server APIs MiniShop calls.

Paths, fields and errcodes follow WeChat (the facts are collected in wechat-api.md, beside the
design document); where WeChat's documentation is silent, the README's "Decisions" lists the
choice made.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
from typing import Any

from flask import Blueprint, request
from flask.typing import ResponseReturnValue

from .config import ContentRule, Settings
from .interception import endpoint
from .protocol import (
    TokenErrcodes,
    WeChatError,
    check_access_token,
    error_body,
    json_object,
    request_id,
)
from .state import (
    DAY_SECONDS,
    MINUTE_SECONDS,
    MiniProgramData,
    State,
    Token,
    User,
    current_state,
    new_session_key,
)

bp = Blueprint("miniprogram", __name__)

ERRMSGS: dict[int, str] = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40013: "invalid appid",
    40014: "invalid access_token",
    40029: "invalid code",
    40037: "invalid template_id",
    40125: "invalid appsecret",
    40163: "code been used",
    40164: "invalid ip, not in whitelist",
    40226: "high risk user",
    41001: "access_token missing",
    41002: "appid missing",
    41004: "appsecret missing",
    41008: "missing code",
    42001: "access_token expired",
    43002: "require POST method",
    43101: "user refuse to accept the msg",
    45009: "reach max api daily quota limit",
    45011: "api minute-quota reach limit  mustslower  retry next minute",
    47001: "data format error",
    47003: "argument invalid!",
    61010: "user access record timeout",
    87014: "risky content",
}
# A superseded token past its grace period is "not latest": 40001, like an unknown one.
TOKEN_ERRCODES = TokenErrcodes(missing=41001, unknown=40001, expired=42001, superseded=40001)
BAD_BODY = 47001
RISKY_CONTENT = 87014  # content security 1.0's only verdict besides errcode 0

SCENES = range(1, 5)  # 1 profile, 2 comment, 3 forum, 4 social log
MINIPROGRAM_STATES = ("developer", "trial", "formal")
LANGS = ("zh_CN", "en_US", "zh_HK", "zh_TW")
# A JSON \uXXXX escape in the raw body: WeChat matches content words against the escapes.
_UNICODE_ESCAPE = re.compile(rb"\\u[0-9a-fA-F]{4}")


@bp.errorhandler(WeChatError)
def _render_error(error: WeChatError) -> ResponseReturnValue:
    rid = request_id(current_state().clock.now())
    return error_body(error, ERRMSGS, f", rid: {rid}")


def _require_post() -> None:
    if request.method != "POST":
        raise WeChatError(43002)


def _check_app(state: State, appid: object, secret: object) -> None:
    if not appid:
        raise WeChatError(41002)
    if not secret:
        raise WeChatError(41004)
    if appid != state.config.appid:
        raise WeChatError(40013)
    if not isinstance(secret, str) or not hmac.compare_digest(
        secret.encode(), state.config.secret.encode()
    ):
        raise WeChatError(40125)


def _check_grant_type(grant_type: object, expected: str) -> None:
    if grant_type != expected:
        raise WeChatError(40002)


def _check_token(state: State, now: float) -> None:
    mp = state.miniprogram
    check_access_token((mp.tokens, mp.stable_tokens), now, TOKEN_ERRCODES)


def _known_user(mp: MiniProgramData, openid: object) -> User:
    user = mp.users.get(openid) if isinstance(openid, str) else None
    if user is None:
        raise WeChatError(40003)
    return user


@bp.get("/sns/jscode2session")
@endpoint("jscode2session")
def jscode2session() -> ResponseReturnValue:
    """wx.login code -> openid, a fresh session_key and the unionid when the user has one."""
    state, args = current_state(), request.args
    _check_app(state, args.get("appid"), args.get("secret"))
    _check_grant_type(args.get("grant_type"), "authorization_code")
    code = args.get("js_code")
    if not code:
        raise WeChatError(41008)
    with state.lock:
        now, mp = state.clock.now(), state.miniprogram
        entry = mp.login_codes.lookup(code, now)
        if entry is None:
            raise WeChatError(40029)
        if entry.used:
            raise WeChatError(40163)
        user = mp.users[entry.payload]
        # Checked before the code is used up, so the client may retry it within its lifetime.
        _count_login(user, now, state.settings.login_quota_per_minute)
        entry.used = True
        user.session_key = new_session_key()
        user.last_visit = now
        answer: dict[str, Any] = {"openid": user.openid, "session_key": user.session_key}
        if user.unionid is not None:
            answer["unionid"] = user.unionid
    return answer


def _count_login(user: User, now: float, quota: int) -> None:
    logins = user.recent_logins
    while logins and logins[0] <= now - MINUTE_SECONDS:
        logins.popleft()
    if quota and len(logins) >= quota:
        raise WeChatError(45011)
    logins.append(now)


def _token_answer(token: Token, now: float) -> dict[str, Any]:
    return {"access_token": token.value, "expires_in": max(0, round(token.expires_at - now))}


@bp.get("/cgi-bin/token")
@endpoint("token")
def access_token() -> ResponseReturnValue:
    """A new token on every call; the previous one keeps working for the grace period."""
    state, args = current_state(), request.args
    _check_app(state, args.get("appid"), args.get("secret"))
    _check_grant_type(args.get("grant_type"), "client_credential")
    with state.lock:
        now, settings = state.clock.now(), state.settings
        token = state.miniprogram.tokens.issue(
            now, settings.token_ttl_seconds, settings.token_grace_seconds
        )
    return _token_answer(token, now)


@bp.route("/cgi-bin/stable_token", methods=["GET", "POST"])
@endpoint("stable_token")
def stable_token() -> ResponseReturnValue:
    """The same token while it is valid; force_refresh replaces it (the old one gets a grace)."""
    _require_post()
    state, body = current_state(), json_object(BAD_BODY)
    force_refresh = body.get("force_refresh", False)
    if not isinstance(force_refresh, bool):
        raise WeChatError(BAD_BODY)
    _check_app(state, body.get("appid"), body.get("secret"))
    _check_grant_type(body.get("grant_type"), "client_credential")
    with state.lock:
        now, settings, mp = state.clock.now(), state.settings, state.miniprogram
        token = mp.stable_tokens.current(now)
        refresh = force_refresh and _take_force_refresh(mp, now, settings)
        if token is None or refresh:
            token = mp.stable_tokens.issue(
                now, settings.token_ttl_seconds, settings.token_grace_seconds
            )
    return _token_answer(token, now)


def _take_force_refresh(mp: MiniProgramData, now: float, settings: Settings) -> bool:
    """Whether a forced refresh may replace the token now (and count it if so).

    Over the daily limit is 45009. Sooner than the interval after the previous forced refresh,
    the current token is answered unchanged: what WeChat does then is unconfirmed, and
    answering the valid token is the tolerant choice.
    """
    refreshes = mp.force_refreshes
    while refreshes and refreshes[0] <= now - DAY_SECONDS:
        refreshes.popleft()
    interval = settings.force_refresh_interval_seconds
    if interval and refreshes and now - refreshes[-1] < interval:
        return False
    if settings.force_refresh_daily_limit and len(refreshes) >= settings.force_refresh_daily_limit:
        raise WeChatError(45009)
    refreshes.append(now)
    return True


@bp.route("/wxa/business/getuserphonenumber", methods=["GET", "POST"])
@endpoint("getuserphonenumber")
def getuserphonenumber() -> ResponseReturnValue:
    """A phone code (from the getPhoneNumber button) -> the user's phone number, once."""
    _require_post()
    state = current_state()
    with state.lock:
        _check_token(state, state.clock.now())
    code = json_object(BAD_BODY).get("code")
    if not isinstance(code, str) or not code:
        raise WeChatError(40029)
    with state.lock:
        now = state.clock.now()
        entry = state.miniprogram.phone_codes.lookup(code, now)
        if entry is None or entry.used:
            raise WeChatError(40029)
        entry.used = True
        phone, as_number = entry.payload, state.settings.phone_country_code_type == "number"
    national = phone.country_code == "86"
    return {
        "errcode": 0,
        "errmsg": "ok",
        "phone_info": {
            "phoneNumber": phone.pure if national else f"+{phone.country_code}{phone.pure}",
            "purePhoneNumber": phone.pure,
            "countryCode": int(phone.country_code) if as_number else phone.country_code,
            "watermark": {"timestamp": int(now), "appid": state.config.appid},
        },
    }


@bp.route("/wxa/msg_sec_check", methods=["GET", "POST"])
@endpoint("msg_sec_check")
def msg_sec_check() -> ResponseReturnValue:
    """Content security from the configured content rules, in the version the body asks for.

    2.0 (`version: 2`, with openid and scene): pass, review or risky, for a user who visited
    recently. 1.0 (no `version`, only `content`; wechatpy still sends it): errcode 0 or 87014.
    """
    _require_post()
    state = current_state()
    with state.lock:
        _check_token(state, state.clock.now())
    body = json_object(BAD_BODY)
    content = body.get("content")
    if not isinstance(content, str):
        raise WeChatError(BAD_BODY)
    if "version" not in body:
        return _check_v1(state, content)
    return _check_v2(state, content, body)


def _check_v1(state: State, content: str) -> ResponseReturnValue:
    """1.0 has no "review": only a risky word blocks the text."""
    with state.lock:
        rules = state.settings.content_rules
    if any(rule.suggest == "risky" for rule in _hits(_as_matched(content), rules)):
        raise WeChatError(RISKY_CONTENT)
    return {"errcode": 0, "errmsg": "ok"}


def _check_v2(state: State, content: str, body: dict[str, Any]) -> ResponseReturnValue:
    openid, version, scene = body.get("openid"), body.get("version"), body.get("scene")
    if not isinstance(openid, str) or version != 2:
        raise WeChatError(BAD_BODY)
    if not isinstance(scene, int) or isinstance(scene, bool) or scene not in SCENES:
        raise WeChatError(BAD_BODY)
    with state.lock:
        now, settings = state.clock.now(), state.settings
        user = _known_user(state.miniprogram, openid)
        window = settings.visit_window_seconds
        if window and now - user.last_visit > window:
            raise WeChatError(61010)
    return {
        "errcode": 0,
        "errmsg": "ok",
        **_assess(_as_matched(content), settings.content_rules, now),
    }


def _as_matched(content: str) -> str:
    """The text WeChat matches content words against: escapes in the raw body stay as they are."""
    if _UNICODE_ESCAPE.search(request.get_data(cache=True)):
        # The client sent \uXXXX escapes (json.dumps' default): WeChat does not decode them, so
        # only ASCII words can match. This is how a real "everything passes" bug shows up.
        return json.dumps(content)[1:-1]
    return content


def _hits(content: str, rules: tuple[ContentRule, ...]) -> list[ContentRule]:
    text = content.casefold()
    return [rule for rule in rules if rule.keyword.casefold() in text]


def _assess(content: str, rules: tuple[ContentRule, ...], now: float) -> dict[str, Any]:
    hits = _hits(content, rules)
    ranked = [rule for rule in hits if rule.suggest == "risky"] + [
        rule for rule in hits if rule.suggest == "review"
    ]
    suggest, label = (ranked[0].suggest, ranked[0].label) if ranked else ("pass", 100)
    detail: list[dict[str, Any]] = [
        {"strategy": "content_model", "errcode": 0, "suggest": suggest, "label": label, "prob": 90}
    ]
    detail += [
        {
            "strategy": "keyword",
            "errcode": 0,
            "suggest": rule.suggest,
            "label": rule.label,
            "level": 20,
            "keyword": rule.keyword,
        }
        for rule in hits
    ]
    return {
        "result": {"suggest": suggest, "label": label},
        "detail": detail,
        "trace_id": request_id(now),
    }


# Subscribe-message value rules by keyword type (the keyword name without its number):
# (maximum length, allowed characters). An approximation of WeChat's published limits.
_VALUE_RULES: dict[str, tuple[int | None, re.Pattern[str] | None]] = {
    "thing": (20, None),
    "number": (32, re.compile(r"[0-9]+(\.[0-9]+)?")),
    "letter": (32, re.compile(r"[A-Za-z]+")),
    "symbol": (5, re.compile(r"[^\w\s]+")),
    "character_string": (32, re.compile(r"[ -~]+")),
    "phone_number": (17, re.compile(r"[0-9+\-() ]+")),
    "car_number": (8, None),
    "phrase": (5, re.compile(r"[\u4e00-\u9fff]+")),
    "amount": (None, re.compile(r"[\u00a5\uffe5$\u20ac\u00a3]?[0-9]{1,10}(\.[0-9]+)?\u5143?")),
}


def _value_problem(keyword: str, value: str) -> str | None:
    """Why WeChat would reject `value` for `keyword` ("is empty" / "invalid"), or None."""
    if not value.strip():
        return "is empty"
    kind = re.sub(r"[0-9]+$", "", keyword)
    if kind == "name":  # 10 Chinese characters, or 20 letters or symbols
        return None if len(value) <= (20 if value.isascii() else 10) else "invalid"
    limit, pattern = _VALUE_RULES.get(kind, (None, None))
    if limit is not None and len(value) > limit:
        return "invalid"
    if pattern is not None and not pattern.fullmatch(value):
        return "invalid"
    return None


def _check_data(data: object, keywords: tuple[str, ...] | None) -> None:
    """Reject malformed data, or a value the template's keyword type refuses, with 47003
    naming the field as WeChat does."""
    if not isinstance(data, dict):
        raise WeChatError(47003, "argument invalid! data invalid")
    values: dict[str, str] = {}
    for key, entry in data.items():
        value = entry.get("value") if isinstance(entry, dict) else None
        if not isinstance(value, str):
            raise WeChatError(47003, f"argument invalid! data.{key}.value invalid")
        values[key] = value
    for keyword in keywords or ():
        problem = _value_problem(keyword, values.get(keyword, ""))
        if problem is not None:
            raise WeChatError(47003, f"argument invalid! data.{keyword}.value {problem}")


@bp.route("/cgi-bin/message/subscribe/send", methods=["GET", "POST"])
@endpoint("subscribe_send")
def subscribe_send() -> ResponseReturnValue:
    """Send a subscribe message, using up one subscription the user granted for the template."""
    _require_post()
    state = current_state()
    with state.lock:
        _check_token(state, state.clock.now())
    body = json_object(BAD_BODY)
    template_id, data = body.get("template_id"), body.get("data")
    page = body.get("page", "")
    miniprogram_state = body.get("miniprogram_state", "formal")
    lang = body.get("lang", "zh_CN")
    with state.lock:
        now, mp = state.clock.now(), state.miniprogram
        user = _known_user(mp, body.get("touser"))
        template = mp.templates.get(template_id) if isinstance(template_id, str) else None
        if template is None:
            raise WeChatError(40037)
        if not isinstance(page, str) or miniprogram_state not in MINIPROGRAM_STATES:
            raise WeChatError(BAD_BODY)
        if lang not in LANGS:
            raise WeChatError(BAD_BODY)
        _check_data(data, template.keywords)
        if user.subscriptions.get(template.template_id, 0) <= 0:
            raise WeChatError(43101)
        user.subscriptions[template.template_id] -= 1
        msgid = secrets.randbits(63)
        state.messages.append(
            {
                "kind": "subscribe",
                "msgid": msgid,
                "touser": user.openid,
                "template_id": template.template_id,
                "page": page,
                "data": data,
                "miniprogram_state": miniprogram_state,
                "lang": lang,
                "timestamp": now,
            }
        )
    return {"errcode": 0, "errmsg": "ok", "msgid": msgid}
