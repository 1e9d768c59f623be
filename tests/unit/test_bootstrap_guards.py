"""The isolation guards: their rules, ``iptables -S`` parsing, shadowing by earlier rules (also
through jumps into other chains), and doctor's verdict. Pure; the rule sets are the ones a
Docker 20.10 + Weave 2.8 node shows (test_bootstrap_facts)."""

import shlex

import pytest
from test_bootstrap_facts import (
    BOOTSTRAPPED_FILTER,
    BOOTSTRAPPED_NAT,
    DOCKER_FORWARD,
    GUARD,
    NAT_HEAD,
    NAT_TAIL,
    OUR_FORWARD,
    OUR_NAT,
    OURS,
    WEAVE_FORWARD,
    filter_table,
)

from weavenomad.bootstrap import guards as gd
from weavenomad.bootstrap.checks import FAIL, PASS, WARN

GUARDS = {g.name: g for g in gd.guards("docker0")}
DOCKER_TO_WEAVE = GUARDS["docker-to-weave"]
WEAVE_ROUTED = GUARDS["weave-routed"]
WEAVE_TO_DOCKER = GUARDS["weave-to-docker"]
ICC = GUARDS["docker-icc"]
NAT = GUARDS["weave-bridged-nat"]
#: a node where Weave was launched again after its rules had been flushed: Weave's block went
#: back on top, above the guards bootstrap had added
WEAVE_ON_TOP = filter_table(*WEAVE_FORWARD, *OUR_FORWARD, *DOCKER_FORWARD)
WEAVE_ONLY = filter_table(*WEAVE_FORWARD, *DOCKER_FORWARD)


def states(filter_lines, nat_lines) -> dict[str, gd.GuardState]:
    return {s.guard.name: s for s in gd.guard_states(filter_lines, nat_lines, "docker0")}


def test_the_commands_bootstrap_runs():
    assert shlex.join(DOCKER_TO_WEAVE.argv("-I")) == (
        "iptables -w -I FORWARD -i docker0 -o weave -m comment --comment "
        "'weavenomad isolation guard' -j DROP")
    assert shlex.join(WEAVE_ROUTED.argv("-D")) == (
        "iptables -w -D FORWARD -i weave -o weave -m physdev '!' --physdev-is-bridged -m "
        "comment --comment 'weavenomad isolation guard' -j DROP")
    assert NAT.argv("-C")[:5] == ["iptables", "-w", "-t", "nat", "-C"]
    assert NAT.text() == "-t nat POSTROUTING -o weave -m physdev --physdev-is-bridged -j ACCEPT"
    assert ICC.text() == "FORWARD -i docker0 -o docker0 -j DROP"
    assert {g.in_iface for g in gd.guards("br-lan")} >= {"br-lan", "weave"}


def test_iptables_s_output_parses_into_chains():
    chains = gd.parse_rules([*BOOTSTRAPPED_FILTER, "-A X -j NFLOG --nflog-group 86",
                             "-A X -s 1.2.3.4/32 ! -i eth0 -j RETURN", "not 'closed"])
    routed = chains["FORWARD"][2]
    assert (routed.in_iface, routed.out_iface, routed.target) == ("weave", "weave", "DROP")
    assert routed.matches == ("-m", "physdev", "!", "--physdev-is-bridged")
    assert routed.comment == gd.GUARD_COMMENT
    assert chains["X"][0].target == "NFLOG" and not chains["X"][0].narrowed
    assert chains["X"][1].in_negated and chains["X"][1].matches == ("-s", "1.2.3.4/32")
    assert chains["DOCKER-USER"][0].target == "RETURN" and chains["WEAVE-EXPOSE"]


def test_a_bootstrapped_node_has_every_guard_in_effect():
    found = states(BOOTSTRAPPED_FILTER, BOOTSTRAPPED_NAT)
    assert all(s.effective for s in found.values()), found
    assert found["docker-to-weave"].ours == 0  # Weave's own rule
    assert {name for name, s in found.items() if s.ours} == {
        "weave-routed", "weave-to-docker", "docker-icc", "weave-bridged-nat"}


def test_weave_and_docker_alone_leave_the_other_paths_open():
    found = states(WEAVE_ONLY, [*NAT_HEAD, *NAT_TAIL])
    assert found["docker-to-weave"].effective
    assert [n for n, s in found.items() if not s.present] == [
        "weave-routed", "weave-to-docker", "docker-icc", "weave-bridged-nat"]


