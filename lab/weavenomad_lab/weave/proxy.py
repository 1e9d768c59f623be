"""The emulated Weave Docker API proxy: a unix socket in front of one node's dockerd.

Like Weave 2.8.1's proxy (``proxy/proxy.go``, ``create_container_interceptor.go``,
``start_container_interceptor.go``) it changes exactly two requests and passes everything else
through byte for byte, including chunked streams (``/events``, ``logs?follow=1``) and hijacked
connections (``attach``, ``exec/<id>/start`` with ``Upgrade: tcp``):

* ``POST /containers/create`` of a container that will be attached: the weavewait volume is
  bound at ``/w:ro`` and ``/w/w`` is put in front of the entrypoint (the image's entrypoint and
  command are looked up when the request has none);
* ``POST /containers/<id>/start`` (and ``restart``): forwarded; on a 2xx answer the container is
  attached (``ethwe`` with its ``WEAVE_CIDR`` addresses) *before* the answer reaches the client.
  If attaching fails the container is killed and the client gets a 500 with the reason, as
  Weave does.

Each client connection gets its own dockerd connection; one task copies requests up, another
copies responses down, and a queue tells the second what the first sent (HEAD, start, hijack),
so keep-alive connections work and the client's end of stream reaches dockerd at once (which
ends its ``/events`` stream, exactly as without the proxy). Relayed exchanges have no overall
deadline: ``docker wait``, ``stop -t`` or a log stream last as long as the client wants.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

from weavenomad.errors import WeavenomadError
from weavenomad_lab.weave import cidr, weavewait, wire

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
CREATE_BODY_LIMIT = 16 << 20

_VERSION = r"^(?:/v[0-9.]*)?"
CREATE = re.compile(_VERSION + r"/containers/create$")
START = re.compile(_VERSION + r"/containers/([^/]*)/(?:re)?start$")
HIJACK = re.compile(_VERSION + r"/(?:containers/[^/]*/attach|exec/[^/]*/start)$")

#: network modes the proxy attaches; others are host, container:*, or a named network
ATTACHED_MODES = ("", "default", "bridge", "none")


class CreateRefused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def weave_cidrs(
    network_mode: str, env: list[str] | None, no_default_ipalloc: bool
) -> list[str] | None:
    """The ``WEAVE_CIDR`` tokens of a container the proxy attaches, or None when it leaves the
    container alone (Weave's ``weaveCIDRs``). An empty list means "the default subnet".
    Only the exact value ``none`` means none (`` none`` is a token Weave fails to parse)."""
    if network_mode not in ATTACHED_MODES:
        return None
    value = cidr.weave_cidr_value(env)
    if value is not None:
        return None if value == cidr.NONE else value.split()
    return None if no_default_ipalloc else []


def _str_slice(value) -> list[str] | None:
    # Docker's StrSlice: null, a string, or a list of strings
    if value is None:
        return None
    return [value] if isinstance(value, str) else [str(v) for v in value]


@dataclass(frozen=True)
class _Expect:
    method: str
    start_ref: str | None = None
    hijack: bool = False
    local: bytes | None = None


class Proxy:
    """One node's proxy. ``attach`` is called with the container reference of a successful
    start and must raise a :class:`WeavenomadError` when the container cannot be attached."""

    def __init__(
        self,
        docker_socket: str,
        volume_dir: Path,
        attach: Callable[[str], Awaitable[None]],
        no_default_ipalloc: bool = False,
    ):
        self.docker_socket = docker_socket
        self.volume_dir = volume_dir
        self.attach = attach
        self.no_default_ipalloc = no_default_ipalloc
        self._active: set[asyncio.Task] = set()

    def close_connections(self) -> None:
        """End every open client connection (the node is being reset)."""
        for task in list(self._active):
            task.cancel()

    async def serve(self, socket_path: Path) -> asyncio.AbstractServer:
        socket_path.unlink(missing_ok=True)
        # Go listens with the kernel's somaxconn: a burst of Nomad task starts must queue, not
        # meet EAGAIN as with asyncio's default backlog of 100
        server = await asyncio.start_unix_server(
            self._connection, path=str(socket_path), limit=wire.HEAD_LIMIT, backlog=4096
        )
        with contextlib.suppress(OSError):  # same permissions as the dockerd socket
            socket_path.chmod(Path(self.docker_socket).stat().st_mode & 0o777)
        return server

    async def _connection(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._active.add(task)
        try:
            await self._serve_connection(cr, cw)
        finally:
            self._active.discard(task)

    async def _serve_connection(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.wait_for(
                asyncio.open_unix_connection(self.docker_socket, limit=wire.HEAD_LIMIT),
                CONNECT_TIMEOUT,
            )
        except (OSError, asyncio.TimeoutError) as exc:
            log.warning("cannot reach dockerd at %s: %s", self.docker_socket, exc)
            cw.write(wire.go_error(500, "Could not connect to target", close=True))
            with contextlib.suppress(OSError):
                await cw.drain()
            cw.close()
            return
        queue: asyncio.Queue[_Expect] = asyncio.Queue()
        up = asyncio.create_task(self._requests(cr, uw, queue))
        down = asyncio.create_task(self._responses(ur, cw, queue))
        try:
            done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            if down in done and (down.exception() or not down.result()):
                up.cancel()  # dockerd ended a plain HTTP exchange: nothing more can be answered
            await asyncio.gather(up, down, return_exceptions=True)
        except asyncio.CancelledError:
            up.cancel()
            down.cancel()
            raise
        finally:
            for task in (up, down):
                if task.done() and not task.cancelled() and task.exception():
                    log.debug("proxy connection ended: %r", task.exception())
            uw.close()
            cw.close()

    async def _requests(
        self, cr: asyncio.StreamReader, uw: asyncio.StreamWriter, queue: asyncio.Queue
    ) -> None:
        try:
            while True:
                head = await wire.read_head(cr)
                if head is None:
                    break
                kind = wire.request_body_kind(head)
                path = urlsplit(head.target).path
                if head.method == "POST" and CREATE.match(path):
                    await self._create(cr, uw, head, kind, queue)
                    continue
                start = START.match(path) if head.method == "POST" else None
                hijack = bool(head.get("Upgrade")) or bool(HIJACK.match(path))
                await queue.put(_Expect(head.method, start.group(1) if start else None, hijack))
                uw.write(head.raw)
                await wire.relay_body(cr, uw, head, kind)
                if hijack:
                    await wire.copy_until_eof(cr, uw)
                    return
        finally:
            if not uw.is_closing() and uw.can_write_eof():
                with contextlib.suppress(OSError):
                    uw.write_eof()

    async def _create(self, cr, uw, head: wire.Head, kind: str, queue: asyncio.Queue) -> None:
        body = await wire.read_body(cr, head, kind, CREATE_BODY_LIMIT)
        try:
            changed = await self.rewrite_create(body)
        except CreateRefused as exc:
            await queue.put(_Expect(head.method, local=wire.go_error(exc.status, exc.message)))
            return
        await queue.put(_Expect(head.method))
        if changed is None:  # untouched: forward the original bytes
            uw.write(head.raw if kind != "chunked" else head.with_headers(
                {"content-length", "transfer-encoding"}, [("Content-Length", str(len(body)))]
            ))
            uw.write(body)
        else:
            uw.write(head.with_headers(
                {"content-length", "transfer-encoding"}, [("Content-Length", str(len(changed)))]
            ))
            uw.write(changed)
        await uw.drain()

    async def rewrite_create(self, body: bytes) -> bytes | None:
        """The create body with weavewait added, or None when the container is left alone."""
        try:
            doc = json.loads(body)
        except ValueError:
            return None  # dockerd will explain what is wrong with it
        if not isinstance(doc, dict):
            return None
        host_config = doc.get("HostConfig") or {}
        cidrs = weave_cidrs(
            host_config.get("NetworkMode") or "", doc.get("Env"), self.no_default_ipalloc
        )
        if cidrs is None:
            return None
        binds = [b for b in host_config.get("Binds") or [] if b.split(":")[1:2] != ["/w"]]
        host_config["Binds"] = binds + [weavewait.bind(self.volume_dir)]
        doc["HostConfig"] = host_config
        entrypoint = _str_slice(doc.get("Entrypoint"))
        cmd = _str_slice(doc.get("Cmd"))
        if not entrypoint:
            image = await self._image_config(str(doc.get("Image") or ""))
            if not cmd:
                cmd = _str_slice(image.get("Cmd"))
                doc["Cmd"] = cmd
            if entrypoint is None:
                entrypoint = _str_slice(image.get("Entrypoint"))
        if not entrypoint and not cmd:
            raise CreateRefused(500, "No command specified")
        if not entrypoint or entrypoint[0] != weavewait.ENTRYPOINT:
            doc["Entrypoint"] = [weavewait.ENTRYPOINT, *(entrypoint or [])]
        return json.dumps(doc).encode()

    async def _image_config(self, image: str) -> dict:
        try:
            reply = await wire.docker_call(
                self.docker_socket, "GET", f"/images/{quote(image, safe='/:@')}/json"
            )
        except (OSError, asyncio.TimeoutError, wire.WireError) as exc:
            raise CreateRefused(500, f"inspecting image {image}: {exc}") from None
        if reply.status == 404:
            raise CreateRefused(404, f"No such image: {image}")
        if reply.status != 200:
            raise CreateRefused(reply.status, reply.message())
        return reply.json().get("Config") or {}

    async def _responses(
        self, ur: asyncio.StreamReader, cw: asyncio.StreamWriter, queue: asyncio.Queue
    ) -> bool:
        """Copy answers down; returns True when the connection turned into a raw stream."""
        while True:
            expect: _Expect = await queue.get()
            if expect.local is not None:
                cw.write(expect.local)
                await cw.drain()
                continue
            head = await wire.read_head(ur)
            while head is not None and 100 <= head.status < 200 and head.status != 101:
                cw.write(head.raw)  # 100 Continue and friends precede the real answer
                head = await wire.read_head(ur)
            if head is None:
                return False
            kind = wire.response_body_kind(head, expect.method)
            if expect.start_ref and 200 <= head.status < 300:
                try:
                    await self.attach(expect.start_ref)
                except WeavenomadError as exc:
                    await wire.read_body(ur, head, kind, CREATE_BODY_LIMIT)
                    cw.write(wire.go_error(500, exc.one_line()))
                    await cw.drain()
                    continue
            cw.write(head.raw)
            if kind in ("tunnel", "close") or expect.hijack:
                await cw.drain()
                if kind not in ("tunnel", "close"):
                    await wire.relay_body(ur, cw, head, kind)
                await wire.copy_until_eof(ur, cw)
                return True
            await wire.relay_body(ur, cw, head, kind)
            await cw.drain()


def leave_stale_socket(path: Path) -> None:
    """A unix socket file nobody listens on, as a proxy that died leaves it."""
    import socket as socket_module

    path.unlink(missing_ok=True)
    listener = socket_module.socket(socket_module.AF_UNIX, socket_module.SOCK_STREAM)
    try:
        listener.bind(str(path))  # never unlinked: closing a bound socket leaves the file
    finally:
        listener.close()
