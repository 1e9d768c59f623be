"""What ``weavenomad bootstrap`` will do on a node: a pure function from observed facts and the
wanted settings to a :class:`~weavenomad.bootstrap.steps.Plan`.

Only what is missing becomes a step, so a second run on a bootstrapped node plans nothing. The
order makes rollback safe: Weave first (launch, the isolation guards of :mod:`.guards`,
expose), then the Nomad config, the restart and its verification, and the registry record
last, when everything else worked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network

from weavenomad.bootstrap import steps as st
from weavenomad.bootstrap.checks import foreign_in, missing_exposes, weave_settings
from weavenomad.bootstrap.guards import guard_states
from weavenomad.bootstrap.observe import NodeFacts, agent_endpoint, exposed_specs
from weavenomad.errors import ConflictError, ValidationError
from weavenomad.nodeconfig.edit import WEAVE_PROXY_ENDPOINT, plan_endpoint
from weavenomad.tenancy.model import Cluster, plan_record_cluster

RESET_HINT = "run 'weavenomad reset' on this node first (it stops Weave), then bootstrap again"
#: after Nomad's Docker driver turned healthy: jobs registered while it was not stay blocked
REEVALUATE = st.Step(
    "re-evaluate jobs blocked while Nomad's Docker driver was unhealthy", st.ReevaluateBlocked(),
    notes=("Nomad leaves an evaluation blocked on \"missing drivers\" when the driver turns "
           "healthy on the same node: this is 'nomad job eval' of each such job",))
#: interfaces whose addresses may lie in the Weave range: Weave's own bridge holds the exposes
_OWN_INTERFACES = ("weave", "lo")


@dataclass(frozen=True)
class Desired:
    cluster: Cluster
    peers: tuple[str, ...] = ()
    #: how to restart Nomad; None: the operator does it (printed as a note)
    restart_argv: tuple[str, ...] | None = None
    #: what to tell the operator when there is no restart_argv
    restart_hint: str = "restart the Nomad agent (e.g. systemctl restart nomad)"


def check_ranges(cluster: Cluster, docker_subnets: Sequence[IPv4Network],
                 host_addresses: Sequence[tuple[str, IPv4Interface]]) -> None:
    """The Weave range must not overlap Docker's bridge network or the host's networks."""
    hint = "pick an --ipalloc-range free on every node, e.g. 10.32.0.0/16"
    for subnet in docker_subnets:
        if subnet.overlaps(cluster.ipalloc_range):
            raise ValidationError(f"--ipalloc-range {cluster.ipalloc_range} overlaps Docker's "
                                  f"bridge network {subnet}", hint=hint)
    for name, address in host_addresses:
        if name in _OWN_INTERFACES or address.ip.is_loopback:
            continue
        if address.network.overlaps(cluster.ipalloc_range):
            raise ValidationError(f"--ipalloc-range {cluster.ipalloc_range} overlaps "
                                  f"{address} on {name}", hint=hint)


def check_recorded(recorded: Cluster | None, wanted: Cluster) -> None:
    """Every node must use the range the registry records (tenants are carved out of it)."""
    try:
        plan_record_cluster(recorded, wanted)
    except ConflictError as exc:
        raise ConflictError(exc.message, hint=f"pass --ipalloc-range {recorded.ipalloc_range} "
                            f"--default-subnet {recorded.default_subnet}, the recorded "
                            "values") from None


def check_running_weave(facts: NodeFacts, cluster: Cluster) -> None:
    """A running Weave must have our settings; other settings cannot be changed live."""
    weave_range, default = weave_settings(facts.weave_report or {})
    if (weave_range, default) != (cluster.ipalloc_range, cluster.default_subnet):
        raise ConflictError(
            f"Weave already runs with range {weave_range} and default subnet {default}, not "
            f"{cluster.ipalloc_range} and {cluster.default_subnet}", hint=RESET_HINT)
    args = facts.weave_container_args
    if args is not None and "--no-default-ipalloc" not in args:
        raise ConflictError("Weave already runs without --no-default-ipalloc, so containers "
                            "without WEAVE_CIDR join its default subnet", hint=RESET_HINT)
    if not facts.proxy_addrs:
        raise ConflictError("Weave runs without its Docker API proxy (--proxy=false)",
                            hint=RESET_HINT)


def check_bridge(facts: NodeFacts, subnets: Sequence[IPv4Network]) -> None:
    """An address on the weave bridge, in a subnet Weave allocates from, that its IPAM did not
    give the host would be handed to a container too: refused before anything changes."""
    clashing = foreign_in(facts.foreign_bridge, subnets)
    if clashing:
        shown = ", ".join(map(str, clashing))
        raise ValidationError(
            f"the weave bridge has {shown}, which Weave's IPAM did not give this host (a "
            "container may get the same address)",
            hint="remove it first: " + "; ".join(f"ip addr del {a} dev weave"
                                                  for a in clashing))


def plan_bootstrap(facts: NodeFacts, want: Desired) -> st.Plan:
    cluster = want.cluster
    notes: list[str] = []
    steps: list[st.Step] = []
    check_ranges(cluster, facts.docker_subnets, facts.host_addresses)
    check_recorded(facts.cluster, cluster)
    bridge = facts.docker_bridge or "docker0"

    launching = not facts.weave_running
    if facts.weave_running:
        check_running_weave(facts, cluster)
        notes.append(f"Weave already runs with range {cluster.ipalloc_range} and default "
                     f"subnet {cluster.default_subnet}")
        _note_peers(facts, want.peers, notes)
    else:
        launch = st.WeaveLaunch(str(cluster.ipalloc_range), str(cluster.default_subnet),
                                tuple(want.peers))
        why = [st.WHY_NO_DEFAULT_IPALLOC]
        if facts.weave_containers:
            shown = ", ".join(c.describe() for c in facts.weave_containers)
            why.append(f"Weave is stopped ({shown}): the launch starts it again on its saved "
                       "IPAM; should it fail, its undo removes them with the rest")
        # a failed launch leaves containers, bridge and socket behind (day-two/1d): its undo
        # is registered before it runs
        steps.append(st.Step("launch the Weave peer", launch, st.WeaveReset(), tuple(why),
                             undo_if_failed=True))
    steps += guard_steps(facts, bridge)

    subnets = [cluster.default_subnet, *facts.tenant_subnets()]
    check_bridge(facts, subnets)
    missing = missing_exposes(facts.exposed or [], subnets)
    if missing:
        specs = tuple(exposed_specs(missing, cluster.default_subnet))
        steps.append(st.Step("expose the default and tenant subnets on the host",
                             st.WeaveExpose(specs), st.WeaveHide(specs),
                             ("so host-side Consul checks reach the containers",)))

    endpoint = facts.proxy_addrs[0] if facts.proxy_addrs else WEAVE_PROXY_ENDPOINT
    accepted = tuple(dict.fromkeys([*facts.proxy_addrs, WEAVE_PROXY_ENDPOINT]))
    change = plan_endpoint(facts.config_files or [], endpoint, accepted)
    if change is not None:
        late = not facts.weave_running
        steps.append(st.Step(
            f"point Nomad's Docker driver at the Weave proxy in {change.path}",
            st.WriteConfig(change, endpoint, tuple(facts.config_files or []), late, accepted),
            st.RestoreConfig(change.path, change.old, True),
            (f"backup: {change.path}.weavenomad.bak",)
            + (("the socket is the one Weave reports once launched",) if late else ())))
    running = agent_endpoint(facts.nomad_self)
    needs_restart = change is not None or running not in (*accepted, endpoint)
    verify = st.VerifyNomad(endpoint, accepted, change.path if change else None)
    if needs_restart and want.restart_argv is not None:
        steps.append(st.Step("restart Nomad so it reads the new config",
                             st.RestartNomad(want.restart_argv)))
        steps.append(st.Step("verify Nomad's Docker driver through its API", verify))
        steps.append(REEVALUATE)
    elif needs_restart:
        notes.append(f"Nomad must be restarted to use the Weave proxy: {want.restart_hint}")
    elif launching and facts.nomad_self is not None:
        # Nomad stays on the proxy's socket: its driver turns healthy once Weave answers there
        steps.append(st.Step("wait for Nomad's Docker driver to be healthy on the Weave proxy",
                             verify))
        steps.append(REEVALUATE)

    if facts.cluster is None:
        steps.append(st.Step("record the Weave range in the tenant registry",
                             st.RecordCluster(cluster.ipalloc_range, cluster.default_subnet)))
    return st.Plan(tuple(steps), tuple(notes), attention=needs_restart and
                   want.restart_argv is None)


def guard_steps(facts: NodeFacts, bridge: str) -> list[st.Step]:
    """A step per isolation guard that is missing or shadowed; every guard when this run
    launches Weave, which puts its own rules on top (each step checks again when it runs)."""
    steps = []
    for state in guard_states(facts.iptables_rules or [], facts.nat_rules or [], bridge):
        if facts.weave_running and state.effective:
            continue
        guard = state.guard
        title = f"add the isolation guard against {guard.closes}"
        if not facts.weave_running and guard.name == "docker-to-weave":
            title += " (unless weave launch installed it)"
        notes = (f"it is there, but after '{state.shadowed_by}': inserted again at the top",
                 ) if state.shadowed_by else ()
        steps.append(st.Step(title, st.AddGuard(guard), st.RemoveGuard(guard, every=False),
                             notes))
    return steps


def _note_peers(facts: NodeFacts, peers: Sequence[str], notes: list[str]) -> None:
    router = (facts.weave_report or {}).get("Router") or {}
    known = {t.rsplit(":", 1)[0] for t in router.get("Targets") or []}
    known |= {c.get("Address", "").rsplit(":", 1)[0] for c in router.get("Connections") or []}
    for peer in peers:
        if peer.rsplit(":", 1)[0] not in known:
            notes.append(f"peer {peer} is not among Weave's peers: run 'weave connect {peer}' "
                         "to add it without a restart")
