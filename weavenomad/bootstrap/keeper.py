"""Keeping the isolation guards in place after bootstrap: ``weavenomad guard ensure``.

iptables rules live in the kernel only. A reboot drops them, and a restart of dockerd or of
Weave inserts their own FORWARD and POSTROUTING rules above ours (Docker's ``-i docker0 !
-o docker0 -j ACCEPT`` shadows the docker-to-weave guard). Bootstrap puts them back when run
again; ``guard ensure --every N``, as the systemd unit ``weavenomad-guards.service``, does it
within N seconds. It acts only while the node has a ``weave`` bridge: after ``weavenomad reset``
(or before Weave is up at boot) there is nothing to guard, and it adds nothing.

Under systemd it is a ``Type=notify`` service like the reconciler: ready after its first look
whatever it found (no bridge yet is a wait, not a failure), its status saying what it found or
waits for, the watchdog fed in every wait, and logs in the journal's form with priorities.
"""

from __future__ import annotations

import logging
import shlex
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from weavenomad.bootstrap import guards as gd
from weavenomad.bootstrap import system
from weavenomad.bootstrap.checks import WEAVE_BRIDGE
from weavenomad.bootstrap.observe import DEFAULT_DOCKER_BRIDGE, bridge_name, docker_bridge_network
from weavenomad.errors import WeavenomadError
from weavenomad.runtime.notify import Supervised
from weavenomad.runtime.unitcheck import UnitSpec
from weavenomad.runtime.units import DEFAULT_EXEC

log = logging.getLogger("weavenomad.guards")

UNIT_NAME = system.GUARDS_UNIT
#: seconds between two looks in the unit: iptables -S of two tables, a few milliseconds
UNIT_EVERY = 10

UNIT_TEMPLATE = """\
# weavenomad isolation guards: keeps the iptables rules that stop a node from carrying traffic
# between tenant subnets (bootstrap adds them; a reboot or a restart of Docker or Weave loses or
# shadows them). Acts only while the node has a weave bridge.
[Unit]
Description=weavenomad isolation guards (iptables rules between tenant subnets)
After=docker.service weave.service
Before=nomad.service

[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_start}
Restart=always
RestartSec=2
WatchdogSec=30
TimeoutStartSec=60
TimeoutStopSec=30

# iptables needs NET_ADMIN (and NET_RAW for the legacy backend); nothing else
CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW
AmbientCapabilities=
NoNewPrivileges=yes
# /usr, /boot and /etc read-only; /run stays writable for iptables' lock (/run/xtables.lock)
ProtectSystem=full
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
# netlink (ip, iptables-nft), IP sockets (iptables-legacy), unix (logging)
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
SystemCallArchitectures=native
UMask=0077

[Install]
WantedBy=multi-user.target
"""


#: what ExecStart runs after the command
RUN_ARGS = ("guard", "ensure", "--every", str(UNIT_EVERY))


def render_unit(command: Sequence[str] = (DEFAULT_EXEC,)) -> str:
    """The unit file text; ``command`` is how to run weavenomad. Pure."""
    exec_start = shlex.join([*command, *RUN_ARGS])
    return UNIT_TEMPLATE.format(exec_start=exec_start)


SPEC = UnitSpec(UNIT_NAME, render_unit, RUN_ARGS, "weavenomad guard install")


def docker_bridge_of(docker) -> Callable[[], str]:
    """The name of Docker's bridge, asked each time; while Docker does not answer (it may be
    restarting), the last name it gave, ``docker0`` at first."""
    last = DEFAULT_DOCKER_BRIDGE

    def name() -> str:
        nonlocal last
        try:
            last = bridge_name(docker_bridge_network(docker))
        except (WeavenomadError, OSError) as exc:
            log.debug("Docker does not say its bridge (%s): using %s", exc, last)
        return last

    return name


@dataclass(frozen=True)
class Round:
    """One look: whether Weave is on the node, and the guards put back."""

    weave_present: bool
    added: tuple[gd.Guard, ...] = ()

    @property
    def status(self) -> str:
        """What systemd's status says after this look. Pure."""
        if not self.weave_present:
            return f"waiting for Weave: no '{WEAVE_BRIDGE}' bridge on this node, nothing to guard"
        if self.added:
            return (f"put back {len(self.added)} isolation guard(s) "
                    f"({', '.join(g.name for g in self.added)}); every guard is in place")
        return "every isolation guard is in place"


class Keeper:
    """Puts back missing or shadowed guards; once, or every ``every`` seconds until stopped."""

    def __init__(self, docker_bridge: Callable[[], str], *,
                 weave_present: Callable[[], bool] | None = None,
                 ensure: Callable[[str], list[gd.Guard]] = system.ensure_guards,
                 supervised: Supervised | None = None):
        self.docker_bridge = docker_bridge
        self.weave_present = weave_present or (lambda: system.link_exists(WEAVE_BRIDGE))
        self.ensure = ensure
        self.supervised = supervised or Supervised()
        self.stop = threading.Event()

    def look(self) -> Round:
        if not self.weave_present():
            return Round(False)
        return Round(True, tuple(self.ensure(self.docker_bridge())))

    def keep(self, every: float, report: Callable[[Round], None]) -> None:
        """Look every ``every`` seconds until :attr:`stop` is set, telling systemd what each
        look found. A failed look (iptables busy or missing for a moment) is logged once until
        a look succeeds again."""
        failing = False
        self.supervised.ping(force=True)
        while not self.stop.is_set():
            try:
                look = self.look()
                report(look)
                status = look.status
                if failing:
                    log.info("iptables can be read and changed again")
                failing = False
            except WeavenomadError as exc:
                status = f"waiting for iptables: {exc.one_line()}"
                if not failing:
                    log.error("cannot keep the isolation guards: %s", exc.one_line())
                failing = True
            self.supervised.tell(status)
            self.supervised.wait(self.stop, every)
        self.supervised.stopping()
