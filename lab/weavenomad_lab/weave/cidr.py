"""How Weave 2.8.1 reads the addresses it is given: ``WEAVE_CIDR`` at its Docker API proxy, the
``<addr>`` arguments of ``weave expose``/``hide``, and the CIDRs of its HTTP API. Pure, no I/O.

This is the lab's own reading, written from Weave's behaviour. It is deliberately not the
product's ``weavenomad.tenancy.weavecidr``: that is code the lab exists to test, and an emulated
Weave that answered with the product's own parser would prove nothing. Where Weave is more
lenient than the product, or words an error differently, this module follows Weave.

Weave's parsers, as the lab reproduces them:

* Go's ``net.ParseCIDR`` (the proxy, before it calls the IPAM): ``<ip>/<n>``, ``n`` decimal
  digits up to the address length (``/024`` is ``/24``), host bits allowed; IPv6 parses too.
  Failure: ``invalid CIDR address: <text>``. Octets with leading zeros are refused, as Go
  does since 1.17 (a Weave built with an older Go read them as decimal; nothing relies on it).
* ``address.ParseCIDR`` (the IPAM's HTTP handlers): the same, IPv4 only:
  ``invalid Non-IPv4 address not supported: <text>``.
* ``ipam.ParseCIDRSubnet`` (a subnet to allocate in, ``--ipalloc-range``): no host bits
  (``invalid subnet - bits after network prefix are not all zero: <text>``) and at least
  :data:`MIN_SUBNET_SIZE` addresses (``invalid subnet - smaller than minimum size 4: <text>``;
  this one is reported when both apply).

The proxy (``proxy.go`` ``weaveCIDRs``/``allocateCIDRs``) takes the first ``WEAVE_CIDR=``
entry of the container's environment; exactly ``none`` leaves the container alone, anything
else is split at whitespace, nothing meaning ``net:default``. Per token: ``net:default``
allocates in the default subnet; ``net:<cidr>`` allocates in the network of ``<cidr>`` (host
bits are dropped: ``net:10.32.1.5/24`` allocates in 10.32.1.0/24); ``ip:<cidr>`` and any other
token claim that exact address. A failure names the token Go-quoted (``for "<token>": ...``);
what the IPAM's HTTP API refused reads ``for "<token>": 400 Bad Request: <its answer>``.

The ``weave`` script (``collect_cidr_args``) takes leading arguments that look like
``[ip:|net:]a.b.c.d/n`` (1-3 digits an octet, 1-2 digits a prefix) or are ``net:default``, and
drops an ``ip:`` prefix; what the IPAM's HTTP API then answers is what the script prints.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import (
    AddressValueError,
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
)

from weavenomad.errors import ValidationError, WeavenomadError

ENV_NAME = "WEAVE_CIDR"
NONE = "none"
DEFAULT_NET = "net:default"
#: ``ipam.MinSubnetSize``: a subnet's first and last address are never handed out
MIN_SUBNET_SIZE = 4
#: how the IPAM's HTTP API refusing a request reads in the proxy's error (Go's ``resp.Status``)
BAD_REQUEST = "400 Bad Request: "

#: the script's "far from precise, but good enough" address pattern
_SCRIPT_CIDR = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}/[0-9]{1,2}")


@dataclass(frozen=True)
class AddressRequest:
    """One address wanted: allocated in ``subnet``, claimed exactly (``address``), or, with
    neither, allocated in the default subnet (``net:default``). ``token`` is as written."""

    token: str
    subnet: IPv4Network | None = None
    address: IPv4Interface | None = None


# -- Weave's parsers ------------------------------------------------------------------------


def _invalid_cidr(text: str) -> ValidationError:
    return ValidationError(f"invalid CIDR address: {text}")


def _ipv4(text: str) -> IPv4Address | None:
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isascii() and p.isdigit() for p in parts):
        return None
    try:
        return IPv4Address(text)  # refuses octets over 255 and leading zeros
    except AddressValueError:
        return None


def _ipv6(text: str) -> IPv6Address | None:
    if "%" in text:  # Go's ParseCIDR takes no zone
        return None
    try:
        return IPv6Address(text)
    except AddressValueError:
        return None


def go_parse_cidr(text: str) -> IPv4Interface | IPv6Interface:
    """Go's ``net.ParseCIDR``: an address with its prefix length."""
    address, slash, prefix = text.partition("/")
    ip = _ipv4(address) or _ipv6(address)
    if not slash or ip is None or not (prefix.isascii() and prefix.isdigit()):
        raise _invalid_cidr(text)
    length = int(prefix)
    if length > ip.max_prefixlen:
        raise _invalid_cidr(text)
    interface = IPv4Interface if isinstance(ip, IPv4Address) else IPv6Interface
    return interface(f"{ip}/{length}")


