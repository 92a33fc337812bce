"""The caller's own profile and phone number."""

from __future__ import annotations

from datetime import datetime

from flask import Response
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from minishop import extensions
from minishop.api.common import PatchBody, StrictBody
from minishop.api.guards import BEARER_SECURITY, current_principal, login_required, signed
from minishop.domain import users
from minishop.envelope import Envelope, ok
from minishop.models import User

bp = APIBlueprint("users", __name__, url_prefix="/api/v1/users", abp_tags=[Tag(name="users")])


class UserOut(BaseModel):
    id: int
    nickname: str
    avatar_url: str
    phone: str | None = Field(description="masked, e.g. 138****1234")
    role: str
    created_at: datetime


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        nickname=user.nickname,
        avatar_url=user.avatar_url,
        phone=users.masked_phone(extensions.field_cipher.get(), user),
        role=user.role,
        created_at=user.created_at,
    )


class ProfilePatch(PatchBody):
    nickname: str | None = Field(None, min_length=1, max_length=32)
    avatar_url: str | None = Field(None, max_length=512, pattern=r"^https://[^\s]+$")


class PhoneBody(StrictBody):
    code: str = Field(min_length=1, max_length=128, description="from the getPhoneNumber button")


@bp.get("/me", responses={200: Envelope[UserOut]}, security=BEARER_SECURITY)
@login_required
def me() -> Response:
    return ok(user_out(current_principal().user))


@bp.patch("/me", responses={200: Envelope[UserOut]}, security=BEARER_SECURITY)
@signed
def update_me(body: ProfilePatch) -> Response:
    user = users.update_profile(
        extensions.session(),
        extensions.wechat.get(),
        current_principal().user,
        body.nickname,
        body.avatar_url,
    )
    return ok(user_out(user))


@bp.post("/me/phone", responses={200: Envelope[UserOut]}, security=BEARER_SECURITY)
@signed
def bind_phone(body: PhoneBody) -> Response:
    user = users.bind_phone(
        extensions.session(),
        extensions.wechat.get(),
        extensions.field_cipher.get(),
        current_principal().user,
        body.code,
    )
    return ok(user_out(user))