def test_weave_relaunched_on_top_shadows_our_guards_with_its_accepts():
    found = states(WEAVE_ON_TOP, [*NAT_HEAD, *NAT_TAIL, OUR_NAT])
    assert found["weave-routed"].shadowed_by == "-A FORWARD -i weave -o weave -j ACCEPT"
    assert found["weave-to-docker"].shadowed_by == "-A FORWARD -i weave ! -o weave -j ACCEPT"
    assert found["docker-icc"].effective  # Docker's icc ACCEPT comes after it
    assert found["weave-bridged-nat"].shadowed_by == "-A POSTROUTING -j WEAVE"  # MASQUERADE
    assert found["docker-to-weave"].effective


@pytest.mark.parametrize("earlier, guard, shadow", [
    ("-A FORWARD -j ACCEPT", DOCKER_TO_WEAVE, True),
    ("-A FORWARD -i docker0 ! -o docker0 -j ACCEPT", DOCKER_TO_WEAVE, True),
    ("-A FORWARD -i docker+ -o weave -j ACCEPT", DOCKER_TO_WEAVE, True),
    ("-A FORWARD -i docker0 -o weave -s 10.0.0.0/8 -j ACCEPT", DOCKER_TO_WEAVE, True),
    # replies only, or another interface: not the guarded traffic
    ("-A FORWARD -o weave -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
     DOCKER_TO_WEAVE, False),
    ("-A FORWARD -o weave -m conntrack ! --ctstate RELATED,ESTABLISHED -j ACCEPT",
     DOCKER_TO_WEAVE, True),
    ("-A FORWARD -i br-1 -o weave -j ACCEPT", DOCKER_TO_WEAVE, False),
    ("-A FORWARD -i weave -o weave -j DROP", WEAVE_ROUTED, False),
    # bridged frames are what Weave must accept; the routed-only guard is not about them
    ("-A FORWARD -i weave -o weave -m physdev --physdev-is-bridged -j ACCEPT", WEAVE_ROUTED,
     False),
    # through a jump: WEAVE-EXPOSE accepts the exposed subnets, DOCKER accepts published ports
    ("-A FORWARD -o weave -j WEAVE-EXPOSE", DOCKER_TO_WEAVE, True),
    ("-A FORWARD -o docker0 -j DOCKER", WEAVE_TO_DOCKER, True),
    ("-A FORWARD -o docker0 -j DOCKER", ICC, False),  # DOCKER's ACCEPT is for ! -i docker0
    ("-A FORWARD -j DOCKER-USER", ICC, False),
    ("-A FORWARD -i docker0 -o docker0 -j ACCEPT", ICC, True),
])
def test_what_shadows_a_guard(earlier, guard, shadow):
    rule = f"-A FORWARD {shlex.join(guard.spec())} {OURS} -j DROP"
    state = gd.guard_state(gd.parse_rules(filter_table(earlier, rule)), guard)
    assert state.present and state.ours == 1
    assert state.shadowed_by == (earlier if shadow else None)


def test_only_the_exact_rule_counts_as_a_guard():
    chains = gd.parse_rules(["-A FORWARD -i docker0 -o weave -s 10.0.0.0/8 -j DROP",
                             "-A FORWARD -i weave -o weave -j DROP",
                             "-A FORWARD -i br-1 -o weave -j DROP"])
    assert not gd.guard_state(chains, DOCKER_TO_WEAVE).present
    assert not gd.guard_state(chains, WEAVE_ROUTED).present
    # Docker's own icc=false rule is as good as ours (and not ours: reset leaves it)
    icc = gd.guard_state(gd.parse_rules(["-A FORWARD -i docker0 -o docker0 -j DROP"]), ICC)
    assert icc.effective and icc.ours == 0


def test_doctor_passes_a_bootstrapped_node():
    check = gd.check_isolation(BOOTSTRAPPED_FILTER, BOOTSTRAPPED_NAT, "docker0", True, True)
    assert check.status == PASS and "5 guards" in check.detail


def test_doctor_names_each_missing_guard_and_the_commands_that_add_it():
    check = gd.check_isolation(WEAVE_ONLY, [*NAT_HEAD, *NAT_TAIL], "docker0", True, True)
    assert check.status == FAIL and "missing with IP forwarding on" in check.detail
    assert "docker-icc (containers of one host talking on Docker's bridge)" in check.detail
    assert check.fix.startswith("weavenomad bootstrap")
    assert "iptables -w -t nat -I POSTROUTING -o weave -m physdev --physdev-is-bridged" \
        in check.fix
    nothing = gd.check_isolation(["-P FORWARD ACCEPT"], [], "docker0", True, True)
    assert nothing.status == FAIL and "-I FORWARD -i docker0 -o weave -m comment" in nothing.fix


