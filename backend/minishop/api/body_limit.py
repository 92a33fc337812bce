"""The app's request class: the body cap holds for a body sent without Content-Length too.

For a chunked body werkzeug caps the stream at `max_content_length` (MAX_CONTENT_LENGTH, or
UPLOAD_MAX_BYTES on uploads), but reading it whole (`get_data`, hence `get_json` and the
signature check) stopped quietly at the cap: a longer JSON body was cut short and answered
40001 ("not valid JSON") instead of 41300.
"""

from __future__ import annotations

from typing import IO, cast

import flask
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream


class CappedStream(LimitedStream):
    """A body of unknown length read up to `limit` bytes; a byte beyond them is a 413."""

    def __init__(self, source: IO[bytes], limit: int) -> None:
        super().__init__(source, limit, is_max=True)
        self.source = source

    def on_exhausted(self) -> None:
        """At the cap: 413 if the client sent more, else the body simply ends there."""
        try:
            more = self.source.read(1)
        except (OSError, ValueError) as exc:  # what LimitedStream treats as a broken body
            self.on_disconnect(error=exc)
            return
        if more:
            raise RequestEntityTooLarge()

    def readall(self) -> bytes:
        data = super().readall()
        if self.is_exhausted:
            self.on_exhausted()
        return data


class Request(flask.Request):
    @cached_property
    def stream(self) -> IO[bytes]:
        limit = self.max_content_length
        if (
            limit is None
            or self.content_length is not None
            or self.shallow
            or "wsgi.input_terminated" not in self.environ
        ):
            return super().stream
        return cast(IO[bytes], CappedStream(self.environ["wsgi.input"], limit))
