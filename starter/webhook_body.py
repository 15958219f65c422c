"""Reading a webhook body that may be far larger than what the receiver needs from it.

A delivery only names a record (the receiver re-fetches the record itself), yet WooCommerce
sends the whole order: a 10,000-line order is about 3.2 MB of JSON. The signature is computed
over the raw bytes as they arrive (the connector's ``signature_check``), and a body larger
than ``keep_whole`` is not held: :class:`JsonSkeleton` keeps the document with every array
emptied (``"line_items": []``), which still holds the ids, topics and member names that
``parse_webhook`` reads, in a bounded amount of memory.
"""
from __future__ import annotations

import asyncio
import re
from typing import Any

from starlette.requests import Request

# Skips whole strings and other bytes at C speed, stopping at the next bracket or at a
# string that does not end in this chunk; and the rest of a string (up to its closing quote).
_NEXT = re.compile(rb'(?:[^"\[\]{}]++|"(?:[^"\\]++|\\.)*+")*+([\[\]{}"])', re.DOTALL)
_STRING_REST = re.compile(rb'(?:[^"\\]++|\\.)*+', re.DOTALL)


class Oversize(Exception):
    """The body is larger than the limit (read no further)."""


class SlowBody(Exception):
    """The body did not arrive within the time allowed (read no further)."""


def refuse_declared_oversize(request: Request, limit: int) -> None:
    """Oversize before reading, when the request's Content-Length already says so."""
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise Oversize


class JsonSkeleton:
    """A streaming reduction of a JSON text to its skeleton: every byte outside arrays is
    kept (objects, their member names and scalar values), the contents of every array are
    dropped. Linear, chunk boundaries anywhere (inside strings and escapes too); it parses
    nothing, so a malformed body still fails where the skeleton is parsed. ``max_depth``
    counts the nesting of the whole text, arrays' contents included; past ``limit`` kept
    bytes the skeleton is abandoned (``overflow``)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.overflow = limit, False
        self.max_depth = 0
        self._out = bytearray()
        self._depth = 0  # open arrays and objects
        self._drop_at = 0  # depth of the outermost open array (0: keeping)
        self._in_string = self._escaped = False

    def feed(self, chunk: bytes) -> None:
        if self.overflow:
            return
        keep_from = 0 if not self._drop_at else None
        pos = self._string_end(chunk, 0) if self._in_string else 0
        while pos < len(chunk) and (match := _NEXT.match(chunk, pos)):
            at, pos = match.start(1), match.end()
            byte = chunk[at]
            if byte == 0x22:  # a string that goes on in the next chunk
                self._in_string = True
                pos = self._string_end(chunk, pos)
            elif byte in (0x5B, 0x7B):  # [ {
                self._depth += 1
                self.max_depth = max(self.max_depth, self._depth)
                if byte == 0x5B and not self._drop_at:
                    self._out += chunk[keep_from:at + 1]
                    keep_from, self._drop_at = None, self._depth
            else:  # ] }
                if self._drop_at and self._depth == self._drop_at:
                    self._drop_at, keep_from = 0, at
                self._depth -= 1
        if keep_from is not None:
            self._out += chunk[keep_from:]
        if len(self._out) > self.limit:
            self.overflow, self._out = True, bytearray()

    def _string_end(self, chunk: bytes, pos: int) -> int:
        """Inside a string from ``pos``: where it ends, or the chunk's end (still inside)."""
        if self._escaped:
            if pos >= len(chunk):
                return pos
            self._escaped, pos = False, pos + 1
        end = _STRING_REST.match(chunk, pos).end()
        if end == len(chunk):
            return end
        if chunk[end] == 0x22:
            self._in_string = False
            return end + 1
        self._escaped = True  # a backslash ends the chunk: it escapes the next one's first byte
        return len(chunk)

    def text(self) -> bytes:
        return bytes(self._out)


class StreamedBody:
    """What was read of a delivery: the whole body when it is small, else its skeleton."""

    def __init__(self, body: bytes, *, whole: bool, max_depth: int | None = None,
                 overflow: bool = False, size: int = 0) -> None:
        self.body, self.whole, self.max_depth, self.overflow, self.size = \
            body, whole, max_depth, overflow, size


async def read_streamed(request: Request, check: Any, *, limit: int, keep_whole: int,
                        timeout: float | None, skeleton_limit: int | None = None) -> StreamedBody:
    """Read the body within ``timeout`` seconds and ``limit`` bytes, feeding every chunk to
    the signature ``check`` (``update(chunk)``). Up to ``keep_whole`` bytes the body is kept
    as it is; past that only its :class:`JsonSkeleton` (at most ``skeleton_limit`` bytes,
    ``keep_whole`` unless given) is."""
    refuse_declared_oversize(request, limit)
    chunks: list[bytes] | None = []
    skeleton: JsonSkeleton | None = None
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise Oversize
                check.update(chunk)
                if skeleton is not None:
                    skeleton.feed(chunk)
                    continue
                chunks.append(chunk)
                if size > keep_whole:  # from here on, only the skeleton
                    skeleton = JsonSkeleton(skeleton_limit or keep_whole)
                    for kept in chunks:
                        skeleton.feed(kept)
                    chunks = None
    except TimeoutError:
        raise SlowBody from None
    if skeleton is None:
        return StreamedBody(b"".join(chunks or ()), whole=True, size=size)
    return StreamedBody(skeleton.text(), whole=False, max_depth=skeleton.max_depth,
                        overflow=skeleton.overflow, size=size)
