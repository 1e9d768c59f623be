"""The emulated Weave HTTP API (127.0.0.1:6784 on each launched node): routing and answers.

Pure apart from the two side effects a handler may ask for through :class:`ApiContext`
(``expose`` the bridge address, ``save`` the IPAM). Shapes, status codes and content types follow
Weave 2.8.1 (``ipam/http.go``, ``prog/weaver/http.go``, ``router/http.go``) and the recorded
answers in ``fixtures/recorded/weave-*.json``: ``GET /ip/<id>`` looks in the default subnet only
and answers 200 with an empty body when there is nothing; ``GET /report`` wants
``Accept: application/json`` (or a ``format`` template) and answers 400 otherwise; errors are
Go's ``http.Error`` text. The lab has no weaveDNS and no plugin, so those sections are absent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Interface, IPv4Network
from urllib.parse import parse_qs, unquote, urlsplit

from weavenomad.errors import WeavenomadError
from weavenomad_lab.weave import cidr
from weavenomad_lab.weave import ipam as ipam_mod
from weavenomad_lab.weave import status as status_mod

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


@dataclass(frozen=True)
class Response:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    @property
    def content_type(self) -> str | None:
        return dict(self.headers).get("Content-Type")


@dataclass
class ApiContext:
    """One launched node as the API sees it."""

    me: status_mod.PeerInfo
    peers: list[status_mod.PeerInfo]
    ipam: ipam_mod.Ipam
    default_subnet: IPv4Network
    proxy_addresses: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    encryption: bool = False
    trusted_subnets: list[str] = field(default_factory=list)
    expose: Callable[[IPv4Interface], Awaitable[None]] | None = None
    save: Callable[[], None] = lambda: None
    #: launched peers with this peer's name (clones): Weave refuses to connect to them
    clones: list[status_mod.PeerInfo] = field(default_factory=list)
    #: launch targets (host addresses) with no Weave running there
    unreachable_targets: list[str] = field(default_factory=list)
    #: the consensus under way ({"Elector", "KnownNodes", "Quorum"}), None when none is
    paxos: dict | None = None
    #: waits until the IPAM may allocate in a subnet here (Weave's requests block until then)
    admit: Callable[[IPv4Network], Awaitable[None]] | None = None
    #: the router's version, as its report says it (the launch's images')
    version: str = status_mod.VERSION

    def report(self) -> dict:
        return status_mod.report(self)


def text(status: int, body: str) -> Response:
    if not body:
        return Response(status)
    return Response(status, (("Content-Type", TEXT),), body.encode())


def go_error(status: int, message: str) -> Response:
    headers = (("Content-Type", TEXT), ("X-Content-Type-Options", "nosniff"))
    return Response(status, headers, (message + "\n").encode())


def json_response(data: object, *, indent: str | None = None) -> Response:
    body = json.dumps(data, indent=indent) if indent else json.dumps(data, separators=(",", ":"))
    return Response(200, (("Content-Type", JSON),), (body + ("" if indent else "\n")).encode())


NOT_FOUND = go_error(404, "404 page not found")
METHOD_NOT_ALLOWED = Response(405)

Handler = Callable[[Request, ApiContext, dict, dict], Awaitable[Response]]
_ROUTES: list[tuple[re.Pattern, dict[str, Handler]]] = []


def route(pattern: str, *methods: str) -> Callable[[Handler], Handler]:
    regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")

    def register(handler: Handler) -> Handler:
        for existing, table in _ROUTES:
            if existing.pattern == regex.pattern:
                table.update({m: handler for m in methods})
                return handler
        _ROUTES.append((regex, {m: handler for m in methods}))
        return handler

    return register


async def handle(request: Request, ctx: ApiContext) -> Response:
    """Answer one request the way Weave's router would."""
    parts = urlsplit(request.target)
    path = unquote(parts.path)
    query = parse_qs(parts.query)
    for regex, table in _ROUTES:
        match = regex.match(path)
        if match:
            handler = table.get(request.method)
            if handler is None:
                return METHOD_NOT_ALLOWED
            try:
                return await handler(request, ctx, match.groupdict(), query)
            except WeavenomadError as exc:
                return go_error(400, exc.one_line())
    return NOT_FOUND


def _cidr_text(params: dict) -> str:
    return f"{params['ip']}/{params['prefixlen']}"


def _addresses(interfaces: list[IPv4Interface]) -> str:
    return " ".join(str(i) for i in interfaces)


# -- status and report -----------------------------------------------------------------------

