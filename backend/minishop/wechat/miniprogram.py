"""The mini-program API calls MiniShop makes, with access-token handling."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from minishop.wechat.access_token import AccessTokenManager
from minishop.wechat.client import (
    JSCODE2SESSION,
    MSG_SEC_CHECK,
    PHONE_NUMBER,
    SUBSCRIBE_SEND,
    Code2Session,
    Endpoint,
    WeChatHttp,
)
from minishop.wechat.errors import NO_SUBSCRIPTION, TOKEN_ERRCODES, WeChatApiError


class Suggest(StrEnum):
    PASS = "pass"  # noqa: S105  (a verdict, not a password)
    REVIEW = "review"
    RISKY = "risky"


@dataclass(frozen=True)
class ContentVerdict:
    suggest: Suggest
    label: int


class SubscribeOutcome(StrEnum):
    SENT = "sent"
    NO_SUBSCRIPTION = "no_subscription"


class MiniProgramClient:
    def __init__(
        self,
        http: WeChatHttp,
        appid: str,
        secret: str,
        tokens: AccessTokenManager,
        miniprogram_state: str,
    ) -> None:
        self.http = http
        self.appid = appid
        self.secret = secret
        self.tokens = tokens
        self.miniprogram_state = miniprogram_state  # which build a subscribe message opens

    def code2session(self, code: str) -> Code2Session:
        answer = self.http.call(
            JSCODE2SESSION,
            params={
                "appid": self.appid,
                "secret": self.secret,
                "js_code": code,
                "grant_type": "authorization_code",
            },
        )
        return Code2Session(
            openid=str(answer["openid"]),
            session_key=str(answer["session_key"]),
            unionid=answer.get("unionid"),
        )

    def _call_with_token(self, endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        """On 40001/42001 the token is refreshed once and the call retried once, never more."""
        token = self.tokens.get()
        try:
            return self.http.call(endpoint, params={"access_token": token}, body=body)
        except WeChatApiError as exc:
            if exc.errcode not in TOKEN_ERRCODES:
                raise
            self.tokens.invalidate(token)
        return self.http.call(endpoint, params={"access_token": self.tokens.get()}, body=body)

    def phone_number(self, code: str) -> str:
        """The user's phone number with country code, e.g. "+86 13800138000" → "13800138000"."""
        answer = self._call_with_token(PHONE_NUMBER, {"code": code})
        return str(answer["phone_info"]["purePhoneNumber"])

    def check_text(self, content: str, openid: str, scene: int) -> ContentVerdict:
        answer = self._call_with_token(
            MSG_SEC_CHECK, {"content": content, "version": 2, "scene": scene, "openid": openid}
        )
        result = answer.get("result") or {}
        return ContentVerdict(Suggest(result.get("suggest", "pass")), int(result.get("label", 100)))

    def send_subscribe_message(
        self, openid: str, template_id: str, data: dict[str, str], page: str = ""
    ) -> SubscribeOutcome:
        """Send one template message; a user without a subscription left is a normal outcome."""
        body = {
            "touser": openid,
            "template_id": template_id,
            "page": page,
            "data": {key: {"value": value} for key, value in data.items()},
            "miniprogram_state": self.miniprogram_state,
            "lang": "zh_CN",
        }
        try:
            self._call_with_token(SUBSCRIBE_SEND, body)
        except WeChatApiError as exc:
            if exc.errcode == NO_SUBSCRIPTION:
                return SubscribeOutcome.NO_SUBSCRIPTION
            raise
        return SubscribeOutcome.SENT
