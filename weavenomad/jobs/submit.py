"""``weavenomad run``: parse a job with Nomad's own parser, put it in a tenant, submit, watch.

Order matters for "nothing half-applied": everything that can fail on bad input (reading the
file, parsing, resolving the tenant, the transform) happens before the one write, the job
registration.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from weavenomad.errors import ExitCode, ValidationError
from weavenomad.jobs import nomad_cli
from weavenomad.jobs.monitor import watch
from weavenomad.jobs.transform import apply_tenant
from weavenomad.tenancy.contract import TenantTarget

#: fields the servers set; a diff against the running job ignores them
SERVER_FIELDS = {
    "CreateIndex", "ModifyIndex", "JobModifyIndex", "SubmitTime", "Status", "StatusDescription",
    "Stable", "Version", "Stop", "NomadTokenID", "VaultToken", "ConsulToken",
}


@dataclass(frozen=True)
class RunOptions:
    path: str
    tenant: str
    variables: Mapping[str, str] = ()  # type: ignore[assignment]
    var_files: Sequence[str] = ()
    check_index: int | None = None
    detach: bool = False
    dry_run: bool = False
    timeout: float = 600.0


@dataclass(frozen=True)
class Prepared:
    job: dict
    target: TenantTarget
    warnings: tuple[str, ...]


def read_text(path: str, what: str = "job file") -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationError(f"cannot read {what} {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValidationError(f"{what} {path} is not UTF-8 text") from None


def json_job(text: str, path: str) -> dict:
    """A job already in Nomad's JSON form (``{"Job": …}`` or the job object itself)."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ValidationError(f"{path}: invalid JSON: {exc}") from None
    except RecursionError:  # the decoder recurses once per nesting level
        raise ValidationError(f"{path}: invalid JSON: nested too deeply") from None
    job = document.get("Job", document) if isinstance(document, dict) else None
    if not isinstance(job, dict):
        raise ValidationError(f"{path}: expected a job object")
    return job


def variables_flag(variables: Mapping[str, str]) -> str:
    """The flag that gave the job's variables, for messages (``--var-file`` when only it)."""
    return "--var" if variables else "--var-file"


def parse_job(nomad, options: RunOptions) -> dict:
    """The JSON job, from Nomad's ``/v1/jobs/parse`` (so every construct the cluster's Nomad
    accepts works). A ``.json`` file is taken as a job already in JSON form.

    Variables go to Nomad with the job when its parse endpoint evaluates them; Nomad 1.0's
    ignores them (and would quietly use the defaults), so there a local ``nomad`` CLI evaluates
    the job instead (``nomad job run -output``, no server involved), or the run is refused.
    """
    text = read_text(options.path)
    if options.path.endswith(".json"):
        return json_job(text, options.path)
    if not (options.variables or options.var_files):
        return nomad.parse_job(text, filename=options.path)
    var_text = "\n".join(read_text(p, "variable file") for p in options.var_files)
    if nomad.parse_evaluates_variables():
        return nomad.parse_job(text, variables=dict(options.variables) or None,
                               var_text=var_text or None, filename=options.path)
    cli = nomad_cli.find()
    if cli is None:
        raise ValidationError(
            f"{variables_flag(options.variables)}: this Nomad's /v1/jobs/parse ignores job "
            "variables (Nomad 1.0 does), and there is no nomad CLI on PATH to evaluate them",
            hint=f"{nomad_cli.INSTALL_HINT}, or give the variables defaults in the job file")
    return nomad_cli.job_output(cli, options.path, options.variables, options.var_files)


def prepare(nomad, registry, options: RunOptions) -> Prepared:
    """Parse, resolve the tenant, transform. Reads only; raises on any bad input."""
    from weavenomad.tenancy.registry import resolve_target

    cluster = registry.require_cluster()
    target = resolve_target(options.tenant, registry.load(), cluster)
    job = parse_job(nomad, options)
    result = apply_tenant(job, target)
    return Prepared(result.job, target, result.warnings)


def job_diff(running: dict | None, new: dict, job_id: str) -> str:
    """A unified diff of the running job and the new one, server-set fields left out."""

    def text(job: dict | None) -> list[str]:
        if job is None:
            return []
        shown = {k: v for k, v in job.items() if k not in SERVER_FIELDS}
        return json.dumps(shown, indent=2, sort_keys=True).splitlines(keepends=True)

    diff = difflib.unified_diff(text(running), text(new), f"{job_id} (running)",
                                f"{job_id} (new)")
    return "".join(diff) or "no changes\n"


def run(nomad, registry, options: RunOptions, report: Callable[[str], None]) -> ExitCode:
    prepared = prepare(nomad, registry, options)
    job = prepared.job
    job_id = job.get("ID") or job.get("Name")
    for warning in prepared.warnings:
        report(f"warning: {warning}")
    if options.dry_run:
        from weavenomad.errors import BackendNotFound

        try:
            running = nomad.job(job_id)
        except BackendNotFound:
            running = None
        report(json.dumps({"Job": job}, indent=2, sort_keys=True))
        report(job_diff(running, job, job_id).rstrip("\n"))
        return ExitCode.OK
    answer = nomad.register_job(job, check_index=options.check_index)
    if answer.get("Warnings"):
        report(f"job warnings: {answer['Warnings'].strip()}")
    eval_id = answer.get("EvalID") or ""
    report(f"registered job {job_id} in tenant {prepared.target.label} "
           f"({prepared.target.subnet_text}); evaluation {eval_id[:8]}")
    if options.detach or not eval_id:
        return ExitCode.OK
    return watch(nomad, job_id, eval_id, report, timeout=options.timeout)
