"""Builders shared by the reconciler's unit tests: observations from the recorded answers of
real Nomad 1.0.18 and Consul 1.4.0, and small hand-made jobs."""

from __future__ import annotations

import copy
import json
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

from weavenomad.reconcile.consul import check_from_agent, service_from_agent
from weavenomad.reconcile.model import (
    Allocation,
    Container,
    Observation,
    Tenancy,
    allocation_from_api,
)
from weavenomad.reconcile.registrations import AgentCheck, AgentService

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"
#: the recorded allocations (and their services in Consul)
ALLOC_A = "496e93a7-1a21-2d3d-58e6-14355eed58dc"
ALLOC_B = "86515af2-82d1-7e20-89f3-2ece4126b38a"
SID_A = f"_nomad-task-{ALLOC_A}-httpbackend-httpbackend-8081"
SID_B = f"_nomad-task-{ALLOC_B}-httpbackend-httpbackend-8081"
TWIN_A = f"weavenomad-{ALLOC_A}-httpbackend-httpbackend-8081"
TWIN_B = f"weavenomad-{ALLOC_B}-httpbackend-httpbackend-8081"
MASK_A = f"weavenomad-mask-{ALLOC_A}-httpbackend-httpbackend-8081"
MASK_B = f"weavenomad-mask-{ALLOC_B}-httpbackend-httpbackend-8081"


def recorded(name: str):
    return json.loads((RECORDED / name).read_text())["body"]


def raw_allocations() -> list[dict]:
    return copy.deepcopy(recorded("nomad-node-allocations.json"))


def recorded_observation(addresses: dict[str, str] | None = None, **changes) -> Observation:
    """The recorded node: two httpbackend allocations, Nomad's services and checks in Consul
    (without the recorded test mask), containers with the given ethwe addresses."""
    addresses = addresses or {ALLOC_A: "10.32.1.1/24", ALLOC_B: "10.32.1.2/24"}
    allocations = {a["ID"]: allocation_from_api(a) for a in raw_allocations()}
    services = {k: service_from_agent(v)
                for k, v in recorded("consul-agent-services.json").items()}
    checks = {k: check_from_agent(v) for k, v in recorded("consul-agent-checks.json").items()
              if not k.startswith("weavenomad-")}
    containers = {
        (alloc_id, "httpbackend"): Container(f"c-{alloc_id}", alloc_id, "httpbackend", True,
                                             (IPv4Interface(addr),) if addr else ())
        for alloc_id, addr in addresses.items()
    }
    values = dict(allocations=allocations, services=services, checks=checks,
                  containers=containers, tenancy=Tenancy())
    values.update(changes)
    return Observation(**values)


def with_services(obs: Observation, *services: AgentService, drop: tuple[str, ...] = ()
                  ) -> Observation:
    merged = {k: v for k, v in obs.services.items() if k not in drop}
    merged.update({s.id: s for s in services})
    return Observation(obs.allocations, merged, obs.checks, obs.containers, obs.tenancy)


def with_checks(obs: Observation, *checks: AgentCheck, drop: tuple[str, ...] = ()
                ) -> Observation:
    merged = {k: v for k, v in obs.checks.items() if k not in drop}
    merged.update({c.id: c for c in checks})
    return Observation(obs.allocations, obs.services, merged, obs.containers, obs.tenancy)


def job_allocation(alloc_id: str, *, tasks: list[dict], group_services: list[dict] | None = None,
                   shared_ports: list[dict] | None = None, meta: dict | None = None,
                   task_networks: dict | None = None, client_status: str = "running",
                   desired_status: str = "run", group: str = "web") -> dict:
    """A Nomad allocation in the API's shape with a job of one group."""
    return {
        "ID": alloc_id, "JobID": "web", "TaskGroup": group, "ModifyIndex": 10,
        "DesiredStatus": desired_status, "ClientStatus": client_status,
        "AllocatedResources": {
            "Shared": {"Ports": shared_ports or [], "Networks": None},
            "Tasks": {name: {"Networks": nets} for name, nets in (task_networks or {}).items()},
        },
        "Job": {"ID": "web", "Meta": meta, "TaskGroups": [
            {"Name": group, "Services": group_services, "Tasks": tasks}]},
    }


def tcp_service(name: str, port_label: str, **extra) -> dict:
    check = {"Name": f"{name} tcp", "Type": "tcp", "Interval": 5_000_000_000,
             "Timeout": 2_000_000_000, "PortLabel": extra.pop("check_port", "")}
    return {"Name": name, "PortLabel": port_label, "AddressMode": extra.pop("mode", "driver"),
            "Checks": extra.pop("checks", [check]), **extra}


def observation_of(raw_allocs: list[dict], services: list[AgentService],
                   containers: list[Container], checks: list[AgentCheck] = (),
                   tenancy: Tenancy | None = None) -> Observation:
    allocations: dict[str, Allocation] = {a["ID"]: allocation_from_api(a) for a in raw_allocs}
    return Observation(allocations, {s.id: s for s in services}, {c.id: c for c in checks},
                       {(c.alloc_id, c.task): c for c in containers}, tenancy or Tenancy())


def nomad_service(alloc_id: str, task: str, name: str, label: str, address: str = "172.17.0.9",
                  port: int = 0, tags=()) -> AgentService:
    return AgentService(f"_nomad-task-{alloc_id}-{task}-{name}-{label}", name, address, port,
                        tuple(tags), {"external-source": "nomad"})


def weave_container(alloc_id: str, task: str, *addresses: str, running: bool = True,
                    started_at: float | None = None) -> Container:
    return Container(f"c-{alloc_id}-{task}", alloc_id, task, running,
                     tuple(IPv4Interface(a) for a in addresses), started_at)


def tenancy(**subnets: str) -> Tenancy:
    return Tenancy({k: IPv4Network(v) for k, v in subnets.items()}, IPv4Network("10.32.0.0/24"))
