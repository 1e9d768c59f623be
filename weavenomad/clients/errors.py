"""Failure handling shared by the adapters: one mapping to our exceptions, bounded retries, and
cancellation of long-lived streams.

Every adapter describes its backend once as a :class:`Backend` (name, address, the flags that
fix it, the secrets to hide) and turns every failure into a :class:`~weavenomad.errors.BackendError`
through :func:`error_for_status` (the backend answered) or :func:`error_for_exception` (it did
not). Messages are one line naming the backend, what failed and the fix; tokens never appear in
them because they travel in headers and are redacted from answer bodies as well.
"""

from __future__ import annotations

import logging
import random
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from weavenomad.errors import (
    BackendAuthError,
    BackendError,
    BackendNotFound,
    BackendRequestError,
    BackendServerError,
    BackendUnavailable,
    WeavenomadError,
    redact,
)
from weavenomad.runtime.backoff import backoff_delay

log = logging.getLogger(__name__)

T = TypeVar("T")

#: how much of an answer's body goes into a message; the whole body stays in ``error.body``
SUMMARY_CHARS = 300


@dataclass(frozen=True)
class Backend:
    """What an error message needs to know about one backend."""

    key: str  # "nomad", "consul", "docker", "weave" (BackendError.backend)
    title: str  # "Nomad"
    addr: str
    #: how to point us at another address, e.g. "set --nomad-addr or NOMAD_ADDR"
    addr_hint: str
    #: how to supply a token; None for backends without ACLs
    token_hint: str | None = None
    #: how to trust the server's certificate (a CA)
    tls_hint: str | None = None
    secrets: tuple[str, ...] = field(default=(), repr=False)
    #: the backend does not know the token at all ("ACL token not found"); default token_hint
    token_unknown_hint: str | None = None
    #: the handshake wants (another) client certificate
    client_cert_hint: str | None = None
    #: the address says http:// but the server speaks HTTPS
    https_hint: str | None = None
    #: the client certificate and key files do not load (not PEM, not a pair)
    client_files_hint: str | None = None

    def hide(self, text: str) -> str:
        return redact(text, self.secrets)


#: what a TLS failure's reason says, and which hint fits it
_VERIFY_FAILED = ("certificate verify failed", "certificate_verify_failed")
_NAME_MISMATCH = ("hostname mismatch", "ip address mismatch", "doesn't match")
_NOT_TLS = ("wrong version number", "packet length too long", "unknown protocol",
            "record layer failure", "http request")
_CLIENT_FILES_BAD = ("key values mismatch", "pem lib", "no start line", "bad base64")
_CLIENT_CERT_REFUSED = ("certificate required", "bad certificate", "unknown ca",
                        "handshake failure", "eof occurred in violation of protocol",
                        "certificate unknown", "access denied", "unexpected eof")
#: what Go's server answers a plain HTTP request on its TLS port (Go >= 1.12: Nomad 1.0)
PLAIN_HTTP_TO_TLS = "Client sent an HTTP request to an HTTPS server"


def tls_failure_hint(backend: Backend, reason: str) -> str | None:
    """The fix for a failed TLS handshake, from the reason OpenSSL gave. Pure."""
    text = reason.lower()
    if any(marker in text for marker in _VERIFY_FAILED):
        if any(marker in text for marker in _NAME_MISMATCH):
            return (f"{backend.title}'s certificate does not name the host in {backend.addr}; "
                    "use an address the certificate names")
        return backend.tls_hint
    if any(marker in text for marker in _CLIENT_FILES_BAD):
        return backend.client_files_hint or backend.tls_hint
    if any(marker in text for marker in _NOT_TLS):
        return f"{backend.addr} does not speak TLS: use http:// ({backend.addr_hint})"
    if any(marker in text for marker in _CLIENT_CERT_REFUSED):
        return backend.client_cert_hint or backend.tls_hint
    return backend.tls_hint


