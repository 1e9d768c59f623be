"""The containers ``weave launch`` leaves in a node's dockerd, as Weave 2.8.1 does: ``weave``
(the router, ``--restart=always``, host network, its flags in ``Args``), and the data-only
``weavedb`` (the IPAM's persisted ring) and ``weavevolumes-2.8.1`` (created, never started).

In the lab the router container is a stand-in: a busybox shell that sleeps (and exits at once
on SIGTERM), while the daemon does the router's work. What the container's state says is
what the node's Weave is, as on a real node: ``docker stop weave`` stops the proxy and the API,
``docker restart weave`` restarts them (breaking every stream that went through the proxy),
dockerd's own restart brings the router back through its restart policy, and a router that
dies (``--fatal`` here, an invalid range or a crash there) leaves an exited container behind.
The stand-in carries the router's real ``Args``, including ``-H unix://<proxy socket>``, so
tools read the launch flags and the proxy socket from ``docker inspect weave`` as on a real
node.

Each function is one or two Docker API calls on the node's dockerd socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from weavenomad_lab.errors import LabError
from weavenomad_lab.layout import LAB_IMAGE
from weavenomad_lab.weave import wire

ROUTER = "weave"
DB = "weavedb"
VOLUMES = "weavevolumes-2.8.1"
#: every container of Weave's on a node, in the order ``weave reset`` removes them
ALL = (ROUTER, DB, VOLUMES)
#: marks the lab's stand-ins (the daemon follows the router's events by it)
LABEL = "weavenomad.lab.weave"
#: the router's binary in the real image, shown as the first of its ``Args`` here
WEAVER = "/home/weave/weaver"
#: what the stand-in runs: sleep until SIGTERM; with WEAVE_LAB_FATAL set, say it the way the
#: real router logs a fatal error and exit 1 (whenever it is stopped, too). SIGUSR1 is how the
#: emulator makes a running stand-in die as the router does when Docker refuses its API version
#: at start: it writes the FATA line to the stand-in's stderr first (see :func:`die`)
SCRIPT = (
    'if [ -n "$WEAVE_LAB_FATAL" ]; then trap "exit 1" TERM INT; '
    'echo "FATA: $(date -u "+%Y/%m/%d %H:%M:%S.000000") $WEAVE_LAB_FATAL" >&2; exit 1; fi; '
    'echo "INFO: $(date -u "+%Y/%m/%d %H:%M:%S.000000") weave  ${WEAVE_LAB_VERSION:-2.8.1} '
    '(lab stand-in)" >&2; '
    'trap "exit 0" TERM INT; trap "exit 1" USR1; while :; do sleep 3600 & wait $!; done'
)
#: seconds to wait for a dying router's container to be reported exited
DIE_WITHIN = 10.0
#: seconds between signals to a stand-in that has not set its trap yet
DIE_RETRY = 0.1


@dataclass(frozen=True)
class State:
    """One container's state: what ``docker ps -a`` shows of it."""

    name: str
    id: str
    running: bool
    exit_code: int = 0
    #: when its process started (Docker's ``State.StartedAt``): a new value is a new process
    started: str = ""


def router_args(flags: list[str], proxy_socket: str) -> list[str]:
    """The router's command line as Weave's script builds it (the flags the emulator acts on
    and the fixed ones of 2.8.1), ``-H`` naming the node's proxy socket."""
    return [WEAVER, "--port", "6783", "--host-root=/host", "--docker-bridge", "docker0",
            "--weave-bridge", "weave", "--datapath", "datapath", "--no-fastdp",
            "--http-addr", "127.0.0.1:6784", "--status-addr", "127.0.0.1:6782",
            "-H", f"unix://{proxy_socket}", "--plugin", "--proxy", *flags]


def router_spec(args: list[str], fatal: str | None, image: str = LAB_IMAGE,
                version: str = "2.8.1") -> dict:
    """The router container of Weave ``version`` from ``image`` (the lab's stand-in image
    tagged as Weave's own, see :mod:`.images`)."""
    # the stand-in says 2.8.1 unless told otherwise
    env = ([f"WEAVE_LAB_VERSION={version}"] if version != "2.8.1" else []) + (
        [f"WEAVE_LAB_FATAL={fatal}"] if fatal else [])
    return {"Image": image, "Entrypoint": ["/bin/sh", "-c", SCRIPT], "Cmd": args,
            "Env": env, "Labels": {LABEL: "router"},
            "HostConfig": {"NetworkMode": "host", "RestartPolicy": {"Name": "always"}}}


