"""Plans that bring a node's Docker and Weave back together (issue 22, "Recover" and
"Prevent"). Pure: observed facts and the operator's choice in, a
:class:`~weavenomad.bootstrap.steps.Plan` out; :mod:`.recover` observes and applies.

``weavenomad weave-upgrade`` moves a launched Weave to a release that speaks the installed
Docker's API (the maintained fork rajch/weave by default), keeping what the node has: the old
router container goes, ``weavedb`` (the IPAM's data) stays, so the new router takes up every
address it had given (the tasks', the host's exposed ones); the fork's images are pulled first
and its ``weave`` script replaces the old one (kept as a backup); the launch flags are the old
router's; then the subnets are exposed and the isolation guards put back as bootstrap does, and
Nomad's Docker driver is checked on the same proxy socket. A failure rolls back in reverse (the
old router is relaunched, which on a Docker that refuses it fails again, as it says).

``weavenomad docker-hold`` holds the Docker packages (what ``bootstrap --hold-docker`` does), or,
with ``--downgrade``, first goes back to a Docker that accepts the node's Weave.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from weavenomad.bootstrap import packages as pk
from weavenomad.bootstrap import steps as st
from weavenomad.bootstrap import versions as vs
from weavenomad.bootstrap.guards import guard_states
from weavenomad.bootstrap.leftovers import WeaveContainer
from weavenomad.bootstrap.observe import NodeFacts, exposed_specs
from weavenomad.errors import ValidationError

#: where Weave's images keep the release's weave script
SCRIPT_IN_IMAGE = "/home/weave/weave"
#: weaver flags that stand alone (every other ``--flag`` of the router's takes a value)
_BOOLEAN_FLAGS = {"--no-default-ipalloc", "--no-dns", "--no-fastdp", "--plugin", "--proxy",
                  "--no-discovery", "--no-restart", "--no-multicast-route", "--no-rewrite-hosts",
                  "--without-dns", "--rewrite-inspect", "--resume", "--no-masq-local",
                  "--awsvpc"}
SURVIVES = ("Weave's IPAM (the weavedb container): containers that keep running keep their Weave "
            "addresses, the host its exposed ones; the tenants and the registry; Nomad's config "
            "and its Docker endpoint (the same proxy socket); the isolation guards (checked "
            "again)")


@dataclass(frozen=True)
class Release:
    """A Weave release: its images' owner and version, and the DOCKER_API_VERSION it is run
    with (None: its pin)."""

    owner: str
    version: str
    api_version: str | None = None

    @property
    def images(self) -> tuple[str, ...]:
        return (f"{self.owner}/weave:{self.version}", f"{self.owner}/weaveexec:{self.version}",
                f"{self.owner}/weavedb:latest")

    @property
    def exec_image(self) -> str:
        return self.images[1]

    @property
    def speaks(self) -> str:
        return vs.weave_api(self.version, self.api_version)

    def env(self) -> tuple[tuple[str, str], ...]:
        values = [("WEAVE_VERSION", self.version), ("DOCKERHUB_USER", self.owner)]
        if self.api_version:
            values.append(("DOCKER_API_VERSION", self.api_version))
        return tuple(values)

    def describe(self) -> str:
        api = f", DOCKER_API_VERSION={self.api_version}" if self.api_version else ""
        return f"{self.owner}/weave {self.version} (API {self.speaks}{api})"


def release_of(router: WeaveContainer | None) -> Release | None:
    """The release a router container runs, from its image name."""
    if router is None or not router.image:
        return None
    version = vs.image_version(router.image)
    owner = router.image.split("/", 1)[0] if "/" in router.image else vs.WEAVEWORKS
    return Release(owner, version) if version else None


def router_peers(args: Sequence[str]) -> tuple[str, ...]:
    """The peers a router was launched with: its arguments after the weaver binary (when they
    name it) that are no flag and no flag's value."""
    values = list(args)
    binary = [i for i, arg in enumerate(values) if arg.endswith("/weaver")]
    values = values[binary[-1] + 1:] if binary else values
    peers = []
    index = 0
    while index < len(values):
        arg = values[index]
        if arg.startswith("-"):
            takes_value = "=" not in arg and arg not in _BOOLEAN_FLAGS
            index += 2 if takes_value else 1
            continue
        peers.append(arg)
        index += 1
    return tuple(peers)


