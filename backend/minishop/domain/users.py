"""Profile changes and phone binding, with WeChat's content security on what others will see."""

from __future__ import annotations

from sqlalchemy.orm import Session

from minishop.errors import AppError, ErrorCode
from minishop.models import User
from minishop.security.crypto import FieldCipher
from minishop.wechat.miniprogram import MiniProgramClient, Suggest

PHONE_PURPOSE = "users.phone"
PROFILE_SCENE = 1  # msg_sec_check v2 scene 1: profile (nickname, signature)
MIN_HIDDEN = 4
MAX_SHOWN = 7


def mask_phone(phone: str) -> str:
    """138****1234: enough for the user to recognise, useless to anyone reading a screen.

    Whatever the length, at least four characters in the middle are hidden (all of a number of
    four or fewer) and at most seven are shown, split 3:4 between head and tail.
    """
    hidden = max(MIN_HIDDEN, len(phone) - MAX_SHOWN)
    shown = max(0, len(phone) - hidden)
    head = shown * 3 // 7
    tail = shown - head
    return f"{phone[:head]}{'*' * (len(phone) - shown)}{phone[len(phone) - tail :]}"


def masked_phone(cipher: FieldCipher, user: User) -> str | None:
    if user.phone_encrypted is None:
        return None
    return mask_phone(cipher.decrypt(user.phone_encrypted, PHONE_PURPOSE))


def update_profile(
    session: Session,
    wechat: MiniProgramClient,
    user: User,
    nickname: str | None,
    avatar_url: str | None,
) -> User:
    """A risky nickname is refused (42200); one WeChat wants reviewed is kept but flagged."""
    if nickname is not None:
        verdict = wechat.check_text(nickname, user.openid, PROFILE_SCENE)
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
    session.commit()
    return user


def bind_phone(
    session: Session, wechat: MiniProgramClient, cipher: FieldCipher, user: User, code: str
) -> User:
    phone = wechat.phone_number(code)
    user.phone_encrypted = cipher.encrypt(phone, PHONE_PURPOSE)
    session.commit()
    return user
