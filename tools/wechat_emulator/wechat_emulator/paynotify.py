"""Pay notifications: encrypt, sign and POST them to the merchant's notify_url, retrying.

Each delivery runs in its own daemon thread. A non-2xx answer or a connection error is retried
on WeChat's schedule (times the run-time `retry_scale`); reset cancels every delivery still
waiting. Every attempt is recorded under /__emulator/calls as api `pay_notify`.
"""

from __future__ import annotations

import json
import secrets
import string
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

from .paycrypto import SIGNATURE_TYPE, aes_gcm_encrypt, sign
from .state import State

# WeChat's retry schedule after a failed delivery, in seconds (15 retries in all).
RETRY_SCHEDULE = (
    15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600
)  # fmt: skip
TIMEOUT_SECONDS = 5
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_NONCE_ALPHABET = string.ascii_uppercase + string.digits


def new_nonce() -> str:
    return "".join(secrets.choice(_NONCE_ALPHABET) for _ in range(32))


def signed_headers(state: State, body: bytes, *, corrupt: bool = False) -> dict[str, str]:
    """The five Wechatpay-* headers over `body` (answers and notifications alike)."""
    timestamp, nonce = str(int(time.time())), new_nonce()
    message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
    signature = sign(state.pay_keys.platform_private_key, message)
    if corrupt:
        signature = sign(state.pay_keys.platform_private_key, message + b"corrupted")
    with state.lock:
        mode = state.pay.serial_mode
    config = state.config.pay
    serial = config.public_key_id if mode == "public_key" else config.platform_serial
    return {
        "Wechatpay-Timestamp": timestamp,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": signature,
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature-Type": SIGNATURE_TYPE,
    }


@dataclass(frozen=True)
class Notification:
    """One event, encrypted and serialised once: every copy and retry sends these bytes."""

    id: str
    url: str
    event_type: str
    body: bytes


def build(
    state: State,
    url: str,
    event_type: str,
    summary: str,
    original_type: str,
    plaintext: dict[str, Any],
    create_time: str,
) -> Notification:
    config = state.config.pay
    nonce = secrets.token_urlsafe(9)[:12]
    associated_data = original_type
    ciphertext = aes_gcm_encrypt(
        config.apiv3_key,
        nonce,
        associated_data,
        json.dumps(plaintext, ensure_ascii=False, separators=(",", ":")).encode(),
    )
    notification_id = str(uuid.uuid4())
    envelope = {
        "id": notification_id,
        "create_time": create_time,
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": summary,
        "resource": {
            "original_type": original_type,
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": ciphertext,
            "associated_data": associated_data,
            "nonce": nonce,
        },
    }
    body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()
    return Notification(id=notification_id, url=url, event_type=event_type, body=body)


def send(
    state: State,
    notification: Notification,
    *,
    copies: int = 1,
    delay_seconds: float = 0.0,
    corrupt_signature: bool = False,
) -> None:
    """Start `copies` concurrent deliveries of the same notification."""
    with state.lock:
        cancelled = state.pay.cancelled
    for copy in range(copies):
        threading.Thread(
            target=_deliver,
            args=(state, notification, cancelled, delay_seconds, corrupt_signature, copy),
            name=f"pay-notify-{notification.id}-{copy}",
            daemon=True,
        ).start()


def _retry_scale(state: State) -> float:
    with state.lock:
        return state.pay.retry_scale


def _deliver(
    state: State,
    notification: Notification,
    cancelled: threading.Event,
    delay_seconds: float,
    corrupt_signature: bool,
    copy: int,
) -> None:
    if cancelled.wait(delay_seconds):
        return
    for attempt in range(1, len(RETRY_SCHEDULE) + 2):
        headers = signed_headers(state, notification.body, corrupt=corrupt_signature)
        status, error = _post(notification, headers)
        with state.lock:
            if cancelled.is_set():
                return
            state.calls.append(
                {
                    "api": "pay_notify",
                    "method": "POST",
                    "path": notification.url,
                    "url": notification.url,
                    "notification_id": notification.id,
                    "event_type": notification.event_type,
                    "copy": copy,
                    "attempt": attempt,
                    "timestamp": state.clock.now(),
                    "status": status,
                    "error": error,
                }
            )
        if status is not None and 200 <= status < 300:
            return
        if attempt > len(RETRY_SCHEDULE):
            return
        if cancelled.wait(RETRY_SCHEDULE[attempt - 1] * _retry_scale(state)):
            return


def _post(notification: Notification, headers: dict[str, str]) -> tuple[int | None, str | None]:
    request = urllib.request.Request(  # noqa: S310 (the merchant's own notify_url)
        notification.url, data=notification.body, method="POST"
    )
    request.add_header("Content-Type", "application/json")
    request.add_header("User-Agent", "Mozilla/4.0 (wechat-emulator pay notify)")
    for name, value in headers.items():
        request.add_header(name, value)
    started = time.monotonic()
    try:
        with _OPENER.open(request, timeout=TIMEOUT_SECONDS) as response:
            response.read()
            return int(response.status), None
    except urllib.error.HTTPError as error:
        return error.code, None
    except (OSError, ValueError) as error:
        elapsed = time.monotonic() - started
        return None, f"{type(error).__name__}: {error} after {elapsed:.1f} s"
