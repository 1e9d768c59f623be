"""The tenant registry's data, its KV encoding, and every decision about it. Pure.

Consul KV layout under the prefix (default ``weavenomad/``)::

    weavenomad/cluster   {"ipalloc_range": "10.32.0.0/16", "default_subnet": "10.32.0.0/24"}
    weavenomad/tenants   {"version": 1, "tenants": {"acme": {"subnet": "10.32.1.0/24",
                          "created": "2026-11-22T03:00:00Z", "description": "", "labels": {}}}}

All tenants live in one document, written with check-and-set: "no two tenants overlap" is then
a property of one atomic write, which per-tenant keys could only give through transactions.
Consul limits a value to 512 KiB, about 3,000 tenants; far beyond what one Weave range holds
in /24s (255 in the default /16).

A deleted tenant's subnet is *quarantined* in the same document until no task holds an address
in it any more (:mod:`weavenomad.tenancy.holders` decides that from Nomad), so allocation sees
tenants and quarantine in one atomic read::

    "quarantined": {"10.32.1.0/24": {"tenant": "acme", "deleted": "2026-11-23T08:00:00Z"}}

A document with a quarantine is written as version 2, one without as version 1: a weavenomad
that predates quarantine refuses version 2 instead of handing the subnet out again (and of
dropping the quarantine on its next write), and still reads everything else.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Network

from weavenomad.errors import ConflictError, NotFoundError, ValidationError
from weavenomad.tenancy.subnets import allocate_subnet, check_tenant_subnet
from weavenomad.tenancy.weavecidr import parse_subnet

REGISTRY_VERSION = 1
#: the version of a document that holds a quarantine
QUARANTINE_VERSION = 2
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
class Quarantine:
    """A deleted tenant's subnet, kept from new tenants while tasks may hold addresses in it."""

    subnet: IPv4Network
    tenant: str
    deleted: str

    def to_json(self) -> dict:
        return {"tenant": self.tenant, "deleted": self.deleted}

    def describe(self) -> str:
        return f"tenant {self.tenant!r} was deleted at {self.deleted}"


@dataclass(frozen=True)
class Registry:
    tenants: Mapping[str, Tenant] = field(default_factory=dict)
    quarantined: Mapping[IPv4Network, Quarantine] = field(default_factory=dict)

    def subnets(self) -> dict[str, IPv4Network]:
        return {name: t.subnet for name, t in self.tenants.items()}

    def quarantine_of(self, subnet: IPv4Network) -> Quarantine | None:
        """The quarantine ``subnet`` overlaps, if any."""
        return next((q for q in self.quarantined.values() if q.subnet.overlaps(subnet)), None)

    def get(self, name: str) -> Tenant:
        try:
            return self.tenants[name]
        except KeyError:
            known = ", ".join(sorted(self.tenants)) or "none yet"
            raise NotFoundError(
                f"unknown tenant {shown(name)} (tenants: {known})", hint="weavenomad tenant list"
            ) from None

    def owner_of(self, subnet: IPv4Network) -> Tenant | None:
        return next((t for t in self.tenants.values() if t.subnet == subnet), None)


def is_tenant_name(name: str) -> bool:
    return isinstance(name, str) and _TENANT_NAME.fullmatch(name) is not None


def shown(name: str, limit: int = 40) -> str:
    """A name as messages quote it: cut short, so a pasted blob stays a one-line error."""
    text = name if isinstance(name, str) else str(name)
    return repr(text if len(text) <= limit else text[:limit] + "…")


def check_tenant_name(name: str) -> str:
    if not is_tenant_name(name):
        raise ValidationError(
            f"invalid tenant name {shown(name)}: lowercase letters, digits and '-', at most 63, "
            "starting and ending with a letter or digit"
        )
    return name


# -- encoding ----------------------------------------------------------------------------------


def _field(record: Mapping, name: str, kind: type, where: str):
    if name not in record:
        raise ValidationError(f"{where}: field {name!r} is missing")
    value = record[name]
    if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
        raise ValidationError(f"{where}: field {name!r} must be {_KINDS[kind]}, not "
                              f"{_KINDS.get(type(value), type(value).__name__)}")
    return value