#: ``/status/<view>`` and ``weave status <view>``
STATUS_VIEWS = {
    "targets": status_mod.targets_text,
    "connections": status_mod.connections_text,
    "peers": status_mod.peers_text,
    "dns": lambda report: "",  # the lab has no weaveDNS: no entries
    "ipam": status_mod.ipam_text,
}


@route("/status", "GET")
async def _status(request, ctx, params, query) -> Response:
    return text(200, status_mod.status_text(ctx.report()))


@route("/status/{view}", "GET")
async def _status_view(request, ctx, params, query) -> Response:
    view = STATUS_VIEWS.get(params["view"])
    if view is None:
        return NOT_FOUND
    return text(200, view(ctx.report()))


@route("/report", "GET")
async def _report(request, ctx, params, query) -> Response:
    if (request.header("Accept") or "").strip() == JSON:
        return json_response(ctx.report(), indent="    ")
    formats = query.get("format", [])
    if len(formats) != 1:
        return go_error(400, "error: must supply one format parameter")
    try:
        return text(200, status_mod.render_format(formats[0], ctx.report()))
    except ValueError as exc:
        return go_error(400, str(exc))


@route("/proxyaddrs", "GET")
async def _proxyaddrs(request, ctx, params, query) -> Response:
    return text(200, "".join(a + "\n" for a in ctx.proxy_addresses))


# -- IPAM ------------------------------------------------------------------------------------


@route("/ipinfo/defaultsubnet", "GET")
async def _default_subnet(request, ctx, params, query) -> Response:
    return text(200, str(ctx.default_subnet))


@route("/ip", "GET")
async def _owned(request, ctx, params, query) -> Response:
    owned = ctx.ipam.owned(ctx.me.node)
    order = sorted(owned, key=lambda ident: (ident != ipam_mod.EXPOSE_IDENT, ident))
    return json_response({
        "owned": [{"containerid": i, "addrs": [str(a) for a in owned[i]]} for i in order]
    })


@route("/ip/{id}", "GET", "POST", "DELETE")
async def _ip(request, ctx, params, query) -> Response:
    ident = params["id"]
    if request.method == "GET":
        return text(200, _addresses(ctx.ipam.lookup(ctx.me.node, ident, ctx.default_subnet)))
    if request.method == "POST":
        await _admit(ctx, ctx.default_subnet)
        address = ctx.ipam.allocate(ctx.me.node, ident, ctx.default_subnet)
        ctx.save()
        return text(200, str(address))
    if not ctx.ipam.release(ctx.me.node, ident):
        return go_error(400, f"Delete: no addresses for {ident}")
    ctx.save()
    return Response(204)


@route("/ip/{id}/{ip}/{prefixlen}", "GET", "POST", "PUT")
async def _ip_in_subnet(request, ctx, params, query) -> Response:
    ident, given = params["id"], _cidr_text(params)
    if request.method == "PUT":
        claim = cidr.AddressRequest(given, address=cidr.parse_cidr(given))
        await _admit(ctx, claim.address.network)
        try:
            ctx.ipam.claim(ctx.me.node, ident, claim.address)
        except WeavenomadError as exc:
            return go_error(400, cidr.api_answer(claim, exc))
        ctx.save()
        return Response(204)
    subnet = cidr.parse_subnet(given)
    if request.method == "GET":
        return text(200, _addresses(ctx.ipam.lookup(ctx.me.node, ident, subnet)))
    await _admit(ctx, subnet)
    address = ctx.ipam.allocate(ctx.me.node, ident, subnet)
    ctx.save()
    return text(200, str(address))


async def _admit(ctx: ApiContext, subnet: IPv4Network) -> None:
    if ctx.admit is not None:
        await ctx.admit(subnet)


@route("/ip/{id}/{ip}", "DELETE")
async def _free_one(request, ctx, params, query) -> Response:
    address = cidr.parse_ip(params["ip"])
    if not ctx.ipam.free(ctx.me.node, params["id"], address):
        return go_error(400, f"Unable to free: {address} not owned by {params['id']}")
    ctx.save()
    return Response(204)


# -- expose ----------------------------------------------------------------------------------


@route("/expose/{ip}/{prefixlen}", "POST")
async def _expose(request, ctx, params, query) -> Response:
    try:
        address = cidr.parse_cidr(_cidr_text(params))
    except WeavenomadError as exc:
        return go_error(400, f"unable to parse ip addr: {exc.one_line()}")
    if ctx.expose is None:
        return go_error(500, "unable to expose: the weave bridge is not up")
    try:
        await ctx.expose(address)
    except WeavenomadError as exc:
        return go_error(500, f"unable to expose: {exc.one_line()}")
    return Response(204)
