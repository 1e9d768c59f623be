"""The records of the simulated catalog and the JSON shapes Consul 1.4 gives them.

Field names, types and empty values follow the recorded answers in
``tests/fixtures/recorded/consul-*.json``: the agent's view of a service has no indexes, the
catalog's flattens node and service into ``Service*`` fields, a check's ``Definition`` is an
empty object, empty tags and meta are ``[]`` and ``{}`` rather than null.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

PASSING, WARNING, CRITICAL = "passing", "warning", "critical"
STATUSES = (PASSING, WARNING, CRITICAL)
#: Consul keeps at most this much check output (checks.BufSize)
OUTPUT_LIMIT = 4096
SERF_CHECK_ID = "serfHealth"
#: check kinds the lab really runs; the others are accepted but stay critical
RUNNABLE_KINDS = ("tcp", "http")
_NODE_ID_NAMESPACE = uuid.UUID("5c3d2a6e-8f1b-4c1e-9a57-6f3b1d0e2a41")


class RawJSON(str):
    """Already-encoded JSON, sent as it is. Records cache their encoded views, so a list of
    1,000 services is a join of cached strings rather than 1,000 encodings."""


def encode(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def json_array(items: Iterable[str]) -> RawJSON:
    return RawJSON("[" + ",".join(items) + "]")


def json_object(members: Iterable[tuple[str, str]]) -> RawJSON:
    return RawJSON("{" + ",".join(f"{encode(k)}:{v}" for k, v in members) + "}")


def node_id_for(name: str) -> str:
    """A stable node UUID per node name, so ids survive a restart of the simulator."""
    return str(uuid.uuid5(_NODE_ID_NAMESPACE, name))


def truncate_output(output: str) -> str:
    if len(output) <= OUTPUT_LIMIT:
        return output
    return f"{output[:OUTPUT_LIMIT]} ... (captured {OUTPUT_LIMIT} of {len(output)} bytes)"


@dataclass
class Node:
    name: str
    address: str
    datacenter: str
    server: bool
    create_index: int
    modify_index: int
    meta: dict[str, str] = field(default_factory=dict)
    node_id: str = ""
    #: the lab's network namespace of this node (None: the simulator's own)
    netns: str | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def json(self) -> str:
        """:meth:`view`, encoded once (a stored node never changes)."""
        if "view" not in self._cache:
            self._cache["view"] = encode(self.view())
        return self._cache["view"]

    def view(self) -> dict:
        return {
            "ID": self.node_id,
            "Node": self.name,
            "Address": self.address,
            "Datacenter": self.datacenter,
            "TaggedAddresses": {"lan": self.address, "wan": self.address},
            "Meta": dict(self.meta),
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }


@dataclass
class Service:
    node: str
    service_id: str
    name: str
    tags: tuple[str, ...]
    address: str
    port: int
    meta: dict[str, str]
    enable_tag_override: bool
    weights: tuple[int, int]
    kind: str = ""
    create_index: int = 0
    modify_index: int = 0
    #: False for what the catalog has but no agent API shows (the servers' "consul" service)
    agent_local: bool = True
    #: Enterprise only (None on Consul CE, whose answers have no such fields)
    namespace: str | None = None
    partition: str | None = None
    #: encoded views; a stored service is replaced, never changed, so they stay valid
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def _cached(self, key: object, render) -> str:
        text = self._cache.get(key)
        if text is None:
            text = self._cache[key] = encode(render())
        return text

    def agent_json(self) -> str:
        return self._cached("agent", self.agent_view)

    def health_json(self) -> str:
        return self._cached("health", self.health_view)

    def catalog_json(self, node: Node) -> str:
        return self._cached(("catalog", node.name), lambda: self.catalog_view(node))

    def same_definition(self, other: Service) -> bool:
        return (self.name, self.tags, self.address, self.port, self.meta,
                self.enable_tag_override, self.weights, self.kind, self.namespace,
                self.partition) == (
            other.name, other.tags, other.address, other.port, other.meta,
            other.enable_tag_override, other.weights, other.kind, other.namespace,
            other.partition)

    def tenancy_view(self) -> dict:
        """``Namespace`` and ``Partition``, as Consul Enterprise adds them to every view."""
        view = {}
        if self.namespace is not None:
            view["Namespace"] = self.namespace
        if self.partition is not None:
            view["Partition"] = self.partition
        return view

    def weights_view(self) -> dict:
        return {"Passing": self.weights[0], "Warning": self.weights[1]}

    def agent_view(self) -> dict:
        view = {
            "ID": self.service_id,
            "Service": self.name,
            "Tags": list(self.tags),
            "Meta": dict(self.meta),
            "Port": self.port,
            "Address": self.address,
            "Weights": self.weights_view(),
            "EnableTagOverride": self.enable_tag_override,
        }
        if self.kind:
            view["Kind"] = self.kind
        view.update(self.tenancy_view())
        return view

    def health_view(self) -> dict:
        view = {
            "ID": self.service_id,
            "Service": self.name,
            "Tags": list(self.tags),
            "Address": self.address,
            "Meta": dict(self.meta),
            "Port": self.port,
            "Weights": self.weights_view(),
            "EnableTagOverride": self.enable_tag_override,
            "ProxyDestination": "",
            "Proxy": {},
            "Connect": {},
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }
        view.update(self.tenancy_view())
        return view

    def catalog_view(self, node: Node) -> dict:
        view = {
            "ID": node.node_id,
            "Node": node.name,
            "Address": node.address,
            "Datacenter": node.datacenter,
            "TaggedAddresses": {"lan": node.address, "wan": node.address},
            "NodeMeta": dict(node.meta),
            "ServiceKind": self.kind,
            "ServiceID": self.service_id,
            "ServiceName": self.name,
            "ServiceTags": list(self.tags),
            "ServiceAddress": self.address,
            "ServiceWeights": self.weights_view(),
            "ServiceMeta": dict(self.meta),
            "ServicePort": self.port,
            "ServiceEnableTagOverride": self.enable_tag_override,
            "ServiceProxyDestination": "",
            "ServiceProxy": {},
            "ServiceConnect": {},
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }
        view.update(self.tenancy_view())
        return view


@dataclass(frozen=True)
class CheckDefinition:
    """How a check is run; equal definitions mean an unchanged re-registration."""

    kind: str  # "ttl", "tcp", "http", "script", "docker", "grpc", "alias"
    tcp: str = ""
    http: str = ""
    method: str = ""
    header: tuple[tuple[str, tuple[str, ...]], ...] = ()
    tls_skip_verify: bool = False
    interval: float = 0.0
    timeout: float = 0.0
    ttl: float = 0.0
    deregister_after: float = 0.0

    @property
    def runnable(self) -> bool:
        return self.kind in RUNNABLE_KINDS

    def unsupported_output(self) -> str:
        if self.kind in ("script", "docker"):
            return ("weavenomad lab: script and docker checks are not run by the simulated "
                    "Consul; this check stays critical")
        if self.kind in ("ttl", *RUNNABLE_KINDS):
            return ""
        return f"weavenomad lab: {self.kind} checks are not run; this check stays critical"


@dataclass
class Check:
    node: str
    check_id: str
    name: str
    status: str
    notes: str
    output: str
    service_id: str
    definition: CheckDefinition | None
    create_index: int
    modify_index: int
    generation: int = 0
    #: monotonic time the check turned critical (DeregisterCriticalServiceAfter)
    critical_since: float | None = None
    #: last output set through the TTL API, quoted when the TTL expires
    ttl_output: str = ""
    agent_local: bool = True
    #: Enterprise only: the namespace and partition of its service (None on Consul CE)
    namespace: str | None = None
    partition: str | None = None
    _cache: tuple = field(default=(), repr=False, compare=False)

    def json(self, service: Service | None, indexes: bool = True) -> str:
        """:meth:`view`, encoded; re-encoded only when the check or its service changed."""
        owner = (service.name, service.tags) if service else None
        key = (self.status, self.output, self.modify_index, indexes, owner)
        if not self._cache or self._cache[0] != key:
            self._cache = (key, encode(self.view(service, indexes)))
        return self._cache[1]

    def view(self, service: Service | None, indexes: bool = True) -> dict:
        view = {
            "Node": self.node,
            "CheckID": self.check_id,
            "Name": self.name,
            "Status": self.status,
            "Notes": self.notes,
            "Output": self.output,
            "ServiceID": self.service_id,
            "ServiceName": service.name if service else "",
            "ServiceTags": list(service.tags) if service else [],
            "Definition": {},
            "CreateIndex": self.create_index if indexes else 0,
            "ModifyIndex": self.modify_index if indexes else 0,
        }
        if self.namespace is not None:
            view["Namespace"] = self.namespace
        if self.partition is not None:
            view["Partition"] = self.partition
        return view


@dataclass(frozen=True)
class CheckSpec:
    """A check as registered (agent/check/register or a service's Check/Checks)."""

    check_id: str
    name: str
    definition: CheckDefinition
    notes: str = ""
    status: str | None = None
    service_id: str = ""
    namespace: str | None = None
    partition: str | None = None


@dataclass(frozen=True)
class ServiceSpec:
    """A service as registered through agent/service/register (defaults applied)."""

    service_id: str
    name: str
    tags: tuple[str, ...] = ()
    address: str = ""
    port: int = 0
    meta: dict[str, str] = field(default_factory=dict)
    enable_tag_override: bool = False
    weights: tuple[int, int] = (1, 1)
    kind: str = ""
    checks: tuple[CheckSpec, ...] = ()
    #: Enterprise: where it lives (None on Consul CE)
    namespace: str | None = None
    partition: str | None = None
