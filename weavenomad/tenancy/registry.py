"""The tenant registry in Consul KV: reads, and writes by check-and-set with bounded retries.

Every write is read -> decide (a pure function of :mod:`weavenomad.tenancy.model`) -> write with
``cas=<ModifyIndex read>``. When another writer got there first, Consul answers ``false`` and
the whole cycle runs again on fresh data, so concurrent ``tenant create`` calls never receive
the same subnet.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable, Collection, Mapping
from datetime import datetime, timezone
from ipaddress import IPv4Network
from typing import TypeVar

from weavenomad.errors import ConflictError, ValidationError
from weavenomad.tenancy.contract import TenantTarget
from weavenomad.tenancy.model import (
    Cluster,
    Registry,
    Tenant,
    decode_cluster,
    decode_registry,
    encode_registry,
    is_tenant_name,
    plan_create,
    plan_delete,
    plan_record_cluster,
    plan_release,
    plan_retire,
    shown,
)
from weavenomad.tenancy.subnets import check_tenant_subnet
from weavenomad.tenancy.weavecidr import parse_subnet

log = logging.getLogger(__name__)
T = TypeVar("T")

#: attempts of one check-and-set cycle; each lost round means another writer progressed
CAS_ATTEMPTS = 100


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class TenantRegistry:
    def __init__(self, consul, prefix: str = "weavenomad/", *, clock: Callable[[], str] = utc_now,
                 stop: threading.Event | None = None):
        self.consul = consul
        self.prefix = prefix
        self.clock = clock
        self._stop = stop or threading.Event()

    @property
    def cluster_key(self) -> str:
        return self.prefix + "cluster"

    @property
    def tenants_key(self) -> str:
        return self.prefix + "tenants"

    # -- reads -------------------------------------------------------------------------------

    def _read(self, key: str) -> tuple[bytes | None, int]:
        """The value and the ModifyIndex to check-and-set against (0: the key is absent)."""
        _, entry = self.consul.kv_get(key)
        if entry is None:
            return None, 0
        return entry.get("Value"), int(entry["ModifyIndex"])

    def cluster(self) -> Cluster | None:
        return decode_cluster(self._read(self.cluster_key)[0], self.cluster_key)

    def require_cluster(self) -> Cluster:
        cluster = self.cluster()
        if cluster is None:
            raise ValidationError(
                "the Weave range is not recorded in the registry yet",
                hint="run 'weavenomad bootstrap', or pass --ipalloc-range and --default-subnet",
            )
        return cluster

    def load(self) -> Registry:
        return decode_registry(self._read(self.tenants_key)[0], self.tenants_key)

    # -- writes ------------------------------------------------------------------------------

    def _cas_cycle(self, key: str, decide: Callable[[bytes | None], tuple[bytes | None, T]]) -> T:
        """Run read -> decide -> check-and-set until it sticks. ``decide`` returns the bytes to
        write (None: nothing to write) and the result to hand back."""
        for attempt in range(1, CAS_ATTEMPTS + 1):
            raw, index = self._read(key)
            new, result = decide(raw)
            if new is None or self.consul.kv_put(key, new, cas=index):
                return result
            log.debug("check-and-set on %s lost round %d; retrying", key, attempt)
            # a little jitter spreads writers that collided so the next round has a winner
            if self._stop.wait(random.uniform(0.001, 0.02 * min(attempt, 5))):
                break
        raise ConflictError(
            f"gave up writing Consul key {key}: {CAS_ATTEMPTS} check-and-set rounds lost to "
            "other writers", hint="try again"
        )

    def record_cluster(self, wanted: Cluster) -> bool:
        """Record the range and default subnet; True if written, False if already so."""

        def decide(raw: bytes | None) -> tuple[bytes | None, bool]:
            change = plan_record_cluster(decode_cluster(raw, self.cluster_key), wanted)
            if change is None:
                return None, False
            return json.dumps(change.to_json(), sort_keys=True).encode(), True

        return self._cas_cycle(self.cluster_key, decide)

    def create(self, name: str, *, cidr: IPv4Network | None = None, prefix_len: int = 24,
               description: str = "", labels: dict[str, str] | None = None,
               released: Collection[IPv4Network] = (),
               held: Mapping[IPv4Network, str] | None = None) -> Tenant:
        """Add a tenant; quarantined subnets in ``released`` are freed in the same write
        (:func:`~weavenomad.tenancy.model.plan_create`)."""
        cluster = self.require_cluster()
        created = self.clock()

        def decide(raw: bytes | None) -> tuple[bytes, Tenant]:
            registry, tenant = plan_create(
                decode_registry(raw, self.tenants_key), cluster, name, created=created,
                cidr=cidr, prefix_len=prefix_len, description=description, labels=labels,
                released=released, held=held,
            )
            return encode_registry(registry), tenant

        return self._cas_cycle(self.tenants_key, decide)

    def delete(self, name: str) -> Tenant:
        """Remove a tenant and free its subnet at once; :meth:`retire` is the safe way while
        tasks may still hold addresses in it."""
        def decide(raw: bytes | None) -> tuple[bytes, Tenant]:
            registry = decode_registry(raw, self.tenants_key)
            tenant = registry.get(name)
            return encode_registry(plan_delete(registry, name)), tenant

        return self._cas_cycle(self.tenants_key, decide)

    def retire(self, name: str) -> Tenant:
        """Remove a tenant and quarantine its subnet."""
        deleted = self.clock()

        def decide(raw: bytes | None) -> tuple[bytes, Tenant]:
            registry, tenant = plan_retire(decode_registry(raw, self.tenants_key), name,
                                           deleted=deleted)
            return encode_registry(registry), tenant

        return self._cas_cycle(self.tenants_key, decide)

    def release(self, subnets: Collection[IPv4Network]) -> None:
        """Lift the quarantine of ``subnets`` (found free of tasks)."""
        def decide(raw: bytes | None) -> tuple[bytes | None, None]:
            registry = decode_registry(raw, self.tenants_key)
            released = plan_release(registry, subnets)
            return (None if released is registry else encode_registry(released)), None

        self._cas_cycle(self.tenants_key, decide)


#: what --tenant takes, for the hints of a spec that is none of it
SPEC_FORMS = "net:CIDR, net:default or a tenant name (weavenomad tenant list)"


def check_spec(spec: str, registry: Registry) -> None:
    """Refuse a ``--tenant`` that cannot be meant as given, saying what was probably meant: an
    empty one, a bare CIDR or address (``net:`` forgotten), or a name no tenant could have.
    Pure."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValidationError("--tenant is empty", hint=f"give {SPEC_FORMS}")
    if spec.startswith("net:"):
        return
    bare = spec.strip()
    if "/" in bare or bare.replace(".", "").isdigit():
        try:
            subnet = parse_subnet(bare, what="--tenant")
        except ValidationError:
            raise ValidationError(f"--tenant {shown(spec)} is not a tenant name",
                                  hint="give a subnet as net:CIDR, such as net:10.32.1.0/24"
                                  ) from None
        owner = registry.owner_of(subnet)
        owned = f" (tenant {owner.name}'s subnet)" if owner else ""
        raise ValidationError(f"--tenant {shown(spec)} is not a tenant name",
                              hint=f"did you mean net:{subnet}{owned}?")
    if not is_tenant_name(spec):
        lower = bare.lower()
        hint = f"did you mean {lower}?" if lower in registry.tenants else f"give {SPEC_FORMS}"
        raise ValidationError(
            f"--tenant {shown(spec)} is not a tenant name: names are lowercase letters, digits "
            "and '-', at most 63 characters", hint=hint)


def resolve_target(spec: str, registry: Registry, cluster: Cluster) -> TenantTarget:
    """Turn ``--tenant`` (``net:CIDR``, ``net:default`` or a tenant name) into a target.

    A raw ``net:CIDR`` must lie in the Weave range, off the default subnet, and either be
    exactly one tenant's subnet (it then counts as that tenant) or overlap none.
    """
    check_spec(spec, registry)
    if spec == "net:default":
        return TenantTarget(spec, None, cluster.default_subnet)
    if spec.startswith("net:"):
        subnet = parse_subnet(spec[4:], what="--tenant subnet")
        owner = registry.owner_of(subnet)
        if owner is not None:
            return TenantTarget(owner.name, subnet, cluster.default_subnet)
        quarantine = registry.quarantine_of(subnet)
        if quarantine is not None:
            raise ConflictError(f"subnet {quarantine.subnet} is quarantined: "
                                f"{quarantine.describe()}", hint="choose another subnet")
        check_tenant_subnet(subnet, cluster.ipalloc_range, cluster.default_subnet,
                            registry.subnets())
        return TenantTarget(spec, subnet, cluster.default_subnet)
    tenant = registry.get(spec)
    return TenantTarget(tenant.name, tenant.subnet, cluster.default_subnet)
