"""Encryption at rest for personal data and WeChat session keys: AES-256-GCM.

The key is derived from DATA_ENCRYPTION_KEY with HKDF, so any long random string works as the
secret. Each value is bound to its purpose (associated data), so a ciphertext copied from one
column into another does not decrypt.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = "v1"
NONCE_BYTES = 12


class DecryptionError(Exception):
    """The ciphertext was tampered with, or encrypted under another key or purpose."""


class FieldCipher:
    def __init__(self, secret: str) -> None:
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"minishop field encryption v1"
        ).derive(secret.encode())
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: str, purpose: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), purpose.encode())
        return f"{VERSION}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str, purpose: str) -> str:
        version, _, payload = token.partition(":")
        if version != VERSION:
            raise DecryptionError("unknown ciphertext version")
        try:
            raw = base64.b64decode(payload, validate=True)
            opened = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], purpose.encode())
        except (InvalidTag, ValueError) as exc:
            raise DecryptionError("ciphertext does not open") from exc
        return opened.decode()
