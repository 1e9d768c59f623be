"""The fault suite's yardstick and levers (the test module builds the world).

* :class:`Reconcilers`: one ``weavenomad reconciler run`` process per lab node, reaching its
  Consul and Nomad through a :class:`~.faultproxy.FaultProxy` each.
* :func:`problems` / :func:`all_problems`: everything that keeps the nodes from being
  converged (the issue's invariants); :func:`converge` measures the time from a recovery
  until there are none.
* :data:`FIGURES`: every measurement, printed as a table at the end of the session.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from labtools import NOMAD_ALLOC_LABEL, consul, docker_client, in_node_command, nomad

from .faultproxy import FaultProxy

JOBS = Path(__file__).resolve().parents[2] / "jobs"
KV_PREFIX = "test-faults"
TENANT = "faults"
JOB = "faults"
#: the meta key of a held service's public name (weavenomad.tenancy.contract.META_SERVICE)
HELD = "weavenomad-service"
SERVICE = "httpbackend"
PORT = 8081
#: Nomad's Consul sync interval on the suite's lab (the real default is 30 s)
SYNC = 2.0
#: the bound of the assertions: generous, since two loaded cores make any tight bound flaky
BOUND = 30.0
#: the issue's target, printed and flagged, not asserted
TARGET = 5.0
#: the reconcilers' full resync: longer than BOUND, so only their event handling can converge
RESYNC = 120
#: WEAVENOMAD_FAULT_DEBUG=1 runs the reconcilers with --debug (their logs are in pytest's tmp)
DEBUG = ("--debug",) if os.environ.get("WEAVENOMAD_FAULT_DEBUG") else ()


@dataclass
class Figure:
    kind: str
    injected: int
    #: seconds from the recovery to converged; None when it did not converge within BOUND
    seconds: float | None
    #: seconds from Nomad having all tasks running and registered again (if later)
    after_nomad: float | None = None


FIGURES: list[Figure] = []
#: lines printed above the table (the seed)
NOTES: list[str] = []


@dataclass
class DayTwo:
    """A day-two fault of issue 15: injected once, survived or not, the time from the moment
    the node could answer again to the correct answer, and for a Weave restart the longest
    stretch of ``?passing`` without one of the running tasks."""

    kind: str
    survived: bool
    seconds: float | None
    gap: float | None = None
    note: str = ""


DAY_TWO: list[DayTwo] = []


def day_two_table() -> list[str]:
    if not DAY_TWO:
        return []
    lines = [f"{'day-two fault':<34}{'injected':>9}{'survived':>9}{'correct after s':>16}"
             f"{'largest ?passing gap s':>23}  note"]
    for row in DAY_TWO:
        seconds = f"{row.seconds:.2f}" if row.seconds is not None else "-"
        gap = f"{row.gap:.2f}" if row.gap is not None else "-"
        lines.append(f"{row.kind:<34}{1:>9}{'yes' if row.survived else 'NO':>9}{seconds:>16}"
                     f"{gap:>23}  {row.note}")
    lines.append("correct after: from the reconciler's start (reboot), the restart (Weave), or "
                 "the command's start (reset, bootstrap) until every running task answers "
                 "through its twin and nothing else does (reset/launch: the command done and "
                 "nothing of Weave left)")
    return lines


def figures_table() -> list[str]:
    if not FIGURES:
        return []
    kinds: dict[str, list[Figure]] = {}
    for figure in FIGURES:
        kinds.setdefault(figure.kind, []).append(figure)
    lines = [f"{'fault':<26}{'faults':>7}{'rounds':>7}{'converged':>10}{'worst s':>9}"
             f"{'median s':>10}{'worst after Nomad s':>21}  within {TARGET:.0f} s"]
    for kind, rows in kinds.items():
        times = [r.seconds for r in rows if r.seconds is not None]
        after = [r.after_nomad for r in rows if r.after_nomad is not None]
        worst = f"{max(times):.2f}" if times else "-"
        median = f"{statistics.median(times):.2f}" if times else "-"
        worst_after = f"{max(after):.2f}" if after else "-"
        late = sum(1 for t in times if t > TARGET) + len(rows) - len(times)
        flag = "yes" if not late else f"MISSED {late} of {len(rows)}"
        lines.append(f"{kind:<26}{sum(r.injected for r in rows):>7}{len(rows):>7}"
                     f"{len(times):>10}{worst:>9}{median:>10}{worst_after:>21}  {flag}")
    lines += [
        "converged: every running task advertised at its current Weave address, Nomad's "
        "instances masked, nothing of the reconciler's left over, no duplicate passing, and "
        "all the job's tasks running again;",
        "seconds from the recovery (the restarted or healed component answers again); "
        "'after Nomad': from the moment Nomad had its tasks running and its services "
        "registered again, when that came later (the reconciler's own share)"]
    return lines


class Reconcilers:
    """One ``weavenomad reconciler run`` per node, inside the node (where it sees the node's
    weave bridge, as on a real host), its Consul and Nomad behind fault proxies that listen
    there too."""

    def __init__(self, lab, log_dir: Path):
        self.lab = lab
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}
        self.consul = {n.name: FaultProxy(f"consul-{n.name}", n.ports["consul"], n.netns)
                       for n in lab.nodes}
        self.nomad = {n.name: FaultProxy(f"nomad-{n.name}", n.ports["nomad"], n.netns)
                      for n in lab.nodes}

    def command(self, node) -> tuple[list[str], dict]:
        return in_node_command(
            self.lab, node, sys.executable, "-m", "weavenomad", *DEBUG, "reconciler", "run",
            "--resync", str(RESYNC), "--log-format", "json",
            env={"WEAVENOMAD_KV_PREFIX": KV_PREFIX,
                 "CONSUL_HTTP_ADDR": self.consul[node.name].address,
                 "NOMAD_ADDR": f"http://{self.nomad[node.name].address}"})

    def start(self, name: str) -> None:
        argv, env = self.command(self.lab.node(name))
        log = open(self.log_dir / f"reconciler-{name}.log", "a")  # noqa: SIM115
        self.procs[name] = subprocess.Popen(argv, env=env, stdout=log,
                                            stderr=subprocess.STDOUT)
        log.close()

    def start_all(self) -> None:
        for node in self.lab.nodes:
            self.start(node.name)

    def kill(self, names=None, sig: int = signal.SIGKILL) -> dict[str, int]:
        codes = {}
        for name in list(names or self.procs):
            proc = self.procs.pop(name)
            if proc.poll() is None:
                proc.send_signal(sig)
            codes[name] = proc.wait(timeout=20)
        return codes

    def proxies(self):
        return [*self.consul.values(), *self.nomad.values()]

    def writes_seen(self) -> int:
        return sum(len(proxy.writes) for proxy in self.consul.values())

    def foreign_writes(self) -> list:
        """Writes to Consul that name anything but the reconciler's own objects."""
        return [w for proxy in self.consul.values() for w in proxy.writes
                if not w.target.startswith("weavenomad-")]

    def close(self) -> None:
        self.kill(sig=signal.SIGTERM)
        for proxy in self.proxies():
            proxy.close()

    def log_tail(self, lines: int = 5) -> str:
        text = []
        for path in sorted(self.log_dir.glob("reconciler-*.log")):
            text += [f"{path.name}: {line}" for line in path.read_text().splitlines()[-lines:]]
        return "\n".join(text)


