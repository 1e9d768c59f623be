"""The service registry in neutral terms: what its local agent holds, what the reconciler wants
it to hold, and the agent as the reconciler uses it.

* Observed: :class:`AgentService` and :class:`AgentCheck` (the agent's own lists), and
  :class:`Instance` (one entry of the cluster's health view of a service).
* Wanted: a :class:`Twin` with its :class:`TwinCheck` s, and a :class:`Mask`.
* The names that make a registration ours (see :mod:`weavenomad.reconcile`'s ownership rule).
* :class:`ServiceAgent`: the calls a pass and ``weavenomad status`` make. Consul's wire format
  lives in one module, :mod:`weavenomad.reconcile.consul`; another registry would be another
  such module.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

NOMAD_TASK_PREFIX = "_nomad-task-"
#: every service and check ID the reconciler creates starts with this
PREFIX = "weavenomad-"
MASK_PREFIX = "weavenomad-mask-"
META_MANAGED = "weavenomad-managed"
META_SOURCE = "weavenomad-source"
META_DIGEST = "weavenomad-digest"
ALLOC_ID_LENGTH = 36
#: the status of a failing check: a mask's, and a mirror's while Nomad's check is unknown
CRITICAL = "critical"
#: the kind of a twin check whose status the reconciler sets, following one of Nomad's checks
MIRROR = "mirror"


def twin_id(nomad_service_id: str) -> str:
    return PREFIX + nomad_service_id[len(NOMAD_TASK_PREFIX):]


def mask_id(nomad_service_id: str) -> str:
    return MASK_PREFIX + nomad_service_id[len(NOMAD_TASK_PREFIX):]


def twin_check_id(twin: str, index: int) -> str:
    return f"{twin}-check-{index}"


def nomad_service_id(alloc_id: str, task: str, service: str, port_label: str) -> str:
    """Nomad's ID of a task (or ``group-<group>``) service in Consul."""
    return f"{NOMAD_TASK_PREFIX}{alloc_id}-{task}-{service}-{port_label}"


def alloc_of(nomad_service_id: str) -> str | None:
    """The allocation ID inside a ``_nomad-task-`` service ID, or None for other IDs."""
    if not nomad_service_id.startswith(NOMAD_TASK_PREFIX):
        return None
    rest = nomad_service_id[len(NOMAD_TASK_PREFIX):]
    if len(rest) <= ALLOC_ID_LENGTH or rest[ALLOC_ID_LENGTH] != "-":
        return None
    return rest[:ALLOC_ID_LENGTH]


def alloc_behind(registration_id: str) -> str | None:
    """The allocation behind a Nomad task service, a twin or a mask, by its ID; None for
    other IDs. Pure."""
    for prefix in (MASK_PREFIX, PREFIX, NOMAD_TASK_PREFIX):
        if registration_id.startswith(prefix):
            rest = registration_id[len(prefix):]
            if len(rest) > ALLOC_ID_LENGTH and rest[ALLOC_ID_LENGTH] == "-":
                return rest[:ALLOC_ID_LENGTH]
            return None
    return None


# --------------------------------------------------------------------------------------------
# Observed


@dataclass(frozen=True)
class AgentService:
    id: str
    name: str
    address: str = ""
    port: int = 0
    tags: tuple[str, ...] = ()
    meta: Mapping[str, str] = field(default_factory=dict)
    enable_tag_override: bool = False
    #: Consul Enterprise's namespace and admin partition ("" on Consul CE)
    namespace: str = ""
    partition: str = ""

    @property
    def ours(self) -> bool:
        return self.id.startswith(PREFIX) and self.meta.get(META_MANAGED) == "true"

    @property
    def nomad_task(self) -> bool:
        return self.id.startswith(NOMAD_TASK_PREFIX)


@dataclass(frozen=True)
class AgentCheck:
    id: str
    service_id: str
    name: str = ""
    status: str = CRITICAL
    notes: str = ""


@dataclass(frozen=True)
class Instance:
    """One instance in the cluster's health view of a service: the service and its own checks
    (the node's checks left out)."""

    service: AgentService
    checks: tuple[AgentCheck, ...] = ()


# --------------------------------------------------------------------------------------------
# Wanted


