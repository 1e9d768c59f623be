"""The isolation guards: iptables rules that keep a node from carrying traffic between tenant
subnets, however a container routes. Pure: the rules, ``iptables -S`` parsing, and whether each
guard is in place and not shadowed by an earlier rule.

Why these rules (each path tried by ``tests/lab/test_isolation_lab.py`` on the lab, which has
Weave 2.8's iptables rules and br_netfilter, as a Docker host has them). Weave's isolation is
L3: every subnet shares one L2, the weave bridge. ``weave expose`` gives the host an address in
each subnet, with Weave's ``nat WEAVE -s SUBNET ! -d SUBNET -j MASQUERADE``, and Docker loads
br_netfilter, so bridged frames traverse iptables (filter FORWARD and nat POSTROUTING) too:

* ``-i docker0 -o weave DROP`` (Weave installs it too): a container's default route leads to
  the host, which would route into any exposed subnet;
* ``-i weave -o weave`` *routed* (``! --physdev-is-bridged``) ``DROP``: a container that routes
  via its host's (or another host's) exposed address in its own subnet would have the host route
  into another subnet, Weave's ``-i weave -o weave -j ACCEPT`` letting it through and its
  MASQUERADE making the other side answer the host;
* ``-i weave -o docker0 DROP``: the same through the host into Docker's bridge, to the other
  tenant's ``eth0`` address;
* ``-i docker0 -o docker0 DROP``: Docker's inter-container traffic (icc) on one host, to the
  other tenant's ``eth0`` address (what ``dockerd --icc=false`` installs; Weave's docs ask for
  it for complete isolation);
* ``nat POSTROUTING -o weave`` *bridged* ``ACCEPT`` (no NAT): without it Weave's MASQUERADE
  rewrites frames a container sends on-link to another subnet, so the other tenant answers the
  host's exposed address and the host hands the answer back: exposure would turn a one-way path
  into a connection.

None depends on a tenant, so tenants created later need nothing. Not closable by the host: a
container with NET_ADMIN (or NET_RAW) can put an address of another subnet on ``ethwe``, or
send on-link, and reach that subnet's containers directly on the shared L2 (Weave's docs:
containers must not capture or inject raw packets). Nomad 1.0 drops NET_RAW from tasks and
grants NET_ADMIN only when its Docker plugin's ``allow_caps`` lists it.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from weavenomad.bootstrap.checks import FAIL, PASS, WARN, WEAVE_BRIDGE, Check

#: marks the rules bootstrap adds, so reset removes exactly those
GUARD_COMMENT = "weavenomad isolation guard"
_BRIDGED = "--physdev-is-bridged"
#: targets that let a packet through unchanged (DROP guards) or rewrite it (the nat exemption)
_PASSES = frozenset({"ACCEPT"})
_NATS = frozenset({"MASQUERADE", "SNAT"})
_MAX_DEPTH = 8


@dataclass(frozen=True)
class Guard:
    name: str
    #: the path between tenants it closes, for plans and doctor
    closes: str
    table: str
    chain: str
    in_iface: str | None
    out_iface: str | None
    #: further matches exactly as ``iptables -S`` prints them
    matches: tuple[str, ...]
    target: str
    #: only routed packets reach it (it is moot while IP forwarding is off)
    routed: bool

    def spec(self) -> list[str]:
        words = []
        if self.in_iface:
            words += ["-i", self.in_iface]
        if self.out_iface:
            words += ["-o", self.out_iface]
        return words + list(self.matches)

    def argv(self, action: str) -> list[str]:
        """``iptables -w [-t nat] -I|-D|-C CHAIN … -m comment --comment … -j TARGET``."""
        table = ["-t", self.table] if self.table != "filter" else []
        return ["iptables", "-w", *table, action, self.chain, *self.spec(),
                "-m", "comment", "--comment", GUARD_COMMENT, "-j", self.target]

    def text(self) -> str:
        table = f"-t {self.table} " if self.table != "filter" else ""
        return f"{table}{self.chain} {' '.join(self.spec())} -j {self.target}"

    @property
    def harmful(self) -> frozenset[str]:
        """Targets of an earlier rule that would defeat this guard."""
        return _NATS if self.target == "ACCEPT" else _PASSES


def guards(docker_bridge: str) -> tuple[Guard, ...]:
    weave = WEAVE_BRIDGE
    return (
        Guard("docker-to-weave", "a container's default route through the host into the "
              "overlay", "filter", "FORWARD", docker_bridge, weave, (), "DROP", True),
        Guard("weave-routed", "the host routing between Weave subnets (a route via an exposed "
              "address)", "filter", "FORWARD", weave, weave, ("-m", "physdev", "!", _BRIDGED),
              "DROP", True),
        Guard("weave-to-docker", "the host routing from the overlay into Docker's bridge",
              "filter", "FORWARD", weave, docker_bridge, (), "DROP", True),
        Guard("docker-icc", "containers of one host talking on Docker's bridge", "filter",
              "FORWARD", docker_bridge, docker_bridge, (), "DROP", False),
        Guard("weave-bridged-nat", "Weave's MASQUERADE answering for frames sent on-link to "
              "another subnet", "nat", "POSTROUTING", None, weave,
              ("-m", "physdev", _BRIDGED), "ACCEPT", False),
    )


# -- iptables -S -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One ``iptables -S`` rule, reduced to what the guard checks need."""

    text: str
    chain: str
    in_iface: str | None = None
    in_negated: bool = False
    out_iface: str | None = None
    out_negated: bool = False
    target: str | None = None
    comment: str | None = None
    #: every other match, as printed (``!`` included)
    matches: tuple[str, ...] = field(default=())

    @property
    def narrowed(self) -> bool:
        return bool(self.matches)


