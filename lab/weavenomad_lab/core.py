"""Bring the lab up and down, report on it, and give shells and commands their node's view.

The lab is an ordered list of components (network, dockerd, image, then the Weave emulator,
Consul and Nomad); ``up`` starts them in order, ``down`` stops them in reverse. Each component
is idempotent, so ``lab up`` on a running lab only re-checks and restarts what is missing.

Ownership: a state directory belongs to the lab named in its ``lab.json``; the lab's namespaces
carry the state directory as a tag (see :mod:`weavenomad_lab.network`). ``up`` refuses a state
directory or namespace names of another lab and names the ``lab down`` that frees them. A
failed ``up`` of a new lab removes everything it created before the error is raised.

The decisions (layout, ownership, ports, environment) are pure functions; ``up``, ``down`` and
``status`` do the I/O around them.
"""

from __future__ import annotations

import fcntl
import importlib
import os
import shutil
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from weavenomad.errors import ConflictError, PrivilegeError, WeavenomadError
from weavenomad_lab.environment import (  # noqa: F401 - part of core's interface
    client_environment,
    env_lines,
    exec_argv,
    exec_env,
    node_tooling,
)
from weavenomad_lab.errors import LabError
from weavenomad_lab.layout import (
    DEFAULT_LAB_NAME,
    SERVICES,
    LabLayout,
    LabSecurity,
    default_state_dir,
    validate_lab_name,
)


@dataclass(frozen=True)
class PartStatus:
    part: str
    node: str | None
    healthy: bool
    address: str | None
    detail: str

    def to_json(self) -> dict:
        return asdict(self)


class Component(Protocol):
    name: str

    def up(self, lab: LabLayout) -> None: ...  # idempotent

    def down(self, lab: LabLayout) -> None: ...  # idempotent, removes all it created

    def status(self, lab: LabLayout) -> list[PartStatus]: ...


#: started in this order, stopped in reverse
COMPONENTS = [
    "weavenomad_lab.network:COMPONENT",
    "weavenomad_lab.dockerd:COMPONENT",
    "weavenomad_lab.image:COMPONENT",
    "weavenomad_lab.weave.daemon:COMPONENT",
    # tokens and certificates, before the agents that need them
    "weavenomad_lab.security:COMPONENT",
    "weavenomad_lab.consul.component:COMPONENT",
    "weavenomad_lab.nomad.component:COMPONENT",
]

#: command -> the Debian package that provides it
REQUIRED_COMMANDS = {
    "dockerd": "docker.io",
    "ip": "iproute2",
    "busybox": "busybox-static",
    "nsenter": "util-linux",
}


def load_components(specs: Sequence[str | Component] | None = None) -> list[Component]:
    """Components from "module:attribute" specs (objects are taken as they are)."""
    loaded = []
    for spec in COMPONENTS if specs is None else specs:
        if isinstance(spec, str):
            module_name, attribute = spec.split(":")
            spec = getattr(importlib.import_module(module_name), attribute)
        loaded.append(spec)
    return loaded


# --------------------------------------------------------------------------------------------
# pure decisions


def missing_commands(which: Callable[[str], str | None]) -> list[tuple[str, str]]:
    return [(cmd, pkg) for cmd, pkg in REQUIRED_COMMANDS.items() if which(cmd) is None]


def check_root(euid: int, action: str) -> None:
    if euid != 0:
        raise PrivilegeError(
            f"'weavenomad lab {action}' needs root (network namespaces, dockerd)",
            hint="run it as root, e.g. with sudo",
        )


def check_commands(which: Callable[[str], str | None]) -> None:
    missing = missing_commands(which)
    if missing:
        names = ", ".join(cmd for cmd, _ in missing)
        packages = " ".join(sorted({pkg for _, pkg in missing}))
        raise LabError(f"the lab needs {names}, not found on PATH",
                       hint=f"apt-get install {packages}")


