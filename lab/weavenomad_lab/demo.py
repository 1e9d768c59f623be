"""``weavenomad demo``: the problem and its fix end to end on the local lab, narrated and checked.

Three nodes are bootstrapped the way an operator would, on each node (``lab exec``), with the
other two as Weave peers. Tenants acme and globex each run the httpbackend job of
``jobs/httpbackend.nomad`` (read from the checkout the lab is installed from). Nomad registers
Docker-bridge addresses (the problem) under the private name ``weavenomad run`` gave the
service, so Consul answers nothing for the public name until, with a reconciler running on every
node, it answers only Weave addresses (the fix). Traffic passes within a tenant and fails
between tenants.
Every step runs the real ``weavenomad`` commands and is checked; the exit code is 0 only when
every check held.
"""

from __future__ import annotations

import ipaddress
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from weavenomad_lab.errors import LabError
from weavenomad_lab.layout import LabLayout

NODES = 3
LAB_NAME = "wndemo"
SERVICE = "httpbackend"
SERVICE_PORT = 8081
#: the private name under which weavenomad run has Nomad register the service (the product's
#: weavenomad.tenancy.contract.hidden_name, spelled out: the demo shows it, it does not share it)
HIDDEN_SERVICE = f"weavenomad-hidden-{SERVICE}"
TENANTS = ("acme", "globex")
#: the job the demo runs, from the checkout beside the lab's sources (an editable install of
#: ./lab from a checkout, as scripts/install-deps makes it)
JOB_FILE = Path(__file__).resolve().parents[2] / "jobs" / "httpbackend.nomad"
NOMAD_ALLOC_LABEL = "com.hashicorp.nomad.alloc_id"


def _plain(text: str, _style: str) -> str:
    return text


@dataclass
class Story:
    """Narration and the tally of checks; ``paint(text, style)`` colours it on a terminal."""

    out: Callable[[str], None]
    failed: list[str] = field(default_factory=list)
    passed: int = 0
    paint: Callable[[str, str], str] = _plain

    def chapter(self, title: str) -> None:
        self.out("\n" + self.paint(f"== {title}", "bold"))

    def note(self, text: str) -> None:
        self.out(f"   {text}")

    def check(self, what: str, held: bool) -> bool:
        mark = self.paint("ok  ", "green") if held else self.paint("FAIL", "red")
        self.out(f"   {mark}  {what}")
        if held:
            self.passed += 1
        else:
            self.failed.append(what)
        return held


