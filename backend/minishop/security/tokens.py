"""Access tokens: short-lived HS256 JWTs. Refresh tokens: opaque random strings, stored hashed.

Each signing key is named by a `kid` derived from the key itself, so rotating JWT_SECRET needs no
extra setting: move the old secret to JWT_PREVIOUS_SECRETS and tokens it signed keep verifying
until they expire.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

import jwt

from minishop.errors import AppError, ErrorCode

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["sub", "role", "sid", "jti", "iat", "nbf", "exp", "iss", "aud"]
# Tokens verified lately, per signer: a client sends the same access token with every request
# until it expires, and PyJWT's checks cost more than the rest of authentication.
VERIFIED_CACHE_SIZE = 4096


def key_id(secret: str) -> str:
    return hashlib.sha256(b"minishop jwt kid:" + secret.encode()).hexdigest()[:16]


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class AccessClaims:
    user_id: int
    role: str
    session_id: str


class TokenSigner:
    def __init__(
        self,
        secret: str,
        previous_secrets: list[str],
        issuer: str,
        audience: str,
        ttl: timedelta,
    ) -> None:
        self._current_kid = key_id(secret)
        self._keys = {key_id(s): s for s in [*previous_secrets, secret]}
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl
        self._verified = lru_cache(maxsize=VERIFIED_CACHE_SIZE)(self._decode)

    def issue(self, claims: AccessClaims, now: datetime) -> str:
        payload = {
            "sub": str(claims.user_id),
            "role": claims.role,
            "sid": claims.session_id,
            "jti": uuid.uuid4().hex,
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl,
            "iss": self.issuer,
            "aud": self.audience,
        }
        return jwt.encode(
            payload, self._keys[self._current_kid], ALGORITHM, headers={"kid": self._current_kid}
        )

    def verify(self, token: str) -> AccessClaims:
        """Claims of a valid token; 40101 when it has expired, 40100 for anything else wrong.

        A token verified before is only checked for expiry again: its signature, issuer,
        audience and claims cannot change, and its `nbf`/`iat` only get further behind. Tokens
        that fail are not kept (an exception is never cached)."""
        claims, expires = self._verified(token)
        if expires <= int(time.time()):  # PyJWT's rule: expired once `exp` <= now in seconds
            raise AppError(ErrorCode.TOKEN_EXPIRED)
        return claims

    def _decode(self, token: str) -> tuple[AccessClaims, int]:
        """PyJWT's full verification: the claims and the expiry time of a valid token."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self._keys.get(kid) if isinstance(kid, str) else None
            if key is None:
                raise AppError(ErrorCode.NOT_AUTHENTICATED, "invalid access token")
            payload = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": REQUIRED_CLAIMS},
            )
            claims = AccessClaims(
                user_id=int(payload["sub"]),
                role=str(payload["role"]),
                session_id=str(payload["sid"]),
            )
            return claims, int(payload["exp"])
        except jwt.ExpiredSignatureError:
            raise AppError(ErrorCode.TOKEN_EXPIRED) from None
        except (jwt.InvalidTokenError, ValueError):
            raise AppError(ErrorCode.NOT_AUTHENTICATED, "invalid access token") from None
