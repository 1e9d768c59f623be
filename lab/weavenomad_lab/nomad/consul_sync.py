"""How a Nomad 1.0 client registers task services in its Consul agent and keeps them there
(source: ``command/agent/consul/service_client.go``, ``nomad/structs/services.go``).

Pure parts: the IDs (``_nomad-task-<alloc>-<task>-<service>-<port label>``, checks
``_nomad-check-<sha1>`` hashed exactly as Nomad does, so they match the recorded ones), the
address choice of ``getAddress`` (driver / host / auto), the registration bodies, and
:func:`plan_sync`, the periodic reconciliation: re-register own services whose Kind, ID, Port,
Address, Name, EnableTagOverride, Meta or Tags drifted; deregister unknown ``_nomad-task-``
services and unknown ``_nomad-check-`` checks of Nomad services (not during the probation after
start-up, unless Nomad itself deregistered them); never touch any other ID.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from weavenomad_lab.nomad.gostyle import duration_string

TASK_PREFIX = "_nomad-task-"
CHECK_PREFIX = "_nomad-check-"
OLD_SERVICE_PREFIX = "_nomad-executor"


class AddressError(Exception):
    """No address can be chosen for a service or check (Nomad fails the task's hook)."""


@dataclass(frozen=True)
class DriverNetwork:
    """What the Docker driver reports: the container IP on its first network with one, and
    whether to advertise it automatically (only for networks other than the default bridge)."""

    ip: str
    auto_advertise: bool = False
    port_map: dict[str, int] = field(default_factory=dict)


def service_id(alloc_id: str, task_name: str, service: dict) -> str:
    return f"{TASK_PREFIX}{alloc_id}-{task_name}-{service['Name']}-{service.get('PortLabel') or ''}"


def check_id(serviceid: str, check: dict) -> str:
    """``_nomad-check-`` + Nomad 1.0's ``ServiceCheck.Hash(serviceID)``."""
    digest = hashlib.sha1()
    for part in (
        serviceid, check.get("Name") or "", check.get("Type") or "", check.get("Command") or "",
        "".join(check.get("Args") or []), check.get("Path") or "", check.get("Protocol") or "",
        check.get("PortLabel") or "", duration_string(check.get("Interval") or 0),
        duration_string(check.get("Timeout") or 0), check.get("Method") or "",
    ):  # fmt: skip
        digest.update(part.encode())
    if check.get("TLSSkipVerify"):
        digest.update(b"true")
    header = check.get("Header") or {}
    if header:
        digest.update("".join(sorted(k + "".join(v) for k, v in header.items())).encode())
    for optional in (check.get("AddressMode"), check.get("GRPCService")):
        if optional:
            digest.update(optional.encode())
    if check.get("GRPCUseTLS"):
        digest.update(b"true")
    for name, key in (("success", "SuccessBeforePassing"), ("failures", "FailuresBeforeCritical")):
        if check.get(key):
            digest.update(f"{name}:{check[key]}".encode())
    return CHECK_PREFIX + digest.hexdigest()


def get_address(mode: str, port_label: str, networks: list[dict],
                driver: DriverNetwork | None, ports: list[dict]) -> tuple[str, int]:  # fmt: skip
    """Nomad's ``getAddress``: the (IP, port) Consul gets for a service or check."""
    if mode == "auto":
        mode = "driver" if driver is not None and driver.auto_advertise else "host"
    if mode == "host":
        if not port_label:
            return (networks[0].get("IP") or "", 0) if len(networks) == 1 else ("", 0)
        mapping = next((p for p in ports if p.get("Label") == port_label), None)
        if mapping is not None:
            return mapping.get("HostIP") or "", int(mapping["Value"])
        for network in networks:
            for port in (network.get("ReservedPorts") or []) + (network.get("DynamicPorts") or []):
                if port.get("Label") == port_label:
                    return network.get("IP") or "", int(port["Value"])
        return "", _literal_port(port_label, "invalid port {!r}: port label not found")
    if mode == "driver":
        if driver is None:
            raise AddressError('cannot use address_mode="driver": no driver network exists')
        if not port_label:
            return driver.ip, 0
        mapping = next((p for p in ports if p.get("Label") == port_label), None)
        if mapping is not None:
            return driver.ip, int(mapping.get("To") or mapping["Value"])
        if port_label in driver.port_map:
            return driver.ip, driver.port_map[port_label]
        message = ("invalid port label {!r}: port labels in driver address_mode must be numeric "
                   "or in the driver's port map")  # fmt: skip
        return driver.ip, _literal_port(port_label, message)
    raise AddressError(f"invalid address mode {mode!r}")


def _literal_port(label: str, message: str) -> int:
    try:
        port = int(label)
    except ValueError:
        raise AddressError(message.format(label)) from None
    if port <= 0:
        raise AddressError(f"invalid port: {label!r}: port must be >0")
    return port


def workload_registrations(
    alloc_id: str, task_name: str, services: list[dict], networks: list[dict],
    driver: DriverNetwork | None, ports: list[dict], canary: bool = False,
) -> tuple[dict[str, dict], dict[str, dict]]:  # fmt: skip
    """The service and check registration bodies (by ID) of one task or task group; a
    ``canary`` allocation's services carry ``canary_tags``/``canary_meta`` where the job has
    them (``serviceRegs``)."""
    service_regs: dict[str, dict] = {}
    check_regs: dict[str, dict] = {}
    for service in services:
        sid = service_id(alloc_id, task_name, service)
        ip, port = get_address(service.get("AddressMode") or "auto", service.get("PortLabel") or "",
                               networks, driver, ports)  # fmt: skip
        tags = (service.get("CanaryTags") if canary else None) or service.get("Tags")
        meta = (service.get("CanaryMeta") if canary else None) or service.get("Meta")
        # Go's omitempty: Nomad's body has no Tags/Address/Port keys when they are empty
        body = {
            "ID": sid,
            "Name": service["Name"],
            "Meta": {**(meta or {}), "external-source": "nomad"},
        }
        if tags:
            body["Tags"] = list(tags)
        if ip:
            body["Address"] = ip
        if port:
            body["Port"] = port
        if service.get("EnableTagOverride"):
            body["EnableTagOverride"] = True
        service_regs[sid] = body
        for check in service.get("Checks") or []:
            cid = check_id(sid, check)
            check_regs[cid] = check_registration(sid, cid, service, check, networks, driver, ports)
    return service_regs, check_regs


def check_registration(sid: str, cid: str, service: dict, check: dict, networks: list[dict],
                       driver: DriverNetwork | None, ports: list[dict]) -> dict:  # fmt: skip
    body = {"ID": cid, "Name": check["Name"], "ServiceID": sid,
            "Interval": duration_string(check.get("Interval") or 0),
            "Timeout": duration_string(check.get("Timeout") or 0)}  # fmt: skip
    if check.get("InitialStatus"):
        body["Status"] = check["InitialStatus"]
    kind = check.get("Type")
    if kind == "script":
        body.pop("Interval")
        body["TTL"] = duration_string((check.get("Interval") or 0) + 31 * 10**9)
        return body
    label = check.get("PortLabel") or service.get("PortLabel") or ""
    ip, port = get_address(check.get("AddressMode") or "host", label, networks, driver, ports)
    if not port:
        raise AddressError(f"{kind} checks require an address")
    hostport = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    if kind == "http":
        path = check.get("Path") or "/"
        body["HTTP"] = f"{check.get('Protocol') or 'http'}://{hostport}{'' if path.startswith('/') else '/'}{path}"  # noqa: E501
        if check.get("Method"):
            body["Method"] = check["Method"]
        if check.get("Header"):
            body["Header"] = check["Header"]
        if check.get("TLSSkipVerify"):
            body["TLSSkipVerify"] = True
    elif kind == "tcp":
        body["TCP"] = hostport
    elif kind == "grpc":
        body["GRPC"] = f"{hostport}/{check.get('GRPCService') or ''}"
    return body


def with_checks(service: dict, checks: dict[str, dict]) -> dict:
    """A service registration carrying its checks, as Nomad 1.7+ sends it
    (``apiCheckRegistrationToCheck``: the check registration less its ``ServiceID``)."""
    own = [{("CheckID" if key == "ID" else key): value for key, value in check.items()
            if key != "ServiceID"}
           for _, check in sorted(checks.items()) if check.get("ServiceID") == service["ID"]]
    return {**service, "Checks": own} if own else dict(service)


# -- reconciliation ------------------------------------------------------------------------------


def is_nomad_service(sid: str) -> bool:
    return sid.startswith(TASK_PREFIX) or sid.startswith(OLD_SERVICE_PREFIX)


def different(wanted: dict, existing: dict, periodic: bool) -> bool:
    """Whether Consul's copy of a service must be re-registered (``agentServiceUpdateRequired``)."""
    wanted_tags = list(wanted.get("Tags") or [])
    if periodic and wanted.get("EnableTagOverride"):
        wanted_tags = list(existing.get("Tags") or [])
    return (
        (wanted.get("Kind") or "") != (existing.get("Kind") or "")
        or wanted["ID"] != existing.get("ID")
        or int(wanted.get("Port") or 0) != int(existing.get("Port") or 0)
        or (wanted.get("Address") or "") != (existing.get("Address") or "")
        or wanted["Name"] != existing.get("Service")
        or bool(wanted.get("EnableTagOverride")) != bool(existing.get("EnableTagOverride"))
        or (wanted.get("Meta") or {}) != (existing.get("Meta") or {})
        or wanted_tags != list(existing.get("Tags") or [])
    )


@dataclass
class SyncPlan:
    register_services: list[dict] = field(default_factory=list)
    deregister_services: list[str] = field(default_factory=list)
    register_checks: list[dict] = field(default_factory=list)
    deregister_checks: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.register_services or self.deregister_services
                    or self.register_checks or self.deregister_checks)  # fmt: skip


