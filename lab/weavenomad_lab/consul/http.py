"""The simulated Consul's HTTP API: routing, ACLs and blocking reads, as Consul 1.4's agent.

Transport-free: :meth:`ConsulAPI.handle` turns a :class:`Request` into a :class:`Response`, so
routes, status codes and error texts are tested without sockets;
:mod:`weavenomad_lab.consul.server` puts it on the wire. The handlers are in
:mod:`~weavenomad_lab.consul.endpoints` and :mod:`~weavenomad_lab.consul.kv_api`.

Failures follow Consul 1.4's ``agent/http.go``: a path no handler owns is 404 with an empty body;
a known path with another method is 405 ``method X not allowed`` plus ``Allow``; a body that does
not decode is 400 ``Request decode failed: …``; other handler errors are 500 with their text.
With an ACL token configured, a request without a token may list (catalog, health, KV listings
and agent lists come back empty, as Consul filters them) but not read one KV key (403, as
``KVS.Get`` checks ``key:read``) nor write (403 ``Permission denied``); an unknown token gets
403 ``ACL not found``; /v1/status needs no token.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from weavenomad_lab.consul.decode import parse_go_duration
from weavenomad_lab.consul.records import Node, RawJSON
from weavenomad_lab.consul.registration import BadRequest
from weavenomad_lab.consul.state import Answer, ConsulState, StateError
from weavenomad_lab.consul.versions import DEFAULT_NAMESPACE, DEFAULT_PARTITION, ConsulFlavour

log = logging.getLogger(__name__)

TEXT = "text/plain; charset=utf-8"
DEFAULT_WAIT = 300.0
MAX_WAIT = 600.0


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    #: the lab node whose agent received the request
    node: str
    read_body: Callable[[], bytes] = lambda: b""
    content_length: int | None = None
    #: set by the router: an anonymous reader under ACLs sees filtered (empty) answers
    filtered: bool = False

    def has(self, name: str) -> bool:
        return name in self.query

    def param(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        return values[0] if values else default

    @cached_property
    def body(self) -> bytes:
        return self.read_body()

    @property
    def token(self) -> str:
        return self.param("token") or self.headers.get("X-Consul-Token", "") or ""

    def suffix(self, prefix: str) -> str:
        return self.path[len(prefix):]


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    #: the request body was left unread: the connection must close
    close: bool = False


class Failure(Exception):
    def __init__(self, response: Response):
        super().__init__(response.status)
        self.response = response


def text(status: int, message: str, headers: list[tuple[str, str]] | None = None) -> Response:
    extra = [("Content-Type", TEXT)] if message else []
    return Response(status, message.encode(), extra + (headers or []))


def json_body(value: object, req: Request, headers: list[tuple[str, str]] | None = None,
              status: int = 200) -> Response:
    if req.has("pretty"):
        plain = json.loads(value) if isinstance(value, RawJSON) else value
        data = json.dumps(plain, indent=4).encode() + b"\n"
    elif isinstance(value, RawJSON):
        data = value.encode()
    else:
        data = json.dumps(value, separators=(",", ":")).encode()
    return Response(status, data, [("Content-Type", "application/json"), *(headers or [])])


def parse_uint(value: str) -> int:
    """Go's strconv.ParseUint, failing with its text (Consul answers 500 with it)."""
    if not re.fullmatch(r"[0-9]+", value):
        raise StateError(f'strconv.ParseUint: parsing "{value}": invalid syntax')
    return int(value)


@dataclass(frozen=True)
class Route:
    pattern: str
    methods: tuple[str, ...]
    handler: Callable[[ConsulAPI, Request], Response]
    #: False: no ACL at all (status). "filter": anonymous reads see empty answers
    acl: bool | str = True


