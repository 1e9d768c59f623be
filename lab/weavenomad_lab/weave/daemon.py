"""The weave emulator process (one per lab) and its lab component.

``python -m weavenomad_lab.weave.daemon --state-dir S`` serves every node of the lab in one
asyncio loop: a control socket (``S/weave/control.sock``) for the ``weave`` shim, and per
launched node a :class:`~weavenomad_lab.weave.runtime.NodeRuntime`. Its state lives in
``S/weave/``: ``ipam.json`` (the shared IPAM), ``launched.json`` (which nodes are launched, with
which flags) and ``weavewait/`` (the volume mounted at ``/w``). A restarted daemon relaunches the
recorded nodes, so containers keep their addresses across restarts.

A node's Weave runs while its router container does (:mod:`.containers`): the daemon follows
each node's dockerd events, so ``docker stop/restart weave``, a crash and dockerd's restart
policy after a reboot act on the proxy and the API as they do on a real node, and ``weave
status``/``reset`` of a stopped Weave answer with the real script's words.

:data:`COMPONENT` plugs it into ``weavenomad lab up/down/status``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shlex
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path

from weavenomad.errors import ConflictError, ValidationError, WeavenomadError
from weavenomad_lab import layout, netns, process
from weavenomad_lab.errors import LabError
from weavenomad_lab.weave import (
    COMPONENT_NAME,
    api,
    cidr,
    containers,
    control_call,
    control_socket,
    flavours,
    plumbing,
    proxy,
    weavewait,
    wire,
)
from weavenomad_lab.weave import ipam as ipam_mod
from weavenomad_lab.weave import status as status_mod
from weavenomad_lab.weave.runtime import LaunchOptions, NodeRuntime, peer_info

log = logging.getLogger("weavenomad_lab.weave")

#: the real script's words, which scripts may look for
NOT_LAUNCHED = "weave container is not present. Have you launched it?"
NOT_RUNNING = "weave container is not running."
#: ``weave reset`` of a node whose router container exists but does not run (recorded:
#: day-two/1b-04), and what reset --force says then (1b-07, 1b-10)
RESET_REFUSED = ("ERROR: weave is not running; unable to remove from cluster.\n"
                 "Re-launch weave before reset or use --force to override.\n")
RESET_NOT_RUNNING = "Weave is not running (ignore on Kubernetes).\n"
#: the script's last words when the router died during ``weave launch`` (day-two/1d-01)
LAUNCH_DIED = "The weave container has died. Consult the container logs for further details."
#: seconds between attempts to follow a node's router container while its dockerd is away
FOLLOW_RETRY = 1.0
#: seconds between looks at the peers while an allocation waits for consensus or a grant
IPAM_POLL = 0.2


class ScriptExit(LabError):
    """The weave script ends with this exit code and exactly this stderr (and stdout)."""

    def __init__(self, code: int, stderr: str, stdout: str = ""):
        super().__init__(stderr.strip().splitlines()[0] if stderr.strip() else f"exit {code}")
        self.code, self.stderr, self.stdout = code, stderr, stdout


class WeaveDaemon:
    def __init__(
        self, lab: layout.LabLayout, died_timeout: float = ipam_mod.CONTAINER_DIED_TIMEOUT
    ):
        self.lab = lab
        self.dir = lab.component_dir(COMPONENT_NAME)
        self.volume_dir = self.dir / "weavewait"
        self.ipam_file = self.dir / "ipam.json"
        self.launched_file = self.dir / "launched.json"
        self.died_timeout = died_timeout
        self.ipam = ipam_mod.load(self.ipam_file)
        self.runtimes: dict[str, NodeRuntime] = {}
        #: the launch flags of every node whose router container exists (running or not)
        self.options: dict[str, LaunchOptions] = {}
        #: the router process each runtime serves for (its container's StartedAt)
        self.router_started: dict[str, str] = {}
        self._stop = asyncio.Event()
        self._sweep_wake = asyncio.Event()
        # launch/reset/expose/hide and the router's comings and goings, one at a time
        self.changes = asyncio.Lock()

    # -- shared state -------------------------------------------------------------------------

    def peers(self) -> list[status_mod.PeerInfo]:
        return [rt.peer for rt in sorted(self.runtimes.values(), key=lambda r: r.node.index)]

    # -- the peers' connections and the IPAM's consensus ------------------------------------

    def _connected(self, rt: NodeRuntime) -> list[NodeRuntime]:
        """``rt`` and the running peers it is connected to: every launched node shares the
        lab's fabric, except one with the same peer name, which Weave refuses."""
        return [rt, *(o for o in sorted(self.runtimes.values(), key=lambda r: r.node.index)
                      if o is not rt and o.peer.name != rt.peer.name)]

    def reachable(self, rt: NodeRuntime) -> list[status_mod.PeerInfo]:
        return [o.peer for o in self._connected(rt)]

    def clones(self, rt: NodeRuntime) -> list[status_mod.PeerInfo]:
        return [o.peer for o in self.runtimes.values()
                if o is not rt and o.peer.name == rt.peer.name]

    def unreachable_targets(self, rt: NodeRuntime) -> list[str]:
        running = {o.node.host_ip for o in self.runtimes.values()}
        return [t for t in rt.options.peers if t.rsplit(":", 1)[0] not in running]

    def _voters(self, rt: NodeRuntime) -> list[NodeRuntime]:
        return [o for o in self._connected(rt) if o.options.init_mode == "consensus"]

    def paxos(self, rt: NodeRuntime) -> dict | None:
        """What ``/report`` says of a consensus under way (none before the first request)."""
        if self.ipam.ring or not rt.asked or rt.options.seeds():
            return None
        observer = rt.options.init_mode == "observer"
        return {"Elector": not observer, "KnownNodes": len(self._voters(rt)),
                "Quorum": 0 if observer else rt.options.quorum()}

    def _try_space(self, rt: NodeRuntime, subnet: IPv4Network) -> bool:
        """Whether the IPAM may allocate in ``subnet`` on ``rt`` now: forms the ring once a
        quorum of consensus peers is connected (or from the seed), grants space to a peer
        that joined a ring it has no share of."""
        rt.asked = True
        ipam, me = self.ipam, rt.peer
        if not ipam.ring:
            seeds = rt.options.seeds()
            voters = self._voters(rt)
            if seeds:
                known = {o.peer.name: o.peer.nickname for o in self._connected(rt)}
                ipam.form_ring([(name, known.get(name, "")) for name in seeds])
            elif rt.options.init_mode != "consensus" or len(voters) < rt.options.quorum():
                return False
            else:
                ipam.form_ring([(o.peer.name, o.peer.nickname) for o in voters])
                log.info("IPAM consensus among %s", ", ".join(o.node.name for o in voters))
            self.save_ipam()
        if ipam.owns_space(me.name):
            return True
        donors = {o.peer.name for o in self._connected(rt)[1:]}
        if ipam.grant(me.name, me.nickname, subnet, donors):
            self.save_ipam()
            return True
        return False

    async def await_space(self, rt: NodeRuntime, subnet: IPv4Network,
                          client_gone: asyncio.Future | None = None) -> None:
        """Block, as Weave's allocator does, until ``rt`` may allocate in ``subnet``; give up
        when the asker goes away or the node's Weave stops."""
        while not self._try_space(rt, subnet):
            if client_gone is not None and client_gone.done():
                raise LabError("the request was cancelled while awaiting IPAM consensus")
            if self.runtimes.get(rt.node.name) is not rt:
                raise LabError(NOT_RUNNING)
            await asyncio.sleep(IPAM_POLL)

    async def rmpeer(self, node_name: str, names: list[str]) -> str:
        """``weave rmpeer``: this peer takes over the space of each named peer."""
        rt = await self.runtime(node_name)
        out = []
        for name in names:
            found = [s.peer for s in self.ipam.ring.values() if name in (s.peer, s.nickname)]
            if rt.peer.name in found:
                raise ValidationError(f"cannot remove {name}: it is this peer")
            taken = sum(self.ipam.take_over(peer, rt.peer.name, rt.peer.nickname)
                        for peer in found)
            out.append(f"{taken} IPs taken over from {name}\n")
        self.save_ipam()
        return "".join(out)

    def save_ipam(self) -> None:
        self.ipam.save(self.ipam_file)

    def wake_sweeper(self) -> None:
        self._sweep_wake.set()

    def _save_launched(self) -> None:
        data = {name: options.to_json() for name, options in sorted(self.options.items())}
        tmp = self.launched_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(tmp, self.launched_file)

    # -- main loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        weavewait.prepare(self.volume_dir)
        try:
            saved = json.loads(self.launched_file.read_text())
        except (OSError, ValueError):
            saved = {}
        self.options = {name: LaunchOptions.from_json(o) for name, o in saved.items()}
        for name in list(self.options):  # before answering: ready means relaunched
            async with self.changes:
                try:
                    await self._follow_state(self.lab.node(name))
                except WeavenomadError as exc:
                    log.warning("relaunching node %s failed: %s", name, exc.one_line())
        path = control_socket(self.dir)
        path.unlink(missing_ok=True)
        server = await asyncio.start_unix_server(self._control, path=str(path))
        path.chmod(0o600)
        background = [asyncio.create_task(self._sweep())]
        background += [asyncio.create_task(self._follow_router(node)) for node in self.lab.nodes]
        log.info("weave emulator ready on %s", path)
        await self._stop.wait()
        for task in background:
            task.cancel()
        server.close()
        for rt in list(self.runtimes.values()):
            await rt.stop()  # the network stays: a restarted daemon takes over
        path.unlink(missing_ok=True)

    def request_stop(self) -> None:
        self._stop.set()

    async def _sweep(self) -> None:
        """Free the addresses of containers dead longer than the timeout, when they are due."""
        while True:
            due = self.ipam.next_expiry(self.died_timeout)
            self._sweep_wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                timeout = None if due is None else max(0.0, due - time.time())
                await asyncio.wait_for(self._sweep_wake.wait(), timeout)
            if self.ipam.sweep(time.time(), self.died_timeout):
                self.save_ipam()

    # -- the router container -----------------------------------------------------------------

    async def _follow_router(self, node: layout.NodeLayout) -> None:
        """Keep the node's Weave in step with its router container, whoever starts or stops
        it (``docker restart weave``, dockerd's restart policy after a reboot, a crash)."""
        while True:
            since = f"{time.time():.9f}"
            try:
                async with self.changes:
                    await self._follow_state(node)
                query = containers.router_events_query(since)
                async for _event in wire.docker_events(str(node.docker_sock), query):
                    async with self.changes:
                        await self._follow_state(node)
            except (OSError, asyncio.TimeoutError, wire.WireError, ValueError,
                    WeavenomadError) as exc:
                log.debug("node %s: following the router container: %s", node.name, exc)
            await asyncio.sleep(FOLLOW_RETRY)

    async def _follow_state(self, node: layout.NodeLayout) -> None:
        """(Lock held.) The proxy and API run exactly while the router container does."""
        router = await containers.state(str(node.docker_sock), containers.ROUTER)
        options = self.options.get(node.name)
        running = router is not None and router.running
        if running and node.name in self.runtimes and \
                self.router_started.get(node.name) != router.started:
            # the router restarted while nobody watched (dockerd itself restarted, e.g. for
            # a Docker upgrade): the new process starts over, as a real router does
            log.info("node %s: the router container restarted: Weave starts again", node.name)
            await self.runtimes.pop(node.name).stop(unlink_socket=False)
        if running and node.name not in self.runtimes and options and not options.fatal:
            refused = await flavours.refusal(str(node.docker_sock), options.flavour.api_version)
            if refused is not None:
                # the router's first act is its proxy's call to Docker, with its pinned API
                # version: refused, it logs FATA and exits; Docker restarts it (docker26/V00)
                log.info("node %s: Docker refuses Weave %s's API %s: the router dies",
                         node.name, options.flavour.version, options.flavour.api_version)
                await containers.die(str(node.docker_sock), containers.ROUTER,
                                     flavours.proxy_refused(refused))
                return
            log.info("node %s: the router container runs: Weave starts", node.name)
            await self._start_runtime(node, options)
            self.router_started[node.name] = router.started
        elif not running and node.name in self.runtimes:
            log.info("node %s: the router container stopped: Weave stops", node.name)
            # a router that is stopped or dies leaves its socket file behind (day-two/1b)
            await self.runtimes.pop(node.name).stop(unlink_socket=False)

    # -- operations ---------------------------------------------------------------------------

    async def runtime(self, node: str) -> NodeRuntime:
        """The node's running Weave; else the script's words for a stopped or absent one."""
        found = self.lab.node(node)
        if found.name in self.runtimes:
            return self.runtimes[found.name]
        router = None
        with contextlib.suppress(LabError):
            router = await containers.state(str(found.docker_sock), containers.ROUTER)
        raise LabError(NOT_LAUNCHED if router is None else NOT_RUNNING)

    async def launch(self, node_name: str, options: LaunchOptions) -> NodeRuntime:
        node = self.lab.node(node_name)
        sock = str(node.docker_sock)
        router = await containers.state(sock, containers.ROUTER)
        if node.name in self.runtimes or (router is not None and router.running):
            raise ConflictError("weave is already running; you can stop it with 'weave stop'.")
        if not netns.exists(node.netns) or not netns.exists(self.lab.fabric_netns):
            raise LabError(f"the namespaces of node {node.name} do not exist",
                           hint="run 'weavenomad lab up'")
        await self._check_flavour(node, options.flavour)
        fatal = options.fatal
        try:
            self._settings(options)
        except ValidationError as exc:
            # Weave's router reads both with ParseCIDRSubnet and dies with its bare error,
            # after the script created its containers (day-two/1d)
            fatal = exc.message
        if router is not None:
            await containers.remove(sock, containers.ROUTER)
        flavour = options.flavour
        await containers.ensure_data_only(sock, flavour.volumes_container)
        args = containers.router_args(options.flags(), str(node.weave_sock))
        await containers.create(sock, containers.ROUTER, containers.router_spec(
            args, fatal, flavour.router_image, flavour.version))
        self.options[node.name] = LaunchOptions.from_json({**options.to_json(), "fatal": fatal})
        self._save_launched()
        if fatal:
            await self._die_launching(node)
            raise ScriptExit(1, f"{fatal}\n{LAUNCH_DIED}\n")
        await containers.start(sock, containers.ROUTER)
        try:
            started = await containers.state(sock, containers.ROUTER)
            rt = await self._start_runtime(node, options)
            self.router_started[node.name] = started.started if started else ""
            return rt
        except BaseException:
            with contextlib.suppress(WeavenomadError):
                await containers.stop(sock, containers.ROUTER)
            raise

    async def _check_flavour(self, node: layout.NodeLayout, flavour: flavours.Flavour) -> None:
        """What stops the script's ``docker run`` of its weaveexec image before anything is
        created: no Docker, the image missing (the lab has no registry), or Docker refusing the
        images' API version ("unable to create container", docker26/A03 and A11)."""
        sock = str(node.docker_sock)
        if not await flavours.docker_answers(sock):
            raise ScriptExit(125, flavours.docker_down(node.docker_host))
        for image in flavour.images:
            if not await flavours.image_present(sock, image):
                raise ScriptExit(125, flavours.image_missing(image, node.name))
        refused = await flavours.refusal(sock, flavour.api_version)
        if refused is not None:
            raise ScriptExit(1, flavours.launch_refused(refused))

    async def version(self, node_name: str, flavour: flavours.Flavour) -> str:
        """``weave version``'s router line: the running router's image version, else the
        version of the image the script would run (it needs Docker, as the script does)."""
        node = self.lab.node(node_name)
        sock = str(node.docker_sock)
        if not await flavours.docker_answers(sock):
            raise ScriptExit(125, flavours.docker_down(node.docker_host))
        reply = await wire.docker_call(sock, "GET", f"/containers/{containers.ROUTER}/json")
        if reply.status == 200:
            image = (reply.json().get("Config") or {}).get("Image") or ""
            if ":" in image:
                return image.rpartition(":")[2]
        if not await flavours.image_present(sock, flavour.router_image):
            raise ScriptExit(1, f"Unable to find {flavour.router_image} image.\n",
                             "")
        return flavour.version

    def _settings(self, options: LaunchOptions) -> tuple[IPv4Network, IPv4Network]:
        """The launch's range and default subnet; ValidationError when the router would die
        of them, ConflictError when they do not fit the launched peers'."""
        universe = cidr.parse_subnet(options.ipalloc_range or str(ipam_mod.DEFAULT_RANGE))
        default = (cidr.parse_subnet(options.default_subnet) if options.default_subnet
                   else universe)
        if not default.subnet_of(universe):
            raise ValidationError(f"--ipalloc-default-subnet {default} is not inside "
                                  f"--ipalloc-range {universe}")
        if self.runtimes and universe != self.ipam.universe:
            raise ConflictError(
                f"--ipalloc-range {universe} differs from {self.ipam.universe}, the range of "
                f"the launched peers ({', '.join(sorted(self.runtimes))})",
                hint=f"launch with --ipalloc-range {self.ipam.universe}",
            )
        return universe, default

    async def _die_launching(self, node: layout.NodeLayout) -> None:
        """What a router that dies at start leaves (day-two/1d): its bridge, the socket its
        proxy was listening on, and an exited ``--restart=always`` container."""
        bridge = await self._docker_bridge(node)
        await plumbing.bring_up_node(plumbing.NodeNet(node.name, node.netns,
                                                      self.lab.fabric_netns, bridge))
        proxy.leave_stale_socket(node.weave_sock)
        sock = str(node.docker_sock)
        await containers.start(sock, containers.ROUTER)
        await containers.wait_exited(sock, containers.ROUTER)
        # the script stops the crash loop it started (1d-06: no restart after the first)
        await containers.stop(sock, containers.ROUTER)

    async def _start_runtime(self, node: layout.NodeLayout,
                             options: LaunchOptions) -> NodeRuntime:
        universe, default = self._settings(options)
        self.ipam.set_universe(universe)
        bridge = await self._docker_bridge(node)
        net = plumbing.NodeNet(node.name, node.netns, self.lab.fabric_netns, bridge)
        rt = NodeRuntime(self, node, options, default, net)
        self.runtimes[node.name] = rt
        try:
            await rt.start()
        except BaseException:
            del self.runtimes[node.name]
            await rt.stop()
            with contextlib.suppress(WeavenomadError):
                await plumbing.tear_down_node(net)
            raise
        self.save_ipam()
        return rt

    async def _docker_bridge(self, node: layout.NodeLayout) -> str:
        """The node's Docker bridge name, from its ``bridge`` network (Weave's DOCKER_BRIDGE)."""
        try:
            reply = await wire.docker_call(str(node.docker_sock), "GET", "/networks/bridge")
        except (OSError, asyncio.TimeoutError, wire.WireError) as exc:
            raise LabError(f"the dockerd of node {node.name} does not answer: {exc}",
                           hint="run 'weavenomad lab up'") from None
        if reply.status != 200:
            return layout.DOCKER_BRIDGE
        options = reply.json().get("Options") or {}
        return options.get("com.docker.network.bridge.name") or layout.DOCKER_BRIDGE

    async def stop_node(self, node_name: str) -> None:
        """``weave stop``: the router container stops, so the node's proxy and API go;
        bridge, guard and addresses stay."""
        node = self.lab.node(node_name)
        router = await containers.state(str(node.docker_sock), containers.ROUTER)
        rt = self.runtimes.pop(node.name, None)
        if rt is None and (router is None or not router.running):
            raise LabError("weave is not running.")
        if rt is not None:
            await rt.stop()
        await containers.stop(str(node.docker_sock), containers.ROUTER)

    async def reset(self, node_name: str, force: bool = False) -> str:
        """``weave reset [--force]``: refused (as the script does) when the router container
        exists but does not run, unless forced; else everything of Weave on the node goes:
        containers (and with weavedb the node's IPAM), bridge, rules. A running proxy removes
        its socket; a stopped one's stays. Returns what the script prints on stderr."""
        node = self.lab.node(node_name)
        sock = str(node.docker_sock)
        router = await containers.state(sock, containers.ROUTER)
        running = node.name in self.runtimes
        if not running and router is not None and not force:
            raise ScriptExit(1, RESET_REFUSED)
        launched = self.options.get(node.name)
        rt = self.runtimes.get(node.name)
        if rt is not None:  # a running peer hands its share to a connected one
            heirs = self._connected(rt)[1:]
            self.ipam.leave(rt.peer.name, (heirs[0].peer.name, heirs[0].peer.nickname)
                            if heirs else None)
        elif launched is not None:  # nobody hears of it: its share stays with the others
            self.ipam.leave(peer_info(self.lab.name, node, launched).name, None)
        rt = self.runtimes.pop(node.name, None)
        if rt is not None:
            await rt.stop()
            net = rt.net
        else:
            net = plumbing.NodeNet(node.name, node.netns, self.lab.fabric_netns)
        volumes = launched.flavour.volumes_container if launched else containers.VOLUMES
        for name in dict.fromkeys([*containers.ALL, volumes]):
            await containers.remove(sock, name)
        if netns.exists(node.netns):
            await plumbing.tear_down_node(net)
        self.ipam.release_node(node.name)
        self.save_ipam()
        self.options.pop(node.name, None)
        self._save_launched()
        return "" if running else RESET_NOT_RUNNING

    async def node_down(self, node_name: str) -> None:
        """The node goes down (``lab reboot``): Weave's processes die and the kernel forgets
        the bridge, its addresses and every iptables rule; the router container (dockerd
        stops it next), the IPAM and the launch flags are kept, as weavedb keeps them."""
        node = self.lab.node(node_name)
        rt = self.runtimes.pop(node.name, None)
        if rt is not None:
            await rt.stop()  # /var/run is a tmpfs: the socket goes with the reboot
        node.weave_sock.unlink(missing_ok=True)
        if netns.exists(node.netns):
            net = plumbing.NodeNet(node.name, node.netns, self.lab.fabric_netns)
            await plumbing.tear_down_node(net)
            await plumbing.forget_rules(net)

    # -- control socket -----------------------------------------------------------------------

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), wire.DOCKER_TIMEOUT)
            request = json.loads(line)
            client_gone = asyncio.ensure_future(reader.read(1))  # EOF: the asker went away
            try:
                result = await self.dispatch(request, client_gone)
            finally:
                client_gone.cancel()
            answer = {"ok": True, **result}
        except ScriptExit as exc:
            answer = {"ok": False, "error": exc.one_line(), "exit": exc.code,
                      "stderr": exc.stderr, "stdout": exc.stdout}
        except WeavenomadError as exc:
            answer = {"ok": False, "error": exc.one_line(), "exit": int(exc.exit_code)}
        except (ValueError, KeyError, TypeError, asyncio.TimeoutError) as exc:
            answer = {"ok": False, "error": f"bad control request: {exc!r}", "exit": 1}
        except Exception as exc:  # keep serving; the log has the details
            log.exception("control request failed")
            answer = {"ok": False, "error": f"internal error: {exc}", "exit": 1}
        with contextlib.suppress(OSError):
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        writer.close()

    async def dispatch(self, request: dict, client_gone: asyncio.Future | None = None) -> dict:
        op, node = request["op"], request.get("node")
        if op == "expose":  # blocks while the IPAM cannot allocate, outside the lock
            rt = await self.runtime(node)
            for arg in request.get("args") or [cidr.DEFAULT_NET]:
                await rt.admit(rt.subnet_of(cidr.script_request(arg)), client_gone)
        if op == "rmpeer":
            async with self.changes:
                return {"stdout": await self.rmpeer(node, request.get("args", []))}
        if op == "ping":
            return {"pid": os.getpid()}
        if op == "version":
            return {"router": await self.version(node, flavours.Flavour.from_json(
                request.get("flavour")))}
        if op == "options":  # nodes whose router container exists, running or not
            return {"nodes": sorted(self.options)}
        if op == "launched":
            return {"nodes": {
                name: {"api": rt.node.url("weave_api") if "weave_api" in rt.node.ports else None,
                       "proxy": rt.proxy_addresses, "peer": rt.peer.name}
                for name, rt in self.runtimes.items()
            }}
        if op in ("launch", "reset", "stop", "expose", "hide", "node-down"):
            async with self.changes:
                if op == "launch":
                    rt = await self.launch(node, LaunchOptions.from_json(request["options"]))
                    return {"id": hashlib.sha256(rt.peer.name.encode()).hexdigest()}
                if op == "reset":
                    return {"stderr": await self.reset(node, bool(request.get("force")))}
                if op == "stop":
                    await self.stop_node(node)
                    return {}
                if op == "node-down":
                    await self.node_down(node)
                    return {}
                rt = await self.runtime(node)
                method = rt.expose if op == "expose" else rt.hide
                return {"addresses": [str(a) for a in await method(request.get("args", []))]}
        if op == "status":
            try:
                rt = await self.runtime(node)
            except LabError as exc:  # the script frames its complaint with empty lines
                raise ScriptExit(1, exc.message + "\n", "\n\n") from None
        else:
            rt = await self.runtime(node)
        if op == "status":
            view = request.get("view", "")
            render = status_mod.status_text if not view else api.STATUS_VIEWS.get(view)
            if render is None:
                raise ValidationError(f"Invalid 'weave status' sub-command: {view}")
            return {"text": render(rt.api_context().report())}
        if op == "report":
            return {"report": rt.api_context().report()}
        if op == "ps":
            return {"rows": await rt.ps(request.get("args", []))}
        if op == "env":
            return {"proxy": rt.proxy_addresses}
        raise ValidationError(f"unknown control operation {op!r}")


