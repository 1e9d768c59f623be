"""Stand-ins for Nomad, Docker and Weave in the reconciler daemon's unit tests (Consul is the
simulated one, over real HTTP). They keep the behaviour the daemon depends on: Nomad's blocking
query returns when the index moves, Docker's event stream blocks until an event or the stop
event, and any backend can be switched off."""

from __future__ import annotations

import copy
import queue
import threading
import time
from ipaddress import IPv4Interface, IPv4Network

from reconcile_support import job_allocation, tcp_service

from weavenomad.clients.weave import PeersAwaited
from weavenomad.clients.weave_ipam import IpamWait
from weavenomad.errors import BackendAuthError, BackendUnavailable

NODE_ID = "c4b849f2-a39d-ab9b-c9c0-f09d87bb99ed"


def down(backend: str) -> BackendUnavailable:
    return BackendUnavailable(f"cannot reach {backend}: connection refused", backend=backend)


class FakeNomad:
    def __init__(self, allocations: list[dict] | None = None):
        self._cond = threading.Condition()
        self.index = 1
        self.allocations = list(allocations or [])
        self.down = False

    def agent_self(self) -> dict:
        if self.down:
            raise down("nomad")
        return {"stats": {"client": {"node_id": NODE_ID}}}

    def node_allocations(self, node_id, index=None, wait=None):
        with self._cond:
            if index is not None:
                self._cond.wait_for(lambda: self.index > index or self.down, timeout=wait)
            if self.down:
                raise down("nomad")
            return self.index, copy.deepcopy(self.allocations if node_id == NODE_ID else [])

    def set_allocations(self, allocations: list[dict]) -> None:
        """Replace the node's allocations; those that changed get a new ModifyIndex."""
        with self._cond:
            self.index += 1
            before = {a["ID"]: a for a in self.allocations}
            updated = []
            for alloc in allocations:
                alloc = copy.deepcopy(alloc)
                old = before.get(alloc["ID"])
                same = old is not None and {**old, "ModifyIndex": 0} == {**alloc, "ModifyIndex": 0}
                alloc["ModifyIndex"] = old["ModifyIndex"] if same else self.index
                updated.append(alloc)
            self.allocations = updated
            self._cond.notify_all()


class FakeDocker:
    def __init__(self):
        self.lock = threading.Lock()
        self.summaries: dict[str, dict] = {}
        self.pids: dict[str, int] = {}
        self.events_queue: queue.Queue = queue.Queue()
        self.down = False

    def start(self, alloc_id: str, task: str, pid: int = 0) -> str:
        container_id = f"{alloc_id[:8]}{task}".ljust(64, "0")
        with self.lock:
            self.summaries[container_id] = {
                "Id": container_id, "Names": [f"/{task}-{alloc_id}"], "State": "running",
                "Labels": {"com.hashicorp.nomad.alloc_id": alloc_id}}
            self.pids[container_id] = pid
        # Docker's events carry the container's labels as the actor's attributes
        self.events_queue.put({"Action": "start", "Actor": {"ID": container_id, "Attributes": {
                               "com.hashicorp.nomad.alloc_id": alloc_id}},
                               "time": int(time.time()), "timeNano": time.time_ns()})
        return container_id

    def stop(self, container_id: str) -> None:
        with self.lock:
            self.summaries[container_id]["State"] = "exited"
        self.events_queue.put({"Action": "die", "Actor": {"ID": container_id},
                               "time": int(time.time())})

    def nomad_containers(self, alloc_id=None, all=True):
        if self.down:
            raise down("docker")
        with self.lock:
            # copies, as a decoded answer would be (nested: the labels and names)
            return [{**s, "Labels": dict(s["Labels"]), "Names": list(s["Names"])}
                    for s in self.summaries.values()
                    if (all or s["State"] == "running") and alloc_id in (
                        None, s["Labels"]["com.hashicorp.nomad.alloc_id"])]

    def inspect(self, container_id: str) -> dict:
        if self.down:
            raise down("docker")
        return {"Id": container_id, "State": {"Pid": self.pids.get(container_id, 0),
                                              "StartedAt": "2026-11-22T02:53:44.31Z"}}

    def events(self, filters=None, since=None, until=None, stop_event=None):
        while stop_event is None or not stop_event.is_set():
            if self.down:
                raise down("docker")
            try:
                yield self.events_queue.get(timeout=0.05)
            except queue.Empty:
                continue


