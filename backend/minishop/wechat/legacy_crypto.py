"""Decrypting wx.getUserInfo-style `encryptedData` (the legacy flow, before phone-number codes).

AES-128-CBC with the user's session_key as key, PKCS#7 padding; the plaintext is JSON whose
`watermark.appid` must be ours, or the data was produced for another mini-program.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


class EncryptedDataError(ValueError):
    """The data does not decrypt, is not JSON, or was not produced for our appid."""


def decrypt_encrypted_data(
    encrypted_data: str, iv: str, session_key: str, appid: str
) -> dict[str, Any]:
    try:
        key = base64.b64decode(session_key, validate=True)
        vector = base64.b64decode(iv, validate=True)
        ciphertext = base64.b64decode(encrypted_data, validate=True)
        decryptor = Cipher(algorithms.AES(key), modes.CBC(vector)).decryptor()
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        unpadder = padding.PKCS7(algorithms.AES.block_size).unpadder()
        data = json.loads(unpadder.update(padded) + unpadder.finalize())
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise EncryptedDataError("encryptedData does not decrypt") from exc
    if not isinstance(data, dict) or data.get("watermark", {}).get("appid") != appid:
        raise EncryptedDataError("encryptedData was made for another appid")
    return data
