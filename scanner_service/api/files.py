"""PDF downloads per RFC 9110: one byte range (206), unsatisfiable ranges (416), conditional GET with
If-None-Match (304, weak comparison), HEAD.

Starlette's FileResponse answers a malformed Range with 400 and sends several ranges as multipart. RFC 9110
(14.2) says a Range the server cannot or will not use is ignored: the full file then comes back with 200.
:class:`PdfResponse` decides on the Range header first and passes Starlette only one well-formed range.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Header, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from starlette.types import Receive, Scope, Send

from scanner_service.api.schemas import ErrorBody, error_responses

IfNoneMatch = Annotated[
    str | None, Header(max_length=1000, description='ETags ("…" or W/"…") or *: 304 if one matches')
]
RangeHeader = Annotated[
    str | None,
    Header(
        alias="Range",
        max_length=1000,
        description="bytes=first-last, bytes=first- or bytes=-suffix: one range (206); anything else is ignored",
    ),
]
"""Declared so the OpenAPI shows it; :class:`PdfResponse` reads it from the request itself."""

_RANGE_SPEC = re.compile(r"(?:([0-9]+)-([0-9]*)|-([0-9]+))")


@dataclass(frozen=True)
class Unsatisfiable:
    """A well-formed byte range that starts at or beyond the end of the file (or an empty suffix)."""

    size: int


def byte_range(header: str | None, size: int) -> tuple[int, int] | Unsatisfiable | None:
    """The one byte range ``header`` asks of a file of ``size`` bytes, as (first, last) inclusive.

    None when the header is to be ignored (RFC 9110 14.2): absent, not of the ``bytes=`` unit, not of
    the grammar (``bytes=5-2``, garbage), or several ranges (the full file is a correct answer to those).
    """
    if header is None:
        return None
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    specs = [s.strip() for s in spec.split(",")]
    if len(specs) != 1:
        return None
    match = _RANGE_SPEC.fullmatch(specs[0])
    if match is None:
        return None
    first, last, suffix = match.groups()
    if suffix is not None:
        length = int(suffix)
        if length == 0:
            return Unsatisfiable(size)
        return (max(size - length, 0), size - 1) if size else Unsatisfiable(size)
    start = int(first)
    if last and int(last) < start:
        return None  # "An int-range is invalid if the last-pos value is present and less than the first-pos"
    if start >= size:
        return Unsatisfiable(size)
    end = min(int(last), size - 1) if last else size - 1
    return (start, end)


def _tags(header: str) -> list[str]:
    """The entity tags of an If-None-Match list, opaque parts only (weak comparison ignores ``W/``)."""
    return [t.strip().removeprefix("W/") for t in header.split(",") if t.strip()]


def not_modified(if_none_match: str | None, etag: str) -> bool:
    """Whether If-None-Match matches the current ETag (RFC 9110 13.1.2: weak comparison; ``*`` matches
    any current representation)."""
    if not if_none_match:
        return False
    tags = _tags(if_none_match)
    return "*" in tags or etag.removeprefix("W/") in tags


class PdfResponse(FileResponse):
    """A file answered with at most one byte range; an unsatisfiable one gets 416 with ``bytes */size``."""

    def __init__(
        self,
        path: Path,
        status_code: int = 200,  # FastAPI reads the default for the OpenAPI
        *,
        etag: str,
        filename: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.etag = etag
        super().__init__(
            path,
            status_code=status_code,
            media_type="application/pdf",
            filename=filename,
            headers={"ETag": etag, **(headers or {})},
            stat_result=os.stat(path),  # Content-Length on HEAD too, and the size the range is checked against
        )

    def _if_range_holds(self, if_range: str | None) -> bool:
        # RFC 9110 13.1.5: a strong ETag or the exact Last-Modified date; anything else sends the whole file.
        return if_range is None or (
            not if_range.startswith("W/") and if_range in (self.etag, self.headers.get("last-modified"))
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"range", b"if-range")]
        raw = dict(scope["headers"])
        asked = raw[b"range"].decode("latin-1") if b"range" in raw else None
        if_range = raw[b"if-range"].decode("latin-1") if b"if-range" in raw else None
        size = self.stat_result.st_size if self.stat_result else os.stat(self.path).st_size
        wanted = byte_range(asked, size) if asked is not None and self._if_range_holds(if_range) else None
        if isinstance(wanted, Unsatisfiable):
            body = ErrorBody(
                error="range_not_satisfiable",
                detail=f"The range {asked!r} starts beyond the file's {wanted.size} bytes.",
            )
            response = JSONResponse(
                body.model_dump(exclude_none=True),
                status_code=416,
                headers={"Content-Range": f"bytes */{wanted.size}", "ETag": self.etag, "Accept-Ranges": "bytes"},
            )
            await response(scope, receive, send)
            return
        if wanted is not None:
            headers.append((b"range", f"bytes={wanted[0]}-{wanted[1]}".encode("latin-1")))
        await super().__call__({**scope, "headers": headers}, receive, send)


def is_head(request: Request) -> bool:
    """A HEAD request: answered like GET, without the body (and not written to the access log)."""
    return request.method == "HEAD"


def pdf_responses(*errors: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses=`` of a PDF download."""
    return {
        200: {"content": {"application/pdf": {}}, "description": "The whole PDF (also when Range is ignored)"},
        206: {"content": {"application/pdf": {}}, "description": "The one byte range asked for"},
        304: {"description": "Not modified: If-None-Match matched the ETag (weak comparison)"},
        **error_responses(416, *errors),
    }


def not_modified_response(etag: str, headers: dict[str, str] | None = None) -> Response:
    """304 with the ETag (and the cache headers a 200 would have had)."""
    return Response(status_code=304, headers={"ETag": etag, **(headers or {})})