@dataclass(frozen=True)
class UpgradeInputs:
    """What the weave-upgrade plan needs besides the node's facts (read by the runner)."""

    target: Release
    #: the weave command's file (None: not found, no script step)
    script_path: str | None
    #: the script's version now (``weave version``'s "weave script")
    script_version: str | None
    #: images of the target already on this node
    present: frozenset[str] = frozenset()
    peers: tuple[str, ...] | None = None


def plan_weave_upgrade(facts: NodeFacts, given: UpgradeInputs) -> st.Plan:
    """Move this node's Weave to ``given.target``; ValidationError (one line, nothing changed)
    when it cannot be done here."""
    target = given.target
    docker = facts.docker_version
    if docker is None:
        raise ValidationError(f"Docker does not answer: {facts.errors.get('docker')}",
                              hint="start dockerd first (Weave runs in it)")
    if not facts.weave_launched:
        raise ValidationError(
            "Weave was never launched on this node: there is nothing to move",
            hint=f"bootstrap with the fork: weavenomad bootstrap with {vs.fork_settings()}")
    if facts.cluster is None:
        raise ValidationError("the registry records no Weave range: cannot relaunch Weave with "
                              "the node's range", hint="check Consul (weavenomad doctor)")
    verdict = vs.judge(str(docker.get("Version")), docker.get("MinAPIVersion"),
                       docker.get("ApiVersion"), target.version, target.api_version)
    if not verdict.ok:
        raise ValidationError(f"{target.describe()} would not run here either: "
                              f"{verdict.detail}", hint=verdict.fix)
    router = facts.weave_router
    current = release_of(router)
    if facts.weave_running and current == replace(target, api_version=None) and \
            not target.api_version:
        return st.Plan((), (f"Weave {target.describe()} runs here already",))
    cluster = facts.cluster
    peers = given.peers if given.peers is not None else router_peers(router.args if router
                                                                     else ())
    launch = st.WeaveLaunch(str(cluster.ipalloc_range), str(cluster.default_subnet),
                            tuple(peers))
    steps = [st.Step(f"pull {image}", st.PullImage(image), None,
                     ("the fork's images come from Docker Hub",))
             for image in target.images if image not in given.present]
    if router is not None:
        undo = st.LaunchRelease(launch, current.env()) if current else None
        steps.append(st.Step(
            f"remove the old router container ({router.image or 'weave'}, {router.state})",
            st.RemoveRouter(undo), None,
            ("weavedb, the IPAM's data, stays: the new router takes up its addresses",)
            + (("undo relaunches it, which fails again while Docker refuses its API",)
               if not facts.weave_running else ())))
    if given.script_path and given.script_version and \
            vs.version_tuple(given.script_version)[:3] != vs.version_tuple(target.version)[:3]:
        steps.append(st.Step(
            f"install weave script {target.version} at {given.script_path}",
            st.InstallWeaveScript(target.exec_image, given.script_path, target.version),
            st.RestoreWeaveScript(given.script_path),
            (f"from {target.exec_image}:{SCRIPT_IN_IMAGE}; the script {given.script_version} "
             f"stays as {given.script_path}.weavenomad.bak",)))
    steps.append(st.Step(f"launch Weave {target.describe()} with the node's flags",
                         st.LaunchRelease(launch, target.env()), st.RemoveRouter(),
                         (st.WHY_NO_DEFAULT_IPALLOC,), undo_if_failed=True))
    subnets = [cluster.default_subnet, *facts.tenant_subnets()]
    steps.append(st.Step("expose the default and tenant subnets on the host (the same "
                         "addresses: the IPAM kept them)",
                         st.ExposeAgain(tuple(exposed_specs(subnets, cluster.default_subnet)))))
    steps += _guard_steps(facts)
    endpoints = facts.proxy_endpoints
    steps.append(st.Step("verify Nomad's Docker driver through its API",
                         st.VerifyNomad(endpoints[0], tuple(endpoints))))
    steps.append(st.Step("evaluate again the jobs that waited for the Docker driver",
                         st.ReevaluateBlocked()))
    notes = [f"moves Weave {current.describe() if current else '(unknown release)'} to "
             f"{target.describe()}", f"survives: {SURVIVES}", "restarts: " + _restarts(facts)]
    if target.api_version:
        notes.append(f"later weave commands need DOCKER_API_VERSION={target.api_version}: set "
                     f'[weave] docker_api_version = "{target.api_version}" in '
                     "/etc/weavenomad/config.toml")
    return st.Plan(tuple(steps), tuple(notes))


