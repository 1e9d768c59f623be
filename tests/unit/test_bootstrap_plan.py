"""bootstrap's and reset's plans: pure functions of observed facts, tested without servers."""

import json
from ipaddress import IPv4Interface, IPv4Network

import pytest
from test_bootstrap_facts import (
    CLUSTER,
    CONFIG_PATH,
    DOCKER_FORWARD,
    DOCKER_SOCK,
    NAT_HEAD,
    NAT_TAIL,
    OUR_FORWARD,
    OUR_NAT,
    WEAVE_FORWARD,
    WEAVE_SOCK,
    agent_self,
    bootstrapped,
    config_text,
    filter_table,
    fresh,
    registry,
    weave_report,
)

from weavenomad.bootstrap import steps as st
from weavenomad.bootstrap.guards import guards
from weavenomad.bootstrap.plan import Desired, plan_bootstrap
from weavenomad.bootstrap.reset import plan_reset
from weavenomad.errors import ConflictError, ValidationError
from weavenomad.nodeconfig.edit import ConfigFile
from weavenomad.tenancy.model import Cluster

RESTART = ("systemctl", "restart", "nomad")
PEERS = ("192.168.56.4", "192.168.56.5")
GUARDS = guards("docker0")


def want(**changes) -> Desired:
    values = dict(cluster=CLUSTER, peers=PEERS, restart_argv=RESTART)
    values.update(changes)
    return Desired(**values)


def kinds(plan) -> list[str]:
    return [st.kind(step.action) for step in plan.steps]


def test_fresh_node_gets_every_step_in_a_rollback_safe_order():
    plan = plan_bootstrap(fresh(), want())
    assert kinds(plan) == ["WeaveLaunch", *["AddGuard"] * len(GUARDS), "WeaveExpose",
                           "WriteConfig", "RestartNomad", "VerifyNomad", "ReevaluateBlocked",
                           "RecordCluster"]
    launch = plan.steps[0]
    assert st.command_line(launch.action) == (
        "weave launch --no-dns --no-default-ipalloc --ipalloc-range 10.32.0.0/16 "
        "--ipalloc-default-subnet 10.32.0.0/24 192.168.56.4 192.168.56.5")
    assert launch.undo == st.WeaveReset()
    assert any("WEAVE_CIDR" in note for note in launch.notes)
    # every guard, after the launch (Weave puts its own rules on top): each step checks again
    added = plan.steps[1:1 + len(GUARDS)]
    assert [s.action for s in added] == [st.AddGuard(g) for g in GUARDS]
    assert [s.undo for s in added] == [st.RemoveGuard(g, every=False) for g in GUARDS]
    assert "unless weave launch installed it" in added[0].title
    assert st.command_line(added[1].action).startswith(
        "iptables -w -I FORWARD -i weave -o weave -m physdev '!' --physdev-is-bridged")
    rest = plan.steps[1 + len(GUARDS):]
    assert rest[0].action == st.WeaveExpose(("net:default",))
    write = rest[1].action
    assert write.late_endpoint and write.endpoint == WEAVE_SOCK
    assert f'-    endpoint = "{DOCKER_SOCK}"' in write.change.diff()
    assert rest[1].undo == st.RestoreConfig(CONFIG_PATH, config_text(DOCKER_SOCK), True)
    assert rest[2].action == st.RestartNomad(RESTART)
    assert not plan.attention
    json.dumps(plan.to_json())  # --json must be able to print it


def test_bootstrapped_node_plans_nothing():
    plan = plan_bootstrap(bootstrapped(), want())
    assert plan.steps == ()
    assert not plan.attention


def test_a_new_tenant_is_exposed_on_the_next_run():
    facts = bootstrapped(registry=registry(("acme", "10.32.1.0/24"), ("globex", "10.32.2.0/24")))
    plan = plan_bootstrap(facts, want())
    assert [s.action for s in plan.steps] == [st.WeaveExpose(("net:10.32.2.0/24",))]
    assert plan.steps[0].undo == st.WeaveHide(("net:10.32.2.0/24",))


def test_weave_running_with_other_settings_is_refused_with_reset_as_the_fix():
    report = weave_report()
    report["IPAM"]["Range"] = "10.40.0.0/16"
    with pytest.raises(ConflictError, match="10.40.0.0/16") as info:
        plan_bootstrap(bootstrapped(weave_report=report), want())
    assert "weavenomad reset" in info.value.one_line()
    with pytest.raises(ConflictError, match="no-default-ipalloc"):
        plan_bootstrap(bootstrapped(weave_container_args=["--ipalloc-range", "10.32.0.0/16"]),
                       want())
    with pytest.raises(ConflictError, match="proxy"):
        plan_bootstrap(bootstrapped(proxy_addrs=[]), want())


def test_a_different_recorded_range_is_refused_naming_the_recorded_values():
    other = Cluster(IPv4Network("10.40.0.0/16"), IPv4Network("10.40.0.0/24"))
    with pytest.raises(ConflictError) as info:
        plan_bootstrap(fresh(cluster=other), want())
    assert "--ipalloc-range 10.40.0.0/16 --default-subnet 10.40.0.0/24" in info.value.one_line()


