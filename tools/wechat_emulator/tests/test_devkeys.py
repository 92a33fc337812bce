"""`python -m wechat_emulator.devkeys`: the key pairs `make run` hands to the backend and us."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from wechat_emulator.devkeys import KEY_PAIRS, write_dev_keys


def test_writes_matching_key_pairs_once_and_keeps_them(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    write_dev_keys(folder)
    written = {path.name: path.read_bytes() for path in folder.iterdir()}
    assert set(written) == {name for pair in KEY_PAIRS for name in pair}
    for private_name, public_name in KEY_PAIRS:
        private = serialization.load_pem_private_key(written[private_name], password=None)
        assert isinstance(private, rsa.RSAPrivateKey) and private.key_size == 2048
        public = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        assert public == written[public_name]
        assert (folder / private_name).stat().st_mode & 0o077 == 0

    write_dev_keys(folder)
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == written


def test_needs_exactly_one_folder() -> None:
    answer = subprocess.run(
        [sys.executable, "-m", "wechat_emulator.devkeys"], capture_output=True, text=True
    )
    assert answer.returncode != 0 and "usage" in answer.stderr