class ConsulAPI:
    def __init__(self, state: ConsulState, *, acl_token: str | None = None,
                 flavour: ConsulFlavour | None = None):
        self.state = state
        self.acl_token = acl_token or None
        self.flavour = flavour or ConsulFlavour()
        from weavenomad_lab.consul.endpoints import ROUTES  # the handlers import this module

        self._routes = {r.pattern: r for r in ROUTES}

    # -- routing ----------------------------------------------------------------------------

    def _match(self, path: str) -> Route | None:
        route = self._routes.get(path)
        if route is not None:
            return route
        prefixes = [p for p in self._routes if p.endswith("/") and path.startswith(p)]
        return self._routes[max(prefixes, key=len)] if prefixes else None

    def handle(self, req: Request) -> Response:
        try:
            route = self._match(req.path)
            if route is None:
                if req.path + "/" in self._routes:  # Go's ServeMux redirects to the subtree
                    return Response(301, headers=[("Location", req.path + "/")])
                return Response(404)
            allow = ",".join(("OPTIONS", *route.methods))
            if req.method == "OPTIONS":
                return Response(200, headers=[("Allow", allow)])
            if req.method not in route.methods:
                return text(405, f"method {req.method} not allowed", [("Allow", allow)])
            denied = self._acl(route, req)
            if denied is not None:
                return denied
            return route.handler(self, req)
        except Failure as failure:
            return failure.response
        except BadRequest as exc:
            return text(400, str(exc))
        except StateError as exc:
            return text(500, str(exc))
        except Exception as exc:  # never a traceback on the wire
            log.exception("%s %s failed", req.method, req.path)
            return text(500, f"weavenomad lab: simulated Consul failed: {exc}")

    def _acl(self, route: Route, req: Request) -> Response | None:
        if self.acl_token is None or route.acl is False:
            return None
        token = req.token
        if token == self.acl_token:
            return None
        if token:
            return text(403, "ACL not found")
        if req.method == "GET" and route.acl == "filter":
            req.filtered = True
            return None
        return text(403, "Permission denied")

    # -- shared parsing ---------------------------------------------------------------------

    def check_dc(self, req: Request) -> None:
        dc = req.param("dc")
        if dc and dc != self.state.datacenter:
            raise Failure(text(500, "No path to datacenter"))

    def blocking_read(self, req: Request, query: Callable[[], Answer]) -> Answer:
        """Consul's ``parse`` then ``blockingQuery``: dc, consistency, ?index and ?wait."""
        self.check_dc(req)
        if req.has("stale") and req.has("consistent"):
            raise Failure(text(400, "Cannot specify ?stale with ?consistent, conflicting "
                                    "semantics."))
        timeout = DEFAULT_WAIT
        if req.param("wait"):
            try:
                timeout = parse_go_duration(req.param("wait"))
            except ValueError:
                raise Failure(text(400, "Invalid wait time")) from None
        min_index = 0
        if req.param("index"):
            if not re.fullmatch(r"[0-9]+", req.param("index")):
                raise Failure(text(400, "Invalid index"))
            min_index = int(req.param("index"))
        timeout = MAX_WAIT if timeout > MAX_WAIT else (DEFAULT_WAIT if timeout <= 0 else timeout)
        timeout += random.uniform(0, timeout / 16)
        return self.state.wait(query, min_index, timeout)

    def tenancy(self, req: Request, namespace: str | None = None,
                partition: str | None = None) -> tuple[str | None, str | None]:
        """(namespace, partition) a request addresses: ``?ns=``/``?partition=``, else the
        body's ``namespace``/``partition``, else "default"; (None, None) on Consul CE, which
        refuses the parameters (400, as its ``parseEntMeta``)."""
        flavour = self.flavour
        if not flavour.namespaces and req.param("ns"):
            raise Failure(text(400, 'Invalid query parameter: "ns" - Namespaces are a Consul '
                                    'Enterprise feature'))
        if not flavour.partitions and req.param("partition"):
            raise Failure(text(400, 'Invalid query parameter: "partition" - Partitions are a '
                                    'Consul Enterprise feature'))
        if not flavour.namespaces:
            return None, None
        namespace = req.param("ns") or namespace or DEFAULT_NAMESPACE
        partition = (req.param("partition") or partition or DEFAULT_PARTITION
                     if flavour.partitions else None)
        return namespace, partition

    def read_namespace(self, req: Request) -> str | None:
        """The namespace a read lists (None: every one, as on Consul CE or with ``ns=*``)."""
        namespace, _ = self.tenancy(req)
        return None if namespace in (None, "*") else namespace

    def check_write(self, namespace: str | None) -> None:
        """The lab's token may not write in the namespaces the settings deny it."""
        if namespace is not None and namespace in self.flavour.denied_namespaces:
            raise Failure(text(403, "Permission denied"))

    def meta_headers(self, req: Request, answer: Answer, consistency: bool) -> list:
        headers = [("X-Consul-Index", str(answer.index)), ("X-Consul-Knownleader", "true"),
                   ("X-Consul-Lastcontact", "0")]
        if consistency:
            level = "stale" if req.has("stale") else (
                "consistent" if req.has("consistent") else "leader")
            headers.append(("X-Consul-Effective-Consistency", level))
        return headers

    def read(self, req: Request, query: Callable[[], Answer], empty: object) -> Response:
        answer = self.blocking_read(req, query)
        body = empty if req.filtered else answer.body
        return json_body(body, req, self.meta_headers(req, answer, consistency=True))

    def leader(self) -> Node:
        servers = [n for n in self.state.nodes() if n.server] or self.state.nodes()
        return servers[0]
