"""``weavenomad render``: the offline counterpart of ``run`` (no Nomad server needed).

The same :func:`~weavenomad.jobs.transform.apply_tenant` as ``run`` decides; only where the job
comes from differs:

- ``-o hcl``: the job file as python-hcl2 reads it, literally (:mod:`weavenomad.jobs.hcl_job`);
  the output is the user's own document with the transform's changes, so what Nomad evaluates
  at submission (variables, locals, functions) stays as written for Nomad to evaluate then;
- ``-o json`` with a ``nomad`` CLI on PATH: the complete job as ``nomad job run -output``
  evaluates it (with ``--var``/``--var-file``);
- ``-o json`` without one: the parts of the job the transform reads and sets, from literal
  values only; not a job Nomad can run, and a warning says so.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

from weavenomad.errors import ValidationError
from weavenomad.jobs import hcl_job, hcl_literal, nomad_cli
from weavenomad.jobs.submit import json_job, read_text, variables_flag
from weavenomad.jobs.transform import apply_tenant
from weavenomad.tenancy import weavecidr
from weavenomad.tenancy.contract import TenantTarget

PARTIAL_JSON_WARNING = (
    "without a nomad CLI on PATH, -o json holds only what weavenomad reads and sets (the job's "
    "groups, each task's driver, config, env, templates and networks, the job's meta): it is "
    "not a complete job; install the nomad CLI for the complete one, or use -o hcl")
HCL_VARIABLES_WARNING = (
    "--var/--var-file do not apply to -o hcl: the output keeps var.NAME as written, for Nomad "
    "to evaluate when the job is submitted (give the same variables to nomad job run)")


def offline_target(spec: str, settings, warn: Callable[[str], None]) -> TenantTarget:
    """``--tenant`` checked as ``run`` checks it: against the tenant registry when Consul
    answers. Without it a tenant name cannot be resolved, and ``net:CIDR`` / ``net:default``
    are checked against the configured Weave range (``bootstrap.*`` settings), with a warning
    when a Consul address was configured (flag, environment or file) but did not answer."""
    from weavenomad.errors import BackendError
    from weavenomad.tenancy.model import Cluster, Registry
    from weavenomad.tenancy.operations import registry_for
    from weavenomad.tenancy.registry import check_spec, resolve_target

    check_spec(spec, Registry())  # what needs no registry fails before any connection
    registry = registry_for(settings)
    try:
        tenants, cluster = registry.load(), registry.cluster()
    except BackendError as exc:
        if not spec.startswith("net:"):
            raise
        if "consul.addr" in settings.sources:
            warn(f"cannot read the tenant registry ({exc.one_line()}): {spec} is checked "
                 f"against the configured Weave range {settings.bootstrap.ipalloc_range} only")
        tenants, cluster = Registry(), None
    if cluster is None:
        if not spec.startswith("net:"):
            registry.require_cluster()  # raises as run does
        cluster = Cluster(
            weavecidr.parse_subnet(settings.bootstrap.ipalloc_range,
                                   what="bootstrap.ipalloc_range"),
            weavecidr.parse_subnet(settings.bootstrap.default_subnet,
                                   what="bootstrap.default_subnet"))
    return resolve_target(spec, tenants, cluster)


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
    target = offline_target(spec, settings, warn)
    text = read_text(path)
    if path.endswith(".json"):
        if output_format == "hcl":
            raise ValidationError(f"{path} is a JSON job; -o hcl writes HCL job files back",
                                  hint="use -o json")
        return _as_json(json_job(text, path), path, target, warn)
    if output_format == "hcl":
        if variables or var_files:
            warn(HCL_VARIABLES_WARNING)
        return rendered_hcl(text, path, target, warn)
    cli = nomad_cli.find()
    if cli is not None:
        return _as_json(nomad_cli.job_output(cli, path, variables, var_files), path, target, warn)
    if variables or var_files:
        raise ValidationError(
            f"{variables_flag(variables)}: -o json needs the nomad CLI to evaluate job "
            "variables, and there is none on PATH", hint=f"{nomad_cli.INSTALL_HINT}, or use "
            "-o hcl, which keeps var.NAME for Nomad to evaluate at submission")
    job = hcl_job.read_job(_document(text, path), path)
    hcl_job.require_literal(job, path)
    output = _as_json(job, path, target, warn)
    warn(PARTIAL_JSON_WARNING)
    return output


def _transformed(job: dict, path: str, target: TenantTarget, warn: Callable[[str], None]) -> dict:
    """``run``'s transform, its refusals naming the file."""
    try:
        result = apply_tenant(job, target)
    except ValidationError as exc:
        raise ValidationError(f"{path}: {exc.message}", hint=exc.hint) from None
    for warning in result.warnings:
        warn(warning)
    return result.job


def _as_json(job: dict, path: str, target: TenantTarget, warn: Callable[[str], None]) -> str:
    transformed = _transformed(job, path, target, warn)
    return json.dumps({"Job": transformed}, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _document(text: str, path: str) -> dict:
    if not text.strip():
        raise ValidationError(f"{path} is empty", hint='a job file holds a job "name" { … } block')
    return hcl_literal.parse_document(text, path)


def rendered_hcl(text: str, path: str, target: TenantTarget,
                 warn: Callable[[str], None]) -> str:
    """The job file in ``target``: the user's document with the transform's changes."""
    import hcl2

    document = _document(text, path)
    job = hcl_job.read_job(document, path)
    transformed = _transformed(job, path, target, warn)
    edited = hcl_job.write_back(document, job, transformed)
    written = hcl_literal.tidy(hcl2.dumps(
        edited,
        deserializer_options=hcl2.DeserializerOptions(object_elements_trailing_comma=False)))
    # what python-hcl2 wrote must read back as the edited document and the transformed job,
    # or nothing is printed
    reread = hcl_literal.parse_document(written, path)
    same_document = hcl_job.literal_document(reread) == hcl_job.literal_document(edited)
    if not same_document or (hcl_job.without_expressions(hcl_job.read_job(reread, path))
                             != hcl_job.without_expressions(transformed)):
        raise ValidationError(f"{path}: python-hcl2 did not write the job back faithfully",
                              hint="use -o json with the nomad CLI on PATH")
    source = " ".join(path.split())
    return (f"# {source} for tenant {target.label} ({target.subnet_text}), written by "
            f"weavenomad render\n{written}")
