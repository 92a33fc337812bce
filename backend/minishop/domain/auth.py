"""Login with a wx.login code, token rotation with theft detection, logout, and who is calling."""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from minishop.errors import AppError, ErrorCode
from minishop.extensions import db
from minishop.models import AuthSession, RefreshToken, Role, User
from minishop.models.types import utcnow
from minishop.observability import metrics
from minishop.observability.logs import bind_log_fields
from minishop.security.keys import field_cipher, token_signer
from minishop.security.tokens import (
    AccessClaims,
    hash_refresh_token,
    new_refresh_token,
)
from minishop.wechat.miniprogram import wechat

SESSION_KEY_PURPOSE = "auth_sessions.session_key"
SIGN_KEY_PURPOSE = "auth_sessions.sign_key"


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(frozen=True)
class LoginResult:
    tokens: TokenPair
    sign_key: str
    user: User


@dataclass(frozen=True)
class Principal:
    user: User
    session: AuthSession


def find_or_create_user(openid: str, unionid: str | None) -> User:
    """Concurrent first logins of one openid create one row: the unique index decides.

    The loser's INSERT fails on the index; it then re-reads with a shared locking read, which
    sees the winner's committed row (a plain read would reuse its older REPEATABLE READ
    snapshot). Shared, not FOR UPDATE: every loser already holds a shared lock on that index
    entry from its failed INSERT, and several of them asking for an exclusive lock deadlock.
    """
    statement = select(User).where(User.openid == openid)
    user = db.session.scalar(statement)
    if user is None:
        try:
            with db.session.begin_nested():
                user = User(openid=openid, unionid=unionid)
                db.session.add(user)
        except IntegrityError:
            user = db.session.scalars(statement.with_for_update(read=True)).one()
    if unionid and user.unionid != unionid:
        user.unionid = unionid
    return user


def _issue_tokens(user: User, session: AuthSession, now: datetime) -> TokenPair:
    refresh_token = new_refresh_token()
    ttl = timedelta(seconds=current_app.config["REFRESH_TOKEN_TTL_SECONDS"])
    db.session.add(
        RefreshToken(
            session_id=session.id,
            token_hash=hash_refresh_token(refresh_token),
            created_at=now,
            expires_at=now + ttl,
        )
    )
    signer = token_signer()
    access_token = signer.issue(AccessClaims(user.id, user.role, session.id), now)
    return TokenPair(access_token, refresh_token, int(signer.ttl.total_seconds()))


def login(code: str) -> LoginResult:
    answer = wechat().code2session(code)
    user = find_or_create_user(answer.openid, answer.unionid)
    db.session.flush()
    bind_log_fields(user_id=user.id)
    sign_key = base64.b64encode(os.urandom(32)).decode()
    cipher = field_cipher()
    session = AuthSession(
        id=secrets.token_hex(16),
        user_id=user.id,
        session_key_encrypted=cipher.encrypt(answer.session_key, SESSION_KEY_PURPOSE),
        sign_key_encrypted=cipher.encrypt(sign_key, SIGN_KEY_PURPOSE),
    )
    db.session.add(session)
    tokens = _issue_tokens(user, session, utcnow())
    db.session.commit()
    metrics.LOGINS.inc()
    return LoginResult(tokens, sign_key, user)


def _revoke(session: AuthSession, reason: str, now: datetime) -> None:
    if session.revoked_at is None:
        session.revoked_at = now
        session.revoked_reason = reason


def refresh(refresh_token: str) -> TokenPair:
    """Rotate: the presented token is spent and a new pair issued.

    A token that was already spent means two parties hold it: one of them stole it. The whole
    session (every token of this login) is revoked, and both must log in again.
    """
    invalid = AppError(ErrorCode.NOT_AUTHENTICATED, "invalid refresh token")
    now = utcnow()
    row = db.session.scalar(
        select(RefreshToken)
        .where(RefreshToken.token_hash == hash_refresh_token(refresh_token))
        .with_for_update()
    )
    if row is None:
        raise invalid
    session = db.session.get(AuthSession, row.session_id, with_for_update=True)
    if session is None or session.revoked_at is not None:
        raise invalid
    if row.used_at is not None:
        _revoke(session, "refresh_token_reused", now)
        db.session.commit()
        raise invalid
    if row.expires_at <= now:
        raise AppError(ErrorCode.NOT_AUTHENTICATED, "refresh token expired")
    row.used_at = now
    user = db.session.get_one(User, session.user_id)
    tokens = _issue_tokens(user, session, now)
    db.session.commit()
    return tokens


def logout(principal: Principal) -> None:
    _revoke(principal.session, "logout", utcnow())
    db.session.commit()


def authenticate(access_token: str) -> Principal:
    """The caller behind a valid access token whose session is still open."""
    claims = token_signer().verify(access_token)
    session = db.session.get(AuthSession, claims.session_id)
    if session is None or session.revoked_at is not None or session.user_id != claims.user_id:
        raise AppError(ErrorCode.NOT_AUTHENTICATED, "session has ended")
    return Principal(db.session.get_one(User, claims.user_id), session)


def grant_admin(openid: str) -> User:
    """Operator action: make this WeChat user an admin, creating the row if they never logged in."""
    user = find_or_create_user(openid, None)
    user.role = Role.ADMIN
    db.session.commit()
    return user
