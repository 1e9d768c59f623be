"""The tenancy contract between ``weavenomad run`` and the reconciler: where a job's tasks are
meant to run (a :class:`TenantTarget`) and the job meta keys that record it. ``run`` writes the
keys into every job it submits; the reconciler reads them back to audit each task's address.
And the private names under which ``run`` has Nomad register a job's services, which the
reconciler reads back to give its twins the public ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network

from weavenomad.tenancy import weavecidr

#: job meta: the tenant's name (or the spec, net:CIDR / net:default, when given directly)
META_TENANT = "weavenomad.tenant"
#: job meta: the tenant's subnet, or "default" for Weave's default subnet
META_SUBNET = "weavenomad.subnet"


@dataclass(frozen=True)
class TenantTarget:
    """Where tasks go. ``subnet`` None means Weave's default subnet."""

    label: str  # the tenant name, or the spec (net:CIDR / net:default) when given directly
    subnet: IPv4Network | None
    default_subnet: IPv4Network | None = None

    @property
    def weave_cidr(self) -> str:
        return weavecidr.for_subnet(self.subnet) if self.subnet else weavecidr.DEFAULT_TOKEN

    @property
    def subnet_text(self) -> str:
        return str(self.subnet) if self.subnet else "default"


# --------------------------------------------------------------------------------------------
# Nomad's own service, held under a private name (docs/design.md, "Every read path")

#: a service's meta: the name consumers ask for, which only the reconciler's twins carry
META_SERVICE = "weavenomad-service"
#: what ``run`` puts before a service's name, so that Nomad registers it under a name nobody
#: asks for (and a DNS-valid one: Nomad checks service names against RFC 1123, 63 characters)
HIDDEN_PREFIX = "weavenomad-hidden-"
#: what ``run`` puts before each of a service's tags (and canary tags), so that no tag-driven
#: router (Fabio's ``urlprefix-``, Traefik's ``traefik.``) reads Nomad's instance
HIDDEN_TAG_PREFIX = "weavenomad-hidden:"
#: Nomad's longest service name (RFC 1123 label), checked before interpolation
MAX_SERVICE_NAME = 63


def hidden_name(name: str) -> str:
    """The private name of public service ``name``: the prefix and the name, shortened with a
    hash of it when that would exceed Nomad's 63 characters. A name Nomad interpolates
    (``${…}``) keeps its full form, so that the registered name is the prefix and the
    interpolated public name (the reconciler relies on that). Pure."""
    hidden = HIDDEN_PREFIX + name
    if len(hidden) <= MAX_SERVICE_NAME or "${" in name:
        return hidden
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    head = hidden[:MAX_SERVICE_NAME - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}"


def held_public_name(name: str, meta: Mapping[str, str] | None) -> str | None:
    """The public name of a service registered in Consul as ``name`` with ``meta``, when
    ``run`` held it under its private name (its twin answers for the public name); else None.
    Pure."""
    public = (meta or {}).get(META_SERVICE)
    return str(public) if public and name.startswith(HIDDEN_PREFIX) else None


def hidden_tag(tag: str) -> str:
    """A tag of Nomad's own (held) service: prefixed, so that no tag-driven router reads it."""
    return tag if tag.startswith(HIDDEN_TAG_PREFIX) else HIDDEN_TAG_PREFIX + tag


def public_tag(tag: str) -> str:
    """The tag a held service's twin carries."""
    return tag.removeprefix(HIDDEN_TAG_PREFIX)
