"""The weave emulator process (one per lab) and its lab component.

``python -m weavenomad_lab.weave.daemon --state-dir S`` serves every node of the lab in one
asyncio loop: a control socket (``S/weave/control.sock``) for the ``weave`` shim, and per
launched node a :class:`~weavenomad_lab.weave.runtime.NodeRuntime`. Its state lives in
``S/weave/``: ``ipam.json`` (the shared IPAM), ``launched.json`` (which nodes are launched, with
which flags) and ``weavewait/`` (the volume mounted at ``/w``). A restarted daemon relaunches the
recorded nodes, so containers keep their addresses across restarts.

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
from dataclasses import dataclass
from pathlib import Path

from weavenomad.errors import ConflictError, ValidationError, WeavenomadError
from weavenomad_lab import layout, netns, process
from weavenomad_lab.errors import LabError
from weavenomad_lab.weave import (
    COMPONENT_NAME,
    api,
    cidr,
    control_call,
    control_socket,
    plumbing,
    weavewait,
    wire,
)
from weavenomad_lab.weave import ipam as ipam_mod
from weavenomad_lab.weave import status as status_mod
from weavenomad_lab.weave.runtime import LaunchOptions, NodeRuntime

log = logging.getLogger("weavenomad_lab.weave")

#: the real script's words, which scripts may look for
NOT_LAUNCHED = "weave container is not present. Have you launched it?"


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
        self._stop = asyncio.Event()
        self._sweep_wake = asyncio.Event()
        self.changes = asyncio.Lock()  # launch/reset/expose/hide one at a time

    # -- shared state -------------------------------------------------------------------------

    def peers(self) -> list[status_mod.PeerInfo]:
        return [rt.peer for rt in sorted(self.runtimes.values(), key=lambda r: r.node.index)]

    def save_ipam(self) -> None:
        self.ipam.save(self.ipam_file)

    def wake_sweeper(self) -> None:
        self._sweep_wake.set()

    def _save_launched(self) -> None:
        data = {name: rt.options.to_json() for name, rt in sorted(self.runtimes.items())}
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
        for name, options in saved.items():  # before answering: ready means relaunched
            try:
                await self.launch(name, LaunchOptions.from_json(options))
            except WeavenomadError as exc:
                log.warning("relaunching node %s failed: %s", name, exc.one_line())
        path = control_socket(self.dir)
        path.unlink(missing_ok=True)
        server = await asyncio.start_unix_server(self._control, path=str(path))
        path.chmod(0o600)
        sweeper = asyncio.create_task(self._sweep())
        log.info("weave emulator ready on %s", path)
        await self._stop.wait()
        sweeper.cancel()
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

    # -- operations ---------------------------------------------------------------------------

    def runtime(self, node: str) -> NodeRuntime:
        name = self.lab.node(node).name
        if name not in self.runtimes:
            raise LabError(NOT_LAUNCHED)
        return self.runtimes[name]

    async def launch(self, node_name: str, options: LaunchOptions) -> NodeRuntime:
        node = self.lab.node(node_name)
        if node.name in self.runtimes:
            raise ConflictError("weave is already running; you can stop it with 'weave stop'.")
        if not netns.exists(node.netns) or not netns.exists(self.lab.fabric_netns):
            raise LabError(f"the namespaces of node {node.name} do not exist",
                           hint="run 'weavenomad lab up'")
        # Weave's router reads both with ParseCIDRSubnet and dies with its bare error
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
        self._save_launched()
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
        """``weave stop``: the node's proxy and API go; bridge, guard and addresses stay."""
        node = self.lab.node(node_name)
        rt = self.runtimes.pop(node.name, None)
        if rt is None:
            raise LabError("weave is not running.")
        await rt.stop()
        self._save_launched()

    async def reset(self, node_name: str) -> None:
        node = self.lab.node(node_name)
        rt = self.runtimes.pop(node.name, None)
        if rt is not None:
            await rt.stop()
            net = rt.net
        else:
            net = plumbing.NodeNet(node.name, node.netns, self.lab.fabric_netns)
        if netns.exists(node.netns):
            await plumbing.tear_down_node(net)
        node.weave_sock.unlink(missing_ok=True)
        self.ipam.release_node(node.name)
        self.save_ipam()
        self._save_launched()

    # -- control socket -----------------------------------------------------------------------

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), wire.DOCKER_TIMEOUT)
            request = json.loads(line)
            result = await self.dispatch(request)
            answer = {"ok": True, **result}
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

    async def dispatch(self, request: dict) -> dict:
        op, node = request["op"], request.get("node")
        if op == "ping":
            return {"pid": os.getpid()}
        if op == "launched":
            return {"nodes": {
                name: {"api": rt.node.url("weave_api") if "weave_api" in rt.node.ports else None,
                       "proxy": rt.proxy_addresses, "peer": rt.peer.name}
                for name, rt in self.runtimes.items()
            }}
        if op in ("launch", "reset", "stop", "expose", "hide"):
            async with self.changes:
                if op == "launch":
                    rt = await self.launch(node, LaunchOptions.from_json(request["options"]))
                    return {"id": hashlib.sha256(rt.peer.name.encode()).hexdigest()}
                if op == "reset":
                    await self.reset(node)
                    return {}
                if op == "stop":
                    await self.stop_node(node)
                    return {}
                method = self.runtime(node).expose if op == "expose" else self.runtime(node).hide
                return {"addresses": [str(a) for a in await method(request.get("args", []))]}
        rt = self.runtime(node)
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


def shim_script(lab: layout.LabLayout, node: layout.NodeLayout) -> str:
    argv = [sys.executable, "-m", "weavenomad_lab.weave.shim",
            "--lab-state-dir", str(lab.state_dir), "--node", node.name]
    # the folders holding the lab and the product, so the shim imports the same code as its lab
    import weavenomad

    roots = dict.fromkeys(str(Path(module.__file__).resolve().parents[1])
                          for module in (sys.modules["weavenomad_lab"], weavenomad))
    source_path = ":".join(roots)
    return ("#!/bin/sh\n# the lab's weave command: see lab/weavenomad_lab/weave/shim.py\n"
            f"PYTHONPATH={shlex.quote(source_path)}${{PYTHONPATH:+:$PYTHONPATH}} "
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
                    control_call(directory, {"op": "reset", "node": node.name}, 30.0)
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
