"""Uploads: check the bytes, store them under their content hash, record who uploaded them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from minishop.errors import AppError, ErrorCode
from minishop.extensions import db
from minishop.models import StoredFile, User
from minishop.security import uploads
from minishop.storage import blob_store


@dataclass(frozen=True)
class SignedFile:
    key: str
    url: str
    expires_at: datetime


def signed_file(key: str) -> SignedFile:
    """A download URL for `key` that works until FILE_URL_TTL_SECONDS from now."""
    config = current_app.config
    expires = int(time.time()) + config["FILE_URL_TTL_SECONDS"]
    signature = uploads.url_signature(config["FILE_URL_SECRET"], key, expires)
    base = config["CDN_BASE_URL"].rstrip("/")
    url = f"{base}/files/{key}?expires={expires}&signature={signature}"
    return SignedFile(key, url, datetime.fromtimestamp(expires, UTC))


def store_upload(user: User, data: bytes, filename: str, declared_type: str | None) -> SignedFile:
    """Every check runs before anything is written, so a refused upload leaves no trace.

    The same bytes uploaded twice (or by two workers at once) share one blob and one row: the
    unique key decides, and the loser of a concurrent insert keeps the winner's row.
    """
    clean = uploads.inspect_upload(
        data, filename, declared_type, current_app.config["UPLOAD_MAX_PIXELS"]
    )
    blob_store().put(clean.key, clean.data)
    if db.session.scalar(select(StoredFile.id).where(StoredFile.key == clean.key)) is None:
        try:
            with db.session.begin_nested():
                db.session.add(
                    StoredFile(
                        key=clean.key,
                        user_id=user.id,
                        content_type=clean.file_type.content_type,
                        size_bytes=len(clean.data),
                    )
                )
        except IntegrityError:
            pass
    db.session.commit()
    return signed_file(clean.key)


def open_signed(key: str, expires: int, signature: str) -> tuple[uploads.FileType, BinaryIO]:
    """The file behind a download URL: 403 when forged or expired, 404 when there is none."""
    config = current_app.config
    uploads.check_url_signature(config["FILE_URL_SECRET"], key, expires, signature, time.time())
    file_type = uploads.TYPE_BY_EXTENSION.get(key.rsplit(".", 1)[-1])
    try:
        if file_type is None:
            raise FileNotFoundError(key)
        return file_type, blob_store().open(key)
    except (FileNotFoundError, ValueError):
        raise AppError(ErrorCode.NOT_FOUND, "file not found") from None