@pytest.mark.parametrize("weave_range, culprit", [
    ("172.16.0.0/12", "Docker's bridge network 172.17.0.0/16"),
    ("192.168.0.0/16", "192.168.56.3/24 on eth0"),
])
def test_a_range_overlapping_the_hosts_networks_is_refused(weave_range, culprit):
    cluster = Cluster(IPv4Network(weave_range), next(IPv4Network(weave_range).subnets(8)))
    with pytest.raises(ValidationError, match=culprit):
        plan_bootstrap(fresh(), want(cluster=cluster))


def test_without_a_restart_command_the_plan_says_what_to_run():
    plan = plan_bootstrap(fresh(), want(restart_argv=None, restart_hint="run: rc-service nomad"))
    assert "RestartNomad" not in kinds(plan) and "VerifyNomad" not in kinds(plan)
    assert plan.attention
    assert any("rc-service nomad" in note for note in plan.notes)


def test_config_already_edited_but_agent_not_restarted_plans_only_the_restart():
    plan = plan_bootstrap(bootstrapped(nomad_self=agent_self(DOCKER_SOCK)), want())
    assert kinds(plan) == ["RestartNomad", "VerifyNomad", "ReevaluateBlocked"]


def test_missing_guards_on_a_running_weave_are_added():
    plan = plan_bootstrap(bootstrapped(iptables_rules=["-P FORWARD ACCEPT"]), want())
    assert [s.action for s in plan.steps] == [st.AddGuard(g) for g in GUARDS[:4]]
    assert plan.steps[0].undo == st.RemoveGuard(GUARDS[0], every=False)
    assert "unless" not in plan.steps[0].title


def test_weave_and_docker_rules_alone_get_the_four_guards_weave_lacks():
    facts = bootstrapped(iptables_rules=filter_table(*WEAVE_FORWARD, *DOCKER_FORWARD),
                         nat_rules=[*NAT_HEAD, *NAT_TAIL])
    plan = plan_bootstrap(facts, want())
    assert [s.action.guard.name for s in plan.steps] == [
        "weave-routed", "weave-to-docker", "docker-icc", "weave-bridged-nat"]


def test_guards_shadowed_by_a_relaunched_weave_go_back_on_top():
    facts = bootstrapped(
        iptables_rules=filter_table(*WEAVE_FORWARD, *OUR_FORWARD, *DOCKER_FORWARD),
        nat_rules=[*NAT_HEAD, *NAT_TAIL, OUR_NAT])
    plan = plan_bootstrap(facts, want())
    assert [s.action.guard.name for s in plan.steps] == [
        "weave-routed", "weave-to-docker", "weave-bridged-nat"]
    assert "after '-A FORWARD -i weave -o weave -j ACCEPT'" in plan.steps[0].notes[0]
    # the undo removes only the copy this run inserts (the topmost), not the older one
    assert plan.steps[0].undo == st.RemoveGuard(GUARDS[1], every=False)


def test_lab_style_proxy_socket_counts_as_done_and_weave_sock_too():
    lab_sock = "unix:///tmp/lab/nodes/n1/weave.sock"
    facts = bootstrapped(proxy_addrs=[lab_sock], nomad_self=agent_self(lab_sock),
                         config_files=[ConfigFile(CONFIG_PATH, config_text(lab_sock))])
    assert plan_bootstrap(facts, want()).steps == ()
    # a config naming the standard socket is fine too (the lab maps it to the node's proxy)
    assert plan_bootstrap(bootstrapped(proxy_addrs=[lab_sock]), want()).steps == ()


def test_new_peers_on_a_running_weave_are_a_note_not_a_relaunch():
    plan = plan_bootstrap(bootstrapped(weave_report=weave_report(["192.168.56.4"])),
                          want(peers=("192.168.56.4", "192.168.56.9")))
    assert plan.steps == ()
    assert any("weave connect 192.168.56.9" in note for note in plan.notes)


# -- reset -----------------------------------------------------------------------------------


def test_reset_restores_config_first_then_weave_then_backups():
    ours = ("-A FORWARD -i docker0 -o weave -m comment --comment "
            '"weavenomad isolation guard" -j DROP')
    facts = bootstrapped(iptables_rules=["-P FORWARD ACCEPT", ours])
    plan = plan_reset(facts, RESTART)
    assert kinds(plan) == ["RestoreConfig", "RestartNomad", "VerifyNomad", "ReevaluateBlocked",
                           "WeaveHide", "WeaveReset", "RemoveGuard", "RemoveGuard",
                           "DropBackup"]
    assert [s.action for s in plan.steps if st.kind(s.action) == "RemoveGuard"] == [
        st.RemoveGuard(GUARDS[0]), st.RemoveGuard(GUARDS[4])]
    assert plan.steps[0].action == st.RestoreConfig(CONFIG_PATH, config_text(DOCKER_SOCK), False)
    assert plan.steps[0].undo == st.RestoreConfig(CONFIG_PATH, config_text(WEAVE_SOCK), False)
    assert plan.steps[2].action.endpoint == DOCKER_SOCK
    assert plan.steps[4].action == st.WeaveHide(("ip:10.32.0.1/24", "ip:10.32.1.3/24"))