def _subnet_field(record: Mapping, name: str, where: str) -> IPv4Network:
    try:
        return parse_subnet(_field(record, name, str, where))
    except ValidationError as exc:
        if exc.message.startswith(where):
            raise
        raise ValidationError(f"{where}: field {name!r}: {exc.message}") from None


_KINDS = {str: "a string", int: "a number", float: "a number", bool: "a boolean",
          dict: "an object", list: "a list", type(None): "null"}


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """JSON objects of a hand-edited record must not repeat a key: ``json`` would keep the last
    one silently, so a duplicated tenant would vanish on the next write."""
    seen: dict = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"key {key!r} appears twice in one object")
        seen[key] = value
    return seen


def _load_object(raw: bytes, key: str, what: str) -> dict:
    try:
        document = json.loads(raw, object_pairs_hook=_unique_keys)
    except RecursionError:  # the decoder recurses once per nesting level
        raise ValidationError(f"Consul key {key}: corrupt {what}: nested too deeply") from None
    except ValueError as exc:  # also UnicodeDecodeError: the value is not UTF-8
        raise ValidationError(f"Consul key {key}: corrupt {what}: {exc}") from None
    if not isinstance(document, dict):
        raise ValidationError(f"Consul key {key}: corrupt {what}: not a JSON object")
    return document


def decode_cluster(raw: bytes | None, key: str) -> Cluster | None:
    if raw is None:
        return None
    record = _load_object(raw, key, "cluster record")
    where = f"Consul key {key}"
    ipalloc_range = _subnet_field(record, "ipalloc_range", where)
    default_subnet = _subnet_field(record, "default_subnet", where)
    if not default_subnet.subnet_of(ipalloc_range):
        raise ValidationError(f"{where}: field 'default_subnet' {default_subnet} is not inside "
                              f"'ipalloc_range' {ipalloc_range}")
    return Cluster(ipalloc_range, default_subnet)


def decode_registry(raw: bytes | None, key: str) -> Registry:
    """Read the tenants document; a corrupt or hand-edited one gives a clear error naming the
    key and the tenant, never a traceback."""
    if raw is None:
        return Registry()
    document = _load_object(raw, key, "tenant registry")
    version = document.get("version")
    if version not in (REGISTRY_VERSION, QUARANTINE_VERSION) or isinstance(version, bool):
        raise ValidationError(
            f"Consul key {key}: tenant registry version {version!r} is not "
            f"supported (expected {REGISTRY_VERSION} or {QUARANTINE_VERSION})"
        )
    records = _field(document, "tenants", dict, f"Consul key {key}")
    tenants = {}
    for name, record in records.items():
        where = f"Consul key {key}: tenant {name!r}"
        if not _TENANT_NAME.fullmatch(name):
            raise ValidationError(f"{where}: invalid tenant name (lowercase letters, digits and "
                                  "'-', at most 63, starting and ending with a letter or digit)")
        if not isinstance(record, dict):
            raise ValidationError(f"{where}: must be an object, not "
                                  f"{_KINDS.get(type(record), type(record).__name__)}")
        labels = {} if record.get("labels") is None else record["labels"]
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise ValidationError(f"{where}: field 'labels' must map strings to strings")
        description = "" if record.get("description") is None else record["description"]
        if not isinstance(description, str):
            raise ValidationError(f"{where}: field 'description' must be a string")
        tenants[name] = Tenant(
            name=name,
            subnet=_subnet_field(record, "subnet", where),
            created=_field(record, "created", str, where),
            description=description,
            labels=labels,
        )
    return Registry(tenants, _decode_quarantine(document, key))


def _decode_quarantine(document: Mapping, key: str) -> dict[IPv4Network, Quarantine]:
    if document.get("quarantined") is None:
        return {}
    records = _field(document, "quarantined", dict, f"Consul key {key}")
    found: dict[IPv4Network, Quarantine] = {}
    for text, record in records.items():
        where = f"Consul key {key}: quarantined subnet {text!r}"
        try:
            subnet = parse_subnet(text)
        except ValidationError as exc:
            raise ValidationError(f"{where}: {exc.message}") from None
        if not isinstance(record, dict):
            raise ValidationError(f"{where}: must be an object, not "
                                  f"{_KINDS.get(type(record), type(record).__name__)}")
        tenant = _field(record, "tenant", str, where)
        if not is_tenant_name(tenant):
            raise ValidationError(f"{where}: field 'tenant' {shown(tenant)} is not a tenant name")
        found[subnet] = Quarantine(subnet, tenant, _field(record, "deleted", str, where))
    return found