def parse_cidr(text: str) -> IPv4Interface:
    """``address.ParseCIDR``: an IPv4 address with its prefix length (``ip:``, claims)."""
    parsed = go_parse_cidr(text)
    if not isinstance(parsed, IPv4Interface):
        raise ValidationError(f"invalid Non-IPv4 address not supported: {text}")
    return parsed


def parse_subnet(text: str) -> IPv4Network:
    """``ipam.ParseCIDRSubnet``: a subnet to allocate in."""
    cidr = parse_cidr(text)
    network = cidr.network
    if network.num_addresses < MIN_SUBNET_SIZE:
        raise ValidationError(
            f"invalid subnet - smaller than minimum size {MIN_SUBNET_SIZE}: {text}"
        )
    if cidr.ip != network.network_address:
        raise ValidationError(
            f"invalid subnet - bits after network prefix are not all zero: {text}",
            hint=f"did you mean {network}?",
        )
    return network


def parse_ip(text: str) -> IPv4Address:
    """``address.ParseIP``: one address (``DELETE /ip/<id>/<ip>``)."""
    ip = _ipv4(text)
    if ip is None:
        raise ValidationError(f"invalid IP Address: {text}")
    return ip


# -- the proxy: WEAVE_CIDR ------------------------------------------------------------------


def weave_cidr_value(env: Iterable[str] | None) -> str | None:
    """The value of the first ``WEAVE_CIDR=`` entry of a Docker ``Env`` list, or None."""
    prefix = ENV_NAME + "="
    for entry in env or ():
        if entry.startswith(prefix):
            return entry[len(prefix):]
    return None


def go_quote(text: str) -> str:
    """Go's ``%q`` of a token (printable text: quotes and backslashes escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def for_token(token: str, reason: str) -> str:
    """How the proxy words a failure for one ``WEAVE_CIDR`` token."""
    return f"for {go_quote(token)}: {reason}"


def proxy_request(token: str) -> AddressRequest:
    """What the proxy asks the IPAM for one ``WEAVE_CIDR`` token, after Go's parse on its side
    and the API's parse on the IPAM's side; raises :class:`ValidationError` in Weave's words."""
    if token == DEFAULT_NET:
        return AddressRequest(token)
    subnet = token.startswith("net:")
    try:
        parsed = go_parse_cidr(token[4:] if subnet else token.removeprefix("ip:"))
    except ValidationError as exc:
        raise ValidationError(for_token(token, exc.message)) from None
    # what the proxy sends the IPAM: the network (host bits cleared), or the exact address
    sent = str(parsed.network if subnet else parsed)
    try:
        if subnet:
            return AddressRequest(token, subnet=parse_subnet(sent))
        return AddressRequest(token, address=parse_cidr(sent))
    except ValidationError as exc:
        raise ValidationError(for_token(token, BAD_REQUEST + exc.message)) from None


def api_answer(request: AddressRequest, exc: WeavenomadError) -> str:
    """The body of the IPAM's HTTP answer refusing ``request`` (a full subnet, a taken
    address): the refusal, for a claim after ``Unable to claim:`` as Weave's handler words it."""
    return f"Unable to claim: {exc.one_line()}" if request.address else exc.one_line()


def ipam_refusal(request: AddressRequest, exc: WeavenomadError) -> WeavenomadError:
    """The IPAM's refusal of ``request`` as the proxy reports it. Same error class, so exit
    codes stay what the IPAM chose."""
    return type(exc)(for_token(request.token, BAD_REQUEST + api_answer(request, exc)))


# -- the weave script: expose / hide arguments ----------------------------------------------


def looks_like_cidr(arg: str) -> bool:
    """The script's ``is_cidr``."""
    return _SCRIPT_CIDR.fullmatch(arg) is not None


def collect_cidr_args(args: list[str]) -> tuple[list[str], list[str]]:
    """The script's ``collect_cidr_args``: the leading address arguments (``ip:`` dropped) and
    what follows them."""
    collected = []
    for at, arg in enumerate(args):
        if arg != DEFAULT_NET and not any(
            looks_like_cidr(arg.removeprefix(prefix)) for prefix in ("", "ip:", "net:")
        ):
            return collected, args[at:]
        collected.append(arg.removeprefix("ip:"))
    return collected, []


def script_request(arg: str) -> AddressRequest:
    """One collected ``weave expose``/``hide`` argument as the IPAM's HTTP API reads it:
    ``net:...`` asks for a subnet (``ParseCIDRSubnet``), anything else claims an address
    (``address.ParseCIDR``)."""
    if arg == DEFAULT_NET:
        return AddressRequest(arg)
    if arg.startswith("net:"):
        return AddressRequest(arg, subnet=parse_subnet(arg[4:]))
    return AddressRequest(arg, address=parse_cidr(arg))