def decide_layout(
    state_dir: Path, name: str | None, nodes: int | None, existing: LabLayout | None,
    security: LabSecurity | None = None,
) -> LabLayout:
    """The layout ``lab up`` works on: a new one, or the existing lab when the request fits it.
    ``security`` None: the existing lab's, or none for a new one."""
    if existing is None:
        return LabLayout.plan(name or DEFAULT_LAB_NAME, state_dir, nodes or 1, security)
    again = f"run 'weavenomad lab down --state-dir {state_dir}' first"
    if name is not None and name != existing.name:
        raise ConflictError(
            f"state directory {state_dir} belongs to lab {existing.name!r}, not {name!r}",
            hint=f"{again}, or choose another --state-dir",
        )
    if existing.state_dir != state_dir:
        raise LabError(f"{state_dir}/lab.json was written for {existing.state_dir}",
                       hint="move it back, or remove that lab by hand")
    if nodes is not None and nodes != len(existing.nodes):
        raise ConflictError(
            f"lab {existing.name!r} has {len(existing.nodes)} node(s); {nodes} needs a new lab",
            hint=again,
        )
    if security is not None and security != existing.security:
        raise ConflictError(
            f"lab {existing.name!r} runs with {existing.security.describe()}; "
            f"{security.describe()} needs a new lab", hint=again)
    return existing


def ownership_conflict(
    layout: LabLayout, have_lab_file: bool, present: Sequence[str], owner: str | None
) -> ConflictError | None:
    """Whether the namespace names ``layout`` needs are taken by something else."""
    if owner is not None and owner != str(layout.state_dir):
        return ConflictError(
            f"network namespaces {', '.join(present)} belong to the lab in {owner}",
            hint=f"run 'weavenomad lab down --state-dir {owner}', or choose another --name",
        )
    if present and not have_lab_file and owner is None:
        return ConflictError(
            f"network namespaces {', '.join(present)} already exist and are not this lab's",
            hint="choose another --name, or free them with 'weavenomad lab down --state-dir "
                 "DIR' of the lab that made them (else 'ip netns del NAME')",
        )
    return None


def plan_ports(layout: LabLayout, free: Iterator[int]) -> dict[str, dict[str, int]]:
    """Every node gets a host-loopback port per service; ports already assigned are kept."""
    return {
        node.name: {service: node.ports.get(service) or next(free) for service in SERVICES}
        for node in layout.nodes
    }


# --------------------------------------------------------------------------------------------
# I/O


def _euid(euid: int | None) -> int:
    return os.geteuid() if euid is None else euid


def _free_ports() -> Iterator[int]:
    """Free host-loopback ports; each socket stays bound until the generator is closed, so one
    allocation never hands out the same port twice."""
    held = []
    try:
        while True:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(sock)
            sock.bind(("127.0.0.1", 0))
            yield sock.getsockname()[1]
    finally:
        for sock in held:
            sock.close()


