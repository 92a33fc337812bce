"""The merchant's side of WeChat Pay v3, for tests: request signing, answer and notification
verification, and a local notify_url receiver."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from wechat_emulator.testing import PayKeys

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"


def _private_key(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _public_key(pem: str) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def rsa_sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa_verifies(key: rsa.RSAPublicKey, message: bytes, signature: str) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):  # binascii.Error is a ValueError
        return False
    return True


def decrypt(apiv3_key: str, resource: Mapping[str, str]) -> Any:
    plaintext = AESGCM(apiv3_key.encode()).decrypt(
        resource["nonce"].encode(),
        base64.b64decode(resource["ciphertext"]),
        resource["associated_data"].encode(),
    )
    return json.loads(plaintext)


class Merchant:
    """Calls /v3 the way a merchant SDK does: the exact body bytes signed and sent."""

    def __init__(self, base_url: str, http: requests.Session, keys: PayKeys) -> None:
        assert keys.merchant_private_key is not None, "the emulator did not generate the key"
        self.base_url = base_url
        self.http = http
        self.keys = keys
        self.private_key = _private_key(keys.merchant_private_key)
        self.platform_key = _public_key(keys.platform_public_key)

    def authorization(self, method: str, target: str, body: bytes, **overrides: str) -> str:
        fields = {
            "mchid": self.keys.mchid,
            "nonce_str": secrets.token_hex(16),
            "timestamp": str(int(time.time())),
            "serial_no": self.keys.merchant_serial,
        }
        fields |= {k: v for k, v in overrides.items() if k != "signature"}
        message = (
            f"{method}\n{target}\n{fields['timestamp']}\n{fields['nonce_str']}\n".encode()
            + body
            + b"\n"
        )
        fields["signature"] = overrides.get("signature") or rsa_sign(self.private_key, message)
        return SIGNATURE_TYPE + " " + ",".join(f'{k}="{v}"' for k, v in fields.items())

    def call(
        self,
        method: str,
        target: str,
        body: Any = None,
        *,
        authorization: str | None = None,
        **overrides: str,
    ) -> requests.Response:
        data = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        headers = {
            "Authorization": authorization or self.authorization(method, target, data, **overrides),
            "Accept": "application/json",
        }
        if body is not None:
            headers["Content-Type"] = "application/json"
        return self.http.request(
            method, f"{self.base_url}{target}", data=data or None, headers=headers, timeout=10
        )

    def verifies(self, headers: Mapping[str, str], body: bytes) -> bool:
        """The platform signature over a response or notification checks out."""
        message = f"{headers['Wechatpay-Timestamp']}\n{headers['Wechatpay-Nonce']}\n".encode()
        return rsa_verifies(
            self.platform_key, message + body + b"\n", headers["Wechatpay-Signature"]
        )

    def jsapi_body(self, out_trade_no: str, notify_url: str, total: int = 100, **extra: Any) -> Any:
        return {
            "appid": self.keys.appid,
            "mchid": self.keys.mchid,
            "description": "MiniShop 订单",
            "out_trade_no": out_trade_no,
            "notify_url": notify_url,
            "amount": {"total": total, "currency": "CNY"},
            "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
        } | extra

    def create(self, out_trade_no: str, notify_url: str, total: int = 100, **extra: Any) -> str:
        answer = self.call(
            "POST",
            "/v3/pay/transactions/jsapi",
            self.jsapi_body(out_trade_no, notify_url, total, **extra),
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["prepay_id"])

    def query(self, out_trade_no: str) -> requests.Response:
        return self.call(
            "GET", f"/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid={self.keys.mchid}"
        )
