"""A small fault-injecting HTTP proxy for the fault suite: it sits between a reconciler and one
agent (Consul or Nomad) on the host's loopback and, on demand, answers slowly, answers 500, or
is *down* (open connections are reset, blocking queries included, and new ones are closed at
once, as when the agent's process restarts). It also keeps an audit of every write that went
through it, so a test can prove the reconciler never touched an object it does not own.

Plain HTTP/1.1 with Content-Length bodies, which is what the Consul and Nomad clients send.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

#: longer than the longest blocking query the reconciler makes (5 min plus Consul's jitter)
UPSTREAM_TIMEOUT = 400.0
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade",
              "te", "trailer", "content-length"}
PASS, SLOW, ERROR, DOWN = "pass", "slow", "error", "down"


@dataclass(frozen=True)
class Write:
    method: str
    path: str
    #: the object the write is about: a service or check ID, a KV key, "" when unknown
    target: str


def write_target(path: str, body: bytes) -> str:
    """The service/check ID (or KV key) a Consul write names, from its path or body."""
    bare = path.split("?", 1)[0]
    for prefix in ("/v1/agent/service/deregister/", "/v1/agent/check/deregister/",
                   "/v1/agent/check/pass/", "/v1/agent/check/warn/", "/v1/agent/check/fail/",
                   "/v1/agent/check/update/", "/v1/agent/service/maintenance/", "/v1/kv/"):
        if bare.startswith(prefix):
            return bare[len(prefix):]
    try:
        document = json.loads(body or b"{}")
    except ValueError:
        return ""
    if not isinstance(document, dict):
        return ""
    return str(document.get("ID") or document.get("CheckID") or document.get("Name") or "")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # connections reset by a fault (or by the client) are part of the game


class FaultProxy:
    def __init__(self, name: str, upstream_port: int, netns: str | None = None):
        """Listen on 127.0.0.1 inside ``netns`` (a lab node's, where its reconciler runs; the
        host's when None) and forward to ``upstream_port`` on the host's loopback."""
        self.name = name
        self.upstream_port = upstream_port
        self.mode = PASS
        self.delay = 0.0
        self.writes: list[Write] = []
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with proxy._lock:
                    proxy._open.add(self.request)

            def handle(self):
                if proxy.mode != DOWN:  # down: the connection is closed unanswered
                    super().handle()

            def finish(self):
                with proxy._lock:
                    proxy._open.discard(self.request)
                try:
                    super().finish()
                except OSError:
                    pass  # reset by a fault

            def do_GET(self):
                proxy._forward(self)

            do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

            def log_message(self, format, *args):  # noqa: A002 - quiet, the stdlib signature
                pass

        from weavenomad_lab.netns import listen_tcp

        self.server = _Server(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self.server.socket.close()
        self.server.socket = listen_tcp("127.0.0.1", 0, netns=netns)
        self.server.server_address = self.server.socket.getsockname()
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        kwargs={"poll_interval": 0.2}, daemon=True,
                                        name=f"faultproxy-{name}")
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- the levers ----------------------------------------------------------------------------

    def set_mode(self, mode: str, delay: float = 0.0) -> None:
        with self._lock:
            self.mode, self.delay = mode, delay
            doomed = list(self._open) if mode == DOWN else []
        for sock in doomed:  # in-flight requests, blocking queries included, are cut
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- one request ---------------------------------------------------------------------------

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        mode, delay = self.mode, self.delay
        if mode == SLOW:
            time.sleep(delay)
        elif mode == ERROR:
            self._answer(handler, 500, [("Content-Type", "text/plain")],
                         b"injected fault: internal error\n")
            return
        elif mode == DOWN:
            handler.close_connection = True
            return
        if handler.command in ("PUT", "POST", "DELETE"):
            with self._lock:
                self.writes.append(Write(handler.command, handler.path,
                                         write_target(handler.path, body)))
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port,
                                              timeout=UPSTREAM_TIMEOUT)
        try:
            upstream.request(handler.command, handler.path, body=body or None, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
        except OSError:
            handler.close_connection = True  # the agent itself is down: so is the proxy
            return
        finally:
            upstream.close()
        if self.mode == DOWN:  # went down while the request waited upstream
            handler.close_connection = True
            return
        self._answer(handler, answer.status,
                     [(k, v) for k, v in answer.getheaders() if k.lower() not in HOP_BY_HOP],
                     data)

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, headers, data: bytes) -> None:
        try:
            handler.send_response_only(status)
            for key, value in headers:
                handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(data)
            handler.wfile.flush()
        except OSError:
            handler.close_connection = True