def parse_rules(lines: Iterable[str]) -> dict[str, list[Rule]]:
    """``iptables -S`` lines of one table -> the rules of each chain, in order."""
    chains: dict[str, list[Rule]] = {}
    for line in lines:
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        if len(words) >= 2 and words[0] == "-N":
            chains.setdefault(words[1], [])
        if len(words) < 2 or words[0] != "-A":
            continue
        chains.setdefault(words[1], []).append(_parse_rule(line, words[1], words[2:]))
    return chains


def _parse_rule(line: str, chain: str, words: list[str]) -> Rule:
    values: dict[str, str | None] = {"-i": None, "-o": None}
    negated = {"-i": False, "-o": False}
    target, comment, matches = None, None, []
    i, bang = 0, False
    while i < len(words):
        word = words[i]
        nxt = words[i + 1] if i + 1 < len(words) else None
        if word == "!":
            bang, i = True, i + 1
            continue
        if word in values:
            values[word], negated[word] = nxt, bang
            i += 2
        elif word == "-j":
            target = nxt
            break  # the rest are the target's options
        elif word == "-m" and nxt == "comment":
            i += 2
        elif word == "--comment":
            comment = nxt
            i += 2
        else:
            matches += ["!", word] if bang else [word]
            i += 1
        bang = False
    return Rule(line, chain, values["-i"], negated["-i"], values["-o"], negated["-o"],
                target, comment, tuple(matches))


def _iface_matches(pattern: str | None, negated: bool, name: str | None) -> bool:
    if pattern is None or name is None:
        return True
    hit = name.startswith(pattern[:-1]) if pattern.endswith("+") else name == pattern
    return hit != negated


def is_guard(rule: Rule, guard: Guard) -> bool:
    return (rule.chain == guard.chain and rule.in_iface == guard.in_iface
            and not rule.in_negated and rule.out_iface == guard.out_iface
            and not rule.out_negated and rule.target == guard.target
            and rule.matches == guard.matches)


def _excluded(rule: Rule, guard: Guard) -> bool:
    """The rule's matches keep it off the guarded traffic (only replies; the other kind of
    bridged-or-routed packet)."""
    words = list(rule.matches)
    for option in ("--ctstate", "--state"):
        if option in words and words.index(option) + 1 < len(words):
            states = set(words[words.index(option) + 1].split(","))
            if states and states <= {"RELATED", "ESTABLISHED"} and "!" != words[
                    words.index(option) - 1]:
                return True
    if _BRIDGED in words and _BRIDGED in guard.matches:
        rule_negated = words[words.index(_BRIDGED) - 1] == "!"
        guard_negated = guard.matches[guard.matches.index(_BRIDGED) - 1] == "!"
        return rule_negated != guard_negated
    return False