# -- the process ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="weavenomad_lab.weave.daemon")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--died-timeout", type=float, default=ipam_mod.CONTAINER_DIED_TIMEOUT)
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    lab = layout.LabLayout.load(args.state_dir)

    async def serve() -> None:
        daemon = WeaveDaemon(lab, args.died_timeout)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, daemon.request_stop)
        await daemon.run()

    asyncio.run(serve())


# -- the lab component ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _PartStatus:  # same shape as weavenomad_lab.core.PartStatus, used until core exists
    part: str
    node: str | None
    healthy: bool
    address: str | None
    detail: str


def _part_status(**fields):
    try:
        from weavenomad_lab.core import PartStatus
    except ImportError:
        return _PartStatus(**fields)
    return PartStatus(**fields)


def shim_script(lab: layout.LabLayout, node: layout.NodeLayout,
                script_version: str | None = None, owner: str | None = None) -> str:
    """The node's ``weave`` command; ``script_version``/``owner``: another release's script
    (the one its weaveexec image carries), which says ``SCRIPT_VERSION`` as Weave's does."""
    argv = [sys.executable, "-m", "weavenomad_lab.weave.shim",
            "--lab-state-dir", str(lab.state_dir), "--node", node.name]
    release = ""
    if script_version:
        argv += ["--script-version", script_version] + (["--image-owner", owner] if owner
                                                         else [])
        release = f'SCRIPT_VERSION="{script_version.split("+")[0]}"\n'

    # the folders holding the lab and the product, so the shim imports the same code as its lab
    import weavenomad

    roots = dict.fromkeys(str(Path(module.__file__).resolve().parents[1])
                          for module in (sys.modules["weavenomad_lab"], weavenomad))
    source_path = ":".join(roots)
    return ("#!/bin/sh\n# the lab's weave command: see lab/weavenomad_lab/weave/shim.py\n"
            f"{release}PYTHONPATH={shlex.quote(source_path)}${{PYTHONPATH:+:$PYTHONPATH}} "
            f"exec {' '.join(shlex.quote(a) for a in argv)} \"$@\"\n")


