"""Consul's wire format, in one place: its agent's answers become the neutral records of
:mod:`weavenomad.reconcile.registrations`, and the neutral twins and masks become its register
bodies. :class:`ConsulAgent` is the :class:`~weavenomad.reconcile.registrations.ServiceAgent`
over the Consul adapter (:class:`weavenomad.clients.consul.ConsulAPI`).

The bodies (Consul 1.4's agent API, as recorded in tests/fixtures/recorded):

* a twin: ``ID``, ``Name``, ``Tags``, ``Address``, ``Port``, ``Meta``, ``EnableTagOverride``
  when set, and ``Checks``, registered with ``replace-existing-checks`` so that a twin's checks
  are exactly the wanted ones after one call; a re-aimed check has ``TCP``, ``HTTP`` (with
  ``Method``, ``Header``, ``TLSSkipVerify``) or ``GRPC`` (with ``GRPCUseTLS``), and a mirror is
  a TTL check with its status;
* a mask: a TTL check in status critical on Nomad's service, with a TTL of a year so that only
  the reconciler changes it, and never ``DeregisterCriticalServiceAfter``, which would
  deregister Nomad's service.

On Consul Enterprise a twin and a mask go in the namespace and admin partition of Nomad's
service (``Namespace``/``Partition`` in the bodies, ``?ns=``/``?partition=`` on deregistration);
Consul CE answers have neither field and the bodies carry neither. A namespace the token
cannot write refuses the twin (403): apply records the failure, and the mask, which requires
the twin, is not registered either.

The pure functions are the format; :class:`ConsulAgent` adds the calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from weavenomad.errors import BackendError, BackendNotFound, BackendUnavailable, WeavenomadError
from weavenomad.reconcile.registrations import (
    CRITICAL,
    MIRROR,
    AgentCheck,
    AgentService,
    Instance,
    Mask,
    Twin,
    TwinCheck,
)
from weavenomad.runtime.durations import go_duration, go_duration_ns

MASK_NAME = "weave address mask"
#: a mask's TTL: it stays critical whether or not anyone sets it again
MASK_TTL = "8760h"

# --------------------------------------------------------------------------------------------
# Answers


def service_from_agent(raw: Mapping) -> AgentService:
    """A service of ``/v1/agent/services``, or the ``Service`` of a health entry."""
    return AgentService(
        id=str(raw.get("ID") or ""), name=str(raw.get("Service") or ""),
        address=str(raw.get("Address") or ""), port=int(raw.get("Port") or 0),
        tags=tuple(raw.get("Tags") or ()), meta=MappingProxyType(dict(raw.get("Meta") or {})),
        enable_tag_override=bool(raw.get("EnableTagOverride")),
        namespace=str(raw.get("Namespace") or ""), partition=str(raw.get("Partition") or ""),
    )


def check_from_agent(raw: Mapping) -> AgentCheck:
    """A check of ``/v1/agent/checks``, or of a health entry's ``Checks``."""
    return AgentCheck(
        id=str(raw.get("CheckID") or ""), service_id=str(raw.get("ServiceID") or ""),
        name=str(raw.get("Name") or ""), status=str(raw.get("Status") or ""),
        notes=str(raw.get("Notes") or ""),
    )


def instances_from_health(entries: Iterable[Mapping]) -> dict[str, Instance]:
    """``/v1/health/service/<name>``'s entries by service ID, each with the service's own
    checks (the node's, such as ``serfHealth``, have no ``ServiceID``)."""
    found = {}
    for entry in entries:
        service = service_from_agent(entry.get("Service") or {})
        checks = tuple(check_from_agent(c) for c in entry.get("Checks") or ()
                       if c.get("ServiceID"))
        found[service.id] = Instance(service, checks)
    return found


def service_gone(exc: WeavenomadError) -> bool:
    """Consul (1.4 and later) refuses a check on an unknown service with 500 and this text."""
    text = getattr(exc, "body", "") or exc.message
    return "does not exist" in text and "ServiceID" in text


# --------------------------------------------------------------------------------------------
# Bodies


def check_definition(check: TwinCheck) -> dict:
    """A twin's check as an element of the register body's ``Checks``."""
    body: dict = {"CheckID": check.id, "Name": check.name}
    if check.kind == MIRROR:
        body.update(TTL=go_duration_ns(check.ttl_ns), Status=check.status, Notes=check.notes)
        return body
    if check.interval_ns:
        body["Interval"] = go_duration_ns(check.interval_ns)
    if check.timeout_ns:
        body["Timeout"] = go_duration_ns(check.timeout_ns)
    if check.status:
        body["Status"] = check.status
    if check.kind == "tcp":
        body["TCP"] = check.target
    elif check.kind == "http":
        body["HTTP"] = check.target
        if check.method:
            body["Method"] = check.method
        if check.header:
            body["Header"] = {k: list(v) for k, v in check.header}
        if check.tls_skip_verify:
            body["TLSSkipVerify"] = True
    elif check.kind == "grpc":
        body["GRPC"] = f"{check.target}/{check.grpc_service}" if check.grpc_service \
            else check.target
        if check.grpc_use_tls:
            body["GRPCUseTLS"] = True
    return body