def plan_services(wanted: dict[str, dict], consul: dict[str, dict], *, periodic: bool,
                  in_probation: bool, explicitly_removed: set[str]) -> SyncPlan:  # fmt: skip
    plan = SyncPlan()
    for sid in sorted(consul):
        if sid in wanted or not is_nomad_service(sid):
            continue
        if in_probation and sid not in explicitly_removed:
            continue
        plan.deregister_services.append(sid)
    for sid in sorted(wanted):
        existing = consul.get(sid)
        if existing is None or different(wanted[sid], existing, periodic):
            plan.register_services.append(wanted[sid])
    return plan


def plan_checks(wanted: dict[str, dict], consul: dict[str, dict], plan: SyncPlan, *,
                in_probation: bool, explicitly_removed: set[str]) -> SyncPlan:  # fmt: skip
    """Checks are compared by ID only: Nomad never updates a check in place."""
    for cid in sorted(consul):
        check = consul[cid]
        if cid in wanted:
            continue
        if not (is_nomad_service(check.get("ServiceID") or "") and cid.startswith(CHECK_PREFIX)):
            continue
        if in_probation and cid not in explicitly_removed:
            continue
        plan.deregister_checks.append(cid)
    for cid in sorted(wanted):
        if cid not in consul:
            plan.register_checks.append(wanted[cid])
    return plan


def plan_sync(wanted_services: dict[str, dict], wanted_checks: dict[str, dict],
              consul_services: dict[str, dict], consul_checks: dict[str, dict], *,
              periodic: bool = True, in_probation: bool = False,
              removed_services: set[str] = frozenset(),
              removed_checks: set[str] = frozenset()) -> SyncPlan:  # fmt: skip
    """Everything one sync pass changes (the service half first, as Nomad re-reads checks
    after registering services, so checks of a re-registered service are not lost)."""
    plan = plan_services(wanted_services, consul_services, periodic=periodic,
                         in_probation=in_probation, explicitly_removed=set(removed_services))
    return plan_checks(wanted_checks, consul_checks, plan, in_probation=in_probation,
                       explicitly_removed=set(removed_checks))  # fmt: skip
