"""Login with a wx.login code, token rotation with theft detection, logout, and who is calling."""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from minishop.errors import AppError, ErrorCode
from minishop.models import AuthSession, RefreshToken, Role, User
from minishop.models.types import utcnow
from minishop.observability import metrics
from minishop.observability.log_context import bind_log_fields
from minishop.security.crypto import FieldCipher
from minishop.security.tokens import (
    AccessClaims,
    TokenSigner,
    hash_refresh_token,
    new_refresh_token,
)
from minishop.wechat.miniprogram import MiniProgramClient

SESSION_KEY_PURPOSE = "auth_sessions.session_key"
SIGN_KEY_PURPOSE = "auth_sessions.sign_key"
SUCCESSOR_PURPOSE = "refresh_tokens.successor"


@dataclass(frozen=True)
class AuthKeys:
    """What issuing tokens needs; built once per app from the settings (extensions.auth_keys)."""

    signer: TokenSigner
    cipher: FieldCipher
    refresh_ttl: timedelta
    # A refresh token presented again this soon after its rotation is a client retrying a
    # request whose answer it lost (a mini-program on a flaky network), not a thief.
    refresh_reuse_grace: timedelta


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


def find_or_create_user(session: Session, openid: str, unionid: str | None) -> User:
    """Concurrent first logins of one openid create one row: the unique index decides.

    The loser's INSERT fails on the index; it then re-reads with a shared locking read, which
    sees the winner's committed row (a plain read would reuse its older REPEATABLE READ
    snapshot). Shared, not FOR UPDATE: every loser already holds a shared lock on that index
    entry from its failed INSERT, and several of them asking for an exclusive lock deadlock.
    """
    statement = select(User).where(User.openid == openid)
    user = session.scalar(statement)
    if user is None:
        try:
            with session.begin_nested():
                user = User(openid=openid, unionid=unionid)
                session.add(user)
        except IntegrityError:
            user = session.scalars(statement.with_for_update(read=True)).one()
    if unionid and user.unionid != unionid:
        user.unionid = unionid
    return user


def _issue_tokens(
    session: Session, keys: AuthKeys, user: User, auth_session: AuthSession, now: datetime
) -> TokenPair:
    refresh_token = new_refresh_token()
    session.add(
        RefreshToken(
            session_id=auth_session.id,
            token_hash=hash_refresh_token(refresh_token),
            created_at=now,
            expires_at=now + keys.refresh_ttl,
        )
    )
    access_token = keys.signer.issue(AccessClaims(user.id, user.role, auth_session.id), now)
    return TokenPair(access_token, refresh_token, int(keys.signer.ttl.total_seconds()))


def login(session: Session, wechat: MiniProgramClient, keys: AuthKeys, code: str) -> LoginResult:
    answer = wechat.code2session(code)
    user = find_or_create_user(session, answer.openid, answer.unionid)
    session.flush()
    bind_log_fields(user_id=user.id)
    sign_key = base64.b64encode(os.urandom(32)).decode()
    auth_session = AuthSession(
        id=secrets.token_hex(16),
        user_id=user.id,
        session_key_encrypted=keys.cipher.encrypt(answer.session_key, SESSION_KEY_PURPOSE),
        sign_key_encrypted=keys.cipher.encrypt(sign_key, SIGN_KEY_PURPOSE),
    )
    session.add(auth_session)
    tokens = _issue_tokens(session, keys, user, auth_session, utcnow())
    session.commit()
    metrics.LOGINS.inc()
    return LoginResult(tokens, sign_key, user)


def _revoke(auth_session: AuthSession, reason: str, now: datetime) -> None:
    if auth_session.revoked_at is None:
        auth_session.revoked_at = now
        auth_session.revoked_reason = reason


def _successor(keys: AuthKeys, row: RefreshToken, now: datetime) -> TokenPair | None:
    """The pair that replaced `row`, if it was rotated within the reuse grace period."""
    if row.used_at is None or row.successor_encrypted is None:
        return None
    elapsed = now - row.used_at
    if elapsed > keys.refresh_reuse_grace:
        return None
    pair = TokenPair(**json.loads(keys.cipher.decrypt(row.successor_encrypted, SUCCESSOR_PURPOSE)))
    remaining = max(0, pair.expires_in - int(elapsed.total_seconds()))
    return TokenPair(pair.access_token, pair.refresh_token, remaining)


def refresh(session: Session, keys: AuthKeys, refresh_token: str) -> TokenPair:
    """Rotate: the presented token is spent and a new pair issued.

    A token that was already spent means two parties hold it: one of them stole it. The whole
    session (every token of this login) is revoked, and both must log in again — unless it was
    spent within the reuse grace period, when the same new pair is answered again (a retry).
    """
    invalid = AppError(ErrorCode.NOT_AUTHENTICATED, "invalid refresh token")
    now = utcnow()
    row = session.scalar(
        select(RefreshToken)
        .where(RefreshToken.token_hash == hash_refresh_token(refresh_token))
        .with_for_update()
    )
    if row is None:
        raise invalid
    auth_session = session.get(AuthSession, row.session_id, with_for_update=True)
    if auth_session is None or auth_session.revoked_at is not None:
        raise invalid
    if row.used_at is not None:
        retried = _successor(keys, row, now)
        if retried is not None:
            return retried
        _revoke(auth_session, "refresh_token_reused", now)
        session.commit()
        raise invalid
    if row.expires_at <= now:
        raise AppError(ErrorCode.NOT_AUTHENTICATED, "refresh token expired")
    user = session.get_one(User, auth_session.user_id)
    tokens = _issue_tokens(session, keys, user, auth_session, now)
    # Only the latest rotation of a session keeps its successor readable.
    session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.session_id == auth_session.id,
            RefreshToken.successor_encrypted.is_not(None),
        )
        .values(successor_encrypted=None)
        .execution_options(synchronize_session=False)
    )
    row.used_at = now
    row.successor_encrypted = keys.cipher.encrypt(json.dumps(asdict(tokens)), SUCCESSOR_PURPOSE)
    session.commit()
    return tokens


def logout(session: Session, principal: Principal) -> None:
    _revoke(principal.session, "logout", utcnow())
    session.commit()


# One round trip for both rows (the hot path of every signed write, e.g. an order), built once:
# only the parameters change from one request to the next.
_SESSION_WITH_USER = (
    select(AuthSession, User)
    .join(User, User.id == AuthSession.user_id)
    .where(AuthSession.id == bindparam("session_id"), AuthSession.user_id == bindparam("user_id"))
)


def authenticate(session: Session, signer: TokenSigner, access_token: str) -> Principal:
    """The caller behind a valid access token whose session is still open."""
    claims = signer.verify(access_token)
    found = session.execute(
        _SESSION_WITH_USER, {"session_id": claims.session_id, "user_id": claims.user_id}
    ).one_or_none()
    if found is None or found.AuthSession.revoked_at is not None:
        raise AppError(ErrorCode.NOT_AUTHENTICATED, "session has ended")
    return Principal(found.User, found.AuthSession)


def sign_key(cipher: FieldCipher, principal: Principal) -> str:
    """The caller's per-session key for request signatures."""
    return cipher.decrypt(principal.session.sign_key_encrypted, SIGN_KEY_PURPOSE)


def grant_admin(session: Session, openid: str) -> User:
    """Operator action: make this WeChat user an admin, creating the row if they never logged in."""
    user = find_or_create_user(session, openid, None)
    user.role = Role.ADMIN
    session.commit()
    return user