def _defeats(rule: Rule, guard: Guard, chains: Mapping[str, list[Rule]], depth: int) -> bool:
    if not (_iface_matches(rule.in_iface, rule.in_negated, guard.in_iface)
            and _iface_matches(rule.out_iface, rule.out_negated, guard.out_iface)):
        return False
    if _excluded(rule, guard):
        return False
    if rule.target in guard.harmful:
        return True
    if rule.target in chains and depth < _MAX_DEPTH:
        return any(_defeats(r, guard, chains, depth + 1) for r in chains[rule.target])
    return False


@dataclass(frozen=True)
class GuardState:
    guard: Guard
    present: bool
    #: guard rules carrying our comment (what bootstrap added)
    ours: int = 0
    #: an earlier rule that lets (some of) the traffic through before the guard sees it
    shadowed_by: str | None = None

    @property
    def effective(self) -> bool:
        return self.present and self.shadowed_by is None


def guard_state(chains: Mapping[str, list[Rule]], guard: Guard) -> GuardState:
    rules = chains.get(guard.chain, [])
    ours = sum(1 for r in rules if is_guard(r, guard) and r.comment == GUARD_COMMENT)
    for index, rule in enumerate(rules):
        if is_guard(rule, guard):
            shadow = next((r.text for r in rules[:index] if _defeats(r, guard, chains, 0)),
                          None)
            return GuardState(guard, True, ours, shadow)
    return GuardState(guard, False, ours)


def guard_states(filter_lines: Sequence[str], nat_lines: Sequence[str] | None,
                 docker_bridge: str) -> list[GuardState]:
    tables = {"filter": parse_rules(filter_lines), "nat": parse_rules(nat_lines or [])}
    return [guard_state(tables[g.table], g) for g in guards(docker_bridge)]


# -- doctor ----------------------------------------------------------------------------------


def check_isolation(filter_lines: Sequence[str] | None, nat_lines: Sequence[str] | None,
                    docker_bridge: str | None, ip_forward: bool | None,
                    bridge_filtering: bool | None) -> Check:
    name = "tenant-isolation"
    if filter_lines is None or nat_lines is None or docker_bridge is None:
        return Check(name, WARN, "cannot read iptables or the Docker bridge name",
                     "run as root on the node")
    states = guard_states(filter_lines, nat_lines, docker_bridge)
    shadowed = [s for s in states if s.present and s.shadowed_by]
    missing = [s for s in states if not s.present]
    forward = {True: "on", False: "off", None: "unknown"}[ip_forward]
    if shadowed:
        first = shadowed[0]
        rule = first.guard.text()
        return Check(name, FAIL, f"{rule} comes after '{first.shadowed_by}', which lets "
                     f"{first.guard.closes} through first" + _more(shadowed),
                     "weavenomad bootstrap (puts the guards back at the top), or by hand: "
                     + "; ".join(shlex.join(s.guard.argv("-I")) for s in shadowed))
    if missing and not (ip_forward is False and all(s.guard.routed for s in missing)):
        shown = "; ".join(f"{s.guard.name} ({s.guard.closes})" for s in missing)
        return Check(name, FAIL, f"guards missing with IP forwarding {forward}: {shown}",
                     "weavenomad bootstrap, or by hand: " + "; ".join(
                         shlex.join(s.guard.argv("-I")) for s in missing))
    if bridge_filtering is not True:
        return Check(name, FAIL, "bridged traffic bypasses iptables "
                     "(net.bridge.bridge-nf-call-iptables is not 1), so the Docker-bridge "
                     "guard does not hold", "modprobe br_netfilter && sysctl -w "
                     "net.bridge.bridge-nf-call-iptables=1 (dockerd does it when it manages "
                     "iptables)")
    if missing:
        return Check(name, WARN, "IP forwarding is off; missing routing guards: "
                     + ", ".join(s.guard.name for s in missing),
                     "run 'weavenomad bootstrap' to add them before forwarding is enabled")
    return Check(name, PASS, f"{len(states)} guards in place, none shadowed (IP forwarding "
                 f"{forward}; Weave isolation stays L3: no NET_ADMIN/NET_RAW for tasks)")


def _more(states: Sequence[GuardState]) -> str:
    return f" (+{len(states) - 1} more shadowed guard(s))" if len(states) > 1 else ""