# -- the invariants ------------------------------------------------------------------------------


def running_allocs(lab) -> set[str]:
    return {a["ID"] for a in nomad(lab.nodes[0], "GET", f"/v1/job/{JOB}/allocations")
            if a["DesiredStatus"] == "run" and a["ClientStatus"] == "running"}


def task_containers(lab) -> int:
    """Nomad's task containers on all nodes, whatever their state."""
    return sum(len(docker_client(node).containers.list(
        all=True, sparse=True, filters={"label": NOMAD_ALLOC_LABEL})) for node in lab.nodes)


def weave_addresses(lab) -> dict[str, set[str]]:
    """Each running allocation's Weave addresses now: the node's Docker and Weave's ``/ip``."""
    found: dict[str, set[str]] = {}
    for node in lab.nodes:
        owned = {e["containerid"]: e["addrs"] for e in requests.get(
            node.url("weave_api") + "/ip", timeout=10).json()["owned"]}
        for container in docker_client(node).containers.list(
                sparse=True, filters={"label": NOMAD_ALLOC_LABEL}):
            alloc_id = container.attrs["Labels"][NOMAD_ALLOC_LABEL]
            found[alloc_id] = {a.split("/")[0] for a in owned.get(container.id) or []}
    return found


def problems(lab, running: set[str], answering: bool = False) -> list[str]:
    """Why the nodes are not converged; empty when they are. Every running task is advertised
    by exactly one twin with its current Weave address and the container port, Nomad's
    instance is masked, nothing of the reconciler's is left for stopped tasks, and Consul's
    ``?passing`` answer has no duplicate."""
    try:
        truth = weave_addresses(lab)
    except (requests.RequestException, ValueError) as exc:
        return [f"Weave's API does not answer: {exc.__class__.__name__}"]
    found, registered, addresses = [], 0, {}
    for node in lab.nodes:
        try:
            services = consul(node, "GET", "/v1/agent/services")
            checks = consul(node, "GET", "/v1/agent/checks")
        except requests.RequestException as exc:
            return [f"{node.name}: Consul does not answer: {exc.__class__.__name__}"]
        nomads = {sid for sid, s in services.items() if sid.startswith("_nomad-task-")
                  and SERVICE in (s["Service"], (s["Meta"] or {}).get(HELD))
                  and sid[12:48] in running}
        # a service weavenomad run held under a private name has no mask: nobody asks for it
        masked = {sid for sid in nomads if not (services[sid]["Meta"] or {}).get(HELD)}
        registered += len(nomads)
        wanted = {"weavenomad-" + sid[12:] for sid in nomads}
        twins = {sid: s for sid, s in services.items() if sid.startswith("weavenomad-")}
        masks = {c["ServiceID"] for cid, c in checks.items() if cid.startswith("weavenomad-mask-")}
        if set(twins) != wanted:
            missing, extra = sorted(wanted - set(twins)), sorted(set(twins) - wanted)
            found.append(f"{node.name}: {len(twins)} twins for {len(wanted)} tasks (missing "
                         f"{len(missing)} {missing[:1]}, left over {len(extra)} {extra[:1]})")
        if masks != masked:
            found.append(f"{node.name}: {len(masks)} masks for {len(masked)} masked Nomad "
                         "services")
        for sid, service in twins.items():
            alloc_id = sid[11:47]
            if service["Port"] != PORT:
                found.append(f"{sid}: port {service['Port']}")
            if service["Address"] not in truth.get(alloc_id, ()):
                found.append(f"{sid}: {service['Address']} is not its container's Weave "
                             f"address {sorted(truth.get(alloc_id, ()))}")
            if service["Address"] in addresses:
                found.append(f"{sid}: duplicate address {service['Address']}")
            addresses[service["Address"]] = sid
    if registered != len(running):  # e.g. Nomad has not re-registered after a restart yet
        found.append(f"Nomad registered {registered} of {len(running)} services")
    entries = consul(lab.nodes[0], "GET", f"/v1/health/service/{SERVICE}?passing")
    seen: dict[tuple, str] = {}
    for entry in entries:
        sid, key = entry["Service"]["ID"], (entry["Service"]["Address"], entry["Service"]["Port"])
        if not sid.startswith("weavenomad-"):
            found.append(f"Nomad's {sid} passes: not masked")
        elif key in seen:
            found.append(f"{sid} and {seen[key]} both pass at {key}")
        seen[key] = sid
    if answering:
        # every running task answers: a twin whose check fails (a host that lost its exposed
        # address, after a reboot) is no answer (the day-two figures ask that much)
        answered = {entry["Service"]["ID"][11:47] for entry in entries}
        silent = sorted(set(running) - answered)
        if silent:
            found.append(f"{len(silent)} running task(s) not in ?passing ({silent[0][:8]} …)")
    return found


