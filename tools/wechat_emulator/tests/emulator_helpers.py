"""A minimal client for the emulated WeChat APIs, so tests read as WeChat calls."""

from __future__ import annotations

import json
from typing import Any

import requests

from wechat_emulator.config import DEFAULT_APPID, DEFAULT_CORPID, DEFAULT_CORPSECRET, DEFAULT_SECRET

APPID = DEFAULT_APPID
SECRET = DEFAULT_SECRET
CORPID = DEFAULT_CORPID
CORPSECRET = DEFAULT_CORPSECRET
# Stand-ins for a token never issued and a wrong secret.
NOT_ISSUED = "never-issued-by-the-emulator"
WRONG = "not-the-right-one"


class WeChatApi:
    """Calls the way a WeChat SDK makes them: GET with query, POST with a UTF-8 JSON body."""

    def __init__(self, base_url: str, session: requests.Session) -> None:
        self.base_url = base_url
        self.http = session

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(f"{self.base_url}{path}", params=params, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, body: Any, access_token: str | None = None, **params: Any) -> Any:
        if access_token is not None:
            params["access_token"] = access_token
        data = json.dumps(body, ensure_ascii=False).encode()
        response = self.http.post(f"{self.base_url}{path}", params=params, data=data, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def code2session(self, code: str | None, **overrides: Any) -> Any:
        params = {
            "appid": APPID,
            "secret": SECRET,
            "js_code": code,
            "grant_type": "authorization_code",
        }
        params.update(overrides)
        return self.get("/sns/jscode2session", **{k: v for k, v in params.items() if v is not None})

    def token_answer(self, **overrides: Any) -> Any:
        params = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
        params.update(overrides)
        return self.get("/cgi-bin/token", **{k: v for k, v in params.items() if v is not None})

    def token(self) -> str:
        return str(self.token_answer()["access_token"])

    def stable_token_answer(self, force_refresh: Any = False, **overrides: Any) -> Any:
        body = {
            "grant_type": "client_credential",
            "appid": APPID,
            "secret": SECRET,
            "force_refresh": force_refresh,
        }
        body.update(overrides)
        return self.post("/cgi-bin/stable_token", body)

    def stable_token(self, force_refresh: bool = False) -> str:
        return str(self.stable_token_answer(force_refresh)["access_token"])

    def wecom_token(self) -> str:
        answer = self.get("/cgi-bin/gettoken", corpid=CORPID, corpsecret=CORPSECRET)
        return str(answer["access_token"])


def assert_error(answer: Any, errcode: int) -> None:
    """WeChat's error convention: errcode plus an errmsg that ends with a request id."""
    assert answer["errcode"] == errcode, answer
    assert isinstance(answer["errmsg"], str)
    assert set(answer) == {"errcode", "errmsg"}, answer
