"""The tenancy contract between ``weavenomad run`` and the reconciler: where a job's tasks are
meant to run (a :class:`TenantTarget`) and the job meta keys that record it. ``run`` writes the
keys into every job it submits; the reconciler reads them back to audit each task's address.
"""

from __future__ import annotations

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