def nomad_objects(lab) -> dict[str, dict]:
    """Nomad's own services and checks on every node, without what Consul changes by itself
    (check status and output)."""
    objects = {}
    for node in lab.nodes:
        for sid, s in consul(node, "GET", "/v1/agent/services").items():
            if sid.startswith("_nomad-"):
                objects[sid] = {k: s.get(k) for k in ("Service", "Tags", "Port", "Address",
                                                      "Meta", "EnableTagOverride")}
        for cid, c in consul(node, "GET", "/v1/agent/checks").items():
            if cid.startswith("_nomad-"):
                objects[cid] = {k: c.get(k) for k in ("Name", "ServiceID", "ServiceName",
                                                      "Notes", "ServiceTags")}
    return objects


def changed_nomad_objects(before: dict, after: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """Nomad objects present before and after whose definition differs."""
    changed = []
    for oid in sorted(set(before) & set(after)):
        a = {k: v for k, v in before[oid].items() if k not in ignore}
        b = {k: v for k, v in after[oid].items() if k not in ignore}
        if a != b:
            changed.append(f"{oid}: {json.dumps(a, sort_keys=True)} -> "
                           f"{json.dumps(b, sort_keys=True)}")
    return changed


@dataclass
class Convergence:
    #: seconds from the recovery to converged
    seconds: float
    #: seconds from the moment Nomad had all the job's tasks running and registered again
    after_nomad: float
    looks: int = 0


NOMAD_SHORT = "Nomad registered"


def all_problems(lab, expected: int, answering: bool = False
                 ) -> tuple[set[str], bool, list[str]]:
    """(running allocations, whether Nomad's side is complete: the job's ``expected``
    allocations run in as many containers and Nomad registered their services, and
    :func:`problems` plus any such shortfall: a half-restarted world is not converged)."""
    running = running_allocs(lab)
    found = problems(lab, running, answering)
    containers = task_containers(lab)
    complete = len(running) == expected and containers == expected
    if not complete:
        found.append(f"{len(running)} of {expected} allocations running, {containers} "
                     "task containers")
    nomad_done = complete and not any(p.startswith(NOMAD_SHORT) for p in found)
    return running, nomad_done, found


def converge(lab, since: float, expected: int, bound: float = BOUND,
             steady: float = 1.0, answering: bool = False) -> Convergence:
    """Wait until :func:`all_problems` finds nothing, and still nothing ``steady`` seconds
    later; the seconds from ``since`` (a monotonic time) to the first of those looks."""
    deadline = since + bound
    last: list[str] = []
    looks = 0
    nomad_back: float | None = since
    while time.monotonic() < deadline:
        looked_at = time.monotonic()
        running, nomad_done, last = all_problems(lab, expected, answering)
        looks += 1
        if not nomad_done:
            nomad_back = None
        elif nomad_back is None:
            nomad_back = looked_at
        if not last:
            time.sleep(steady)
            again, _, last = all_problems(lab, expected, answering)
            if not last and again == running:
                return Convergence(looked_at - since, looked_at - (nomad_back or since), looks)
        time.sleep(0.1)
    pytest.fail(f"not converged {bound:.0f} s after the recovery: {last[:6]}", pytrace=False)
