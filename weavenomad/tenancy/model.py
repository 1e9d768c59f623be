"""The tenant registry's data, its KV encoding, and every decision about it. Pure.

Consul KV layout under the prefix (default ``weavenomad/``)::

    weavenomad/cluster   {"ipalloc_range": "10.32.0.0/16", "default_subnet": "10.32.0.0/24"}
    weavenomad/tenants   {"version": 1, "tenants": {"acme": {"subnet": "10.32.1.0/24",
                          "created": "2026-11-22T03:00:00Z", "description": "", "labels": {}}}}

All tenants live in one document, written with check-and-set: "no two tenants overlap" is then
a property of one atomic write, which per-tenant keys could only give through transactions.
Consul limits a value to 512 KiB, about 3,000 tenants; far beyond what one Weave range holds
in /24s (255 in the default /16).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Network

from weavenomad.errors import ConflictError, NotFoundError, ValidationError
from weavenomad.tenancy.subnets import allocate_subnet, check_tenant_subnet, parse_subnet

REGISTRY_VERSION = 1
_TENANT_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class Cluster:
    """The Weave allocation range and default subnet every node was bootstrapped with."""

    ipalloc_range: IPv4Network
    default_subnet: IPv4Network

    def __post_init__(self) -> None:
        if not self.default_subnet.subnet_of(self.ipalloc_range):
            raise ValidationError(
                f"the default subnet {self.default_subnet} is not inside the Weave range "
                f"{self.ipalloc_range}",
                hint="--default-subnet must lie inside --ipalloc-range",
            )

    def to_json(self) -> dict:
        return {"ipalloc_range": str(self.ipalloc_range),
                "default_subnet": str(self.default_subnet)}


@dataclass(frozen=True)
class Tenant:
    name: str
    subnet: IPv4Network
    created: str
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"subnet": str(self.subnet), "created": self.created,
                "description": self.description, "labels": dict(self.labels)}


@dataclass(frozen=True)
class Registry:
    tenants: Mapping[str, Tenant] = field(default_factory=dict)

    def subnets(self) -> dict[str, IPv4Network]:
        return {name: t.subnet for name, t in self.tenants.items()}

    def get(self, name: str) -> Tenant:
        try:
            return self.tenants[name]
        except KeyError:
            known = ", ".join(sorted(self.tenants)) or "none yet"
            raise NotFoundError(
                f"unknown tenant {name!r} (tenants: {known})", hint="weavenomad tenant list"
            ) from None

    def owner_of(self, subnet: IPv4Network) -> Tenant | None:
        return next((t for t in self.tenants.values() if t.subnet == subnet), None)


def check_tenant_name(name: str) -> str:
    if not _TENANT_NAME.match(name):
        raise ValidationError(
            f"invalid tenant name {name!r}: lowercase letters, digits and '-', at most 63, "
            "starting and ending with a letter or digit"
        )
    return name


# -- encoding ----------------------------------------------------------------------------------


def _field(record: Mapping, name: str, kind: type, where: str):
    value = record.get(name)
    if not isinstance(value, kind):
        raise ValidationError(f"{where}: field {name!r} must be a {kind.__name__}")
    return value


def decode_cluster(raw: bytes | None, key: str) -> Cluster | None:
    if raw is None:
        return None
    try:
        record = json.loads(raw)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        raise ValidationError(f"Consul key {key}: corrupt record: {exc}") from None
    return Cluster(
        parse_subnet(_field(record, "ipalloc_range", str, f"Consul key {key}"),
                     what=f"ipalloc_range in Consul key {key}"),
        parse_subnet(_field(record, "default_subnet", str, f"Consul key {key}"),
                     what=f"default_subnet in Consul key {key}"),
    )


def decode_registry(raw: bytes | None, key: str) -> Registry:
    """Read the tenants document; a corrupt or hand-edited one gives a clear error naming the
    key and the tenant, never a traceback."""
    if raw is None:
        return Registry()
    try:
        document = json.loads(raw)
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        raise ValidationError(f"Consul key {key}: corrupt tenant registry: {exc}") from None
    if document.get("version") != REGISTRY_VERSION:
        raise ValidationError(
            f"Consul key {key}: tenant registry version {document.get('version')!r} is not "
            f"supported (expected {REGISTRY_VERSION})"
        )
    records = document.get("tenants")
    if not isinstance(records, dict):
        raise ValidationError(f"Consul key {key}: 'tenants' must be an object")
    tenants = {}
    for name, record in records.items():
        where = f"Consul key {key}: tenant {name!r}"
        if not isinstance(record, dict):
            raise ValidationError(f"{where}: must be an object")
        check_tenant_name(name)
        labels = record.get("labels") or {}
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise ValidationError(f"{where}: 'labels' must map strings to strings")
        tenants[name] = Tenant(
            name=name,
            subnet=parse_subnet(_field(record, "subnet", str, where), what=f"subnet of {where}"),
            created=_field(record, "created", str, where),
            description=str(record.get("description") or ""),
            labels=labels,
        )
    return Registry(tenants)


def encode_registry(registry: Registry) -> bytes:
    document = {
        "version": REGISTRY_VERSION,
        "tenants": {name: t.to_json() for name, t in sorted(registry.tenants.items())},
    }
    return json.dumps(document, sort_keys=True).encode()


def overlapping_tenants(registry: Registry) -> list[tuple[str, str]]:
    """Pairs of tenants whose subnets overlap (only possible through hand edits)."""
    items = sorted(registry.tenants.items())
    return [
        (a, b)
        for i, (a, ta) in enumerate(items)
        for b, tb in items[i + 1:]
        if ta.subnet.overlaps(tb.subnet)
    ]


# -- decisions ---------------------------------------------------------------------------------


def plan_create(
    registry: Registry,
    cluster: Cluster,
    name: str,
    *,
    created: str,
    cidr: IPv4Network | None = None,
    prefix_len: int = 24,
    description: str = "",
    labels: Mapping[str, str] | None = None,
) -> tuple[Registry, Tenant]:
    """The registry with tenant ``name`` added, and that tenant."""
    check_tenant_name(name)
    if name in registry.tenants:
        raise ConflictError(f"tenant {name!r} exists already ({registry.tenants[name].subnet})")
    taken = registry.subnets()
    if cidr is None:
        subnet = allocate_subnet(
            cluster.ipalloc_range, cluster.default_subnet, taken.values(), prefix_len
        )
    else:
        subnet = cidr
        check_tenant_subnet(subnet, cluster.ipalloc_range, cluster.default_subnet, taken)
    tenant = Tenant(name, subnet, created, description, dict(labels or {}))
    return replace(registry, tenants={**registry.tenants, name: tenant}), tenant


def plan_delete(registry: Registry, name: str) -> Registry:
    registry.get(name)
    return replace(registry, tenants={k: v for k, v in registry.tenants.items() if k != name})


def plan_record_cluster(current: Cluster | None, wanted: Cluster) -> Cluster | None:
    """What to write: ``wanted`` when nothing is recorded, None when it matches; a different
    recorded cluster is an error (changing the range under running tenants would break them)."""
    if current is None:
        return wanted
    if current == wanted:
        return None
    raise ConflictError(
        f"the registry records Weave range {current.ipalloc_range} with default subnet "
        f"{current.default_subnet}, not {wanted.ipalloc_range} / {wanted.default_subnet}",
        hint="use the recorded values, or weavenomad reset every node first",
    )
