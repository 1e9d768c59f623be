"""Pure subnet arithmetic for tenants: validate and allocate subnets of the Weave range (parsing
is weavecidr.parse_subnet, one parser for every CIDR).

Rules (the tenant registry enforces them with these functions):
- a tenant subnet lies inside the Weave allocation range;
- it is never the default subnet, nor overlaps it (containers without a tenant live there);
- it never overlaps another tenant's subnet;
- allocation picks the lowest free, aligned subnet of the requested size.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from ipaddress import IPv4Network

from weavenomad.errors import ConflictError, ValidationError

#: smallest sensible tenant subnet: /30 leaves 2 usable addresses, Weave needs room to expose
MAX_PREFIX_LEN = 30


def check_prefix_len(prefix_len: int, weave_range: IPv4Network) -> None:
    if not weave_range.prefixlen < prefix_len <= MAX_PREFIX_LEN:
        raise ValidationError(
            f"invalid prefix length /{prefix_len}: must be longer than the Weave range "
            f"/{weave_range.prefixlen} and at most /{MAX_PREFIX_LEN}",
            hint="--prefix-len",
        )


def check_tenant_subnet(
    subnet: IPv4Network,
    weave_range: IPv4Network,
    default_subnet: IPv4Network,
    tenants: Mapping[str, IPv4Network],
    *,
    name: str | None = None,
) -> None:
    """Raise unless ``subnet`` may be given to tenant ``name`` (other tenants in ``tenants``)."""
    if not subnet.subnet_of(weave_range):
        raise ValidationError(f"subnet {subnet} lies outside the Weave range {weave_range}")
    if subnet.overlaps(default_subnet):
        raise ValidationError(
            f"subnet {subnet} overlaps the default subnet {default_subnet}, which belongs to "
            "containers without a tenant"
        )
    for other, other_subnet in sorted(tenants.items()):
        if other != name and subnet.overlaps(other_subnet):
            raise ConflictError(f"subnet {subnet} overlaps tenant {other!r} ({other_subnet})")


def allocate_subnet(
    weave_range: IPv4Network,
    default_subnet: IPv4Network,
    taken: Iterable[IPv4Network],
    prefix_len: int,
) -> IPv4Network:
    """The lowest aligned ``/prefix_len`` in ``weave_range`` overlapping neither the default
    subnet nor any of ``taken``.

    Walks the sorted occupied intervals once, jumping past each collision to the next aligned
    start, so it stays fast with thousands of tenants and any mix of sizes.
    """
    check_prefix_len(prefix_len, weave_range)
    size = 1 << (32 - prefix_len)
    occupied = sorted(
        (int(n.network_address), int(n.broadcast_address))
        for n in (default_subnet, *taken)
        if n.overlaps(weave_range)
    )
    start = int(weave_range.network_address)
    end = int(weave_range.broadcast_address)
    candidate = start
    for low, high in occupied:
        if candidate + size - 1 < low:
            break  # the candidate fits entirely below this interval
        if high >= candidate:
            # collision (or interval behind us): the next aligned start after it
            candidate = max(candidate, ((high + 1 + size - 1) // size) * size)
    if candidate + size - 1 > end:
        raise ConflictError(
            f"no free /{prefix_len} left in the Weave range {weave_range}",
            hint="delete unused tenants or choose a longer --prefix-len",
        )
    return IPv4Network((candidate, prefix_len))
