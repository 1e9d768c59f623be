"""The vocabulary of plans: what a step does (an action, plain data), how it shows in the plan,
and the action that undoes it. :mod:`.plan` and :mod:`.reset` build them, :mod:`.apply` runs
them. Pure."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from ipaddress import IPv4Network

from weavenomad.bootstrap.guards import Guard
from weavenomad.nodeconfig.edit import ConfigFile, FileChange
from weavenomad.reconcile.registrations import Mask

WHY_NO_DEFAULT_IPALLOC = (
    "--no-default-ipalloc: only containers that carry WEAVE_CIDR join the overlay (tenant "
    "tasks get it from 'weavenomad run'); Nomad's pause containers and any other container "
    "stay off it, so nothing lands in a subnet by accident")


@dataclass(frozen=True)
class WeaveLaunch:
    ipalloc_range: str
    default_subnet: str
    peers: tuple[str, ...]

    def args(self) -> list[str]:
        """Exactly what :meth:`WeaveCommand.launch` runs."""
        return ["launch", "--no-dns", "--no-default-ipalloc", "--ipalloc-range",
                self.ipalloc_range, "--ipalloc-default-subnet", self.default_subnet,
                *self.peers]


@dataclass(frozen=True)
class WeaveReset:
    """Remove everything of Weave on the node (its containers, bridge, rules, and the socket a
    dead proxy left), saying what went. ``weave reset`` refuses while the router container
    exists but does not run ("weave is not running; unable to remove from cluster"), so a
    stopped or crashed Weave is reset with ``--force``, which does not tell the peers."""

    force: bool = False


@dataclass(frozen=True)
class ReevaluateBlocked:
    """``nomad job eval`` of every job with a blocked evaluation: one blocked while Nomad's
    Docker driver was unhealthy stays blocked after it turns healthy (day-two/1b)."""


@dataclass(frozen=True)
class WeaveExpose:
    specs: tuple[str, ...]


@dataclass(frozen=True)
class WeaveHide:
    specs: tuple[str, ...]


@dataclass(frozen=True)
class AddGuard:
    """Insert an isolation guard at the top of its chain unless an equivalent rule is in
    effect when the step runs (a freshly launched Weave installs its docker-to-weave DROP)."""

    guard: Guard


@dataclass(frozen=True)
class RemoveGuard:
    """Delete the guard's rules carrying our comment (the ones bootstrap added): all of them,
    or (undoing one AddGuard) the topmost."""

    guard: Guard
    every: bool = True


@dataclass(frozen=True)
class WriteConfig:
    change: FileChange
    #: the endpoint the change writes
    endpoint: str
    #: every file of the agent config, to re-plan when Weave reports another proxy socket
    files: tuple[ConfigFile, ...] = ()
    #: the endpoint is the one Weave reports once launched (unknown while planning)
    late_endpoint: bool = False
    accepted: tuple[str, ...] = ()


@dataclass(frozen=True)
class RestoreConfig:
    path: str
    text: str
    #: remove FILE.weavenomad.bak afterwards (it was made by the run being undone, or reset)
    drop_backup: bool


@dataclass(frozen=True)
class DropBackup:
    """Remove FILE.weavenomad.bak once reset no longer needs it."""

    path: str


@dataclass(frozen=True)
class RestartNomad:
    argv: tuple[str, ...]


@dataclass(frozen=True)
class VerifyNomad:
    """Nomad's agent reports the endpoint and its node's Docker driver is healthy."""

    endpoint: str
    accepted: tuple[str, ...] = ()
    file: str | None = None


@dataclass(frozen=True)
class RecordCluster:
    ipalloc_range: IPv4Network
    default_subnet: IPv4Network


# -- the Docker packages and the Weave release (issue 22) -------------------------------------


@dataclass(frozen=True)
class HoldPackages:
    """``apt-mark hold`` of the packages not held yet; those it held are added to ``record`` (a
    JSON file), so that reset releases exactly the holds weavenomad made."""

    packages: tuple[str, ...]
    record: str


@dataclass(frozen=True)
class ReleaseHold:
    """``apt-mark unhold`` of the packages (those still held), and off the ``record``."""

    packages: tuple[str, ...]
    record: str


@dataclass(frozen=True)
class InstallPackages:
    """``apt-get install -y --allow-downgrades PKG=VERSION…``: another Docker Engine; apt's
    scripts restart dockerd, and the containers with a restart policy come back with it."""

    pins: tuple[str, ...]


@dataclass(frozen=True)
class PullImage:
    image: str


@dataclass(frozen=True)
class LaunchRelease:
    """``weave launch`` with the weave command's release variables set to ``env``
    (``WEAVE_VERSION``, ``DOCKERHUB_USER``, ``DOCKER_API_VERSION``)."""

    launch: WeaveLaunch
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RemoveRouter:
    """``docker rm -f weave``: the router container only; ``weavedb`` (the IPAM's data) and
    ``weavevolumes-*`` stay, so the next launch takes up the same addresses. ``relaunch``: how
    to bring back the one removed (its release and flags), the undo."""

    relaunch: LaunchRelease | None = None


@dataclass(frozen=True)
class InstallWeaveScript:
    """Copy the release's ``weave`` script out of its weaveexec image (``/home/weave/weave``,
    where Weave's images keep it) to ``path``; the old one is kept as ``path.weavenomad.bak``.
    The copy must say ``SCRIPT_VERSION="version"``."""

    image: str
    path: str
    version: str


@dataclass(frozen=True)
class RestoreWeaveScript:
    path: str


@dataclass(frozen=True)
class ExposeAgain:
    """``weave expose`` of subnets the host had exposed before: the IPAM gives the same
    addresses back, and nothing is hidden on a rollback (they were there before)."""

    specs: tuple[str, ...]


@dataclass(frozen=True)
class WaitForWeave:
    """Weave's HTTP API answers again (its router restarts with dockerd by its policy)."""

    timeout: float = 90.0


@dataclass(frozen=True)
class Registration:
    """A service of ours in the local service agent: its ID and where it lives (Consul
    Enterprise's namespace and partition, "" on CE)."""

    id: str
    namespace: str = ""
    partition: str = ""


@dataclass(frozen=True)
class RemoveMasks:
    """Deregister the reconciler's masks: Nomad's instances they mask answer again."""

    masks: tuple[Mask, ...]


@dataclass(frozen=True)
class RegisterMasks:
    masks: tuple[Mask, ...]


@dataclass(frozen=True)
class RemoveTwins:
    """Deregister the reconciler's twins (the reconciler registers them again when it runs)."""

    twins: tuple[Registration, ...]


@dataclass(frozen=True)
class StopUnit:
    """``systemctl disable --now``: a unit of ours stops, and stays stopped after a reboot."""

    unit: str


@dataclass(frozen=True)
class StartUnit:
    unit: str


@dataclass(frozen=True)
class RemoveUnitFile:
    """Remove a unit file of ours (``text``: what it held, for the undo)."""

    path: str
    text: str


@dataclass(frozen=True)
class WriteUnitFile:
    path: str
    text: str


Action = (WeaveLaunch | WeaveReset | WeaveExpose | WeaveHide | AddGuard | RemoveGuard
          | WriteConfig | RestoreConfig | DropBackup | RestartNomad | VerifyNomad
          | ReevaluateBlocked | RecordCluster | HoldPackages | ReleaseHold | InstallPackages
          | PullImage | RemoveRouter | LaunchRelease | InstallWeaveScript | RestoreWeaveScript
          | ExposeAgain | WaitForWeave | RemoveMasks | RegisterMasks | RemoveTwins | StopUnit
          | StartUnit | RemoveUnitFile | WriteUnitFile)

WHY_FORCE = ("Weave is not running, and plain 'weave reset' then refuses (\"weave is not "
             "running; unable to remove from cluster\"); --force removes its local state without "
             "telling its peers: if this node never comes back, run 'weave rmpeer <its peer "
             "name>' on one other node")


@dataclass(frozen=True)
class Step:
    title: str
    action: Action
    undo: Action | None = None
    #: extra lines for the plan: the reason, a note
    notes: tuple[str, ...] = ()
    #: the action can leave things behind when it fails (``weave launch``'s containers): its
    #: undo is registered before it runs and runs after its own failure too
    undo_if_failed: bool = False
    #: once this step succeeded, a later failure keeps it and everything before it (a reset
    #: that moved Nomad off the Weave proxy never points it back at a socket about to die)
    commits: bool = False

    def to_json(self) -> dict:
        return {"title": self.title, "kind": kind(self.action),
                "command": command_line(self.action), "diff": diff_of(self.action),
                "undo": describe(self.undo) if self.undo else None, "notes": list(self.notes)}


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...] = ()
    #: things the operator should know that are no step (a restart to do by hand …)
    notes: tuple[str, ...] = ()
    #: the node is not fully done after the steps (e.g. Nomad must be restarted by hand)
    attention: bool = False

    def to_json(self) -> dict:
        return {"steps": [s.to_json() for s in self.steps], "notes": list(self.notes),
                "attention": self.attention}