def _restarts(facts: NodeFacts) -> str:
    if facts.weave_running:
        return ("the Weave router (seconds without the proxy: Nomad's waits on its Docker tasks "
                "break, each is 'Terminated: unexpected EOF' and taken over again after its "
                "restart delay; the reconciler keeps their twins answering)")
    return ("the Weave router, which was not running; Nomad's Docker driver has been down with "
            "it, so the tasks that died meanwhile (a Docker upgrade stops every container) are "
            "placed again once it is healthy, with new allocations and addresses")


def _guard_steps(facts: NodeFacts) -> list[st.Step]:
    """Every isolation guard, each checked when its step runs: the relaunched Weave puts its
    own rules on top."""
    bridge = facts.docker_bridge or "docker0"
    return [st.Step(f"put back the isolation guard against {state.guard.closes} (unless in "
                    "place)", st.AddGuard(state.guard), st.RemoveGuard(state.guard, every=False))
            for state in guard_states(facts.iptables_rules or [], facts.nat_rules or [],
                                      bridge)]


# -- holding Docker -------------------------------------------------------------------------------


def hold_step(apt: pk.AptFacts | None, docker: Mapping | None, docker_root: str | None,
              record: str) -> st.Step | None:
    """The step that holds the Docker packages (None: all held already); ValidationError when
    apt cannot hold the Docker that runs."""
    if apt is None or apt.error:
        raise ValidationError("cannot hold Docker: " + (apt.error if apt else "apt not asked"),
                              hint="hold or pin Docker with this node's package manager")
    if docker is not None:
        problem = pk.source_problem(apt, str(docker.get("Version")), docker_root)
        if problem:
            raise ValidationError(f"cannot hold Docker with apt: {problem}",
                                  hint="pin Docker where it was installed from")
    targets = pk.hold_targets(apt)
    if not targets:
        raise ValidationError("cannot hold Docker: apt has no Docker package installed",
                              hint="pin Docker where it was installed from")
    loose = tuple(p for p in targets if p not in apt.held)
    if not loose:
        return None
    return st.Step(f"hold the Docker packages ({' '.join(loose)}) so that apt keeps this "
                   "Docker", st.HoldPackages(loose, record), st.ReleaseHold(loose, record),
                   ("recorded for 'weavenomad reset', which releases exactly these holds; an "
                    "explicit 'apt install docker.io' still changes a held package (it asks)",))


def release_step(recorded: Sequence[str], apt: pk.AptFacts | None,
                 record: str) -> st.Step | None:
    """The step that releases the holds weavenomad recorded (those still held)."""
    held = [p for p in recorded if apt is None or apt.error or p in apt.held]
    if not held:
        return None
    return st.Step(f"release the hold weavenomad put on {' '.join(held)}",
                   st.ReleaseHold(tuple(held), record), st.HoldPackages(tuple(held), record))


def with_hold(plan: st.Plan, step: st.Step | None) -> st.Plan:
    """Bootstrap's plan with the hold first (apt failing changes nothing else)."""
    if step is None:
        return replace(plan, notes=(*plan.notes, "the Docker packages are held already"))
    return replace(plan, steps=(step, *plan.steps))


