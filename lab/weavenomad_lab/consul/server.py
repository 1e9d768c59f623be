"""The simulated Consul on the wire: one process, one agent per lab node, several listeners.

:class:`ConsulSimulator` owns the cluster state, the check runner and the HTTP servers. A lab
node's agent listens inside the node's namespace on 127.0.0.1:8500 and on a host-loopback port;
both serve that node's agent API and the shared catalog, health and KV. Tests build one with
plain :class:`SimNode` entries (no namespace) and listen on 127.0.0.1 port 0.

With a TLS context (the lab's ``--tls``) every listener serves HTTPS only: the handshake runs on
the connection's own thread, so a silent client cannot stall the accept loop.

Transport: the stdlib threading HTTP server (a thread per connection, HTTP/1.1 keep-alive). It
meets the lab's targets (a 1,000-service list in a few ms, blocking-query wake-up in well under
50 ms: ``benchmarks/consul_sim.py``) and every waiting blocking query simply holds its thread,
as a goroutine does in Consul. Headers are written as Go writes them (no ``Server`` header).
"""

from __future__ import annotations

import http.server
import logging
import selectors
import socket
import socketserver
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import formatdate
from urllib.parse import parse_qs, unquote, urlsplit

from weavenomad_lab.consul.checks import (
    MIN_INTERVAL,
    REAP_INTERVAL,
    CheckRunner,
    Probe,
    probe_check,
)
from weavenomad_lab.consul.dns import ConsulDNS, DNSServer
from weavenomad_lab.consul.http import ConsulAPI, Failure, Request, Response, text
from weavenomad_lab.consul.state import DEREGISTER_MIN, ConsulState
from weavenomad_lab.consul.versions import ConsulFlavour
from weavenomad_lab.netns import listen_tcp

log = logging.getLogger(__name__)

#: a body larger than this is refused (413) rather than read into memory
MAX_BODY = 32 * 1024 * 1024
#: an unread body up to this size is drained to keep the connection; larger ones close it
_DRAIN_LIMIT = 1024 * 1024


