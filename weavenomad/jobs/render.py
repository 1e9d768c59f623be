"""``weavenomad render``: the offline counterpart of ``run`` (no Nomad needed)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

from weavenomad.jobs.transform import apply_tenant
from weavenomad.tenancy import weavecidr
from weavenomad.tenancy.contract import TenantTarget


def offline_target(spec: str, settings) -> TenantTarget:
    """``net:CIDR`` and ``net:default`` resolve without servers; a tenant name needs Consul."""
    if spec == weavecidr.DEFAULT_TOKEN:
        return TenantTarget(spec, None)
    if spec.startswith("net:"):
        return TenantTarget(spec, weavecidr.parse_subnet(spec[4:], what="--tenant subnet"))
    from weavenomad.tenancy.operations import registry_for
    from weavenomad.tenancy.registry import resolve_target

    registry = registry_for(settings)
    return resolve_target(spec, registry.load(), registry.require_cluster())


def render(
    settings,
    path: str,
    spec: str,
    output_format: str,
    *,
    variables: Mapping[str, str],
    var_files: Sequence[str],
    warn: Callable[[str], None],
) -> str:
    from weavenomad_lab.nomad.jobspec import load_job_file, render_hcl

    target = offline_target(spec, settings)
    job = load_job_file(path, variables=variables, var_files=var_files)
    result = apply_tenant(job, target)
    for warning in result.warnings:
        warn(warning)
    if output_format == "json":
        return json.dumps({"Job": result.job}, indent=2, sort_keys=True) + "\n"
    return render_hcl(result.job)
