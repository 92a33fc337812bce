"""Uploads (multipart `file`, logged in) and downloads through expiring signed URLs."""

from __future__ import annotations

import time
from datetime import datetime

from flask import Response, request, send_file
from flask_openapi3 import APIBlueprint, FileStorage, Tag
from pydantic import BaseModel, Field, field_validator
from werkzeug.datastructures import FileStorage as UploadedFile

from minishop import extensions
from minishop.api.common import StrictBody
from minishop.api.guards import BEARER_SECURITY, current_principal, login_required
from minishop.domain import files
from minishop.envelope import Envelope, ok
from minishop.security.rate_limits import per_user
from minishop.security.uploads import ALLOWED_TYPES, TYPE_BY_EXTENSION

bp = APIBlueprint("files", __name__, abp_tags=[Tag(name="files")])

KEY_PATTERN = rf"^[0-9a-f]{{64}}\.({'|'.join(TYPE_BY_EXTENSION)})$"


class UploadForm(StrictBody):
    file: FileStorage = Field(
        description="JPEG, PNG, WebP, GIF or PDF", json_schema_extra={"minLength": 1}
    )

    @field_validator("file", mode="before")
    @classmethod
    def must_be_a_file(cls, value: object) -> object:
        """flask-openapi3 hands over a plain form field of the same name as it is."""
        if not isinstance(value, UploadedFile):
            raise ValueError("must be a file part")
        return value


class UploadOut(BaseModel):
    key: str
    url: str = Field(description="expiring signed download URL")
    expires_at: datetime


class FilePath(BaseModel):
    key: str = Field(pattern=KEY_PATTERN, max_length=80)


class FileQuery(BaseModel):
    expires: int = Field(ge=0, le=2**40, description="unix seconds")
    signature: str = Field(max_length=64)


DOWNLOAD_RESPONSE = {
    "description": "the file",
    "content": {content_type: {} for content_type in ALLOWED_TYPES},
}


@bp.before_request
def _cap_upload_body() -> None:
    """The cap applies before a byte of the body is read: werkzeug checks Content-Length."""
    if request.endpoint == "files.upload":
        request.max_content_length = extensions.settings.get().UPLOAD_MAX_BYTES


@bp.post("/api/v1/files", responses={201: Envelope[UploadOut]}, security=BEARER_SECURITY)
@login_required
@per_user("RATELIMIT_UPLOADS")
def upload(form: UploadForm) -> Response:
    uploaded = form.file
    stored = files.store_upload(
        extensions.session(),
        extensions.blob_store.get(),
        extensions.file_urls.get(),
        user=current_principal().user,
        data=uploaded.stream.read(),
        filename=uploaded.filename or "",
        declared_type=uploaded.content_type,
        max_pixels=extensions.settings.get().UPLOAD_MAX_PIXELS,
        now=time.time(),
    )
    return ok(UploadOut(key=stored.key, url=stored.url, expires_at=stored.expires_at), 201)


@bp.get("/files/<key>", responses={200: DOWNLOAD_RESPONSE})
def download(path: FilePath, query: FileQuery) -> Response:
    file_type, stream = files.open_signed(
        extensions.blob_store.get(),
        extensions.file_urls.get(),
        path.key,
        query.expires,
        query.signature,
        time.time(),
    )
    return send_file(
        stream,
        mimetype=file_type.content_type,
        as_attachment=file_type.pillow_format is None,
        download_name=path.key,
        etag=path.key,
        max_age=max(0, query.expires - int(time.time())),
    )