class Demo:
    def __init__(self, state_dir: Path, story: Story, *, timeout: float = 120.0):
        self.state_dir = state_dir
        self.story = story
        self.timeout = timeout
        self.lab: LabLayout | None = None
        self.reconcilers: list[subprocess.Popen] = []

    # -- running things ----------------------------------------------------------------------

    def weavenomad(self, *args: str, node: str | None = None) -> subprocess.CompletedProcess:
        """Run ``weavenomad ARGS``, on ``node`` (inside its namespace) when given."""
        argv = [sys.executable, "-m", "weavenomad"]
        if node is not None:
            argv += ["lab", "exec", "--state-dir", str(self.state_dir), node, "--",
                     sys.executable, "-m", "weavenomad"]
        return subprocess.run(argv + list(args), capture_output=True, text=True,
                              timeout=self.timeout)

    def must(self, what: str, done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
        if not self.story.check(what, done.returncode == 0):
            detail = (done.stderr or done.stdout).strip().splitlines()
            self.story.note(detail[-1] if detail else f"exit {done.returncode}")
            raise DemoStopped(what)
        return done

    def consul(self, path: str) -> list | dict:
        import requests

        node = self.lab.nodes[0]
        answer = requests.get(node.url("consul") + path, timeout=10)
        answer.raise_for_status()
        return answer.json()

    def dns_srv(self, name: str) -> list[tuple[str, int]]:
        """The (address, port) pairs of Consul DNS's SRV answer for ``name`` on node n1."""
        import dns.message
        import dns.query
        import dns.rdatatype

        from weavenomad_lab.consul.component import dns_port

        query = dns.message.make_query(f"{name}.service.consul", "SRV")
        answer = dns.query.udp(query, "127.0.0.1", port=dns_port(self.lab, "n1"), timeout=2)
        glue = {r.name.to_text(): item.address for r in answer.additional
                if r.rdtype == dns.rdatatype.A for item in r}
        return [(glue.get(item.target.to_text(), item.target.to_text()), item.port)
                for rrset in answer.answer if rrset.rdtype == dns.rdatatype.SRV
                for item in rrset]

    def wait(self, probe: Callable[[], object], timeout: float | None = None):
        stop = threading.Event()
        deadline = time.monotonic() + (timeout or self.timeout)
        value = probe()
        while not value and time.monotonic() < deadline:
            stop.wait(0.25)
            value = probe()
        return value

    def containers(self, job_id: str) -> list:
        import docker

        found = []
        for node in self.lab.nodes:
            client = docker.DockerClient(base_url=node.docker_host, timeout=30)
            for container in client.containers.list(
                    ignore_removed=True, filters={"label": NOMAD_ALLOC_LABEL}):
                if f"NOMAD_JOB_ID={job_id}" in (container.attrs["Config"]["Env"] or []):
                    found.append(container)
        return found

    # -- the story ---------------------------------------------------------------------------

    def run(self, keep: bool) -> bool:
        try:
            self.bring_up()
            self.bootstrap()
            jobs = self.tenants_and_jobs()
            weave_ips = self.weave_addresses(jobs)
            self.before(weave_ips)
            self.after(weave_ips, keep)
            self.other_read_paths(weave_ips)
            self.isolation(jobs, weave_ips)
        except DemoStopped as stopped:
            self.story.note(f"stopped at: {stopped}")
        finally:
            self.stop_reconcilers()
            if keep and self.lab is not None:
                self.story.note(f"the lab stays up: weavenomad lab status --state-dir "
                                f"{shlex.quote(str(self.state_dir))}")
            else:
                self.weavenomad("lab", "down", "--state-dir", str(self.state_dir))
        return not self.story.failed

    def bring_up(self) -> None:
        self.story.chapter(f"A {NODES}-node lab: private dockerd, Weave, Consul and Nomad per node")
        self.must("lab up", self.weavenomad("lab", "up", "--nodes", str(NODES), "--name",
                                           LAB_NAME, "--state-dir", str(self.state_dir)))
        self.lab = LabLayout.load(self.state_dir)
        for node in self.lab.nodes:
            self.story.note(f"{node.name}: host {node.host_ip}, namespace {node.netns}")

    def bootstrap(self) -> None:
        self.story.chapter("weavenomad bootstrap on every node, the other two as Weave peers")
        for node in self.lab.nodes:
            peers = [f"--peer={n.host_ip}" for n in self.lab.nodes if n is not node]
            done = self.weavenomad("bootstrap", *peers, node=node.name)
            self.must(f"bootstrap {node.name}: {_last_line(done.stdout) or 'no output'}", done)
        again = self.weavenomad("bootstrap", *[f"--peer={n.host_ip}" for n in self.lab.nodes[1:]],
                                node=self.lab.nodes[0].name)
        self.story.check("a second bootstrap changes nothing",
                         again.returncode == 0 and "no changes" in again.stdout)

    def tenants_and_jobs(self) -> dict[str, str]:
        self.story.chapter(f"Tenants acme and globex, the {SERVICE} job in each")
        jobs = {}
        for tenant in TENANTS:
            created = self.weavenomad("tenant", "create", tenant, node="n1")
            self.must(_last_line(created.stdout) or f"tenant create {tenant}", created)
        for tenant in TENANTS:
            job_id = SERVICE if tenant == TENANTS[0] else f"{SERVICE}-{tenant}"
            path = self.state_dir / f"{job_id}.nomad"
            path.write_text(JOB_FILE.read_text().replace(f'job "{SERVICE}"', f'job "{job_id}"'))
            self.must(f"weavenomad run {job_id} --tenant {tenant}",
                      self.weavenomad("run", str(path), "--tenant", tenant, node="n1"))
            jobs[tenant] = job_id
        return jobs

    def weave_addresses(self, jobs: dict[str, str]) -> dict[str, list[ipaddress.IPv4Interface]]:
        subnets = {t["name"]: ipaddress.ip_network(t["subnet"]) for t in self._tenants()}
        found = {}
        for tenant, job_id in jobs.items():
            found[tenant] = [self._ethwe(c) for c in self.containers(job_id)]
            inside = all(a.ip in subnets[tenant] for a in found[tenant])
            self.story.check(f"{tenant}'s tasks have ethwe in {subnets[tenant]}: "
                             f"{', '.join(str(a.ip) for a in found[tenant])}",
                             inside and len(found[tenant]) == 2)
        return found

    def before(self, weave_ips: dict) -> None:
        self.story.chapter("Before the reconciler: what Consul answers for httpbackend")
        # Nomad registers each task at its Docker-bridge address (the problem); weavenomad run
        # had it do so under a private name, so the public one does not hand that address out
        held = self.consul(f"/v1/health/service/{HIDDEN_SERVICE}?passing")
        self.story.note(f"/v1/health/service/{HIDDEN_SERVICE}?passing -> {_shown(held)}")
        weave = {str(a.ip) for addresses in weave_ips.values() for a in addresses}
        self.story.check("Nomad registered Docker-bridge addresses, not Weave ones (the bug), "
                         "under the private name weavenomad run gave it",
                         bool(held) and not weave & {e["Service"]["Address"] for e in held})
        public = self.consul(f"/v1/health/service/{SERVICE}?passing")
        self.story.note(f"/v1/health/service/{SERVICE}?passing -> {_shown(public) or 'nothing'}")
        self.story.check(f"Consul hands out no Docker-bridge address for {SERVICE}", not public)

    def after(self, weave_ips: dict, keep: bool = False) -> None:
        self.story.chapter("weavenomad reconciler run on every node")
        for node in self.lab.nodes:
            log = open(self.state_dir / f"reconciler-{node.name}.log", "ab")  # noqa: SIM115
            argv = [sys.executable, "-m", "weavenomad", "lab", "exec", "--state-dir",
                    str(self.state_dir), node.name, "--", sys.executable, "-m", "weavenomad",
                    "reconciler", "run"]
            self.reconcilers.append(subprocess.Popen(argv, stdout=log, stderr=log))
            # the logs live in the lab's state directory, which 'lab down' removes at the end
            self.story.note(f"started on {node.name}" + (f" (log {log.name})" if keep else ""))
        wanted = {(str(a.ip), SERVICE_PORT) for addresses in weave_ips.values() for a in addresses}

        def answer():
            entries = self.consul(f"/v1/health/service/{SERVICE}?passing")
            got = {(e["Service"]["Address"], e["Service"]["Port"]) for e in entries}
            return got if got == wanted and len(entries) == len(wanted) else None

        started = time.monotonic()
        got = self.wait(answer, timeout=60)
        if not self.story.check(f"Consul's ?passing lists exactly the {len(wanted)} Weave "
                                f"addresses after {time.monotonic() - started:.1f} s", bool(got)):
            for node in self.lab.nodes:
                log = (self.state_dir / f"reconciler-{node.name}.log").read_text(errors="replace")
                for line in log.strip().splitlines()[-3:]:
                    self.story.note(f"{node.name} reconciler: {line}")
        self.last_answer = sorted(f"{ip}:{port}" for ip, port in (got or set()))

    def other_read_paths(self, weave_ips: dict) -> None:
        """The catalog (what the Consul UI and Fabio read) and DNS answer as ?passing does."""
        wanted = sorted((str(a.ip), SERVICE_PORT) for addresses in weave_ips.values()
                        for a in addresses)
        catalog = self.consul(f"/v1/catalog/service/{SERVICE}")
        self.story.check(f"the catalog lists the same {len(wanted)} Weave addresses alone",
                         sorted((e["ServiceAddress"], e["ServicePort"]) for e in catalog)
                         == wanted)
        self.story.check(f"DNS SRV {SERVICE}.service.consul answers the same",
                         sorted(self.dns_srv(SERVICE)) == wanted)

    def isolation(self, jobs: dict[str, str], weave_ips: dict) -> None:
        self.story.chapter("Isolation: HTTP from an acme task to its peer and to globex")
        acme = self.containers(jobs["acme"])
        if not acme or not weave_ips.get("globex"):
            self.story.check("tasks to test isolation with", False)
            return
        source = acme[0]
        own = [a for a in weave_ips["acme"] if a.ip != self._ethwe(source).ip]
        same = own and "HTTP/1" in self._probe(source, own[0])
        across = "HTTP/1" in self._probe(source, weave_ips["globex"][0])
        self.story.check(f"acme -> acme {own[0].ip if own else '?'}:{SERVICE_PORT} answers",
                         bool(same))
        self.story.check(f"acme -> globex {weave_ips['globex'][0].ip}:{SERVICE_PORT} is "
                         "unreachable", not across)
        self.isolation_results = (bool(same), not across)

    def summary(self) -> None:
        self.story.chapter("Summary")
        answer = getattr(self, "last_answer", None)
        if answer:
            self.story.note(f"Consul's health API (?passing) now answers {SERVICE} with: "
                            f"{', '.join(answer)}")
        self.story.note(f"{self.story.passed} checks held, {len(self.story.failed)} failed")
        for what in self.story.failed:
            self.story.note(f"failed: {what}")

    # -- helpers -----------------------------------------------------------------------------

    def _tenants(self) -> list[dict]:
        import json

        listed = self.must("tenant list", self.weavenomad("tenant", "list", "--json", node="n1"))
        return json.loads(listed.stdout)

    @staticmethod
    def _ethwe(container) -> ipaddress.IPv4Interface:
        output = container.exec_run(["ip", "-4", "-o", "addr", "show", "ethwe"]).output.decode()
        for word in output.split():
            if "/" in word:
                try:
                    return ipaddress.ip_interface(word)
                except ValueError:
                    continue
        raise DemoStopped(f"container {container.name} has no ethwe address")

    @staticmethod
    def _probe(container, address: ipaddress.IPv4Interface) -> str:
        # Nomad drops NET_RAW from task containers, so TCP instead of ping
        command = (f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {address.ip} {SERVICE_PORT}")
        return container.exec_run(["sh", "-c", command]).output.decode(errors="replace")

    def stop_reconcilers(self) -> None:
        for process in self.reconcilers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.reconcilers:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.reconcilers.clear()


def _shown(entries: list[dict]) -> str:
    return ", ".join(sorted(f"{e['Service']['Address']}:{e['Service']['Port']}" for e in entries))


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1].strip() if lines else ""


class DemoStopped(Exception):
    """A step whose result later steps need did not hold."""


def require_job_file(job_file: Path = JOB_FILE) -> Path:
    """The demo's job file; checked before anything starts, not minutes into the story."""
    if not job_file.is_file():
        raise LabError(
            f"the demo's job file {job_file} is missing: the demo runs from a checkout of "
            "weavenomad",
            hint="in a checkout, install the lab with scripts/install-deps or pip install -e ./lab",
        )
    return job_file


def run_demo(state_dir: Path, keep: bool, out: Callable[[str], None],
             paint: Callable[[str, str], str] = _plain) -> bool:
    require_job_file()
    story = Story(out, paint=paint)
    demo = Demo(state_dir, story)
    held = demo.run(keep)
    demo.summary()
    return held
