from __future__ import annotations

import pytest

from minishop.security.crypto import DecryptionError, FieldCipher

KEY = "k" * 40


def test_round_trip_with_fresh_nonces() -> None:
    cipher = FieldCipher(KEY)
    first, second = (
        cipher.encrypt("13812341234", "users.phone"),
        cipher.encrypt("13812341234", "users.phone"),
    )
    assert first != second
    assert "13812341234" not in first
    assert cipher.decrypt(first, "users.phone") == "13812341234"


@pytest.mark.parametrize(
    ("token_of", "purpose", "key"),
    [
        (lambda t: t, "auth_sessions.sign_key", KEY),
        (lambda t: t, "users.phone", "another key of forty characters......"),
        (lambda t: t[:-4] + ("AAAA" if not t.endswith("AAAA") else "BBBB"), "users.phone", KEY),
        (lambda t: "v0:" + t.partition(":")[2], "users.phone", KEY),
        (lambda t: "v1:not base64!", "users.phone", KEY),
    ],
    ids=["other-purpose", "other-key", "tampered", "unknown-version", "garbage"],
)
def test_what_was_not_sealed_for_this_purpose_and_key_does_not_open(
    token_of: object, purpose: str, key: str
) -> None:
    token = FieldCipher(KEY).encrypt("13812341234", "users.phone")
    with pytest.raises(DecryptionError):
        FieldCipher(key).decrypt(token_of(token), purpose)  # type: ignore[operator]
