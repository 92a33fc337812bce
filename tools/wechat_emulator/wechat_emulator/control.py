"""The control API under /__emulator/: what tests and load tests use to drive scenarios.

It plays the parts WeChat's servers cannot be asked for: the user's phone (wx.login codes,
phone codes, subscription grants), the WeChat admin console (templates) and the test harness
(faults, recorded calls and messages, virtual clock, settings, reset). Every input is
validated: a bad request is a 400 with `{"error": "..."}`, never a 500.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, get_args

from flask import Blueprint, request
from flask.typing import ResponseReturnValue

from .config import ContentRule, Suggest
from .interception import API_NAMES, OUTBOUND_NAMES
from .state import Fault, FaultQueue, PhoneNumber, Template, User, current_state, new_openid

bp = Blueprint("control", __name__, url_prefix="/__emulator")

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_DIGITS = re.compile(r"[0-9]{5,20}")
_COUNTRY_CODE = re.compile(r"[1-9][0-9]{0,3}")
MAX_DELAY_MS = 120_000
MAX_TIMES = 1_000_000
MAX_ADVANCE_SECONDS = 10 * 365 * 86_400
MESSAGE_KINDS = ("subscribe", "wecom")


class ControlError(Exception):
    """A rejected control request: answered 400 (or `status`) with {"error": message}."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@bp.errorhandler(ControlError)
def _render_error(error: ControlError) -> ResponseReturnValue:
    return {"error": error.message}, error.status


class Body:
    """The JSON object of a control request, read through typed accessors that reject bad input.

    Unknown fields are rejected too, so a typo ("errorcode") fails loudly instead of being ignored.
    """

    def __init__(self, allowed: set[str]) -> None:
        raw = request.get_json(force=True, silent=True) if request.get_data() else {}
        if not isinstance(raw, dict):
            raise ControlError("the body must be a JSON object")
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise ControlError(f"unknown field(s): {', '.join(unknown)}")
        self.data: dict[str, Any] = raw

    def text(self, name: str, pattern: re.Pattern[str] | None = None) -> str | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
            expected = f"a string matching {pattern.pattern}" if pattern else "a string"
            raise ControlError(f"{name} must be {expected}")
        return value

    def required_text(self, name: str, pattern: re.Pattern[str] | None = None) -> str:
        value = self.text(name, pattern)
        if value is None:
            raise ControlError(f"{name} is required")
        return value

    def integer(self, name: str, minimum: int, maximum: int) -> int | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
            raise ControlError(f"{name} must be an integer from {minimum} to {maximum}")
        return value

    def number(self, name: str, minimum: float, maximum: float) -> float:
        value = self.data.get(name)
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not minimum <= value <= maximum
        ):
            raise ControlError(f"{name} must be a number from {minimum} to {maximum}")
        return float(value)


def _user_json(user: User) -> dict[str, Any]:
    return {
        "openid": user.openid,
        "unionid": user.unionid,
        "session_key": user.session_key,
        "last_visit": user.last_visit,
        "subscriptions": dict(user.subscriptions),
    }


@bp.get("/health")
def health() -> ResponseReturnValue:
    return {"status": "ok"}


@bp.post("/reset")
def reset() -> ResponseReturnValue:
    current_state().reset()
    return {"status": "reset"}


@bp.post("/codes")
def new_login_code() -> ResponseReturnValue:
    """What wx.login does on the phone: a fresh code for the user (created when new)."""
    body = Body({"openid", "unionid"})
    openid = body.text("openid", _ID) or new_openid()
    unionid = body.text("unionid", _ID)
    state = current_state()
    with state.lock:
        now = state.clock.now()
        user = state.miniprogram.users.setdefault(openid, User(openid=openid))
        if unionid is not None:
            user.unionid = unionid
        user.last_visit = now
        code = state.miniprogram.login_codes.issue(openid, now, state.settings.code_ttl_seconds)
    return {"code": code, "openid": openid}