def data_only_spec() -> dict:
    return {"Image": LAB_IMAGE, "Cmd": ["data-only"], "Labels": {LABEL: "data"}}


async def _call(socket: str, method: str, path: str, body: object = None) -> wire.Reply:
    try:
        return await wire.docker_call(socket, method, path, body)
    except (OSError, asyncio.TimeoutError, wire.WireError) as exc:
        raise LabError(f"the node's dockerd does not answer ({method} {path}): {exc}",
                       hint="run 'weavenomad lab up'") from None


def _check(reply: wire.Reply, what: str, *ok: int) -> None:
    if reply.status not in (*ok, 200, 201, 204, 304):
        raise LabError(f"{what}: dockerd answered {reply.status}: {reply.message()}")


async def state(socket: str, name: str) -> State | None:
    """The container ``name`` (exactly), or None."""
    reply = await _call(socket, "GET", f"/containers/{quote(name)}/json")
    if reply.status == 404:
        return None
    _check(reply, f"inspecting {name}")
    info = reply.json()
    if info.get("Name", "").lstrip("/") != name:
        return None
    status = info.get("State") or {}
    return State(name, info["Id"], bool(status.get("Running")) and not status.get("Restarting"),
                 int(status.get("ExitCode") or 0), str(status.get("StartedAt") or ""))


async def states(socket: str) -> dict[str, State]:
    found = {}
    for name in ALL:
        current = await state(socket, name)
        if current is not None:
            found[name] = current
    return found


async def create(socket: str, name: str, spec: dict) -> None:
    reply = await _call(socket, "POST", f"/containers/create?name={quote(name)}", spec)
    _check(reply, f"creating {name}")


async def ensure_data_only(socket: str, volumes: str = VOLUMES) -> None:
    """``weavedb`` and ``weavevolumes-<version>``, created once and kept (the IPAM lives on)."""
    for name in (DB, volumes):
        if await state(socket, name) is None:
            await create(socket, name, data_only_spec())


async def start(socket: str, name: str) -> None:
    _check(await _call(socket, "POST", f"/containers/{quote(name)}/start"), f"starting {name}")


async def stop(socket: str, name: str) -> None:
    """``docker stop -t 1``: a restarting container stops restarting, a running one exits."""
    reply = await _call(socket, "POST", f"/containers/{quote(name)}/stop?t=1")
    _check(reply, f"stopping {name}", 404)


async def remove(socket: str, name: str) -> None:
    reply = await _call(socket, "DELETE", f"/containers/{quote(name)}?force=1&v=1")
    _check(reply, f"removing {name}", 404)


async def wait_exited(socket: str, name: str, timeout: float = DIE_WITHIN) -> State | None:
    """Wait until the container ``name`` has died once (its restart policy may start it
    again); its state then, or None if it kept running."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        reply = await _call(socket, "GET", f"/containers/{quote(name)}/json")
        if reply.status == 200:
            info = reply.json()
            status = info.get("State") or {}
            if info.get("RestartCount") or not status.get("Running"):
                return State(name, info["Id"], False, int(status.get("ExitCode") or 0))
        await asyncio.sleep(0.05)
    return None


async def die(socket: str, name: str, message: str) -> bool:
    """Make the running stand-in ``name`` log ``FATA: <time> message`` and exit 1, as the real
    router dies of an error at start; its restart policy then starts it again. False when it
    was not running (nothing to kill)."""
    import datetime
    import os
    import signal

    reply = await _call(socket, "GET", f"/containers/{quote(name)}/json")
    if reply.status != 200:
        return False
    pid = int((reply.json().get("State") or {}).get("Pid") or 0)
    if not pid:
        return False
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y/%m/%d %H:%M:%S.%f")
    try:  # PID 1's stderr is the pipe Docker logs from; the emulator runs as root on the host
        with open(f"/proc/{pid}/fd/2", "w") as stderr:
            stderr.write(f"FATA: {stamp} {message}\n")
    except FileNotFoundError:
        return False  # it stopped meanwhile
    # PID 1 of a container ignores a signal it has no handler for: a stand-in that has not
    # set its trap yet (a loaded host) would live on, so the signal is sent until it is gone
    deadline = time.monotonic() + DIE_WITHIN
    while _alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGUSR1)
        await asyncio.sleep(DIE_RETRY)
    return True


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (an exited process waiting to be reaped does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def router_events_query(since: str) -> str:
    filters = quote(json.dumps({"type": ["container"], "label": [f"{LABEL}=router"],
                                "event": ["start", "die", "destroy"]}))
    return f"since={since}&filters={filters}"