def service_definition(twin: Twin) -> dict:
    """The body of ``PUT /v1/agent/service/register`` for a twin."""
    body: dict = {"ID": twin.id, "Name": twin.name, "Tags": list(twin.tags),
                  "Address": twin.address, "Port": twin.port, "Meta": dict(twin.meta)}
    if twin.enable_tag_override:
        body["EnableTagOverride"] = True
    if twin.checks:
        body["Checks"] = [check_definition(check) for check in twin.checks]
    return {**body, **_placement(twin.namespace, twin.partition)}


def mask_definition(mask: Mask) -> dict:
    """The body of ``PUT /v1/agent/check/register`` for a mask."""
    return {"ID": mask.id, "Name": MASK_NAME, "ServiceID": mask.service_id, "TTL": MASK_TTL,
            "Status": CRITICAL, "Notes": mask.notes,
            **_placement(mask.namespace, mask.partition)}


def _placement(namespace: str, partition: str) -> dict:
    """Enterprise's ``Namespace`` and ``Partition`` body fields, where set."""
    return {key: value for key, value in (("Namespace", namespace), ("Partition", partition))
            if value}


# --------------------------------------------------------------------------------------------
# The agent


class ConsulAgent:
    """The local Consul agent as the reconciler's service agent; ``api`` is the adapter."""

    backend = "consul"

    def __init__(self, api):
        self.api = api
        self._node_name: str | None = None
        #: (namespace, partition) of each service and check last read outside the defaults:
        #: deregistering in Enterprise names them
        self._placed: dict[str, tuple[str, str]] = {}

    def services(self) -> dict[str, AgentService]:
        raw = self.api.agent_services().values()
        self._remember(raw, "ID")
        return {s.id: s for s in map(service_from_agent, raw)}

    def checks(self) -> dict[str, AgentCheck]:
        raw = self.api.agent_checks().values()
        self._remember(raw, "CheckID")
        return {c.id: c for c in map(check_from_agent, raw)}

    def local_service(self, service_id: str) -> tuple[AgentService | None, dict[str, AgentCheck]]:
        """One service of the agent with its own checks (None, {}: the agent has none by that
        ID), asked in the namespace and partition it was last seen in."""
        answer = self.api.agent_service_health(service_id, *self._placed.get(service_id, ()))
        if answer is None:
            return None, {}
        raw_checks = [c for c in answer.get("Checks") or () if c.get("ServiceID") == service_id]
        self._remember([answer["Service"]], "ID")
        self._remember(raw_checks, "CheckID")
        return (service_from_agent(answer["Service"]),
                {c.id: c for c in map(check_from_agent, raw_checks)})

    def _remember(self, raw: Iterable[Mapping], key: str) -> None:
        for item in raw:
            placed = (str(item.get("Namespace") or ""), str(item.get("Partition") or ""))
            if any(placed):
                self._placed[str(item.get(key) or "")] = placed

    def register_twin(self, twin: Twin) -> None:
        self.api.service_register(service_definition(twin), replace_existing_checks=True)

    def register_mask(self, mask: Mask) -> bool:
        try:
            self.api.check_register(mask_definition(mask))
        except (BackendNotFound, BackendUnavailable):
            raise
        except WeavenomadError as exc:
            if service_gone(exc):
                return False
            raise
        return True

    def set_status(self, check_id: str, status: str) -> None:
        self.api.check_ttl(check_id, status)

    def remove_mask(self, check_id: str) -> None:
        placed = self._placed.pop(check_id, None)
        if placed:
            self.api.check_deregister(check_id, *placed)
        else:
            self.api.check_deregister(check_id)

    def remove_twin(self, service_id: str) -> None:
        placed = self._placed.pop(service_id, None)
        if placed:
            self.api.service_deregister(service_id, *placed)
        else:
            self.api.service_deregister(service_id)

    def node_name(self) -> str:
        """The agent's node name (asked once): its catalog and health views are per node."""
        if self._node_name is None:
            me = self.api.agent_self()
            name = (me.get("Config") or {}).get("NodeName")
            if not name:
                raise BackendError("Consul's /v1/agent/self has no Config.NodeName",
                                   backend="consul")
            self._node_name = str(name)
        return self._node_name

    def watch_services(self, index: int | None, wait: float | None) -> tuple[int, object]:
        """``/v1/catalog/node/<node>``: its index moves when a service is registered or
        dropped, e.g. by Nomad after an agent restart."""
        kwargs = {"index": index, "wait": go_duration(wait)} if index else {}
        found, data = self.api.client.catalog.node(self.node_name(), **kwargs)
        return int(found), data

    def watched_services(self, answer: object) -> Mapping[str, object]:
        """The ``Services`` of a ``/v1/catalog/node/<node>`` answer (None: the node is not
        in the catalog yet)."""
        return dict((answer or {}).get("Services") or {}) if isinstance(answer, Mapping) else {}

    def watch_checks(self, index: int | None, wait: float | None) -> tuple[int, object]:
        """``/v1/health/node/<node>``: its index moves when a check's status changes."""
        kwargs = {"index": index, "wait": go_duration(wait)} if index else {}
        found, data = self.api.client.health.node(self.node_name(), **kwargs)
        return int(found), data

    def instances(self, name: str) -> dict[str, Instance]:
        return instances_from_health(self.api.health_service(name)[1])