def test_reset_removes_exactly_the_guards_bootstrap_added():
    plan = plan_reset(bootstrapped(), RESTART)
    removed = [s.action for s in plan.steps if st.kind(s.action) == "RemoveGuard"]
    # Weave's own docker0 -> weave DROP is left to weave reset
    assert removed == [st.RemoveGuard(g) for g in GUARDS[1:]]
    assert all(s.undo == st.AddGuard(s.action.guard) for s in plan.steps
               if st.kind(s.action) == "RemoveGuard")


def test_reset_of_a_clean_node_plans_nothing():
    plan = plan_reset(fresh(), RESTART)
    assert plan.steps == ()
    assert any("no backup" in note for note in plan.notes)


def test_reset_without_restart_command_needs_attention():
    plan = plan_reset(bootstrapped(), None, "run: service nomad restart")
    assert "RestartNomad" not in kinds(plan) and plan.attention


def test_reset_after_a_stopped_weave_still_removes_its_bridge():
    facts = bootstrapped(weave_report=None, proxy_addrs=[], exposed=None,
                         backups={}, config_files=fresh().config_files)
    assert kinds(plan_reset(facts, RESTART)) == ["WeaveReset", *["RemoveGuard"] * 4]
    assert IPv4Interface("10.32.0.1/24") in bootstrapped().exposed


def test_a_rebooted_node_plans_the_expose_step_again():
    """The IPAM still owns both addresses; the new bridge has none (day-two/1a)."""
    facts = bootstrapped(ipam_exposed=list(bootstrapped().exposed), exposed=[])
    plan = plan_bootstrap(facts, Desired(CLUSTER))
    assert [s.action for s in plan.steps if isinstance(s.action, st.WeaveExpose)] == [
        st.WeaveExpose(("net:default", "net:10.32.1.0/24"))]


def test_a_foreign_address_on_the_bridge_is_refused_before_any_change():
    stray = IPv4Interface("10.32.1.77/24")
    with pytest.raises(ValidationError) as caught:
        plan_bootstrap(bootstrapped(foreign_bridge=[stray]), Desired(CLUSTER))
    assert "10.32.1.77/24" in caught.value.one_line()
    assert "ip addr del 10.32.1.77/24 dev weave" in caught.value.one_line()
    # an address outside Weave's subnets is the operator's business
    assert plan_bootstrap(bootstrapped(foreign_bridge=[IPv4Interface("192.168.9.1/24")]),
                          Desired(CLUSTER)).steps == ()


def test_reset_of_a_node_whose_weave_is_stopped_forces_and_never_points_nomad_back():
    """Recorded (day-two/1b): plain 'weave reset' refuses while the router container exists
    but does not run; reset used to roll back onto the dead proxy socket."""
    from weavenomad.bootstrap.leftovers import WeaveContainer

    stopped = bootstrapped(weave_report=None, proxy_addrs=[], exposed=None,
                           weave_containers=[WeaveContainer("weave", "exited", 0),
                                             WeaveContainer("weavedb", "created")])
    plan = plan_reset(stopped, RESTART)
    assert kinds(plan)[:5] == ["RestoreConfig", "RestartNomad", "VerifyNomad",
                               "ReevaluateBlocked", "WeaveReset"]
    restore, verify, reset = plan.steps[0], plan.steps[2], plan.steps[4]
    assert restore.undo is None  # back onto a dead socket: never
    assert verify.commits
    assert reset.action == st.WeaveReset(force=True)
    assert st.command_line(reset.action) == "weave reset --force"
    assert "plain 'weave reset' then refuses" in reset.notes[0]
    running = plan_reset(bootstrapped(), RESTART)
    assert running.steps[0].undo is not None
    assert [s.action for s in running.steps if st.kind(s.action) == "WeaveReset"] == [
        st.WeaveReset(force=False)]


def test_a_launch_registers_its_undo_before_it_runs_and_nomad_on_the_proxy_is_rechecked():
    from weavenomad.bootstrap.leftovers import WeaveContainer

    # Weave stopped (its containers here), Nomad still configured for its proxy socket
    stopped = bootstrapped(weave_report=None, proxy_addrs=[], exposed=None,
                           weave_containers=[WeaveContainer("weave", "exited", 0)])
    plan = plan_bootstrap(stopped, want())
    launch = plan.steps[0]
    assert st.kind(launch.action) == "WeaveLaunch" and launch.undo_if_failed
    assert any("Weave is stopped (container weave (exited (0)))" in n for n in launch.notes)
    assert kinds(plan)[-2:] == ["VerifyNomad", "ReevaluateBlocked"]
    assert "RestartNomad" not in kinds(plan)
