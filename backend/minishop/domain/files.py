"""Uploads: check the bytes, store them under their content hash, record who uploaded them."""

from __future__ import annotations

from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from minishop.errors import AppError, ErrorCode
from minishop.models import StoredFile, User
from minishop.security import uploads
from minishop.security.uploads import FileUrls, SignedUrl
from minishop.storage import BlobStore


def store_upload(
    session: Session,
    blobs: BlobStore,
    urls: FileUrls,
    *,
    user: User,
    data: bytes,
    filename: str,
    declared_type: str | None,
    max_pixels: int,
    now: float,
) -> SignedUrl:
    """Every check runs before anything is written, so a refused upload leaves no trace.

    The same bytes uploaded twice (or by two workers at once) share one blob and one row: the
    unique key decides, and the loser of a concurrent insert keeps the winner's row.
    """
    clean = uploads.inspect_upload(data, filename, declared_type, max_pixels)
    blobs.put(clean.key, clean.data)
    if session.scalar(select(StoredFile.id).where(StoredFile.key == clean.key)) is None:
        try:
            with session.begin_nested():
                session.add(
                    StoredFile(
                        key=clean.key,
                        user_id=user.id,
                        content_type=clean.file_type.content_type,
                        size_bytes=len(clean.data),
                    )
                )
        except IntegrityError:
            pass
    session.commit()
    return urls.sign(clean.key, now)


def open_signed(
    blobs: BlobStore, urls: FileUrls, key: str, expires: int, signature: str, now: float
) -> tuple[uploads.FileType, BinaryIO]:
    """The file behind a download URL: 403 when forged or expired, 404 when there is none."""
    urls.check(key, expires, signature, now)
    file_type = uploads.TYPE_BY_EXTENSION.get(key.rsplit(".", 1)[-1])
    try:
        if file_type is None:
            raise FileNotFoundError(key)
        return file_type, blobs.open(key)
    except (FileNotFoundError, ValueError):
        raise AppError(ErrorCode.NOT_FOUND, "file not found") from None
