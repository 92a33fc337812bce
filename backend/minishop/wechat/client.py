"""HTTP calls to the mini-program API (api.weixin.qq.com, or the emulator in tests).

One pooled `requests.Session` per process. Every call has a total time budget
(WECHAT_TIMEOUT_SECONDS, 3 s by default) that covers its one retry: errcode -1 ("system busy")
is retried for every call, a timeout only for calls that are safe to repeat (a login or phone
code is single-use, a message must not be sent twice).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from minishop.observability import metrics
from minishop.wechat.errors import SYSTEM_BUSY, WeChatApiError, WeChatUnavailableError


@dataclass(frozen=True)
class Code2Session:
    openid: str
    session_key: str
    unionid: str | None


@dataclass(frozen=True)
class StableToken:
    access_token: str
    expires_in: int


@dataclass(frozen=True)
class Endpoint:
    api: str
    method: str
    path: str
    retry_on_timeout: bool


JSCODE2SESSION = Endpoint("jscode2session", "GET", "/sns/jscode2session", retry_on_timeout=False)
STABLE_TOKEN = Endpoint("stable_token", "POST", "/cgi-bin/stable_token", retry_on_timeout=True)
PHONE_NUMBER = Endpoint(
    "getuserphonenumber", "POST", "/wxa/business/getuserphonenumber", retry_on_timeout=False
)
MSG_SEC_CHECK = Endpoint("msg_sec_check", "POST", "/wxa/msg_sec_check", retry_on_timeout=True)
SUBSCRIBE_SEND = Endpoint(
    "subscribe_send", "POST", "/cgi-bin/message/subscribe/send", retry_on_timeout=False
)


class WeChatHttp:
    """Sends one request and turns WeChat's answer into a dict or a typed exception."""

    def __init__(self, api_base: str, connect_timeout: float, total_timeout: float) -> None:
        self.api_base = api_base.rstrip("/")
        self.connect_timeout = connect_timeout
        self.total_timeout = total_timeout
        self.session = requests.Session()
        self.session.mount("http://", HTTPAdapter(pool_connections=4, pool_maxsize=32))
        self.session.mount("https://", HTTPAdapter(pool_connections=4, pool_maxsize=32))

    def call(
        self,
        endpoint: Endpoint,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        with metrics.wechat_call(endpoint.api):
            return self._call_with_retry(endpoint, params, body)

    def _call_with_retry(
        self, endpoint: Endpoint, params: dict[str, str] | None, body: dict[str, Any] | None
    ) -> dict[str, Any]:
        deadline = time.monotonic() + self.total_timeout
        for attempt in (1, 2):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WeChatUnavailableError(endpoint.api)
            try:
                answer = self._send(endpoint, params, body, remaining)
            except (requests.Timeout, requests.ConnectionError):
                if attempt == 1 and endpoint.retry_on_timeout:
                    continue
                raise WeChatUnavailableError(endpoint.api) from None
            errcode = int(answer.get("errcode") or 0)
            if errcode == SYSTEM_BUSY and attempt == 1:
                continue
            if errcode:
                raise WeChatApiError(endpoint.api, errcode, str(answer.get("errmsg", "")))
            return answer
        raise WeChatUnavailableError(
            endpoint.api
        )  # pragma: no cover  (the loop always returns/raises)

    def _send(
        self,
        endpoint: Endpoint,
        params: dict[str, str] | None,
        body: dict[str, Any] | None,
        remaining: float,
    ) -> dict[str, Any]:
        # WeChat's content check reads raw UTF-8: \u escapes would make every text "pass".
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        response = self.session.request(
            endpoint.method,
            f"{self.api_base}{endpoint.path}",
            params=params,
            data=data,
            headers={"Content-Type": "application/json"} if data is not None else None,
            timeout=(min(self.connect_timeout, remaining), remaining),
        )
        if response.status_code != 200:
            raise WeChatApiError(endpoint.api, -response.status_code, "unexpected HTTP status")
        try:
            answer = response.json()
        except ValueError:
            raise WeChatApiError(endpoint.api, SYSTEM_BUSY, "answer is not JSON") from None
        if not isinstance(answer, dict):
            raise WeChatApiError(endpoint.api, SYSTEM_BUSY, "answer is not an object")
        return answer


def fetch_stable_token(http: WeChatHttp, appid: str, secret: str) -> StableToken:
    """`stable_token` answers with the same token while it is valid: safe to ask from anywhere."""
    answer = http.call(
        STABLE_TOKEN,
        body={
            "grant_type": "client_credential",
            "appid": appid,
            "secret": secret,
            "force_refresh": False,
        },
    )
    return StableToken(str(answer["access_token"]), int(answer["expires_in"]))
