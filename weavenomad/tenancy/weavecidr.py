"""``WEAVE_CIDR``: the environment variable that tells the Weave proxy which addresses a
container gets. Pure parsing and validation, no I/O.

The forms are those of Weave Net 2.x (``proxy/proxy.go`` ``weaveCIDRs`` / ``allocateCIDRs``)::

    WEAVE_CIDR=net:10.32.1.0/24          an address allocated from that subnet
    WEAVE_CIDR=net:default               an address from the peer's default subnet
    WEAVE_CIDR=ip:10.32.1.7/24           exactly that address (a claim)
    WEAVE_CIDR=10.32.1.7/24              the same as ip:
    WEAVE_CIDR="net:default net:10.32.1.0/24"   several, space-separated: one address each
    WEAVE_CIDR=                          (empty) like net:default
    WEAVE_CIDR=none                      do not attach the container at all

There is no ``ip:default`` in Weave; it is rejected with a hint. IPv4 only, as Weave's IPAM.
A ``net:`` subnet must have no host bits set and hold at least 4 addresses (Weave never hands
out a subnet's first and last address), as Weave's ``ParseCIDRSubnet`` demands.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network

from weavenomad.errors import ValidationError

ENV_NAME = "WEAVE_CIDR"
NONE = "none"
DEFAULT_TOKEN = "net:default"
#: Weave's IPAM.MinSubnetSize: first and last are excluded, so /31 and /32 hold nothing
MAX_SUBNET_PREFIX = 30

_FORMS = "net:CIDR, ip:CIDR, CIDR, net:default, or the whole value none"


@dataclass(frozen=True)
class AddressRequest:
    """One token of ``WEAVE_CIDR``.

    ``subnet`` set: allocate from that subnet. ``address`` set: claim exactly that address.
    Neither: allocate from the default subnet (``net:default``).
    """

    token: str
    subnet: IPv4Network | None = None
    address: IPv4Interface | None = None

    @property
    def is_default(self) -> bool:
        return self.subnet is None and self.address is None

    @property
    def is_claim(self) -> bool:
        return self.address is not None


@dataclass(frozen=True)
class WeaveCidr:
    """A parsed ``WEAVE_CIDR`` value. ``attach`` False means ``none``; an attach with no
    requests means "one address from the default subnet" (what Weave does then)."""

    attach: bool
    requests: tuple[AddressRequest, ...] = ()

    def effective_requests(self) -> tuple[AddressRequest, ...]:
        """What to allocate: the requests, or one default-subnet request when there are none."""
        if not self.attach:
            return ()
        return self.requests or (AddressRequest(DEFAULT_TOKEN),)

    def value(self) -> str:
        """The text form, as it would go into ``WEAVE_CIDR``."""
        if not self.attach:
            return NONE
        return " ".join(r.token for r in self.requests)


def _prefix_is_a_number(text: str) -> bool:
    """Weave parses with Go's ``net.ParseCIDR``, which takes a prefix length only: Python's
    ``10.32.1.0/255.255.255.0`` netmask (and hostmask) forms would be refused by Weave."""
    prefix = text.partition("/")[2]
    return prefix.isascii() and prefix.isdigit()


def parse_subnet(text: str, *, what: str = "subnet") -> IPv4Network:
    """A subnet Weave accepts for ``net:``: IPv4, no host bits, prefix /0../30."""
    if not isinstance(text, str):
        raise ValidationError(f"invalid {what} {text!r}: expected text such as 10.32.1.0/24")
    try:
        if "/" in text and not _prefix_is_a_number(text):
            raise ValueError(text)
        interface = IPv4Interface(text)
    except (ipaddress.AddressValueError, ipaddress.NetmaskValueError, ValueError):
        raise ValidationError(
            f"invalid {what} {text!r}: expected an IPv4 CIDR such as 10.32.1.0/24"
        ) from None
    if "/" not in text:
        raise ValidationError(f"invalid {what} {text!r}: the prefix length is missing (e.g. /24)")
    network = interface.network
    if interface.ip != network.network_address:
        raise ValidationError(
            f"invalid {what} {text!r}: bits after the network prefix are not all zero "
            f"(did you mean {network}?)"
        )
    if network.prefixlen > MAX_SUBNET_PREFIX:
        raise ValidationError(
            f"invalid {what} {text!r}: smaller than /{MAX_SUBNET_PREFIX} is required, since "
            "the first and last address of a subnet are never used"
        )
    return network


def parse_address(text: str, *, what: str = "address") -> IPv4Interface:
    """An address with its prefix length, as ``ip:`` wants (``10.32.1.7/24``)."""
    if "/" not in text:
        raise ValidationError(
            f"invalid {what} {text!r}: the prefix length is missing (e.g. {text}/24)"
        )
    try:
        if not _prefix_is_a_number(text):
            raise ValueError(text)
        return IPv4Interface(text)
    except (ipaddress.AddressValueError, ipaddress.NetmaskValueError, ValueError):
        raise ValidationError(
            f"invalid {what} {text!r}: expected an IPv4 address with prefix such as 10.32.1.7/24"
        ) from None


def parse_token(token: str) -> AddressRequest:
    """One space-separated part of ``WEAVE_CIDR`` (or of a ``weave expose`` argument)."""
    if token == DEFAULT_TOKEN:
        return AddressRequest(token)
    try:
        if token.startswith("net:"):
            return AddressRequest(token, subnet=parse_subnet(token[4:]))
        if token.startswith("ip:"):
            if token[3:] == "default":
                raise ValidationError("there is no ip:default in Weave; use net:default")
            return AddressRequest(token, address=parse_address(token[3:]))
        if token and token[0].isdigit():
            return AddressRequest(token, address=parse_address(token))
    except ValidationError as exc:
        raise ValidationError(
            f"invalid {ENV_NAME} token {token!r}: {exc.message}", hint=f"use {_FORMS}"
        ) from None
    raise ValidationError(f"invalid {ENV_NAME} token {token!r}", hint=f"use {_FORMS}")


def parse(value: str) -> WeaveCidr:
    """Parse a whole ``WEAVE_CIDR`` value; raises :class:`ValidationError` naming the bad token."""
    if value.strip() == NONE:
        return WeaveCidr(attach=False)
    return WeaveCidr(attach=True, requests=tuple(parse_token(t) for t in value.split()))


def from_env(env: Iterable[str] | None) -> str | None:
    """The raw ``WEAVE_CIDR`` value from a Docker ``Env`` list (``["K=V", ...]``), or None.
    The first entry wins, as in Weave's proxy."""
    prefix = ENV_NAME + "="
    for entry in env or ():
        if entry.startswith(prefix):
            return entry[len(prefix):]
    return None


def for_subnet(subnet: IPv4Network | str) -> str:
    """The ``WEAVE_CIDR`` value that puts a container into ``subnet``."""
    network = subnet if isinstance(subnet, IPv4Network) else parse_subnet(str(subnet))
    return f"net:{network}"


def requested_networks(value: str | None) -> tuple[IPv4Network, ...]:
    """Where the addresses a ``WEAVE_CIDR`` value asks for come from, outside the default
    subnet: a ``net:`` subnet as it is, an ``ip:`` claim as its one address (a /32). ``none``,
    ``net:default`` and an empty or absent value ask for nothing else; a value Weave would
    refuse asks for nothing at all (the proxy does not start such a container)."""
    if value is None:
        return ()
    try:
        parsed = parse(value)
    except ValidationError:
        return ()
    return tuple(request.subnet or IPv4Network(request.address.ip)
                 for request in parsed.effective_requests() if not request.is_default)
