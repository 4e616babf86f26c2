"""Byte ranges of immutable audio (RFC 9110, section 14): a speaker on a weak link resumes a
download where it broke off. One range per request; anything this does not understand is
answered with the whole body, as the RFC allows."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from fastapi import Response
from fastapi.responses import JSONResponse

_ONE_RANGE: Final = re.compile(r"^bytes=(\d*)-(\d*)$")


class Unsatisfiable(Exception):
    """The range lies wholly past the end of the body."""


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # inclusive, as in Content-Range

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one range `header` asks for within `size` bytes; None for the whole body."""
    if header is None:
        return None
    match = _ONE_RANGE.fullmatch(header.strip().replace(" ", ""))
    if match is None:
        return None  # several ranges, another unit, or garbage: the whole body
    first, last = match[1], match[2]
    if not first and not last:
        return None
    if not first:  # the last N bytes
        length = int(last)
        if length == 0:
            raise Unsatisfiable
        return ByteRange(max(0, size - length), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # invalid: the whole body
    if start >= size:
        raise Unsatisfiable
    return ByteRange(start, min(end, size - 1))


def ranged_response(
    data: bytes,
    *,
    media_type: str,
    etag: str,
    range_header: str | None,
    if_range: str | None,
    head: bool,
    headers: dict[str, str],
) -> Response:
    """200 with the whole body, 206 with one range, or 416; HEAD gets the same headers."""
    size = len(data)
    common = {**headers, "ETag": etag, "Accept-Ranges": "bytes"}
    # If-Range names the version the client holds; another one gets the whole new body.
    wanted = range_header if if_range is None or if_range.strip() == etag else None
    try:
        part = parse_range(wanted, size)
    except Unsatisfiable:
        return JSONResponse(
            {
                "error": "range_not_satisfiable",
                "detail": "요청한 범위가 오디오 밖입니다. / The range lies outside the audio.",
            },
            status_code=416,
            headers={**common, "Content-Range": f"bytes */{size}"},
        )
    if part is None:
        body, status = data, 200
    else:
        body, status = data[part.start : part.end + 1], 206
        common["Content-Range"] = part.content_range(size)
    common["Content-Length"] = str(len(body))
    return Response(
        b"" if head else body, status_code=status, media_type=media_type, headers=common
    )