def test_doctor_explains_a_shadowed_guard():
    check = gd.check_isolation(WEAVE_ON_TOP, [*NAT_HEAD, OUR_NAT, *NAT_TAIL], "docker0", True,
                               True)
    assert check.status == FAIL
    assert "comes after '-A FORWARD -i weave -o weave -j ACCEPT'" in check.detail
    assert "+1 more shadowed" in check.detail
    assert "puts the guards back at the top" in check.fix


def test_doctor_with_forwarding_off_or_without_bridge_filtering():
    # routing guards are moot without forwarding; the bridged ones are not
    routed_missing = filter_table(GUARD, OUR_FORWARD[0])
    nat = [*NAT_HEAD, OUR_NAT]
    assert gd.check_isolation(routed_missing, nat, "docker0", False, True).status == WARN
    assert gd.check_isolation(routed_missing, nat, "docker0", True, True).status == FAIL
    assert gd.check_isolation(filter_table(GUARD), nat, "docker0", False, True).status == FAIL
    unfiltered = gd.check_isolation(BOOTSTRAPPED_FILTER, BOOTSTRAPPED_NAT, "docker0", True,
                                    None)
    assert unfiltered.status == FAIL and "br_netfilter" in unfiltered.fix
    assert gd.check_isolation(None, [], "docker0", True, True).status == WARN
    assert gd.check_isolation(BOOTSTRAPPED_FILTER, None, "docker0", True, True).status == WARN


# -- adding and removing them (through a fake iptables) --------------------------------------


class FakeIptables:
    """Just enough of ``iptables -w [-t T] -I|-D|-C|-S CHAIN …`` on in-memory tables."""

    def __init__(self, filter_lines, nat_lines):
        self.tables = {"filter": list(filter_lines), "nat": list(nat_lines)}
        self.calls = []

    def run(self, argv, timeout=None):
        from weavenomad.bootstrap.system import Completed

        self.calls.append(list(argv))
        args = list(argv[2:])
        table = "filter"
        if args[:1] == ["-t"]:
            table, args = args[1], args[2:]
        lines = self.tables[table]
        if args == ["-S"]:
            return Completed(0, "\n".join(lines) + "\n", "")
        action, chain, rule = args[0], args[1], f"-A {args[1]} {shlex.join(args[2:])}"
        rule = rule.replace("'weavenomad isolation guard'", '"weavenomad isolation guard"')
        rule = rule.replace("'!'", "!")
        if action == "-C":
            return Completed(0 if rule in lines else 1, "", "")
        if action == "-D":
            lines.remove(rule)
        elif action == "-I":
            first = next((i for i, line in enumerate(lines) if line.startswith(f"-A {chain} ")),
                         len(lines))
            lines.insert(first, rule)
        return Completed(0, "", "")


@pytest.fixture
def iptables(monkeypatch):
    from weavenomad.bootstrap import system

    fake = FakeIptables(WEAVE_ON_TOP, [*NAT_HEAD, *NAT_TAIL])
    monkeypatch.setattr(system, "run", fake.run)
    return fake


def test_ensure_guards_puts_the_missing_and_shadowed_ones_on_top(iptables):
    from weavenomad.bootstrap import system

    added = system.ensure_guards("docker0")
    assert [g.name for g in added] == ["weave-routed", "weave-to-docker", "weave-bridged-nat"]
    assert all(s.effective for s in system.guard_states("docker0"))
    assert system.ensure_guards("docker0") == []


def test_executor_adds_a_guard_and_its_undo_removes_only_that_copy(iptables):
    from weavenomad.bootstrap import steps as st
    from weavenomad.bootstrap.apply import Executor

    executor = Executor(clients=None)
    outcome = executor.run(st.AddGuard(WEAVE_ROUTED))
    assert outcome.undo == st.RemoveGuard(WEAVE_ROUTED, every=False)
    assert "inserted above '-A FORWARD -i weave -o weave -j ACCEPT'" in outcome.note
    assert executor.run(st.AddGuard(WEAVE_ROUTED)).note == "already in place"
    ours = f"-A FORWARD -i weave -o weave -m physdev ! --physdev-is-bridged {OURS} -j DROP"
    assert iptables.tables["filter"].count(ours) == 2  # the shadowed older copy stays
    assert executor.run(outcome.undo).note == "1 rule(s) removed"
    assert iptables.tables["filter"].count(ours) == 1
    # reset removes every copy, and its undo adds one back
    again = executor.run(st.AddGuard(WEAVE_ROUTED))
    removed = executor.run(st.RemoveGuard(WEAVE_ROUTED))
    assert again.undo and removed.note == "2 rule(s) removed"
    assert removed.undo == st.AddGuard(WEAVE_ROUTED)
    assert executor.run(st.RemoveGuard(WEAVE_ROUTED)).undo is None
    assert executor.run(st.AddGuard(DOCKER_TO_WEAVE)).note == "already in place"  # Weave's
