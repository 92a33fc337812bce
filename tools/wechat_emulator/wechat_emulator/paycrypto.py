"""WeChat Pay v3 cryptography: the keys, SHA256withRSA signatures and AEAD_AES_256_GCM.

No real key is ever needed or committed: each key the configuration does not name as a PEM file
is generated (RSA 2048) when the emulator starts, and lives only in memory.
"""

from __future__ import annotations

import base64
import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

from .config import PayConfig

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
CERTIFICATE_DAYS = 5 * 365


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_pem(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _read_public_key(path: str) -> rsa.RSAPublicKey:
    data = Path(path).read_bytes()
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        key = x509.load_pem_x509_certificate(data).public_key()  # a merchant certificate
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError(f"{path}: not an RSA public key")
    return key


def _read_private_key(path: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path}: not an RSA private key")
    return key


def sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    """SHA256withRSA (PKCS#1 v1.5), base64: every signature WeChat Pay v3 makes or checks."""
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def verify(key: rsa.RSAPublicKey, message: bytes, signature: str) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def aes_gcm_encrypt(key: str, nonce: str, associated_data: str, plaintext: bytes) -> str:
    """base64(ciphertext + 16-byte tag), as in notifications and /v3/certificates."""
    sealed = AESGCM(key.encode()).encrypt(nonce.encode(), plaintext, associated_data.encode())
    return base64.b64encode(sealed).decode()


def aes_gcm_decrypt(key: str, nonce: str, associated_data: str, ciphertext: str) -> bytes:
    """The inverse of aes_gcm_encrypt; raises ValueError for a wrong key or tampered data."""
    try:
        return AESGCM(key.encode()).decrypt(
            nonce.encode(), base64.b64decode(ciphertext), associated_data.encode()
        )
    except InvalidTag:
        raise ValueError("AES-GCM authentication failed") from None


def _certificate(key: rsa.RSAPrivateKey, serial: str, mchid: str) -> x509.Certificate:
    """A self-signed stand-in for the platform certificate, with the configured serial."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tenpay.com (wechat-emulator)"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"Tenpay.com Root CA emulated for {mchid}"),
        ]
    )
    start = datetime.datetime.now(datetime.UTC).replace(microsecond=0) - datetime.timedelta(days=1)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int(serial, 16))
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=CERTIFICATE_DAYS))
        .sign(key, hashes.SHA256())
    )


@dataclass(frozen=True)
class PayKeys:
    """The key material of one emulator process (fixed for its life; reset keeps it)."""

    merchant_public_key: rsa.RSAPublicKey
    # Only when the emulator generated the merchant key pair itself (a test-only convenience).
    merchant_private_key: rsa.RSAPrivateKey | None
    platform_private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @classmethod
    def load(cls, config: PayConfig) -> PayKeys:
        merchant_private: rsa.RSAPrivateKey | None = None
        if config.merchant_public_key_file:
            merchant_public = _read_public_key(config.merchant_public_key_file)
        else:
            merchant_private = new_rsa_key()
            merchant_public = merchant_private.public_key()
        platform = (
            _read_private_key(config.platform_private_key_file)
            if config.platform_private_key_file
            else new_rsa_key()
        )
        return cls(
            merchant_public_key=merchant_public,
            merchant_private_key=merchant_private,
            platform_private_key=platform,
            certificate=_certificate(platform, config.platform_serial, config.mchid),
        )

    @property
    def platform_public_pem(self) -> str:
        return public_pem(self.platform_private_key.public_key())

    @property
    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()
