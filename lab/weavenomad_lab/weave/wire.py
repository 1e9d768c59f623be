"""HTTP/1.1 framing on asyncio streams, byte for byte.

The proxy must hand Docker's answers to its clients unchanged (chunked event streams, raw
hijacked attach streams), so it cannot re-serialise messages the way an HTTP library does. These
helpers only find where a message's head and body end and copy the original bytes; parsing is
limited to what framing needs (RFC 9112 section 6). A tiny client for the daemon's own Docker
calls and a response writer for the emulated HTTP API live here too.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import formatdate

HEAD_LIMIT = 1 << 20
COPY_SIZE = 1 << 16
#: seconds for the daemon's own calls to a dockerd (not for relayed client exchanges)
DOCKER_TIMEOUT = 10.0

REASONS = {
    200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified", 400: "Bad Request",
    404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
    500: "Internal Server Error", 503: "Service Unavailable",
}


class WireError(Exception):
    """The peer sent something that is not HTTP/1.x framing we can follow."""


@dataclass(frozen=True)
class Head:
    raw: bytes
    start: tuple[str, str, str]
    headers: tuple[tuple[str, str], ...]

    def get(self, name: str, default: str | None = None) -> str | None:
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return default

    @property
    def chunked(self) -> bool:
        return "chunked" in (self.get("Transfer-Encoding") or "").lower()

    @property
    def content_length(self) -> int | None:
        value = self.get("Content-Length")
        if value is None:
            return None
        try:
            return int(value.strip())
        except ValueError:
            raise WireError(f"bad Content-Length {value!r}") from None

    # requests: start = (method, target, version); responses: (version, status, reason)
    @property
    def method(self) -> str:
        return self.start[0]

    @property
    def target(self) -> str:
        return self.start[1]

    @property
    def status(self) -> int:
        return int(self.start[1])

    def with_headers(self, drop: set[str], add: list[tuple[str, str]]) -> bytes:
        """The head re-rendered with some headers dropped (lower-case names) and some added;
        every other header keeps its original spelling and order."""
        lines = [" ".join(self.start).rstrip()]
        lines += [f"{k}: {v}" for k, v in self.headers if k.lower() not in drop]
        lines += [f"{k}: {v}" for k, v in add]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def read_head(reader: asyncio.StreamReader) -> Head | None:
    """The next message head, or None on a clean end of stream before it."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise WireError("connection closed inside a message head") from None
    except asyncio.LimitOverrunError:
        raise WireError("message head too large") from None
    lines = raw[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2:
        raise WireError(f"bad start line {lines[0]!r}")
    start = (parts[0], parts[1], parts[2] if len(parts) > 2 else "")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise WireError(f"bad header line {line!r}")
        headers.append((name.strip(), value.strip()))
    return Head(raw, start, tuple(headers))


def request_body_kind(head: Head) -> str:
    """"chunked", "length" or "none" (a request without framing headers has no body)."""
    if head.chunked:
        return "chunked"
    return "length" if head.content_length else "none"


def response_body_kind(head: Head, request_method: str) -> str:
    """"none", "length", "chunked", "tunnel" (101) or "close" (until the server closes)."""
    status = head.status
    if status == 101:
        return "tunnel"
    if request_method == "HEAD" or 100 <= status < 200 or status in (204, 304):
        return "none"
    if head.chunked:
        return "chunked"
    if head.content_length is not None:
        return "length"
    return "close"


async def relay_body(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: Head, kind: str
) -> None:
    """Copy one body as it arrives, flushing as it goes (streams must not be held back)."""
    if kind == "length":
        remaining = head.content_length or 0
        while remaining:
            data = await reader.read(min(COPY_SIZE, remaining))
            if not data:
                raise WireError("connection closed inside a body")
            remaining -= len(data)
            writer.write(data)
            await writer.drain()
    elif kind == "chunked":
        while True:
            size_line = await _readline(reader)
            writer.write(size_line)
            size = _chunk_size(size_line)
            if size == 0:
                while True:  # trailers, then the empty line
                    line = await _readline(reader)
                    writer.write(line)
                    if line in (b"\r\n", b"\n"):
                        break
                await writer.drain()
                return
            remaining = size + 2  # the chunk and its CRLF
            while remaining:
                data = await reader.read(min(COPY_SIZE, remaining))
                if not data:
                    raise WireError("connection closed inside a chunk")
                remaining -= len(data)
                writer.write(data)
            await writer.drain()
    elif kind == "close":
        await copy_until_eof(reader, writer)


async def read_body(reader: asyncio.StreamReader, head: Head, kind: str, limit: int) -> bytes:
    """A whole body, de-chunked, for messages we must look into."""
    if kind == "length":
        length = head.content_length or 0
        if length > limit:
            raise WireError(f"body of {length} bytes exceeds {limit}")
        return await reader.readexactly(length)
    if kind == "chunked":
        parts = []
        total = 0
        while True:
            size = _chunk_size(await _readline(reader))
            if size == 0:
                while (await _readline(reader)) not in (b"\r\n", b"\n"):
                    pass
                return b"".join(parts)
            total += size
            if total > limit:
                raise WireError(f"body exceeds {limit} bytes")
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    if kind == "close":
        return await reader.read(limit)
    return b""


async def copy_until_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy raw bytes until ``reader`` ends, then half-close ``writer`` (a hijacked stream's
    direction ends on its own: ``docker attach`` closes stdin before output ends)."""
    try:
        while True:
            data = await reader.read(COPY_SIZE)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    finally:
        if not writer.is_closing() and writer.can_write_eof():
            try:
                writer.write_eof()
            except OSError:
                pass


async def _readline(reader: asyncio.StreamReader) -> bytes:
    line = await reader.readline()
    if not line.endswith(b"\n"):
        raise WireError("connection closed inside chunked framing")
    return line


def _chunk_size(line: bytes) -> int:
    try:
        return int(line.split(b";", 1)[0].strip(), 16)
    except ValueError:
        raise WireError(f"bad chunk size line {line!r}") from None


def render_response(
    status: int, headers: list[tuple[str, str]], body: bytes, *, close: bool = False
) -> bytes:
    """A complete response the way Go's net/http writes one (Date, Content-Length)."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}"]
    lines += [f"{k}: {v}" for k, v in headers]
    lines.append(f"Date: {formatdate(time.time(), usegmt=True)}")
    if status not in (204, 304) and not 100 <= status < 200:
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def go_error(status: int, message: str, *, close: bool = False) -> bytes:
    """What Go's ``http.Error`` sends: the message and a newline as plain text."""
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("X-Content-Type-Options", "nosniff")]
    return render_response(status, headers, (message + "\n").encode(), close=close)


