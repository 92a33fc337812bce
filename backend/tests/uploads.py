"""Upload helpers for tests: small real images and a multipart POST /api/v1/files."""

from __future__ import annotations

import io
from typing import Any

from flask.testing import FlaskClient
from PIL import Image

from tests.conftest import bearer


def image_bytes(image_format: str = "PNG", size: tuple[int, int] = (16, 12), **save: Any) -> bytes:
    """A small real image (a red rectangle) in `image_format`."""
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, image_format, **save)
    return out.getvalue()


def upload(
    client: FlaskClient,
    data: dict[str, Any],
    content: bytes,
    filename: str = "photo.png",
    content_type: str | None = "image/png",
) -> Any:
    """POST /api/v1/files as the logged-in `data`, with one multipart part `file`."""
    part = (
        (io.BytesIO(content), filename, content_type)
        if content_type
        else (io.BytesIO(content), filename)
    )
    return client.post(
        "/api/v1/files",
        data={"file": part},
        headers=bearer(data),
        content_type="multipart/form-data",
    )