@dataclass(frozen=True)
class SimNode:
    """One node (agent) of the simulated cluster."""

    name: str
    address: str
    netns: str | None = None
    server: bool = False


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, sock: socket.socket, api: ConsulAPI, node: str,
                 tls: ssl.SSLContext | None = None):
        # adopt a socket made elsewhere (maybe inside a namespace) instead of binding one
        socketserver.BaseServer.__init__(self, sock.getsockname()[:2], _Handler)
        self.socket = sock
        self.server_name, self.server_port = sock.getsockname()[:2]
        self.api = api
        self.node = node
        self.tls = tls
        self._wakeup_r, self._wakeup_w = socket.socketpair()

    def finish_request(self, request, client_address) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        from weavenomad_lab.security import accept_tls

        wrapped = accept_tls(self.tls, request)
        if wrapped is None:
            return
        try:
            super().finish_request(wrapped, client_address)
        finally:
            wrapped.close()

    def serve_until_closed(self) -> None:
        """Accept connections until :meth:`close` (event-driven: no polling interval)."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wakeup_r, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in selector.select()}
                if self._wakeup_r in ready:
                    return
                self._handle_request_noblock()

    def close(self) -> None:
        self._wakeup_w.send(b"x")

    def server_close(self) -> None:
        super().server_close()
        self._wakeup_r.close()
        self._wakeup_w.close()

    def get_request(self) -> tuple[socket.socket, object]:
        conn, address = self.socket.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, address


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib's name)
        log.debug("%s %s", self.address_string(), format % args)

    def _read_body(self) -> bytes:
        self._body_read = True
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length = self._length or 0
        if length > MAX_BODY:
            raise Failure(Response(413, f"Request body exceeds {MAX_BODY} bytes".encode(),
                                   [("Content-Type", "text/plain; charset=utf-8")], close=True))
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        chunks, total = [], 0
        while True:
            line = self.rfile.readline(1024).split(b";")[0].strip()
            try:
                size = int(line or b"0", 16)
            except ValueError:
                raise Failure(Response(400, b"malformed chunked encoding",
                                       [("Content-Type", "text/plain; charset=utf-8")],
                                       close=True)) from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > MAX_BODY:
                raise Failure(Response(413, close=True))
            chunks.append(self.rfile.read(size))
            self.rfile.readline(16)

    def _serve(self) -> None:
        url = urlsplit(self.path)
        try:
            self._length = int(self.headers["Content-Length"]) if self.headers.get(
                "Content-Length") else None
        except ValueError:
            self._send(text(400, "invalid Content-Length"), close=True)
            return
        self._body_read = False
        request = Request(
            method=self.command, path=unquote(url.path),
            query=parse_qs(url.query, keep_blank_values=True), headers=self.headers,
            node=self.server.node, read_body=self._read_body, content_length=self._length,
        )
        response = self.server.api.handle(request)
        close = response.close
        if not self._body_read and (self._length or 0) > 0 and not close:
            if self._length <= _DRAIN_LIMIT:
                self.rfile.read(self._length)
            else:
                close = True
        self._send(response, close)

    def _send(self, response: Response, close: bool) -> None:
        self.send_response_only(response.status)
        self.send_header("Date", formatdate(usegmt=True))
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        # one write for head and body: two small segments would meet Nagle and delayed ACKs
        body = response.body if self.command != "HEAD" else b""
        self._headers_buffer.append(b"\r\n" + body)
        self.flush_headers()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _serve


class ConsulSimulator:
    """The cluster state, its check runner and the agents' HTTP listeners."""

    def __init__(self, nodes: Sequence[SimNode], *, acl_token: str | None = None,
                 tls: ssl.SSLContext | None = None, probe: Probe = probe_check,
                 datacenter: str = "dc1",
                 min_interval: float = MIN_INTERVAL, first_run_within: float = 1.0,
                 reap_interval: float = REAP_INTERVAL, deregister_min: float = DEREGISTER_MIN,
                 flavour: ConsulFlavour | None = None):
        self.state = ConsulState(datacenter, deregister_min=deregister_min)
        for node in nodes:
            self.state.add_node(node.name, node.address, server=node.server, netns=node.netns)
        self.flavour = flavour or ConsulFlavour()
        self.api = ConsulAPI(self.state, acl_token=acl_token, flavour=self.flavour)
        self.tls = tls
        netns_of = {n.name: n.netns for n in nodes}
        self.runner = CheckRunner(
            self.state, probe=probe, netns_of=netns_of.get, min_interval=min_interval,
            first_run_within=first_run_within, reap_interval=reap_interval,
        )
        self._servers: list[tuple[_Server, threading.Thread]] = []
        self._started = False
        #: the DNS interface (every node's agent answers for the whole cluster, as Consul's)
        self.dns = DNSServer(ConsulDNS(self.state))

    def serve(self, node: str, sock: socket.socket) -> tuple[str, int]:
        """Serve ``node``'s agent on an already listening socket; returns its address."""
        if not self.state.has_node(node):
            raise ValueError(f"no node {node!r} in the simulated cluster")
        server = _Server(sock, self.api, node, self.tls)
        thread = threading.Thread(target=server.serve_until_closed, daemon=True,
                                  name=f"consul-http-{node}-{server.server_port}")
        thread.start()
        self._servers.append((server, thread))
        return server.server_name, server.server_port

    def listen(self, node: str, host: str = "127.0.0.1", port: int = 0,
               netns: str | None = None) -> tuple[str, int]:
        return self.serve(node, listen_tcp(host, port, netns=netns))

    def listen_dns(self, host: str = "127.0.0.1", port: int = 0,
                   netns: str | None = None) -> int:
        """Answer DNS on UDP ``host:port`` (0: a free port) inside ``netns``; the port."""
        return self.dns.listen(host, port, netns)

    def start(self) -> ConsulSimulator:
        if not self._started:
            self._started = True
            self.runner.start()
        return self

    def stop(self) -> None:
        self.dns.stop()
        self.state.close()
        for server, _thread in self._servers:
            server.close()
        for server, thread in self._servers:
            thread.join(timeout=5)
            server.server_close()
        self._servers.clear()
        if self._started:
            self.runner.stop()

    def __enter__(self) -> ConsulSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
