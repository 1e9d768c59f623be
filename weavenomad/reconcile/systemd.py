"""The reconciler's systemd unit (``weavenomad reconciler install``); installing it, and
``sd_notify``, are :mod:`weavenomad.runtime`'s.

The unit is hardened by removing what the daemon does not use: it only talks HTTP to Nomad,
Consul and Weave, talks to Docker's socket (root owns it, so no capability is needed), and reads
``/proc/<pid>/net`` of task containers (readable without capabilities), so it runs with no
capabilities at all, a read-only file system, a syscall allow-list without the privileged and
resource groups, only unix and IP sockets, and no other namespaces, devices or kernel knobs
(see tests/unit/test_secrets_systemd_unit.py).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from weavenomad.runtime.unitcheck import UnitSpec
from weavenomad.runtime.units import DEFAULT_EXEC

UNIT_NAME = "weavenomad-reconciler.service"
ENV_FILE = "/etc/weavenomad/reconciler.env"

UNIT_TEMPLATE = """\
# weavenomad reconciler: one per node; makes Consul answer with each task's Weave address.
# Settings: /etc/weavenomad/config.toml, or NOMAD_ADDR, CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN,
# DOCKER_HOST, WEAVE_HTTP_ADDR ... in {env_file}.
# Tokens go in that file (root:root, mode 0600; systemd reads it before dropping privileges),
# never on ExecStart: a command line is readable by every user.
[Unit]
Description=weavenomad reconciler (Consul answers with Weave addresses)
After=network-online.target docker.service weave.service consul.service nomad.service
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
EnvironmentFile=-{env_file}
ExecStart={exec_start}
Restart=always
RestartSec=2
WatchdogSec=30
TimeoutStartSec=60
TimeoutStopSec=30

# Hardening: everything the daemon does not need is taken away. It talks HTTP to Nomad,
# Consul and Weave, talks to Docker's socket (root's, so no capability is needed), reads
# /proc/<pid>/net of task containers (readable without any capability: tested as root with an
# empty bounding set and no_new_privs), and writes no file at all.
# Runs as root without capabilities rather than as another user: Docker's socket belongs to
# root (its group differs between distributions, and that group is root-equivalent anyway).
CapabilityBoundingSet=
AmbientCapabilities=
NoNewPrivileges=yes
# the whole file system read-only, home directories and other services' /tmp out of sight
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateMounts=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
# ProtectProc= stays at its default: the daemon reads other processes' /proc/<pid>/net;
# the rest of /proc (sysctls, kernel and hardware views) it does not need
ProcSubset=pid
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
# unix sockets (Docker, sd_notify) and TCP; no netlink, no packet sockets
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM
UMask=0077

[Install]
WantedBy=multi-user.target
"""


def render_unit(command: Sequence[str] = (DEFAULT_EXEC,), extra_args: Sequence[str] = ()) -> str:
    """The unit file text; ``command`` is how to run weavenomad. Pure."""
    exec_start = shlex.join([*command, *RUN_ARGS, *extra_args])
    return UNIT_TEMPLATE.format(exec_start=exec_start, env_file=ENV_FILE)


#: what ExecStart runs after the command
RUN_ARGS = ("reconciler", "run")
SPEC = UnitSpec(UNIT_NAME, render_unit, RUN_ARGS, "weavenomad reconciler install")
