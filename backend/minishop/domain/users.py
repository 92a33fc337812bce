"""Profile changes and phone binding, with WeChat's content security on what others will see."""

from __future__ import annotations

from minishop.errors import AppError, ErrorCode
from minishop.extensions import db
from minishop.models import User
from minishop.security.keys import field_cipher
from minishop.wechat.miniprogram import Suggest, wechat

PHONE_PURPOSE = "users.phone"
PROFILE_SCENE = 1  # msg_sec_check v2 scene 1: profile (nickname, signature)


def mask_phone(phone: str) -> str:
    """138****1234: enough for the user to recognise, useless to anyone reading a screen."""
    if len(phone) < 7:
        return "*" * len(phone)
    return f"{phone[:3]}{'*' * (len(phone) - 7)}{phone[-4:]}"


def masked_phone(user: User) -> str | None:
    if user.phone_encrypted is None:
        return None
    return mask_phone(field_cipher().decrypt(user.phone_encrypted, PHONE_PURPOSE))


def update_profile(user: User, nickname: str | None, avatar_url: str | None) -> User:
    """A risky nickname is refused (42200); one WeChat wants reviewed is kept but flagged."""
    if nickname is not None:
        verdict = wechat().check_text(nickname, user.openid, PROFILE_SCENE)
        if verdict.suggest == Suggest.RISKY:
            raise AppError(
                ErrorCode.CONTENT_REJECTED,
                "nickname rejected by content security",
                data={"label": verdict.label},
            )
        user.nickname = nickname
        user.nickname_flagged = verdict.suggest == Suggest.REVIEW
    if avatar_url is not None:
        user.avatar_url = avatar_url
    db.session.commit()
    return user


def bind_phone(user: User, code: str) -> User:
    phone = wechat().phone_number(code)
    user.phone_encrypted = field_cipher().encrypt(phone, PHONE_PURPOSE)
    db.session.commit()
    return user