# -- the daemon's own Docker calls ---------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes

    def json(self):
        return json.loads(self.body or b"null")

    def message(self) -> str:
        """Docker's error text (``{"message": ...}``) or the raw body."""
        try:
            return str(json.loads(self.body)["message"])
        except (ValueError, KeyError, TypeError):
            return self.body.decode(errors="replace").strip()


async def docker_call(
    socket_path: str, method: str, path: str, body: object = None,
    timeout: float = DOCKER_TIMEOUT,
) -> Reply:
    """One request to a dockerd's unix socket, with a deadline for the whole exchange."""
    return await asyncio.wait_for(_docker_call(socket_path, method, path, body), timeout)


async def _docker_call(socket_path: str, method: str, path: str, body: object) -> Reply:
    reader, writer = await asyncio.open_unix_connection(socket_path, limit=HEAD_LIMIT)
    try:
        payload = b"" if body is None else json.dumps(body).encode()
        headers = [("Host", "docker"), ("Connection", "close")]
        if body is not None:
            headers += [("Content-Type", "application/json")]
        headers.append(("Content-Length", str(len(payload))))
        lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        await writer.drain()
        head = await read_head(reader)
        if head is None:
            raise WireError("dockerd closed the connection without an answer")
        kind = response_body_kind(head, method)
        return Reply(head.status, await read_body(reader, head, kind, 64 << 20))
    finally:
        writer.close()


async def docker_events(socket_path: str, query: str) -> AsyncIterator[dict]:
    """Docker's event stream as dicts; ends when dockerd closes it. Connecting is bounded by
    :data:`DOCKER_TIMEOUT`; the stream itself is open-ended by nature."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_unix_connection(socket_path, limit=HEAD_LIMIT), DOCKER_TIMEOUT
    )
    try:
        writer.write(f"GET /events?{query} HTTP/1.1\r\nHost: docker\r\n\r\n".encode())
        await writer.drain()
        head = await asyncio.wait_for(read_head(reader), DOCKER_TIMEOUT)
        if head is None or head.status != 200:
            raise WireError(f"dockerd refused the event stream: {head and head.start}")
        buffer = b""
        while True:
            size = _chunk_size(await _readline(reader))
            if size == 0:
                return
            buffer += await reader.readexactly(size)
            await reader.readexactly(2)
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    yield json.loads(line)
    finally:
        writer.close()