@bp.post("/phone-codes")
def new_phone_code() -> ResponseReturnValue:
    """What the getPhoneNumber button gives the mini-program: a code for one phone number."""
    body = Body({"phone", "country_code"})
    phone = PhoneNumber(
        pure=body.required_text("phone", _DIGITS),
        country_code=body.text("country_code", _COUNTRY_CODE) or "86",
    )
    state = current_state()
    with state.lock:
        code = state.miniprogram.phone_codes.issue(
            phone, state.clock.now(), state.settings.code_ttl_seconds
        )
    return {"code": code}


@bp.get("/users/<openid>")
def get_user(openid: str) -> ResponseReturnValue:
    """A user as WeChat knows them: unionid, the current session_key, subscriptions left."""
    state = current_state()
    with state.lock:
        user = state.miniprogram.users.get(openid)
        if user is None:
            raise ControlError(f"unknown openid {openid}", 404)
        return _user_json(user)


@bp.get("/templates")
def list_templates() -> ResponseReturnValue:
    state = current_state()
    with state.lock:
        templates = list(state.miniprogram.templates.values())
    return [{"template_id": t.template_id, "keywords": t.keywords} for t in templates]


@bp.post("/templates")
def add_template() -> ResponseReturnValue:
    """Register a subscribe-message template (the admin console's "add template")."""
    body = Body({"template_id", "keywords"})
    template_id = body.required_text("template_id", _ID)
    keywords = body.data.get("keywords")
    if keywords is not None and (
        not isinstance(keywords, list)
        or not all(isinstance(k, str) and re.fullmatch(r"[a-z_]+[0-9]+", k) for k in keywords)
    ):
        raise ControlError('keywords must be a list of keyword names like "thing1", "time2"')
    template = Template(template_id, None if keywords is None else tuple(keywords))
    state = current_state()
    with state.lock:
        state.miniprogram.templates[template_id] = template
    return {"template_id": template_id, "keywords": template.keywords}


@bp.post("/subscriptions")
def grant_subscription() -> ResponseReturnValue:
    """The user taps "allow" in wx.requestSubscribeMessage: `count` more sends of the template."""
    body = Body({"openid", "template_id", "count"})
    openid = body.required_text("openid", _ID)
    template_id = body.required_text("template_id", _ID)
    count = body.integer("count", 1, 10_000) or 1
    state = current_state()
    with state.lock:
        user = state.miniprogram.users.get(openid)
        if user is None:
            raise ControlError(f"unknown openid {openid}: issue a login code for it first")
        if template_id not in state.miniprogram.templates:
            raise ControlError(f"unknown template_id {template_id}: register it first")
        remaining = user.subscriptions.get(template_id, 0) + count
        user.subscriptions[template_id] = remaining
    return {"openid": openid, "template_id": template_id, "remaining": remaining}


@bp.get("/faults")
def list_faults() -> ResponseReturnValue:
    state = current_state()
    with state.lock:
        return [fault.as_json() for fault in state.faults.pending()]


@bp.post("/faults")
def add_fault() -> ResponseReturnValue:
    """Script the next `times` calls of one API: a delay, then the normal answer, an errcode
    answer or a bare HTTP status."""
    body = Body({"api", "errcode", "http_status", "delay_ms", "times"})
    api = body.required_text("api")
    if api not in API_NAMES:
        raise ControlError(f"api must be one of {', '.join(sorted(API_NAMES))}")
    errcode = body.integer("errcode", -(2**31), 2**31 - 1)
    http_status = body.integer("http_status", 200, 599)
    delay_ms = body.integer("delay_ms", 0, MAX_DELAY_MS) or 0
    if errcode == 0:
        raise ControlError("errcode 0 is success: leave errcode out for a delay-only fault")
    if errcode is not None and http_status is not None:
        raise ControlError("give errcode or http_status, not both")
    if errcode is None and http_status is None and not delay_ms:
        raise ControlError("give at least one of errcode, http_status, delay_ms")
    fault = Fault(
        api=api,
        remaining=body.integer("times", 1, MAX_TIMES) or 1,
        delay_ms=delay_ms,
        errcode=errcode,
        http_status=http_status,
    )
    state = current_state()
    with state.lock:
        state.faults.add(fault)
    return fault.as_json()