def kind(action: Action) -> str:
    return type(action).__name__


def command_line(action: Action, weave: str = "weave") -> str | None:
    """The exact command an action runs, or None for actions that are not one command."""
    if isinstance(action, WeaveLaunch):
        return shlex.join([weave, *action.args()])
    if isinstance(action, WeaveReset):
        return f"{weave} reset" + (" --force" if action.force else "")
    if isinstance(action, WeaveExpose):
        return shlex.join([weave, "expose", *action.specs])
    if isinstance(action, WeaveHide):
        return shlex.join([weave, "hide", *action.specs])
    if isinstance(action, AddGuard):
        return shlex.join(action.guard.argv("-I"))
    if isinstance(action, RemoveGuard):
        return shlex.join(action.guard.argv("-D"))
    if isinstance(action, RestartNomad):
        return shlex.join(action.argv)
    if isinstance(action, StopUnit):
        return shlex.join(["systemctl", "disable", "--now", action.unit])
    if isinstance(action, StartUnit):
        return shlex.join(["systemctl", "enable", "--now", action.unit])
    return release_command_line(action, weave)


def release_command_line(action: Action, weave: str = "weave") -> str | None:
    """The command lines of the package and Weave release actions."""
    if isinstance(action, HoldPackages):
        return shlex.join(["apt-mark", "hold", *action.packages])
    if isinstance(action, ReleaseHold):
        return shlex.join(["apt-mark", "unhold", *action.packages])
    if isinstance(action, InstallPackages):
        return shlex.join(["apt-get", "install", "-y", "--allow-downgrades", *action.pins])
    if isinstance(action, PullImage):
        return shlex.join(["docker", "pull", action.image])
    if isinstance(action, RemoveRouter):
        return "docker rm -f weave"
    if isinstance(action, ExposeAgain):
        return shlex.join([weave, "expose", *action.specs])
    if isinstance(action, LaunchRelease):
        return shlex.join(["env", *(f"{k}={v}" for k, v in action.env), weave,
                           *action.launch.args()])
    return None


