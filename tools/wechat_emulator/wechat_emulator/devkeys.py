"""`python -m wechat_emulator.devkeys DIR`: key pairs for a local merchant and the emulator.

Writes, once (existing files are kept), the merchant's key pair (apiclient_key.pem,
apiclient_pub.pem) and the emulator's platform key pair (platform_key.pem, platform_pub.pem),
so `make run` can give the backend and the emulator matching keys that survive restarts. They
are throwaway development keys, never a real merchant's.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .paycrypto import new_rsa_key, private_pem, public_pem

KEY_PAIRS = (("apiclient_key.pem", "apiclient_pub.pem"), ("platform_key.pem", "platform_pub.pem"))


def write_dev_keys(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for private_name, public_name in KEY_PAIRS:
        private_path, public_path = folder / private_name, folder / public_name
        if private_path.exists() and public_path.exists():
            continue
        key = new_rsa_key()
        private_path.write_text(private_pem(key))
        private_path.chmod(0o600)
        public_path.write_text(public_pem(key.public_key()))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m wechat_emulator.devkeys DIR")
    write_dev_keys(Path(sys.argv[1]))
