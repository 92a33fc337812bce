"""Uploads and signed downloads, including the hostile uploads that must leave nothing stored."""

from __future__ import annotations

import hashlib
import io
import struct
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient
from PIL import Image
from sqlalchemy import func, select

from minishop.extensions import db
from minishop.models import StoredFile
from minishop.security.uploads import url_signature
from tests.conftest import ClientWith, bearer
from tests.test_errors import assert_envelope
from tests.uploads import image_bytes, upload

LogIn = Callable[..., dict[str, Any]]
PAYLOAD = b"<?php system($_GET['c']); ?>"
SECRET = "dev-only-file-url-secret-never-use-in-production"


@pytest.fixture()
def files_client(client_with: ClientWith) -> FlaskClient:
    return client_with(CDN_BASE_URL="https://cdn.example.com/", UPLOAD_MAX_BYTES=64 * 1024)


def stored_files(upload_dir: Path) -> list[Path]:
    return [path for path in upload_dir.rglob("*") if path.is_file()] if upload_dir.exists() else []


def row_count() -> int:
    db.session.rollback()
    return int(db.session.scalar(select(func.count()).select_from(StoredFile)) or 0)


def download_path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` pixels (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def jpeg_zip_polyglot() -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("shell.php", PAYLOAD)
    return image_bytes("JPEG") + archive.getvalue()


def test_an_image_is_stored_under_its_hash_and_served_through_a_signed_url(
    files_client: FlaskClient, log_in: LogIn, upload_dir: Path
) -> None:
    data = log_in()
    response = upload(files_client, data, image_bytes("PNG"), filename="My Photo.PNG")
    out = assert_envelope(response, 201, 0)["data"]
    assert set(out) == {"key", "url", "expires_at"}
    (stored,) = stored_files(upload_dir)
    content = stored.read_bytes()
    assert out["key"] == f"{hashlib.sha256(content).hexdigest()}.png" == stored.name
    assert out["url"].startswith(f"https://cdn.example.com/files/{out['key']}?expires=")
    row = db.session.scalars(select(StoredFile)).one()
    assert (row.key, row.user_id, row.content_type, row.size_bytes) == (
        out["key"],
        data["user"]["id"],
        "image/png",
        len(content),
    )

    served = files_client.get(download_path(out["url"]))
    assert served.status_code == 200
    assert served.data == content
    assert served.mimetype == "image/png"
    assert served.headers["Content-Disposition"] == f"inline; filename={out['key']}"
    assert served.headers["X-Content-Type-Options"] == "nosniff"


def test_metadata_and_appended_bytes_are_dropped(
    files_client: FlaskClient, log_in: LogIn, upload_dir: Path
) -> None:
    exif = Image.Exif()
    exif[0x010E] = PAYLOAD.decode()  # ImageDescription
    jpeg = image_bytes("JPEG", comment=PAYLOAD, exif=exif.tobytes()) + PAYLOAD
    response = upload(files_client, log_in(), jpeg, filename="a.jpeg", content_type="image/jpeg")
    assert_envelope(response, 201, 0)
    (stored,) = stored_files(upload_dir)
    assert PAYLOAD not in stored.read_bytes()
    assert Image.open(stored).format == "JPEG"


def test_a_pdf_is_kept_as_sent_and_downloaded_as_an_attachment(
    files_client: FlaskClient, log_in: LogIn
) -> None:
    pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    response = upload(files_client, log_in(), pdf, "invoice.pdf", "application/pdf")
    out = assert_envelope(response, 201, 0)["data"]
    served = files_client.get(download_path(out["url"]))
    assert served.data == pdf
    assert served.mimetype == "application/pdf"
    assert served.headers["Content-Disposition"].startswith("attachment;")


def test_the_same_bytes_twice_share_one_key_and_one_row(
    files_client: FlaskClient, log_in: LogIn, upload_dir: Path
) -> None:
    data = log_in()
    keys = {
        assert_envelope(upload(files_client, data, image_bytes(), name), 201, 0)["data"]["key"]
        for name in ("a.png", "b.png")
    }
    assert len(keys) == 1
    assert len(stored_files(upload_dir)) == 1
    assert row_count() == 1


@pytest.mark.parametrize(
    ("content", "filename", "content_type", "status", "code"),
    [
        (PAYLOAD, "shell.jpg", "image/jpeg", 415, 41500),
        (jpeg_zip_polyglot(), "holiday.jpg", "image/jpeg", 415, 41500),
        (png_declaring(100_000, 100_000), "bomb.png", "image/png", 413, 41300),
        (png_declaring(8_000, 8_000), "big.png", "image/png", 413, 41300),
        (image_bytes(), "../../etc/passwd", "image/png", 415, 41500),
        (b"", "empty.png", "image/png", 400, 40000),
        (image_bytes(), "photo.jpg", "image/png", 415, 41500),
        (image_bytes(), "photo.png", "image/gif", 415, 41500),
        (image_bytes()[:40], "cut.png", "image/png", 415, 41500),
        (b"<svg onload=alert(1)>", "x.svg", "image/svg+xml", 415, 41500),
    ],
    ids=[
        "php-named-jpg",
        "jpeg-zip-polyglot",
        "png-100000x100000",
        "png-over-pixel-cap",
        "path-traversal-name",
        "empty-file",
        "extension-mismatch",
        "content-type-mismatch",
        "truncated-image",
        "svg",
    ],
)
def test_hostile_uploads_get_their_code_and_leave_nothing_stored(
    files_client: FlaskClient,
    log_in: LogIn,
    upload_dir: Path,
    content: bytes,
    filename: str,
    content_type: str,
    status: int,
    code: int,
) -> None:
    response = upload(files_client, log_in(), content, filename, content_type)
    assert_envelope(response, status, code)
    assert stored_files(upload_dir) == []
    assert row_count() == 0


def test_a_body_over_the_limit_is_refused_before_it_is_read(
    files_client: FlaskClient, log_in: LogIn, upload_dir: Path
) -> None:
    data = log_in()
    body = b"x" * (64 * 1024 + 1)
    response = files_client.post(
        "/api/v1/files",
        data=body,
        headers=bearer(data),
        content_type="multipart/form-data; boundary=b",
    )
    assert_envelope(response, 413, 41300)
    assert stored_files(upload_dir) == []


def test_a_truncated_multipart_body_is_40000(
    files_client: FlaskClient, log_in: LogIn, upload_dir: Path
) -> None:
    head = (
        b"--xyz\r\n"
        b'Content-Disposition: form-data; name="file"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n"
    )
    body = head + image_bytes()[:30]  # no closing boundary
    response = files_client.post(
        "/api/v1/files",
        data=body,
        headers=bearer(log_in()),
        content_type="multipart/form-data; boundary=xyz",
    )
    assert_envelope(response, 400, 40000)
    assert stored_files(upload_dir) == []
    assert row_count() == 0


@pytest.mark.parametrize(
    "form",
    [{}, {"file": "not a file part"}, {"other": (io.BytesIO(b"x"), "a.png")}],
    ids=["no-part", "text-field", "wrong-name"],
)
def test_a_missing_file_part_is_40000(
    files_client: FlaskClient, log_in: LogIn, form: dict[str, Any]
) -> None:
    response = files_client.post(
        "/api/v1/files", data=form, headers=bearer(log_in()), content_type="multipart/form-data"
    )
    assert_envelope(response, 400, 40000)


def test_uploading_needs_a_login(files_client: FlaskClient) -> None:
    response = files_client.post("/api/v1/files", data={"file": (io.BytesIO(b"x"), "a.png")})
    assert_envelope(response, 401, 40100)


def test_forged_expired_and_unknown_download_urls(files_client: FlaskClient, log_in: LogIn) -> None:
    out = assert_envelope(upload(files_client, log_in(), image_bytes()), 201, 0)["data"]
    key = out["key"]
    query = parse_qs(urlsplit(out["url"]).query)
    expires = int(query["expires"][0])

    forged = files_client.get(f"/files/{key}?expires={expires}&signature={'0' * 64}")
    assert_envelope(forged, 403, 40300)
    extended = files_client.get(
        f"/files/{key}?expires={expires + 3600}&signature={query['signature'][0]}"
    )
    assert_envelope(extended, 403, 40300)
    past = int(time.time()) - 1
    expired = files_client.get(
        f"/files/{key}?expires={past}&signature={url_signature(SECRET, key, past)}"
    )
    assert_envelope(expired, 403, 40300)
    other = "f" * 64 + ".png"
    unknown = files_client.get(
        f"/files/{other}?expires={expires}&signature={url_signature(SECRET, other, expires)}"
    )
    assert_envelope(unknown, 404, 40400)
    assert_envelope(files_client.get(f"/files/{key}"), 400, 40000)
    traversal = files_client.get("/files/..%2F..%2Fetc%2Fpasswd?expires=1&signature=a")
    assert_envelope(traversal, 404, 40400)
