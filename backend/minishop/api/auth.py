"""Login with a wx.login code, rotate tokens, log out."""

from __future__ import annotations

from flask import Response
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from minishop import extensions
from minishop.api.common import StrictBody
from minishop.api.guards import BEARER_SECURITY, current_principal, signed
from minishop.api.users import UserOut, user_out
from minishop.domain import auth
from minishop.envelope import Envelope, ok
from minishop.security.rate_limits import per_ip

bp = APIBlueprint("auth", __name__, url_prefix="/api/v1/auth", abp_tags=[Tag(name="auth")])


class LoginBody(StrictBody):
    code: str = Field(min_length=1, max_length=128, description="the code from wx.login()")


class RefreshBody(StrictBody):
    refresh_token: str = Field(min_length=1, max_length=256)


class TokenPairOut(BaseModel):
    access_token: str
    refresh_token: str
    expires_in: int = Field(description="access token lifetime in seconds")


class LoginOut(TokenPairOut):
    sign_key: str = Field(description="base64 key for request signatures, for this session only")
    user: UserOut


class LoggedOut(BaseModel):
    logged_out: bool


def _token_pair(pair: auth.TokenPair) -> dict[str, object]:
    return {
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "expires_in": pair.expires_in,
    }


@bp.post("/login", responses={200: Envelope[LoginOut]})
@per_ip("RATELIMIT_LOGIN")
def login(body: LoginBody) -> Response:
    result = auth.login(
        extensions.session(), extensions.wechat.get(), extensions.auth_keys.get(), body.code
    )
    return ok(
        LoginOut(**_token_pair(result.tokens), sign_key=result.sign_key, user=user_out(result.user))
    )


@bp.post("/refresh", responses={200: Envelope[TokenPairOut]})
def refresh(body: RefreshBody) -> Response:
    pair = auth.refresh(extensions.session(), extensions.auth_keys.get(), body.refresh_token)
    return ok(TokenPairOut(**_token_pair(pair)))


@bp.post("/logout", responses={200: Envelope[LoggedOut]}, security=BEARER_SECURITY)
@signed
def logout() -> Response:
    auth.logout(extensions.session(), current_principal())
    return ok(LoggedOut(logged_out=True))
