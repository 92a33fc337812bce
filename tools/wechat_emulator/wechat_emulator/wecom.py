"""qyapi.weixin.qq.com (WeChat Work): the two calls of Alertmanager's `wechat_configs` receiver.

Point Alertmanager's `api_url` at `http://<emulator>/cgi-bin/`. WeCom shares the /cgi-bin/ prefix
with the mini-program host but not the paths (gettoken vs token, message/send vs
message/subscribe/send), and its tokens live in their own table: a mini-program token is not a
WeCom token, nor the other way round.
"""

from __future__ import annotations

import hmac
import secrets

from flask import Blueprint, request
from flask.typing import ResponseReturnValue

from .interception import endpoint
from .protocol import TokenErrcodes, WeChatError, check_access_token, error_body, json_object
from .state import current_state

bp = Blueprint("wecom", __name__)

ERRMSGS: dict[int, str] = {
    -1: "system busy",
    40001: "invalid credential",
    40008: "invalid message type",
    40013: "invalid corpid",
    40014: "invalid access_token",
    40056: "invalid agentid",
    40058: "invalid Request Parameter",
    41001: "access_token missing",
    41002: "corpid missing",
    41004: "corpsecret missing",
    41011: "agentid missing",
    42001: "access_token expired",
    44004: "empty content",
    81013: "user & party & tag all invalid",
}
TOKEN_ERRCODES = TokenErrcodes(missing=41001, unknown=40014, expired=42001, superseded=40014)
BAD_BODY = 40058
MESSAGE_TYPES = ("text", "markdown")


@bp.errorhandler(WeChatError)
def _render_error(error: WeChatError) -> ResponseReturnValue:
    """WeCom's errmsg suffix: a hint, the caller's IP and the errcode lookup page."""
    state = current_state()
    hint = f"{int(state.clock.now())}_{secrets.randbelow(100)}_{secrets.token_hex(16)}"
    suffix = (
        f", hint: [{hint}], from ip: {request.remote_addr}, more info at "
        f"https://open.work.weixin.qq.com/devtool/query?e={error.errcode}"
    )
    return error_body(error, ERRMSGS, suffix)


@bp.get("/cgi-bin/gettoken")
@endpoint("wecom_gettoken")
def gettoken() -> ResponseReturnValue:
    """The app's token: WeCom answers the same one until it expires."""
    state = current_state()
    corpid, corpsecret = request.args.get("corpid"), request.args.get("corpsecret")
    if not corpid:
        raise WeChatError(41002)
    if not corpsecret:
        raise WeChatError(41004)
    if corpid != state.config.corpid:
        raise WeChatError(40013)
    if not hmac.compare_digest(corpsecret.encode(), state.config.corpsecret.encode()):
        raise WeChatError(40001)
    with state.lock:
        now, tokens = state.clock.now(), state.wecom.tokens
        token = tokens.current(now) or tokens.issue(now, state.settings.token_ttl_seconds, 0)
    return {
        "errcode": 0,
        "errmsg": "ok",
        "access_token": token.value,
        "expires_in": max(0, round(token.expires_at - now)),
    }


@bp.post("/cgi-bin/message/send")
@endpoint("wecom_send")
def message_send() -> ResponseReturnValue:
    """Accept a text or markdown app message and record it (Alertmanager's notification)."""
    state = current_state()
    with state.lock:
        check_access_token((state.wecom.tokens,), state.clock.now(), TOKEN_ERRCODES)
    body = json_object(BAD_BODY)
    msgtype, agentid = body.get("msgtype"), body.get("agentid")
    recipients = {name: body.get(name, "") for name in ("touser", "toparty", "totag")}
    if not all(isinstance(value, str) for value in recipients.values()):
        raise WeChatError(BAD_BODY)
    if agentid is None or agentid == "":
        raise WeChatError(41011)
    # Alertmanager sends agentid as a string, the WeCom docs as a number: both are accepted.
    if str(agentid) != str(state.config.agentid):
        raise WeChatError(40056)
    if msgtype not in MESSAGE_TYPES:
        raise WeChatError(40008)
    payload = body.get(msgtype)
    content = payload.get("content") if isinstance(payload, dict) else None
    if not isinstance(content, str) or not content:
        raise WeChatError(44004)
    if not any(recipients.values()):
        raise WeChatError(81013)
    msgid = secrets.token_urlsafe(32)
    with state.lock:
        state.messages.append(
            {
                "kind": "wecom",
                "msgid": msgid,
                "msgtype": msgtype,
                "agentid": state.config.agentid,
                **recipients,
                "content": content,
                "timestamp": state.clock.now(),
            }
        )
    return {
        "errcode": 0,
        "errmsg": "ok",
        "invaliduser": "",
        "invalidparty": "",
        "invalidtag": "",
        "unlicenseduser": "",
        "msgid": msgid,
        "response_code": secrets.token_urlsafe(32),
    }