class WeaveComponent:
    name = COMPONENT_NAME

    def daemon(self, lab: layout.LabLayout) -> process.Daemon:
        d = lab.component_dir(COMPONENT_NAME)
        marker = f"weavenomad_lab.weave.daemon --state-dir {lab.state_dir}"
        return process.Daemon(
            name="weave emulator",
            argv=process.python_module_argv("weavenomad_lab.weave.daemon",
                                            "--state-dir", str(lab.state_dir)),
            pid_file=d / "weave.pid", log_file=d / "weave.log", marker=marker,
        )

    def _answers(self, lab: layout.LabLayout) -> bool:
        try:
            return control_call(lab.component_dir(COMPONENT_NAME), {"op": "ping"}, 2.0)["ok"]
        except LabError:
            return False

    def up(self, lab: layout.LabLayout) -> None:
        lab.component_dir(COMPONENT_NAME).mkdir(parents=True, exist_ok=True)
        self.daemon(lab).start(ready=lambda: self._answers(lab))
        for node in lab.nodes:
            if not node.machine_id_file.exists():  # as systemd's first boot writes it
                node.machine_id_file.parent.mkdir(parents=True, exist_ok=True)
                node.machine_id_file.write_text(uuid.uuid4().hex + "\n")
            node.bin_dir.mkdir(parents=True, exist_ok=True)
            shim = node.bin_dir / "weave"
            shim.write_text(shim_script(lab, node))
            shim.chmod(0o755)

    def down(self, lab: layout.LabLayout) -> None:
        directory = lab.component_dir(COMPONENT_NAME)
        daemon = self.daemon(lab)
        if daemon.running():
            for node in lab.nodes:
                with contextlib.suppress(LabError):
                    control_call(directory, {"op": "reset", "node": node.name, "force": True},
                                 30.0)
            daemon.stop()
        else:  # no daemon to ask: undo the network side directly
            for node in lab.nodes:
                if netns.exists(node.netns):
                    net = plumbing.NodeNet(node.name, node.netns, lab.fabric_netns)
                    with contextlib.suppress(WeavenomadError):
                        asyncio.run(plumbing.tear_down_node(net))
        for node in lab.nodes:
            node.weave_sock.unlink(missing_ok=True)
            (node.bin_dir / "weave").unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # only when nothing else lives there
                node.bin_dir.rmdir()
        if directory.exists():
            import shutil

            shutil.rmtree(directory)

    def status(self, lab: layout.LabLayout) -> list:
        directory = lab.component_dir(COMPONENT_NAME)
        try:
            launched = control_call(directory, {"op": "launched"}, 5.0).get("nodes", {})
        except LabError as exc:
            return [_part_status(part=self.name, node=None, healthy=False, address=None,
                                 detail=exc.one_line())]
        parts = [_part_status(part=self.name, node=None, healthy=True,
                              address=str(control_socket(directory)), detail="emulator running")]
        for node in lab.nodes:
            info = launched.get(node.name)
            detail = (f"launched, proxy {', '.join(info['proxy']) or 'off'}" if info
                      else "not launched (run 'weave launch' on the node)")
            parts.append(_part_status(part=self.name, node=node.name, healthy=True,
                                      address=info and info.get("api"), detail=detail))
        return parts


COMPONENT = WeaveComponent()

if __name__ == "__main__":
    main()
