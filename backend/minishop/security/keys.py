"""The token signer and field cipher of the running app, built once from its settings."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask, current_app

from minishop.security.crypto import FieldCipher
from minishop.security.tokens import TokenSigner


def init_app(app: Flask) -> None:
    config = app.config
    previous = [s.strip() for s in config["JWT_PREVIOUS_SECRETS"].split(",") if s.strip()]
    app.extensions["token_signer"] = TokenSigner(
        config["JWT_SECRET"],
        previous,
        issuer=config["JWT_ISSUER"],
        audience=config["JWT_AUDIENCE"],
        ttl=timedelta(seconds=config["ACCESS_TOKEN_TTL_SECONDS"]),
    )
    app.extensions["field_cipher"] = FieldCipher(config["DATA_ENCRYPTION_KEY"])


def token_signer() -> TokenSigner:
    signer: TokenSigner = current_app.extensions["token_signer"]
    return signer


def field_cipher() -> FieldCipher:
    cipher: FieldCipher = current_app.extensions["field_cipher"]
    return cipher
