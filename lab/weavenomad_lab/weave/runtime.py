"""One launched node of the emulated Weave: its proxy, its HTTP API listeners, its Docker event
watcher, and the attach / expose / ps work they share. Lives inside the daemon's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Interface, IPv4Network
from typing import TYPE_CHECKING
from urllib.parse import quote

from weavenomad.errors import ValidationError, WeavenomadError
from weavenomad_lab import layout
from weavenomad_lab.errors import LabError
from weavenomad_lab.netns import listen_tcp
from weavenomad_lab.weave import api, cidr, flavours, plumbing, proxy, status, weavewait, wire
from weavenomad_lab.weave.ipam import EXPOSE_IDENT

if TYPE_CHECKING:
    from weavenomad_lab.weave.daemon import WeaveDaemon

log = logging.getLogger(__name__)

API_BODY_LIMIT = 1 << 20
#: seconds between attempts to re-open a node's Docker event stream after it broke
EVENTS_RETRY = 1.0


@dataclass
class LaunchOptions:
    """The ``weave launch`` flags the emulation acts on (the others are accepted and ignored)."""

    ipalloc_range: str | None = None
    default_subnet: str | None = None
    no_default_ipalloc: bool = False
    proxy: bool = True
    peers: list[str] = field(default_factory=list)
    nickname: str | None = None
    name: str | None = None
    password: bool = False
    trusted_subnets: list[str] = field(default_factory=list)
    #: ``--ipalloc-init``: ``consensus[=<count>]`` (the default), ``seed=<name>,...`` or
    #: ``observer``
    ipalloc_init: str | None = None
    #: the lab's lever for a router that dies at start with this message (the shim takes it
    #: from WEAVENOMAD_LAB_WEAVE_FATAL), as a real one dies of a bad range or a crash
    fatal: str | None = None
    #: the Weave images the launch runs, with their Docker API version (see :mod:`.flavours`);
    #: weaveworks' 2.8.1 for launches recorded before it was kept
    flavour: flavours.Flavour = field(default_factory=flavours.Flavour)

    def to_json(self) -> dict:
        return {**asdict(self), "flavour": self.flavour.to_json()}

    @property
    def init_mode(self) -> str:
        return (self.ipalloc_init or "consensus").partition("=")[0]

    def quorum(self) -> int:
        """Weave's quorum for consensus: a majority of ``consensus=<count>``, by default of
        the peers named at launch and this one (site/ipam.md)."""
        mode, _, value = (self.ipalloc_init or "consensus").partition("=")
        count = int(value) if mode == "consensus" and value.isdigit() else len(self.peers) + 1
        return count // 2 + 1

    def seeds(self) -> list[str]:
        mode, _, value = (self.ipalloc_init or "").partition("=")
        return [name for name in value.split(",") if name] if mode == "seed" else []

    def flags(self) -> list[str]:
        """The router's own flags for these options, in the order Weave's script passes
        them (recorded: day-two/1d-04), the peers last."""
        flags = []
        if self.nickname:
            flags += ["--nickname", self.nickname]
        if self.name:
            flags += ["--name", self.name]
        if self.ipalloc_init:
            flags += ["--ipalloc-init", self.ipalloc_init]
        if self.ipalloc_range:
            flags += ["--ipalloc-range", self.ipalloc_range]
        if self.no_default_ipalloc:
            flags.append("--no-default-ipalloc")
        if self.default_subnet:
            flags += ["--ipalloc-default-subnet", self.default_subnet]
        if self.trusted_subnets:
            flags += ["--trusted-subnets", ",".join(self.trusted_subnets)]
        if not self.proxy:
            flags.append("--proxy=false")
        return [*flags, *self.peers]

    @classmethod
    def from_json(cls, data: dict) -> LaunchOptions:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["flavour"] = flavours.Flavour.from_json(known.get("flavour"))
        return cls(**known)


def machine_id(node: layout.NodeLayout) -> str | None:
    try:
        return node.machine_id_file.read_text().strip() or None
    except FileNotFoundError:
        return None


def peer_info(lab_name: str, node: layout.NodeLayout, options: LaunchOptions) -> status.PeerInfo:
    digest = hashlib.sha256(f"{lab_name}/{node.name}".encode()).digest()
    # Weave derives its peer name from the machine id (a locally administered unicast MAC):
    # nodes cloned with the same /etc/machine-id get the same name
    named = hashlib.sha256((machine_id(node) or f"{lab_name}/{node.name}").encode()).digest()
    mac = bytes([named[0] & 0xFE | 0x02]) + named[1:6]
    name = options.name or ":".join(f"{b:02x}" for b in mac)
    return status.PeerInfo(
        node=node.name, index=node.index, name=name, nickname=options.nickname or node.name,
        host_ip=node.host_ip, uid=int.from_bytes(digest[6:14], "big") >> 1,
        short_id=int.from_bytes(digest[14:16], "big") & 0xFFF,
    )


class NodeRuntime:
    def __init__(
        self, daemon: WeaveDaemon, node: layout.NodeLayout, options: LaunchOptions,
        default_subnet: IPv4Network, net: plumbing.NodeNet,
    ):
        self.daemon = daemon
        self.node = node
        self.options = options
        self.default_subnet = default_subnet
        self.net = net
        self.peer = peer_info(daemon.lab.name, node, options)
        self.docker_socket = str(node.docker_sock)
        self.servers: list[asyncio.AbstractServer] = []
        self.tasks: list[asyncio.Task] = []
        self.attached: dict[tuple[str, int], WeavenomadError | None] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.api_tasks: set[asyncio.Task] = set()
        self.events_since = "0"
        #: an allocation or claim was asked for: Weave seeks consensus from then on
        self.asked = False
        self.proxy = proxy.Proxy(
            self.docker_socket, daemon.volume_dir, self.ensure_attached,
            no_default_ipalloc=options.no_default_ipalloc,
        )

    @property
    def proxy_addresses(self) -> list[str]:
        return [f"unix://{self.node.weave_sock}"] if self.options.proxy else []

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        await plumbing.bring_up_node(self.net)
        sockets = [listen_tcp("127.0.0.1", layout.WEAVE_API_PORT, netns=self.node.netns)]
        if "weave_api" in self.node.ports:
            sockets.append(listen_tcp("127.0.0.1", self.node.ports["weave_api"]))
        for sock in sockets:
            self.servers.append(await asyncio.start_server(
                self._api_connection, sock=sock, limit=wire.HEAD_LIMIT
            ))
        if self.options.proxy:
            self.servers.append(await self.proxy.serve(self.node.weave_sock))
        # events from before the reconcile are replayed (``since``): none falls in the gap
        self.events_since = f"{time.time():.9f}"
        await self.reconcile()
        self.tasks.append(asyncio.create_task(self._watch_events()))

    async def stop(self, unlink_socket: bool = True) -> None:
        """Stop serving. ``unlink_socket`` False: a router that was stopped or died leaves
        its proxy's socket file behind, as the real one does (day-two/1b, 1d)."""
        pending = {task for task in self.tasks if not task.done()}
        while pending:
            for task in pending:
                task.cancel()
            # Python 3.11's asyncio.wait_for can swallow a cancellation that arrives just as
            # the call it waits for completes (CPython gh-86296): a task still running after
            # a while is asked again
            _, pending = await asyncio.wait(pending, timeout=1.0)
        for server in self.servers:
            server.close()
        # long-lived streams (docker events through the proxy) must not outlive a reset
        self.proxy.close_connections()
        for task in list(self.api_tasks):
            task.cancel()
        self.servers.clear()
        if self.options.proxy and unlink_socket:
            self.node.weave_sock.unlink(missing_ok=True)

    async def reconcile(self) -> None:
        """Catch up with containers that came and went while nobody watched."""
        reply = await wire.docker_call(self.docker_socket, "GET", "/containers/json?all=1")
        if reply.status != 200:
            raise LabError(f"dockerd of node {self.node.name} answered {reply.status}: "
                           f"{reply.message()}")
        containers = reply.json()
        ipam = self.daemon.ipam
        ipam.forget_missing(self.node.name, [c["Id"] for c in containers])
        for c in containers:
            if c.get("State") == "running":
                self.tasks.append(asyncio.create_task(self._attach_quietly(c["Id"])))
            else:
                ipam.mark_dead(self.node.name, c["Id"], time.time())
        self.daemon.save_ipam()

    async def _attach_quietly(self, ident: str) -> None:
        try:
            await self.ensure_attached(ident)
        except WeavenomadError as exc:
            log.warning("node %s: container %s: %s", self.node.name, ident[:12], exc.one_line())

    async def _watch_events(self) -> None:
        filters = quote(json.dumps({"type": ["container"]}))
        while True:
            try:
                query = f"since={self.events_since}&filters={filters}"
                async for event in wire.docker_events(self.docker_socket, query):
                    if event.get("timeNano"):
                        self.events_since = f"{int(event['timeNano']) / 1e9:.9f}"
                    self._on_event(event)
            except (OSError, asyncio.TimeoutError, wire.WireError, ValueError) as exc:
                log.warning("node %s: docker events: %s", self.node.name, exc)
            await asyncio.sleep(EVENTS_RETRY)  # a broken stream: retry, bounded by cancel()
            with contextlib.suppress(WeavenomadError, OSError, asyncio.TimeoutError):
                await self.reconcile()

    def _on_event(self, event: dict) -> None:
        ident = event.get("id") or event.get("Actor", {}).get("ID", "")
        action = event.get("Action") or event.get("status")
        ipam = self.daemon.ipam
        if action == "start":
            self.tasks.append(asyncio.create_task(self._attach_quietly(ident)))
            self.tasks = [t for t in self.tasks if not t.done()]
        elif action == "die":
            if ipam.mark_dead(self.node.name, ident, time.time()):
                self.daemon.save_ipam()
                self.daemon.wake_sweeper()
        elif action == "destroy":
            if ipam.release(self.node.name, ident):
                self.daemon.save_ipam()
            self.locks.pop(ident, None)
            for key in [k for k in self.attached if k[0] == ident]:
                del self.attached[key]

    # -- attach -------------------------------------------------------------------------------

    async def ensure_attached(self, ref: str) -> None:
        """Attach the container ``ref`` if the proxy should; once per container process.
        On failure the container is killed (as Weave does) and the error is raised."""
        reply = await wire.docker_call(self.docker_socket, "GET", f"/containers/{quote(ref)}/json")
        if reply.status == 404:
            return
        if reply.status != 200:
            raise LabError(f"inspecting container {ref}: {reply.message()}")
        info = reply.json()
        ident, pid = info["Id"], int(info["State"].get("Pid") or 0)
        lock = self.locks.setdefault(ident, asyncio.Lock())
        async with lock:
            if (ident, pid) in self.attached:
                error = self.attached[(ident, pid)]
                if error is not None:
                    raise error
                return
            started = time.monotonic()
            try:
                await self._attach(info)
            except WeavenomadError as exc:
                self.attached[(ident, pid)] = exc
                with contextlib.suppress(OSError, asyncio.TimeoutError, wire.WireError):
                    await wire.docker_call(self.docker_socket, "POST", f"/containers/{ident}/kill")
                raise
            self.attached[(ident, pid)] = None
            log.debug("node %s: %s handled in %.0f ms", self.node.name, ident[:12],
                      (time.monotonic() - started) * 1000)

    async def _attach(self, info: dict) -> None:
        config, state = info.get("Config") or {}, info.get("State") or {}
        entrypoint = config.get("Entrypoint") or []
        if not state.get("Running") or not entrypoint or entrypoint[0] != weavewait.ENTRYPOINT:
            return
        network_mode = (info.get("HostConfig") or {}).get("NetworkMode") or ""
        tokens = proxy.weave_cidrs(network_mode, config.get("Env"), self.options.no_default_ipalloc)
        if tokens is None:
            return
        ident, ipam, node = info["Id"], self.daemon.ipam, self.node.name
        requests = [cidr.proxy_request(token) for token in tokens or [cidr.DEFAULT_NET]]
        for request in requests:  # Weave's proxy holds the container until its IPAM can
            await self.admit(self.subnet_of(request))
        try:  # token by token, as Weave's proxy: a bad token fails after the ones before it
            addresses = [self._obtain_for_proxy(ident, request) for request in requests]
            await plumbing.attach(self.net, int(state["Pid"]), addresses)
        except WeavenomadError:
            ipam.release(node, ident)
            raise
        finally:
            self.daemon.save_ipam()

    def subnet_of(self, request: cidr.AddressRequest) -> IPv4Network:
        if request.address is not None:
            return request.address.network
        return request.subnet or self.default_subnet

    async def admit(self, subnet: IPv4Network, client_gone: asyncio.Future | None = None) -> None:
        """Return once Weave's IPAM may allocate in ``subnet`` here (it blocks until then)."""
        await self.daemon.await_space(self, subnet, client_gone)

    def _obtain_for_proxy(self, ident: str, request: cidr.AddressRequest) -> IPv4Interface:
        try:
            return self._obtain(ident, request)
        except WeavenomadError as exc:
            raise cidr.ipam_refusal(request, exc) from None

    def _obtain(self, ident: str, request: cidr.AddressRequest) -> IPv4Interface:
        ipam = self.daemon.ipam
        if request.address is not None:
            return ipam.claim(self.node.name, ident, request.address)
        return ipam.allocate(self.node.name, ident, request.subnet or self.default_subnet)

    # -- weave expose / hide / ps -------------------------------------------------------------

    async def expose(self, args: list[str]) -> list[IPv4Interface]:
        """``weave expose`` of the script's collected arguments. As the script, each is asked
        of the IPAM in turn (what was granted before a refusal stays granted; the refusal
        reads as the API's answer) and the bridge gets the addresses only when all were."""
        addresses = []
        try:
            for arg in args or [cidr.DEFAULT_NET]:
                request = cidr.script_request(arg)
                try:
                    addresses.append(self._obtain(EXPOSE_IDENT, request))
                except WeavenomadError as exc:
                    raise type(exc)(cidr.api_answer(request, exc)) from None
        finally:
            self.daemon.save_ipam()
        for address in addresses:
            await plumbing.expose(self.net, address)
        return addresses

    async def hide(self, args: list[str]) -> list[str]:
        """``weave hide`` of the script's collected arguments. As the script: first every
        ``net:`` one is looked up in the IPAM (a refusal stops it before any change), then the
        addresses leave the bridge, then those looked up are freed. A plain address is not
        looked up, so it stays claimed in the IPAM; one that is no address at all
        (10.32.1.300/24) is only echoed."""
        ipam, node = self.daemon.ipam, self.node.name
        shown: list[str] = []
        on_bridge: list[IPv4Interface] = []
        looked_up: list[IPv4Interface] = []
        for arg in args or [cidr.DEFAULT_NET]:
            if arg == cidr.DEFAULT_NET or arg.startswith("net:"):
                request = cidr.script_request(arg)
                found = ipam.lookup(node, EXPOSE_IDENT, request.subnet or self.default_subnet)
                looked_up += found
                on_bridge += found
                shown += map(str, found)
                continue
            try:
                on_bridge.append(cidr.parse_cidr(arg))
            except ValidationError:
                pass  # the script's grep finds no such address on the bridge
            shown.append(arg)
        for address in on_bridge:
            await plumbing.hide(self.net, address)
        for address in looked_up:
            ipam.free(node, EXPOSE_IDENT, address.ip)
        self.daemon.save_ipam()
        return shown

    async def ps(self, refs: list[str]) -> list[list[str]]:
        """Rows ``[id, mac, ip/len, ...]`` as ``weave ps`` prints them."""
        rows = []
        if not refs:
            bridge = await plumbing.bridge_netdev(self.net)
            if bridge is not None:
                rows.append([EXPOSE_IDENT, bridge.mac, *map(str, bridge.addresses)])
            reply = await wire.docker_call(self.docker_socket, "GET", "/containers/json")
            refs = [c["Id"][:12] for c in reply.json()] if reply.status == 200 else []
        for ref in refs:
            if ref == EXPOSE_IDENT:
                bridge = await plumbing.bridge_netdev(self.net)
                if bridge is not None:
                    rows.append([ref, bridge.mac, *map(str, bridge.addresses)])
                continue
            reply = await wire.docker_call(
                self.docker_socket, "GET", f"/containers/{quote(ref)}/json"
            )
            state = (reply.json().get("State") or {}) if reply.status == 200 else {}
            pid = int(state.get("Pid") or 0)
            netdev = await plumbing.container_netdev(pid) if pid else None
            if netdev is not None:
                rows.append([ref, netdev.mac, *map(str, netdev.addresses)])
        return rows

    # -- the HTTP API -------------------------------------------------------------------------

    def api_context(self) -> api.ApiContext:
        return api.ApiContext(
            me=self.peer,
            peers=self.daemon.reachable(self),
            ipam=self.daemon.ipam,
            clones=self.daemon.clones(self),
            unreachable_targets=self.daemon.unreachable_targets(self),
            paxos=self.daemon.paxos(self),
            admit=self.admit,
            default_subnet=self.default_subnet,
            proxy_addresses=self.proxy_addresses,
            targets=list(self.options.peers),
            encryption=self.options.password,
            trusted_subnets=list(self.options.trusted_subnets),
            expose=self._expose_for_api,
            save=self.daemon.save_ipam,
            version=f"{self.options.flavour.version}{flavours.LAB_SUFFIX}",
        )

    async def _expose_for_api(self, address) -> None:
        # one change of the bridge at a time, with the weave command's expose and hide: the real
        # script checks the bridge and adds an address within milliseconds, a window that
        # the emulator's awaits would otherwise widen into a race real nodes do not see
        async with self.daemon.changes:
            await plumbing.expose(self.net, address)

    async def _api_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        task = asyncio.current_task()
        self.api_tasks.add(task)
        try:
            while True:
                head = await wire.read_head(reader)
                if head is None:
                    break
                body = await wire.read_body(
                    reader, head, wire.request_body_kind(head), API_BODY_LIMIT
                )
                request = api.Request(head.method, head.target, head.headers, body)
                response = await api.handle(request, self.api_context())
                close = (head.get("Connection") or "").lower() == "close"
                writer.write(wire.render_response(
                    response.status, list(response.headers), response.body, close=close
                ))
                await writer.drain()
                if close:
                    break
        except (wire.WireError, OSError, asyncio.IncompleteReadError) as exc:
            log.debug("weave API connection: %s", exc)
        finally:
            self.api_tasks.discard(task)
            writer.close()