class FakeWeave:
    """Weave's IPAM view of one peer; the host starts exposed on the default subnet, as
    bootstrap leaves it."""

    def __init__(self):
        self.addresses: dict[str, list[IPv4Interface]] = {
            "weave:expose": [IPv4Interface("10.32.0.1/24")]}
        #: the host's weave bridge (the kernel's side): what is exposed, as bootstrap left it
        self.bridge: list[IPv4Interface] = [IPv4Interface("10.32.0.1/24")]
        self.down = False
        self.exposed_calls: list[IPv4Network] = []
        #: set: Weave's IPAM waits for peers (a node set up before them)
        self.waiting: IpamWait | None = None

    def ipam_waits(self) -> IpamWait | None:
        if self.down:
            raise down("weave")
        return self.waiting

    def refuse_while_waiting(self) -> None:
        """Like Weave's: refused at once while the IPAM waits for peers (by default the
        fake's IPAM owns its range and never waits)."""
        if self.ipam_waits() is not None:
            raise PeersAwaited(self.waiting, backend="weave")

    def expose_subnet(self, subnet: IPv4Network) -> IPv4Interface:
        """Weave's allocate-then-expose: the address the IPAM owns there, else a new one, put
        on the bridge."""
        if self.down:
            raise down("weave")
        self.exposed_calls.append(subnet)
        owned = self.addresses.setdefault("weave:expose", [])
        address = next((a for a in owned if a.ip in subnet), None)
        if address is None:
            address = IPv4Interface(f"{subnet.broadcast_address - 1}/{subnet.prefixlen}")
            owned.append(address)
        if address not in self.bridge:
            self.bridge.append(address)
        return address

    def bridge_addresses(self) -> tuple[IPv4Interface, ...]:
        return tuple(self.bridge)

    def owned(self):
        if self.down:
            raise down("weave")
        return dict(self.addresses)

    def default_subnet(self):
        if self.down:
            raise down("weave")
        return IPv4Network("10.32.0.0/24")


class GuardedConsul:
    """The real Consul adapter, with a switch to make it unreachable and service names whose
    registration it refuses with 403 (an ACL that does not cover them)."""

    def __init__(self, consul):
        self.inner = consul
        self.client = consul.client
        self.down = False
        self.denied: set[str] = set()
        self.calls: list[tuple[str, str]] = []

    def _guard(self) -> None:
        if self.down:
            raise down("consul")

    def __getattr__(self, name):
        method = getattr(self.inner, name)

        def call(*args, **kwargs):
            self._guard()
            return method(*args, **kwargs)

        return call

    def service_register(self, definition, replace_existing_checks=False):
        self._guard()
        self.calls.append(("service_register", definition["ID"]))
        if definition["Name"] in self.denied:
            raise BackendAuthError("Consul denied PUT /v1/agent/service/register: Permission "
                                   "denied", backend="consul", status=403)
        return self.inner.service_register(definition, replace_existing_checks)


def web_allocation(alloc_id: str, name: str = "web", port: str = "8080", **kwargs) -> dict:
    return job_allocation(alloc_id, tasks=[{
        "Name": "web", "Driver": "docker", "Env": {"WEAVE_CIDR": "net:10.32.1.0/24"},
        "Services": [tcp_service(name, port)]}], **kwargs)


def nomad_registration(alloc_id: str, name: str = "web", port: str = "8080") -> dict:
    """What Nomad registers for :func:`web_allocation` (driver mode, the bridge address)."""
    sid = f"_nomad-task-{alloc_id}-web-{name}-{port}"
    return {"ID": sid, "Name": name, "Address": "172.17.0.5", "Port": int(port),
            "Meta": {"external-source": "nomad"},
            "Checks": [{"CheckID": f"_nomad-check-{alloc_id[:8]}{name}", "Name": f"{name} tcp",
                        "TCP": f"172.17.0.5:{port}", "Interval": "5s"}]}
