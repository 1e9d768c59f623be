"""What Weave leaves on a node, and what removing it removed.

``weave launch`` creates the containers ``weave`` (the router, ``--restart=always``),
``weavedb`` (the IPAM's persisted state) and ``weavevolumes-<version>``, the ``weave`` bridge and
the proxy's socket (``-H unix:///var/run/weave/weave.sock`` among the router's ``Args``). A
launch whose router dies ("The weave container has died") leaves all of them, the router
exited (day-two/1d); ``weave reset --force`` removes all but the socket file (1b-07, 1d-09).
The pure half describes; :func:`observe` and :func:`remove_stale_socket` do the reads and the
one removal the script leaves to us.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: the names of Weave 2.8's containers (``weavevolumes-<version>`` has its version appended)
NAMES = ("weave", "weavedb", "weaveplugin")
VOLUMES_PREFIX = "weavevolumes-"
SOCKET_SCHEME = "unix://"


@dataclass(frozen=True)
class WeaveContainer:
    name: str
    #: Docker's ``State``: running, exited, created, restarting …
    state: str
    exit_code: int = 0
    args: tuple[str, ...] = ()
    #: its image (``weaveworks/weave:2.8.1``, ``rajchaudhuri/weave:2.9.0``) and restart count
    image: str = ""
    restarts: int = 0

    def describe(self) -> str:
        shown = f"exited ({self.exit_code})" if self.state == "exited" else self.state
        return f"container {self.name} ({shown})"


@dataclass(frozen=True)
class Leftovers:
    containers: tuple[WeaveContainer, ...] = ()
    bridge: bool = False
    #: proxy socket files that nobody listens on
    stale_sockets: tuple[str, ...] = ()

    def parts(self) -> list[str]:
        found = [c.describe() for c in self.containers]
        if self.bridge:
            found.append("the weave bridge")
        found += [f"the stale socket {path}" for path in self.stale_sockets]
        return found


def is_weave_container(name: str) -> bool:
    return name in NAMES or name.startswith(VOLUMES_PREFIX)


def proxy_sockets(args: Iterable[str]) -> list[str]:
    """The unix socket paths a router's ``-H`` flags name (``-H X`` or ``-H=X``). Pure."""
    found, values = [], list(args)
    for index, arg in enumerate(values):
        value = None
        if arg == "-H" and index + 1 < len(values):
            value = values[index + 1]
        elif arg.startswith("-H="):
            value = arg[3:]
        if value and value.startswith(SOCKET_SCHEME):
            found.append(value[len(SOCKET_SCHEME):])
    return found


def removed(before: Leftovers, after: Leftovers) -> list[str]:
    """What was there before and is gone after, in words. Pure."""
    still = set(after.parts())
    names = {c.name for c in after.containers}
    gone = [c.describe() for c in before.containers if c.name not in names]
    if before.bridge and not after.bridge:
        gone.append("the weave bridge")
    gone += [f"the stale socket {p}" for p in before.stale_sockets
             if f"the stale socket {p}" not in still]
    return gone


# -- reads and the one removal ------------------------------------------------------------------


def weave_containers(docker) -> list[WeaveContainer]:
    """Weave's containers in any state (``docker ps -a``), through the Docker adapter."""
    with docker.mapped():
        listed = docker.sdk.api.containers(all=True, filters={"name": "weave"})
        found = []
        for summary in listed:
            names = [n.lstrip("/") for n in summary.get("Names") or ()]
            name = next((n for n in names if is_weave_container(n)), None)
            if name is None:
                continue
            info = docker.sdk.api.inspect_container(summary["Id"])
            state = info.get("State") or {}
            found.append(WeaveContainer(name, str(state.get("Status") or ""),
                                        int(state.get("ExitCode") or 0),
                                        tuple(info.get("Args") or ()),
                                        str((info.get("Config") or {}).get("Image") or ""),
                                        int(info.get("RestartCount") or 0)))
    return sorted(found, key=lambda c: (c.name != "weave", c.name))


def last_words(docker, name: str = "weave", lines: int = 20) -> str | None:
    """The last line a dead router logged (``FATA: ...``), before its container is removed with
    its logs; None when there is none to read."""
    try:
        with docker.mapped():
            text = docker.sdk.api.logs(name, stdout=True, stderr=True, tail=lines)
    except Exception:  # noqa: BLE001 - gone already, or Docker away: nothing to report
        return None
    found = [line.strip() for line in text.decode(errors="replace").splitlines()
             if line.strip()]
    fatal = [line for line in found if line.startswith(("FATA", "ERRO"))]
    return (fatal or found or [None])[-1]


def stale_socket(path: str) -> bool:
    """A unix socket file at ``path`` that refuses connections (its listener is gone)."""
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return False
    except OSError:
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return True
    except OSError:
        return False
    finally:
        probe.close()
    return False


def observe(containers: Sequence[WeaveContainer], bridge: bool,
            sockets: Iterable[str] = ()) -> Leftovers:
    """Leftovers from what was read: the containers, whether the bridge exists, and the stale
    ones among the proxy sockets the router's flags (and ``sockets``) name."""
    paths = list(dict.fromkeys([*sockets, *(p for c in containers
                                              for p in proxy_sockets(c.args))]))
    return Leftovers(tuple(containers), bridge, tuple(p for p in paths if stale_socket(p)))


def remove_stale_socket(path: str) -> bool:
    """Remove the socket file when nobody listens on it (``weave reset`` leaves it)."""
    if not stale_socket(path):
        return False
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True