def summarize(body: str, limit: int = SUMMARY_CHARS) -> str:
    """An answer body as one short line."""
    text = " ".join(body.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_for_status(
    backend: Backend, status: int, method: str, path: str, body: str = ""
) -> BackendError:
    """The exception for an HTTP error answer (status >= 400). Pure."""
    body = backend.hide(body or "")
    summary = summarize(body)
    common = {"backend": backend.key, "status": status, "body": body}
    if status in (401, 403):
        unknown = "not found" in body.lower() and backend.token_unknown_hint
        return BackendAuthError(
            f"{backend.title} denied {method} {path}: {summary or 'permission denied'}",
            hint=backend.token_unknown_hint if unknown else backend.token_hint,
            **common,
        )
    if status == 400 and PLAIN_HTTP_TO_TLS in body:
        return BackendRequestError(
            f"{backend.title} at {backend.addr} speaks HTTPS, not HTTP",
            hint=backend.https_hint or f"use https:// ({backend.addr_hint})", **common)
    if status == 404:
        detail = f": {summary}" if summary else " (404)"
        return BackendNotFound(f"{backend.title} at {backend.addr} has no {path}{detail}", **common)
    if status >= 500:
        return BackendServerError(
            f"{backend.title} failed {method} {path} ({status}): {summary or 'no details'}",
            **common,
        )
    return BackendRequestError(
        f"{backend.title} rejected {method} {path} ({status}): {summary or 'no details'}", **common
    )


def _root_reason(exc: BaseException) -> str:
    """The innermost OS-level reason of a requests/urllib3 failure, e.g. 'connection refused'."""
    seen: set[int] = set()
    current: BaseException | None = exc
    found: str | None = None
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            found = current.strerror
        inner = getattr(current, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((a for a in getattr(current, "args", ()) if isinstance(a, BaseException)),
                         None)
        current = inner or current.__cause__ or current.__context__
    if found:
        # "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: … (_ssl.c:1006)"
        found = re.sub(r"^\[[A-Z0-9]+: [A-Z0-9_]+\] | \(_ssl\.c:\d+\)$", "", found)
        # lower "Connection refused" but not an acronym such as "EOF occurred …"
        return found if found[1:2].isupper() else found[0].lower() + found[1:]
    text = str(exc)
    # urllib3 wraps the useful part: "...: Failed to establish a new connection: [Errno 111] X"
    match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    return match.group(1).strip().lower() if match else summarize(text, 160)


def error_for_exception(
    backend: Backend, exc: BaseException, method: str | None = None, path: str | None = None
) -> BackendError:
    """The exception for a call that got no answer (refused, DNS, TLS, timeout)."""
    import requests

    what = f"{method} {path}" if method and path else "the request"
    reason = backend.hide(_root_reason(exc))
    if _is_tls_failure(exc):
        error = BackendUnavailable(
            f"TLS with {backend.title} at {backend.addr} failed: {reason}",
            backend=backend.key,
            hint=tls_failure_hint(backend, reason),
        )
        # a certificate that does not verify will not verify on the next attempt either
        error.temporary = False
        return error
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return BackendUnavailable(
            f"timed out connecting to {backend.title} at {backend.addr}",
            backend=backend.key,
            hint=backend.addr_hint,
        )
    if isinstance(exc, requests.exceptions.Timeout) or "timed out" in reason:
        return BackendUnavailable(
            f"{backend.title} at {backend.addr} did not answer {what} in time",
            backend=backend.key,
            hint="the agent is overloaded or the timeout is too short ([http] timeout)",
        )
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema
                  | requests.exceptions.InvalidSchema):
        error = BackendUnavailable(
            f"invalid {backend.title} address {backend.addr}: {reason}",
            backend=backend.key,
            hint=backend.addr_hint,
        )
        error.temporary = False
        return error
    # a TLS server drops a plain HTTP client without a word (Consul 1.4's Go did)
    dropped = "reset by peer" in reason or "without response" in reason
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return BackendUnavailable(
            f"{backend.title} at {backend.addr} broke off its answer to {what}: {reason}",
            backend=backend.key,
            hint=backend.https_hint if dropped else None,
        )
    return BackendUnavailable(
        f"cannot reach {backend.title} at {backend.addr}: {reason}",
        backend=backend.key,
        hint=(backend.https_hint if dropped and backend.https_hint else backend.addr_hint),
    )


def _is_tls_failure(exc: BaseException) -> bool:
    """Whether an SSL error is the failure or its cause (urllib3 wraps one read during the
    answer, e.g. a client certificate refused after a TLS 1.3 handshake, in other errors)."""
    import ssl

    import requests

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError | requests.exceptions.SSLError):
            return True
        inner = getattr(current, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((a for a in getattr(current, "args", ()) if isinstance(a, BaseException)),
                         None)
        current = inner or current.__cause__ or current.__context__
    return False


def parse_index(backend: Backend, headers, header: str, method: str, path: str) -> int:
    """The blocking-query index of an answer (``X-Nomad-Index``, ``X-Consul-Index``)."""
    value = headers.get(header) if headers is not None else None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BackendError(
            f"{backend.title} answered {method} {path} without a valid {header} header",
            backend=backend.key,
            hint=f"check that {backend.addr} is a {backend.title} agent",
        ) from None


def blocking_timeout(http_timeout: float, wait: float) -> float:
    """The client timeout of a blocking query: the server holds the answer for ``wait`` plus
    up to wait/16 of jitter (Nomad and Consul alike), and then needs the usual time to send it."""
    return http_timeout + wait + wait / 16


# --------------------------------------------------------------------------------------------
# Retries


def retrying(
    call: Callable[[], T],
    *,
    attempts: int = 5,
    base_delay: float = 0.5,
    max_delay: float = 10.0,
    stop_event: threading.Event | None = None,
    log: logging.Logger = log,
    jitter: Callable[[], float] = random.random,
) -> T:
    """Run ``call`` until it succeeds, retrying only *temporary* errors, at most ``attempts``
    times in all. Permanent errors, the last temporary one, and a stop request during a wait
    are raised as they are.

    :class:`~weavenomad.errors.CasConflict` counts as temporary, so a ``call`` that writes with
    check-and-set must read the current state again each time it runs.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    waiter = stop_event or threading.Event()
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except WeavenomadError as exc:
            if not exc.temporary or attempt == attempts:
                raise
            delay = backoff_delay(attempt, base_delay, max_delay, jitter())
            log.warning(
                "%s; retry %d of %d in %.1fs", exc.one_line(), attempt, attempts - 1, delay
            )
            if waiter.wait(delay):
                log.info("stop requested; not retrying")
                raise
    raise AssertionError("unreachable")  # pragma: no cover


# --------------------------------------------------------------------------------------------
# Streams


@contextmanager
def closed_on_stop(
    stop_event: threading.Event | None, close: Callable[[], None], poll: float = 0.25
) -> Iterator[None]:
    """While the block runs, call ``close`` from a helper thread as soon as ``stop_event`` is
    set: a thread blocked reading a stream wakes up only when its socket is shut down.

    The helper waits on the event with a short timeout rather than forever so that it also
    notices the block ending, and leaves no thread behind per stream.
    """
    if stop_event is None:
        yield
        return
    finished = threading.Event()

    def watch() -> None:
        while not finished.is_set():
            if stop_event.wait(poll):
                if not finished.is_set():
                    try:
                        close()
                    except Exception:  # noqa: BLE001 - closing is best effort
                        log.debug("closing a stream on stop failed", exc_info=True)
                return

    watcher = threading.Thread(target=watch, name="weavenomad-stream-stop", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        finished.set()