def diff_of(action: Action) -> str | None:
    return action.change.diff() if isinstance(action, WriteConfig) else None


def describe(action: Action) -> str:
    """One line for plans and rollback reports."""
    if isinstance(action, RestartNomad):
        return f"restart Nomad ({shlex.join(action.argv)})"
    line = command_line(action)
    if line:
        return line
    if isinstance(action, WriteConfig):
        return f"write {action.change.path}"
    if isinstance(action, RestoreConfig):
        return f"restore {action.path}" + (" and remove its backup" if action.drop_backup
                                           else "")
    if isinstance(action, DropBackup):
        return f"remove {action.path}.weavenomad.bak"
    if isinstance(action, VerifyNomad):
        return f"check that Nomad's Docker driver is healthy on {action.endpoint}"
    if isinstance(action, ReevaluateBlocked):
        return "nomad job eval of every job with a blocked evaluation"
    if isinstance(action, RecordCluster):
        return (f"record range {action.ipalloc_range} and default subnet "
                f"{action.default_subnet} in the registry")
    if isinstance(action, InstallWeaveScript):
        return (f"copy /home/weave/weave (weave script {action.version}) out of "
                f"{action.image} to {action.path}, keeping {action.path}.weavenomad.bak")
    if isinstance(action, RestoreWeaveScript):
        return f"restore {action.path} from {action.path}.weavenomad.bak"
    if isinstance(action, WaitForWeave):
        return f"wait up to {action.timeout:.0f}s for Weave's HTTP API to answer"
    return describe_purge(action)


def describe_purge(action: Action) -> str:
    """One line for the actions of ``reset --purge``."""
    if isinstance(action, RemoveMasks):
        return "deregister the check(s) " + " ".join(m.id for m in action.masks)
    if isinstance(action, RegisterMasks):
        return "register the mask(s) " + " ".join(m.id for m in action.masks) + " again"
    if isinstance(action, RemoveTwins):
        return "deregister the service(s) " + " ".join(t.id for t in action.twins)
    if isinstance(action, RemoveUnitFile):
        return f"remove {action.path} (systemctl daemon-reload)"
    if isinstance(action, WriteUnitFile):
        return f"write {action.path} back (systemctl daemon-reload)"
    return kind(action)