def encode_registry(registry: Registry) -> bytes:
    document: dict = {
        "version": QUARANTINE_VERSION if registry.quarantined else REGISTRY_VERSION,
        "tenants": {name: t.to_json() for name, t in sorted(registry.tenants.items())},
    }
    if registry.quarantined:
        document["quarantined"] = {str(subnet): q.to_json() for subnet, q in sorted(
            registry.quarantined.items(), key=lambda item: int(item[0].network_address))}
    return json.dumps(document, sort_keys=True).encode()


def overlapping_tenants(registry: Registry) -> list[tuple[str, str]]:
    """Pairs of tenants whose subnets overlap (only possible through hand edits), by name.

    A sweep over the subnets sorted by start: each is compared only with those still open,
    so thousands of consistent tenants cost one sort."""
    items = sorted(registry.tenants.items(), key=lambda item: (
        int(item[1].subnet.network_address), item[0]))
    open_: list[tuple[int, str]] = []  # (last address, name) of subnets not yet passed
    pairs = []
    for name, tenant in items:
        start = int(tenant.subnet.network_address)
        open_ = [(end, other) for end, other in open_ if end >= start]
        pairs += [tuple(sorted((other, name))) for _, other in open_]
        open_.append((int(tenant.subnet.broadcast_address), name))
    return sorted(pairs)


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
    released: Collection[IPv4Network] = (),
    held: Mapping[IPv4Network, str] | None = None,
) -> tuple[Registry, Tenant]:
    """The registry with tenant ``name`` added, and that tenant.

    Quarantined subnets in ``released`` (found free of tasks) are freed in the same write; the
    others stay out of reach, and ``held`` says why for the error when ``cidr`` asks for one
    (e.g. "2 allocation(s) of job web still hold addresses in it")."""
    check_tenant_name(name)
    if name in registry.tenants:
        raise ConflictError(f"tenant {name!r} exists already ({registry.tenants[name].subnet})")
    registry = plan_release(registry, released)
    taken = registry.subnets()
    if cidr is None:
        subnet = allocate_subnet(cluster.ipalloc_range, cluster.default_subnet,
                                 [*taken.values(), *registry.quarantined], prefix_len)
    else:
        subnet = cidr
        quarantine = registry.quarantine_of(subnet)
        if quarantine is not None:
            why = (held or {}).get(quarantine.subnet, NOT_CHECKED)
            raise ConflictError(
                f"subnet {quarantine.subnet} is quarantined: {quarantine.describe()}, and {why}",
                hint="stop them ('weavenomad status' lists them), or choose another --cidr")
        check_tenant_subnet(subnet, cluster.ipalloc_range, cluster.default_subnet, taken)
    tenant = Tenant(name, subnet, created, description, dict(labels or {}))
    return replace(registry, tenants={**registry.tenants, name: tenant}), tenant


#: why a quarantined subnet stays so when nobody looked at Nomad
NOT_CHECKED = "it was not checked whether tasks still hold addresses in it"


def plan_delete(registry: Registry, name: str) -> Registry:
    """The registry without tenant ``name``, its subnet free at once (only for a subnet that
    certainly holds no task: :func:`plan_retire` is the safe way)."""
    registry.get(name)
    return replace(registry, tenants={k: v for k, v in registry.tenants.items() if k != name})


def plan_retire(registry: Registry, name: str, *, deleted: str) -> tuple[Registry, Tenant]:
    """The registry without tenant ``name`` and with its subnet quarantined, and the tenant."""
    tenant = registry.get(name)
    quarantine = Quarantine(tenant.subnet, name, deleted)
    return replace(plan_delete(registry, name), quarantined={
        **registry.quarantined, tenant.subnet: quarantine}), tenant


def plan_release(registry: Registry, subnets: Collection[IPv4Network]) -> Registry:
    """The registry with the quarantine of ``subnets`` lifted (those not quarantined: no-op)."""
    if not any(subnet in registry.quarantined for subnet in subnets):
        return registry
    return replace(registry, quarantined={k: v for k, v in registry.quarantined.items()
                                          if k not in set(subnets)})


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
