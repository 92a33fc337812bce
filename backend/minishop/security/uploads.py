"""Upload checks: decide a file's type from its bytes, re-encode images to defuse them; signed URLs.

The client's file name and content type are claims; the bytes decide. The type is read from the
magic bytes (filetype) against an allowlist, then the claims must agree with it, so a PHP script
called `x.jpg` or a JPEG that is also a ZIP archive is refused (415). Images are opened by Pillow
under a pixel cap (a decompression bomb declares huge dimensions in a tiny file: 413) and
re-encoded, which drops metadata (EXIF, comments, text chunks) and anything appended after the
image. PDFs cannot be re-encoded here; they are checked for type and served as attachments.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import warnings
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime

import filetype
from PIL import Image, ImageOps

from minishop.errors import AppError, ErrorCode

GENERIC_CONTENT_TYPE = "application/octet-stream"
# Image.info keys that change how an image looks; everything else there is metadata.
KEPT_IMAGE_INFO = ("transparency", "duration", "loop", "background")


@dataclass(frozen=True)
class FileType:
    content_type: str
    extensions: tuple[str, ...]
    pillow_format: str | None  # None: stored as sent (not an image)

    @property
    def extension(self) -> str:
        return self.extensions[0]


ALLOWED_TYPES = {
    file_type.content_type: file_type
    for file_type in (
        FileType("image/jpeg", ("jpg", "jpeg"), "JPEG"),
        FileType("image/png", ("png",), "PNG"),
        FileType("image/webp", ("webp",), "WEBP"),
        FileType("image/gif", ("gif",), "GIF"),
        FileType("application/pdf", ("pdf",), None),
    )
}
TYPE_BY_EXTENSION = {
    extension: file_type
    for file_type in ALLOWED_TYPES.values()
    for extension in file_type.extensions
}


@dataclass(frozen=True)
class CleanFile:
    data: bytes
    file_type: FileType

    @property
    def key(self) -> str:
        """Content hash plus extension: equal files share a key, client names never matter."""
        return f"{hashlib.sha256(self.data).hexdigest()}.{self.file_type.extension}"


def _unsupported(reason: str) -> AppError:
    return AppError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, reason)


def _extension(filename: str) -> str:
    """The extension of the last path segment: `../../etc/passwd` has none."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[1].lower() if "." in name else ""


def _reencode(data: bytes, file_type: FileType, max_pixels: int) -> bytes:
    assert file_type.pillow_format is not None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[file_type.pillow_format]) as image:
                frames = getattr(image, "n_frames", 1)
                if image.width * image.height * frames > max_pixels:
                    raise AppError(ErrorCode.PAYLOAD_TOO_LARGE, "image has too many pixels")
                image.load()
                clean = ImageOps.exif_transpose(image) if frames == 1 else image
                clean.info = {k: v for k, v in clean.info.items() if k in KEPT_IMAGE_INFO}
                out = io.BytesIO()
                clean.save(out, format=file_type.pillow_format, save_all=frames > 1)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise AppError(ErrorCode.PAYLOAD_TOO_LARGE, "image has too many pixels") from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise _unsupported("image could not be decoded") from None
    return out.getvalue()


def inspect_upload(
    data: bytes, filename: str, declared_type: str | None, max_pixels: int
) -> CleanFile:
    """The file as it will be stored, or AppError: 40000 empty, 415 wrong type, 413 too big."""
    if not data:
        raise AppError(ErrorCode.INVALID_PARAMS, "file is empty")
    file_type = ALLOWED_TYPES.get(filetype.guess_mime(data) or "")
    if file_type is None:
        raise _unsupported("file type not allowed: JPEG, PNG, WebP, GIF or PDF")
    if TYPE_BY_EXTENSION.get(_extension(filename)) is not file_type:
        raise _unsupported("file name extension does not match the content")
    declared = (declared_type or "").split(";", 1)[0].strip().lower()
    if declared not in ("", GENERIC_CONTENT_TYPE, file_type.content_type):
        raise _unsupported("declared content type does not match the content")
    if zipfile.is_zipfile(io.BytesIO(data)):
        raise _unsupported("file is also a ZIP archive")
    if file_type.pillow_format is not None:
        data = _reencode(data, file_type, max_pixels)
    return CleanFile(data, file_type)


def url_signature(secret: str, key: str, expires: int) -> str:
    """HMAC-SHA256 over key and expiry, with FILE_URL_SECRET (never a session's key)."""
    message = f"{key}\n{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def check_url_signature(secret: str, key: str, expires: int, signature: str, now: float) -> None:
    """403 for a download URL that was not signed by us or has expired."""
    expected = url_signature(secret, key, expires)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise AppError(ErrorCode.FORBIDDEN, "invalid file URL signature")
    if expires < now:
        raise AppError(ErrorCode.FORBIDDEN, "file URL has expired")


@dataclass(frozen=True)
class SignedUrl:
    key: str
    url: str
    expires_at: datetime


class FileUrls:
    """Expiring download URLs `<base_url>/files/<key>?expires=...&signature=...`."""

    def __init__(self, secret: str, ttl_seconds: int, base_url: str) -> None:
        self._secret = secret
        self.ttl_seconds = ttl_seconds
        self.base_url = base_url.rstrip("/")

    def sign(self, key: str, now: float) -> SignedUrl:
        """A URL for `key` that works until `ttl_seconds` after `now`."""
        expires = int(now) + self.ttl_seconds
        signature = url_signature(self._secret, key, expires)
        url = f"{self.base_url}/files/{key}?expires={expires}&signature={signature}"
        return SignedUrl(key, url, datetime.fromtimestamp(expires, UTC))

    def check(self, key: str, expires: int, signature: str, now: float) -> None:
        check_url_signature(self._secret, key, expires, signature, now)
