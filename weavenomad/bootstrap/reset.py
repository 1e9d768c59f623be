"""``weavenomad reset``: undo bootstrap on a node. The plan is a pure function of the observed
facts; it runs through the same executor, with the same rollback, as bootstrap.

Order: the Nomad config first (restored from ``FILE.weavenomad.bak``, Nomad restarted and
checked), so Nomad stops using the Weave proxy before Weave goes; that check *commits*: a later
failure never points Nomad back at the proxy (whose socket the rest of the reset removes), and
while Weave does not run the restored config is not undone at all. Jobs that got blocked
evaluations while Nomad's driver was unhealthy are evaluated again. Then ``weave hide`` of the
exposed addresses and ``weave reset`` (``--force`` when Weave is stopped or crashed, which plain
reset refuses), with the stale proxy socket; then the guard rules bootstrap added (recognised
by their comment; Weave removes its own); the backups go last, when nothing can fail any more.
"""

from __future__ import annotations

from weavenomad.bootstrap import steps as st
from weavenomad.bootstrap.guards import guard_states
from weavenomad.bootstrap.observe import NodeFacts
from weavenomad.bootstrap.plan import REEVALUATE
from weavenomad.nodeconfig.edit import ConfigFile, docker_setting


def plan_reset(facts: NodeFacts, restart_argv: tuple[str, ...] | None,
               restart_hint: str = "restart the Nomad agent") -> st.Plan:
    steps: list[st.Step] = []
    notes: list[str] = []
    files = list(facts.config_files or [])
    current = {f.path: f.text for f in files}
    restored = [p for p, text in sorted(facts.backups.items()) if current.get(p) != text]
    for path in restored:
        # with Weave down, undoing this would leave Nomad on a dead proxy socket
        undo = (st.RestoreConfig(path, current.get(path, ""), False) if facts.weave_running
                else None)
        steps.append(st.Step(f"restore {path} from its backup",
                             st.RestoreConfig(path, facts.backups[path], False), undo))
    attention = False
    if restored:
        after = [ConfigFile(f.path, facts.backups.get(f.path, f.text)) for f in files]
        endpoint = docker_setting(after).endpoint
        if restart_argv is not None:
            steps.append(st.Step("restart Nomad so it reads the restored config",
                                 st.RestartNomad(restart_argv)))
            steps.append(st.Step("verify Nomad's Docker driver through its API",
                                 st.VerifyNomad(endpoint, (), restored[-1]), commits=True))
            steps.append(REEVALUATE)
        else:
            attention = True
            notes.append(f"Nomad must be restarted to leave the Weave proxy: {restart_hint}")
    elif not facts.backups:
        notes.append("no backup of the Nomad config: bootstrap did not change it, left as is")

    if facts.weave_running and facts.exposed:
        specs = tuple(f"ip:{address}" for address in facts.exposed)
        steps.append(st.Step("hide the exposed subnets", st.WeaveHide(specs),
                             st.WeaveExpose(specs)))
    if facts.weave_running or facts.weave_bridge or facts.weave_containers:
        force = not facts.weave_running
        steps.append(st.Step("stop Weave and remove its containers and bridge",
                             st.WeaveReset(force), notes=(st.WHY_FORCE,) if force else ()))
    bridge = facts.docker_bridge or "docker0"
    for state in guard_states(facts.iptables_rules or [], facts.nat_rules or [], bridge):
        if state.ours:
            steps.append(st.Step(f"remove the isolation guard against {state.guard.closes}",
                                 st.RemoveGuard(state.guard), st.AddGuard(state.guard)))
    for path in sorted(facts.backups):
        steps.append(st.Step(f"remove the backup of {path}", st.DropBackup(path)))
    return st.Plan(tuple(steps), tuple(notes), attention=attention)
