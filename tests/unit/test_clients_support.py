"""Shared fakes for the adapter tests (imported by the other ``test_clients_*`` modules).

``FakeAdapter`` is a requests transport adapter that records every request with the
``timeout``/``verify``/``cert`` it was sent with and answers from routes, usually the recorded
answers of the real servers. ``StreamServer`` is a real HTTP server on 127.0.0.1 for what needs
a socket: streams that must be cut from another thread, timeouts.
"""

from __future__ import annotations

import io
import json
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from requests.adapters import BaseAdapter, HTTPAdapter
from urllib3.response import HTTPResponse

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"


def recorded(name: str) -> dict:
    """One recorded answer: ``{"request": …, "status": N, "headers": …, "body": …}``."""
    return json.loads((RECORDED / name).read_text())


def recorded_ndjson(name: str) -> bytes:
    return (RECORDED / name).read_bytes()


@dataclass
class Sent:
    method: str
    url: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes | None
    timeout: Any
    verify: Any
    cert: Any
    stream: bool

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Route:
    method: str
    path: str
    query: dict[str, str | None]
    status: int
    headers: dict[str, str]
    body: bytes
    error: BaseException | None = None
    hits: int = field(default=0)


def _encode(body: Any) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


class FakeAdapter(BaseAdapter):
    """Mount on a session (``session.mount("http://", adapter)``) to serve routes."""

    def __init__(self):
        super().__init__()
        self.routes: list[Route] = []
        self.sent: list[Sent] = []

    def add(self, method: str, path: str, *, status: int = 200, body: Any = b"",
            headers: dict[str, str] | None = None, query: dict[str, str | None] | None = None,
            error: BaseException | None = None) -> Route:
        """``query`` values of None only require the parameter to be present."""
        route = Route(method, path, dict(query or {}), status, dict(headers or {}), _encode(body),
                      error)
        self.routes.append(route)
        return route

    def add_recorded(self, name: str, **overrides: Any) -> Route:
        """Serve a recorded answer at the path and method it was recorded for."""
        record = recorded(name)
        parts = urlsplit(record["request"]["path"])
        query = {k: None for k in parse_qs(parts.query, keep_blank_values=True)}
        headers = dict(record.get("headers") or {})
        if not isinstance(record["body"], str):
            headers.setdefault("Content-Type", "application/json")
        return self.add(record["request"]["method"], overrides.pop("path", parts.path),
                        status=record["status"], body=record["body"], headers=headers,
                        query=query, **overrides)

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        parts = urlsplit(request.url)
        body = request.body.encode() if isinstance(request.body, str) else request.body
        sent = Sent(request.method, request.url, parts.path,
                    parse_qs(parts.query, keep_blank_values=True), dict(request.headers), body,
                    timeout, verify, cert, stream)
        self.sent.append(sent)
        for route in self.routes:
            if route.method == sent.method and route.path == sent.path and all(
                key in sent.query and (value is None or sent.query[key] == [value])
                for key, value in route.query.items()
            ):
                route.hits += 1
                if route.error is not None:
                    raise route.error
                raw = HTTPResponse(body=io.BytesIO(route.body), headers=route.headers,
                                   status=route.status, preload_content=False,
                                   request_method=sent.method, request_url=request.url)
                return HTTPAdapter().build_response(request, raw)
        raise AssertionError(f"unexpected request {sent.method} {request.url}")

    def close(self):
        pass


def fake_session(adapter: FakeAdapter) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


# --------------------------------------------------------------------------------------------


class StreamServer:
    """A real HTTP/1.1 server on 127.0.0.1. ``handler(request_handler)`` writes the answer;
    the server runs on a thread until ``close()``. ``tls=(cert_file, key_file)`` serves HTTPS."""

    def __init__(self, handler, tls: tuple[str, str] | None = None):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 - http.server's naming
                outer.paths.append(self.path)
                handler(self)

            def log_message(self, *args):
                pass

        self.paths: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{self.scheme}://{host}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


#: a self-signed certificate for 127.0.0.1 (valid until 2126) and its key, for TLS tests
LOCALHOST_CERT = """-----BEGIN CERTIFICATE-----
MIIBkDCCATagAwIBAgIUStKSHXC4chTgA1w5ZsxpWyCqDbYwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJMTI3LjAuMC4xMCAXDTI2MTEyMjAzMTkxNVoYDzIxMjYxMDI5
MDMxOTE1WjAUMRIwEAYDVQQDDAkxMjcuMC4wLjEwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAASNAlokxc8IA/F4fi2xNJsmG/6s8U9qf0m97Cv+5TehvsyPtdr3mLm2
hAt/Puo5b4asF1m2Ch2eUWe5Ydc8KLYMo2QwYjAdBgNVHQ4EFgQU935okv3qO8g0
SHB+nFTG682b9OEwHwYDVR0jBBgwFoAU935okv3qO8g0SHB+nFTG682b9OEwDwYD
VR0TAQH/BAUwAwEB/zAPBgNVHREECDAGhwR/AAABMAoGCCqGSM49BAMCA0gAMEUC
IQDhTITVeDxVOaHkwzHfgLsMvyANby6mIssxKooL55r2VAIgLEA/lyRK1XQyAMuW
AYF/qqjdFwQq5VG58ovYY9/vSaI=
-----END CERTIFICATE-----
"""
LOCALHOST_KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgdf+JlLWPCSUsq5YW
c9CEMKuhSrsl077Hj2c6prvfiBmhRANCAASNAlokxc8IA/F4fi2xNJsmG/6s8U9q
f0m97Cv+5TehvsyPtdr3mLm2hAt/Puo5b4asF1m2Ch2eUWe5Ydc8KLYM
-----END PRIVATE KEY-----
"""


def tls_files(directory: Path) -> tuple[str, str]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    cert.write_text(LOCALHOST_CERT)
    key.write_text(LOCALHOST_KEY)
    return str(cert), str(key)


def chunk(handler: BaseHTTPRequestHandler, data: bytes) -> None:
    handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    handler.wfile.flush()


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