def with_release(plan: st.Plan, step: st.Step | None) -> st.Plan:
    """Reset's plan with the holds released before the backups go (they go last)."""
    if step is None:
        return plan
    backups = [s for s in plan.steps if isinstance(s.action, st.DropBackup)]
    rest = [s for s in plan.steps if not isinstance(s.action, st.DropBackup)]
    return replace(plan, steps=(*rest, step, *backups))


def downgrade_pins(apt: pk.AptFacts, version: str | None) -> tuple[str, ...]:
    """``PKG=VERSION`` that take Docker back below 25: the engine's newest such version apt
    offers (or ``version``), and the companions from the same source. ValidationError naming
    what apt offers when there is none."""
    engine = apt.engine
    if engine is None:
        raise ValidationError("apt has no Docker package installed: nothing to downgrade",
                              hint="install Docker <= 24 by hand")
    offers = [o for o in engine.table if _from_repository(o)]
    if version is not None:
        chosen = next((o for o in offers if o.version == version), None)
        if chosen is None:
            raise ValidationError(f"apt offers no {engine.package} {version} (it has "
                                  f"{', '.join(o.version for o in offers) or 'none'})",
                                  hint="apt-cache policy " + engine.package)
    else:
        older = [o for o in offers if vs.engine_major(pk.upstream(o.version)) < 25]
        if not older:
            raise ValidationError(
                f"apt offers no {engine.package} older than Docker 25 (it has "
                f"{', '.join(o.version for o in offers) or 'none'})",
                hint="add a source that has one (Debian 12 'bookworm'), or move to the fork: "
                     f"{vs.UPGRADE_COMMAND}")
        chosen = older[0]
    origins = {o.split(" ")[1] for o in chosen.origins if " " in o}
    pins = [f"{engine.package}={chosen.version}"]
    for name in apt.installed(pk.COMPANIONS[engine.package]):
        match = next((o for o in apt.policies[name].table if _from_repository(o) and
                      origins & {x.split(" ")[1] for x in o.origins if " " in x}), None)
        if match is not None and match.version != apt.policies[name].installed:
            pins.append(f"{name}={match.version}")
    return tuple(pins)


def _from_repository(offer: pk.Offer) -> bool:
    return any("://" in origin for origin in offer.origins)


def plan_docker_hold(facts: NodeFacts, record: str, downgrade: bool, version: str | None,
                     recorded: Sequence[str], release: bool) -> st.Plan:
    """``weavenomad docker-hold``: hold Docker; ``downgrade``: first go back to a Docker that
    accepts the node's Weave; ``release``: undo the holds weavenomad made."""
    if release:
        step = release_step(recorded, facts.apt, record)
        return st.Plan((step,) if step else (), () if step else (
            "weavenomad holds no Docker package here",))
    steps: list[st.Step] = []
    notes: list[str] = []
    if downgrade:
        pins = downgrade_pins(facts.apt or pk.AptFacts(error="apt not asked"), version)
        engine = facts.apt.engine if facts.apt else None
        if engine is not None and pins[0] == f"{engine.package}={engine.installed}":
            notes.append(f"{engine.package} {engine.installed} is installed already")
        else:
            steps.append(st.Step(f"install {' '.join(pins)}", st.InstallPackages(pins), None,
                                 ("apt restarts dockerd: the Weave router comes back with it "
                                  "(its restart policy); Nomad's Docker tasks stop with the old "
                                  "dockerd and are placed again",)))
    hold = hold_step(facts.apt, facts.docker_version, facts.docker_root, record)
    steps += [hold] if hold is not None else []
    if steps and downgrade:
        endpoints = facts.proxy_endpoints
        steps += [st.Step("wait for Weave to answer again", st.WaitForWeave()),
                  st.Step("verify Nomad's Docker driver through its API",
                          st.VerifyNomad(endpoints[0], tuple(endpoints))),
                  st.Step("evaluate again the jobs that waited for the Docker driver",
                          st.ReevaluateBlocked())]
    if hold is None:
        notes.append("the Docker packages are held already")
    return st.Plan(tuple(steps), tuple(notes))