@bp.delete("/faults")
def clear_faults() -> ResponseReturnValue:
    state = current_state()
    with state.lock:
        state.faults = FaultQueue()
    return {"status": "cleared"}


@bp.get("/calls")
def list_calls() -> ResponseReturnValue:
    """Recorded API calls, oldest first; `?api=` keeps one API's."""
    api = request.args.get("api")
    names = API_NAMES | OUTBOUND_NAMES
    if api is not None and api not in names:
        raise ControlError(f"api must be one of {', '.join(sorted(names))}")
    state = current_state()
    with state.lock:
        calls = list(state.calls)
    return [call for call in calls if api is None or call["api"] == api]


@bp.get("/messages")
def list_messages() -> ResponseReturnValue:
    """Subscribe messages and WeCom messages sent, oldest first; `?kind=subscribe|wecom`."""
    kind = request.args.get("kind")
    if kind is not None and kind not in MESSAGE_KINDS:
        raise ControlError(f"kind must be one of {', '.join(MESSAGE_KINDS)}")
    state = current_state()
    with state.lock:
        messages = list(state.messages)
    return [message for message in messages if kind is None or message["kind"] == kind]


@bp.get("/clock")
def get_clock() -> ResponseReturnValue:
    clock = current_state().clock
    return {"now": clock.now(), "offset_seconds": clock.offset}


@bp.post("/clock")
def advance_clock() -> ResponseReturnValue:
    """Move the virtual clock forward, so codes and tokens expire without sleeping."""
    body = Body({"advance_seconds"})
    clock = current_state().clock
    now = clock.advance(body.number("advance_seconds", 0, MAX_ADVANCE_SECONDS))
    return {"now": now, "offset_seconds": clock.offset}


# Each int setting's allowed range (0 switches a limit off; TTLs must stay positive).
_INT_SETTINGS: dict[str, tuple[int, int]] = {
    "token_ttl_seconds": (1, 30 * 86_400),
    "token_grace_seconds": (0, 30 * 86_400),
    "code_ttl_seconds": (1, 30 * 86_400),
    "login_quota_per_minute": (0, 1_000_000),
    "visit_window_seconds": (0, 365 * 86_400),
    "force_refresh_daily_limit": (0, 1_000_000),
    "force_refresh_interval_seconds": (0, 86_400),
}


def _content_rules(value: object) -> tuple[ContentRule, ...]:
    suggestions = get_args(Suggest)
    if not isinstance(value, list):
        raise ControlError("content_rules must be a list")
    rules = []
    for rule in value:
        if (
            not isinstance(rule, dict)
            or set(rule) != {"keyword", "suggest", "label"}
            or not isinstance(rule["keyword"], str)
            or not rule["keyword"]
            or rule["suggest"] not in suggestions
            or not isinstance(rule["label"], int)
            or isinstance(rule["label"], bool)
        ):
            raise ControlError(
                'each content rule must be {"keyword": non-empty string, '
                f'"suggest": one of {", ".join(suggestions)}, "label": integer}}'
            )
        rules.append(ContentRule(rule["keyword"], rule["suggest"], rule["label"]))
    return tuple(rules)


@bp.get("/config")
def get_config() -> ResponseReturnValue:
    state = current_state()
    with state.lock:
        return dataclasses.asdict(state.settings)


@bp.post("/config")
def update_config() -> ResponseReturnValue:
    """Change some settings (the others keep their values); answers all of them."""
    body = Body({*_INT_SETTINGS, "phone_country_code_type", "content_rules"})
    changes: dict[str, Any] = {}
    for name, (minimum, maximum) in _INT_SETTINGS.items():
        value = body.integer(name, minimum, maximum)
        if value is not None:
            changes[name] = value
    country_code_type = body.data.get("phone_country_code_type")
    if country_code_type is not None:
        if country_code_type not in ("string", "number"):
            raise ControlError('phone_country_code_type must be "string" or "number"')
        changes["phone_country_code_type"] = country_code_type
    if "content_rules" in body.data:
        changes["content_rules"] = _content_rules(body.data["content_rules"])
    state = current_state()
    with state.lock:
        state.settings = dataclasses.replace(state.settings, **changes)
        return dataclasses.asdict(state.settings)
