"""Where uploaded files live, behind a small interface so an S3-compatible backend can replace it.

Keys are content hashes (see security/uploads.py), so a write is idempotent: storing a key that
already exists changes nothing, and two workers storing the same file at once both succeed.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO, Protocol

KEY_PATTERN = re.compile(r"[0-9a-f]{64}\.[a-z]{3,4}")


class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...

    def open(self, key: str) -> BinaryIO:
        """The stored bytes; FileNotFoundError when there are none."""
        ...


class LocalBlobStore:
    """Files under `root/<first two hex digits>/<key>`, written atomically (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        if not KEY_PATTERN.fullmatch(key):
            raise ValueError("not a storage key")
        return self.root / key[:2] / key

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as temp:
                temp.write(data)
            os.replace(temp_name, path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise

    def open(self, key: str) -> BinaryIO:
        return self._path(key).open("rb")