@dataclass(frozen=True)
class TwinCheck:
    """A check of a twin: one of Nomad's checks re-aimed at the Weave address, or a mirror."""

    id: str
    name: str
    #: "tcp", "http" or "grpc": probes ``target``; :data:`MIRROR`: its status is set
    kind: str
    #: tcp and grpc: ``address:port``; http: the URL
    target: str = ""
    interval_ns: int = 0
    timeout_ns: int = 0
    #: the status it starts with; a mirror's is the status of the check it mirrors
    status: str = ""
    method: str = ""
    header: tuple[tuple[str, tuple[str, ...]], ...] = ()
    tls_skip_verify: bool = False
    grpc_service: str = ""
    grpc_use_tls: bool = False
    #: a mirror's: how long its status holds without being set again
    ttl_ns: int = 0
    notes: str = ""


@dataclass(frozen=True)
class Twin:
    """Nomad's service again, at the Weave address and the container port."""

    id: str
    #: Nomad's service that this twin stands in for
    source_id: str
    name: str
    address: str
    port: int
    tags: tuple[str, ...] = ()
    #: Nomad's meta with the marks of ownership and the digest
    meta: Mapping[str, str] = field(default_factory=dict)
    enable_tag_override: bool = False
    checks: tuple[TwinCheck, ...] = ()
    #: the container behind it (start-to-advertised latency); not registered
    container_id: str | None = None
    #: the namespace and partition of Nomad's service, where the twin goes too ("" on CE)
    namespace: str = ""
    partition: str = ""

    @property
    def digest(self) -> str:
        return self.meta.get(META_DIGEST, "")

    @property
    def check_ids(self) -> tuple[str, ...]:
        return tuple(check.id for check in self.checks)

    @property
    def mirrors(self) -> tuple[TwinCheck, ...]:
        return tuple(check for check in self.checks if check.kind == MIRROR)


@dataclass(frozen=True)
class Mask:
    """A critical check on Nomad's service, so that healthy answers leave Nomad's instance out.
    The registry drops it with Nomad's service."""

    id: str
    service_id: str
    notes: str
    #: Nomad's service's namespace and partition: a check goes where its service is
    namespace: str = ""
    partition: str = ""


def digest_of(twin: Twin) -> str:
    """A hash of a twin's definition, since the agent (Consul 1.4) does not return check
    definitions to compare. Mirror statuses are left out (they change on their own), and so are
    the digest itself and the container, which is not registered."""
    # a check's fields as asdict() would give them (its tuples are JSON arrays alike), without
    # asdict's deep copy: a full pass digests every twin of the node
    checks = [{**vars(c), "status": ""} if c.kind == MIRROR else vars(c) for c in twin.checks]
    definition = {
        "id": twin.id, "name": twin.name, "address": twin.address, "port": twin.port,
        "tags": list(twin.tags), "meta": {k: v for k, v in twin.meta.items() if k != META_DIGEST},
        "enable_tag_override": twin.enable_tag_override, "checks": checks,
    }
    # only where set, so that the digests of twins on Consul CE stay as they were
    definition.update({k: v for k, v in (("namespace", twin.namespace),
                                         ("partition", twin.partition)) if v})
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# The agent


class ServiceAgent(Protocol):
    """The registry's local agent as the reconciler uses it; every call is one request."""

    #: the backend's name in errors, metrics and logs ("consul")
    backend: str

    def services(self) -> dict[str, AgentService]:
        """Every service the agent holds, by ID."""

    def checks(self) -> dict[str, AgentCheck]:
        """Every check the agent holds, by ID."""

    def local_service(self, service_id: str) -> tuple[AgentService | None, dict[str, AgentCheck]]:
        """One service the agent holds, with its own checks by ID; (None, {}) without it."""

    def register_twin(self, twin: Twin) -> None:
        """Register or replace the twin with exactly its checks."""

    def register_mask(self, mask: Mask) -> bool:
        """Register or replace the mask; False when the service it masks is gone."""

    def set_status(self, check_id: str, status: str) -> None:
        """Set a mirror's status (and restart its TTL)."""

    def remove_mask(self, check_id: str) -> None: ...

    def remove_twin(self, service_id: str) -> None: ...

    def watch_services(self, index: int | None, wait: float | None) -> tuple[int, object]:
        """A blocking read of this node's services: (index, answer)."""

    def watched_services(self, answer: object) -> Mapping[str, object]:
        """The services in a :meth:`watch_services` answer, by ID, comparable between two."""

    def watch_checks(self, index: int | None, wait: float | None) -> tuple[int, object]:
        """A blocking read of this node's check statuses: (index, answer)."""

    def instances(self, name: str) -> dict[str, Instance]:
        """The cluster's instances of service ``name``, by service ID."""