@contextmanager
def _locked(layout_lock: Path):
    layout_lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(layout_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConflictError(
                f"another 'weavenomad lab' command is changing {layout_lock.parent}",
                hint="wait for it to finish, then try again",
            ) from None
        yield
    finally:
        os.close(fd)


def _foreign_entries(state_dir: Path) -> list[str]:
    if not state_dir.is_dir():
        return []
    return sorted(p.name for p in state_dir.iterdir() if p.name != "lock")


def _discard_state_dir(state_dir: Path, remove_dir: bool) -> None:
    """Delete the lab's files; never while something is still mounted below."""
    from weavenomad_lab.dockerd import mounts_under

    if not state_dir.is_dir() or mounts_under(state_dir):
        return
    for entry in state_dir.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    if remove_dir:
        state_dir.rmdir()


def _stop(layout: LabLayout, parts: Sequence[Component]) -> list[str]:
    """Run every component's down; a failure does not stop the others. Returns the problems."""
    problems = []
    for part in parts:
        try:
            part.down(layout)
        except Exception as exc:  # keep going: the rest must still be removed
            text = exc.one_line() if isinstance(exc, WeavenomadError) else str(exc)
            problems.append(f"{part.name}: {text}")
    return problems


def _sweep(layout: LabLayout) -> list[str]:
    """Last line of defence after the components' down: no process, mount or cgroup of the
    lab may remain, whoever forgot it."""
    from weavenomad_lab import dockerd

    problems = []
    survivors = dockerd.kill_and_wait(dockerd.pids_mentioning(layout.state_dir))
    if survivors:
        problems.append(f"processes {survivors} survived SIGKILL")
    for node in layout.nodes:
        groups = dockerd.cgroup_dirs(dockerd.cgroup_parent(layout, node))
        dockerd.kill_and_wait(dockerd.cgroup_pids(groups))
        try:
            dockerd.remove_cgroups(groups)
        except LabError as exc:
            problems.append(exc.one_line())
    try:
        dockerd.unmount_under(layout.state_dir)
    except LabError as exc:
        problems.append(exc.one_line())
    return problems


def _claim(state_dir: Path, name: str | None, nodes: int | None,
           security: LabSecurity | None = None) -> LabLayout:
    """Decide the layout under the lock, check ownership, assign ports and save lab.json."""
    from weavenomad_lab import network

    existing = LabLayout.load(state_dir) if (state_dir / "lab.json").exists() else None
    layout = decide_layout(state_dir, name, nodes, existing, security)
    conflict = ownership_conflict(layout, existing is not None,
                                  network.existing_namespaces(layout), network.fabric_owner(layout))
    if conflict is not None:
        raise conflict
    free = _free_ports()
    try:
        layout = layout.with_ports(plan_ports(layout, free))
    finally:
        free.close()
    layout.save()
    return layout


#: what ``lab up`` waits for in each component, for its progress lines
WAITS_FOR = {
    "network": "the network namespaces and the fabric's bridges",
    "dockerd": "each node's dockerd to answer",
    "image": "the bb:local image on each node",
    "weave": "the Weave emulator's control socket",
    "security": "the lab's tokens and certificates",
    "consul": "each node's Consul agent to answer",
    "nomad": "each node's Nomad agent to answer",
}


def _start(layout: LabLayout, parts: Sequence[Component], fresh: bool,
           say: Callable[[str], None] | None = None) -> None:
    started: list[Component] = []
    try:
        for part in parts:
            started.append(part)  # before up(): a half-done up is rolled back too
            if say is not None:
                say(f"lab up: {part.name}: waiting for "
                    f"{WAITS_FOR.get(part.name, 'it to start')}")
            part.up(layout)
    except BaseException as exc:
        if fresh:
            _stop(layout, list(reversed(started)))
            _sweep(layout)
        if isinstance(exc, WeavenomadError) or not isinstance(exc, Exception):
            raise
        if fresh:  # its logs went with it
            raise LabError(f"lab up failed in {started[-1].name}: {exc}; everything it "
                           "created was removed") from exc
        raise LabError(f"lab up failed in {started[-1].name}: {exc}",
                       hint=f"see the logs under {layout.state_dir}") from exc


def up(
    state_dir: Path | str,
    name: str | None = None,
    nodes: int | None = None,
    *,
    euid: int | None = None,
    which: Callable[[str], str | None] = shutil.which,
    components: Sequence[str | Component] | None = None,
    security: LabSecurity | None = None,
    say: Callable[[str], None] | None = None,
    docker: str | None = None,
) -> LabLayout:
    """Bring the lab up (or complete it); returns its layout. ``name``/``nodes``/``security``
    None: the existing lab's, or the defaults for a new one (no ACLs, no TLS). ``say`` hears
    what each step waits for. ``docker``: the Docker Engine of nodes that have none yet (see
    :mod:`weavenomad_lab.engines`; None: Debian 12's)."""
    if name is not None:  # bad input first: it needs nothing of the machine
        validate_lab_name(name)
    check_root(_euid(euid), "up")
    check_commands(which)
    state_dir = Path(os.path.abspath(state_dir))
    parts = load_components(components)
    foreign = [] if (state_dir / "lab.json").exists() else _foreign_entries(state_dir)
    if foreign:
        raise ConflictError(f"state directory {state_dir} is not empty and holds no lab "
                            f"(found {', '.join(foreign[:3])})",
                            hint="pass an empty or new --state-dir")
    made_dir = not state_dir.exists()
    fresh = False
    try:
        with _locked(state_dir / "lock"):
            if not (state_dir / "lab.json").exists():
                fresh = True
            layout = _claim(state_dir, name, nodes, security)
            if docker is not None:
                _choose_engines(layout, docker, say)
            _start(layout, parts, fresh, say)
            return layout
    except BaseException:
        if fresh:  # decided under the lock: nothing here belongs to anyone else
            _discard_state_dir(state_dir, remove_dir=made_dir)
        raise


def _choose_engines(layout: LabLayout, docker: str,
                    say: Callable[[str], None] | None) -> None:
    """Nodes without an engine get ``docker``; a node that runs another one is a conflict
    (``lab docker-engine`` replaces it)."""
    from weavenomad_lab import dockerd

    for node in layout.nodes:
        if dockerd.engine_file(node).exists() and dockerd.engine_name(node) != docker:
            raise ConflictError(f"node {node.name} runs Docker {dockerd.engine_name(node)}, "
                                f"not {docker}",
                                hint=f"weavenomad lab docker-engine {node.name} {docker}")
    if say is not None:
        say(f"lab up: docker: Docker Engine {docker} (fetched and unpacked once, then cached)")
    for node in layout.nodes:
        dockerd.choose_engine(node, docker)


def down(
    state_dir: Path | str,
    *,
    euid: int | None = None,
    components: Sequence[str | Component] | None = None,
) -> bool:
    """Remove the lab in ``state_dir`` and its state directory; False when there was none."""
    check_root(_euid(euid), "down")
    state_dir = Path(os.path.abspath(state_dir))
    if not (state_dir / "lab.json").exists():
        return False
    parts = load_components(components)
    with _locked(state_dir / "lock"):
        layout = LabLayout.load(state_dir)
        problems = _stop(layout, list(reversed(parts)))
        problems += _sweep(layout)
        if problems:
            raise LabError(f"lab down left things behind: {'; '.join(problems)}",
                           hint=f"fix that, then run 'weavenomad lab down --state-dir "
                                f"{state_dir}' again")
        _discard_state_dir(state_dir, remove_dir=True)
    if state_dir == default_state_dir():  # ~/.local/state/weavenomad, when nothing else is in it
        with suppress(OSError):
            state_dir.parent.rmdir()
    return True


def load(state_dir: Path | str) -> LabLayout:
    return LabLayout.load(Path(os.path.abspath(state_dir)))


def exec_command(
    state_dir: Path | str,
    node: str,
    argv: Sequence[str],
    environ: Mapping[str, str],
    *,
    euid: int | None = None,
) -> tuple[list[str], dict]:
    """The argv and environment that run ``argv`` inside ``node`` of the lab in ``state_dir``."""
    check_root(_euid(euid), "exec")
    layout = load(state_dir)
    return exec_argv(layout, node, argv), exec_env(layout, node, environ)


def status(
    state_dir: Path | str,
    *,
    euid: int | None = None,
    components: Sequence[str | Component] | None = None,
) -> tuple[LabLayout, list[PartStatus]]:
    check_root(_euid(euid), "status")
    layout = load(state_dir)
    parts: list[PartStatus] = []
    for part in load_components(components):
        try:
            parts.extend(part.status(layout))
        except Exception as exc:  # one broken part must not hide the others
            parts.append(PartStatus(part.name, None, False, None, f"status failed: {exc}"))
    return layout, parts
