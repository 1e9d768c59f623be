"""``weavenomad run``: parse a job with Nomad's own parser, put it in a tenant, submit, watch.

Order matters for "nothing half-applied": everything that can fail on bad input (reading the
file, parsing, resolving the tenant, the transform) happens before the one write, the job
registration.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from weavenomad.errors import BackendNotFound, ExitCode, ValidationError
from weavenomad.jobs import nomad_cli
from weavenomad.jobs import plan as plan_view
from weavenomad.jobs.monitor import HINT, RESULT, WARNING, Event, Report, watch
from weavenomad.jobs.move import FLAG, Move, check_replaced, refuse_unasked, tenant_move
from weavenomad.jobs.transform import Change, apply_tenant
from weavenomad.tenancy.contract import TenantTarget


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
    #: a plan shows the fields of added and deleted parts too
    verbose: bool = False
    #: the job may move from the tenant it is registered in to this one
    move_tenant: bool = False

    def __post_init__(self) -> None:
        if not self.timeout > 0:  # also refuses NaN
            raise ValidationError(f"--timeout {self.timeout:g}: expected a number of seconds "
                                  "above 0", hint="--detach returns without watching")


@dataclass(frozen=True)
class Prepared:
    job: dict
    target: TenantTarget
    warnings: tuple[str, ...]
    changes: tuple[Change, ...] = ()
    #: the tenant the registered job leaves (allowed by --move-tenant)
    move: Move | None = None

    @property
    def job_id(self) -> str:
        return str(self.job.get("ID") or self.job.get("Name") or "")

    def tenant_json(self) -> dict:
        return {"tenant": self.target.label, "subnet": self.target.subnet_text,
                "weave_cidr": self.target.weave_cidr}


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
    if not text.strip():
        raise ValidationError(f"job file {options.path} is empty",
                              hint='a job file holds a job "name" { ... } block')
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


def registered_job(nomad, job_id: str) -> dict | None:
    try:
        return nomad.job(job_id)
    except BackendNotFound:
        return None


def prepare(nomad, registry, options: RunOptions) -> Prepared:
    """Parse, resolve the tenant, transform, and refuse a move to another tenant that was not
    asked for. Reads only; raises on any bad input, the tenant spec first (before the job is
    sent anywhere)."""
    from weavenomad.tenancy.registry import check_spec, resolve_target

    tenants = registry.load()
    check_spec(options.tenant, tenants)
    target = resolve_target(options.tenant, tenants, registry.require_cluster())
    job = parse_job(nomad, options)
    result = apply_tenant(job, target)
    prepared = Prepared(result.job, target, result.warnings, result.changes)
    move = tenant_move(registered_job(nomad, prepared.job_id), target)
    if move is not None and not options.move_tenant:
        raise refuse_unasked(move, target)
    return replace(prepared, move=move)


def move_warning(prepared: Prepared) -> str:
    move, target = prepared.move, prepared.target
    return (f"moving job {prepared.job_id} from {move.describe()} to tenant {target.label} "
            f"({target.subnet_text}): Nomad replaces its allocations")


@dataclass(frozen=True)
class PlanResult:
    """The transformed job and Nomad's dry run of it."""

    prepared: Prepared
    answer: dict
    options: RunOptions

    @property
    def exit_code(self) -> int:
        return plan_view.exit_code(self.answer)

    def warnings(self) -> list[str]:
        nomad = plan_view.warning_lines(self.answer.get("Warnings") or "")
        moving = [move_warning(self.prepared)] if self.prepared.move is not None else []
        return [*moving, *self.prepared.warnings, *(f"Nomad: {line}" for line in nomad)]

    def submit_hint(self) -> str:
        """How to register exactly what was planned (``nomad job plan``'s -check-index hint):
        Nomad refuses it if someone changed the job since the plan."""
        index = int(self.answer.get("JobModifyIndex") or 0)
        moving = [FLAG] if self.prepared.move is not None else []
        argv = ["weavenomad", "run", "--check-index", str(index), "--tenant",
                self.options.tenant, *moving, *_variable_args(self.options), self.options.path]
        return ("To register exactly this plan (refused if the job changed since):\n"
                f"  {shlex.join(argv)}")

    def text(self, paint: plan_view.Paint = plan_view.plain, verbose: bool = False) -> str:
        target = self.prepared.target
        return plan_view.plan_text(self.answer, self.prepared.changes,
                                   job_type=str(self.prepared.job.get("Type") or "service"),
                                   tenant=f"{target.label} ({target.subnet_text})",
                                   paint=paint, verbose=verbose)

    def to_json(self) -> dict:
        return {"job_id": self.prepared.job_id, **self.prepared.tenant_json(),
                "moved_from": self.prepared.move.to_json() if self.prepared.move else None,
                "changes": self.exit_code == plan_view.CHANGES,
                "unchanged": plan_view.unchanged(self.answer),
                "exit_code": self.exit_code,
                "transform": [c.to_json() for c in self.prepared.changes],
                "warnings": self.warnings(),
                "job": self.prepared.job, "plan": self.answer}


def _variable_args(options: RunOptions) -> list[str]:
    args = []
    for name, value in dict(options.variables or {}).items():
        args += ["--var", f"{name}={value}"]
    for path in options.var_files:
        args += ["--var-file", path]
    return args


def plan(nomad, registry, options: RunOptions) -> PlanResult:
    """What registering the job would do, from Nomad's own plan endpoint; changes nothing. A
    move to another tenant that Nomad would not carry out by replacing the allocations is
    refused, as ``run`` refuses it."""
    prepared = prepare(nomad, registry, options)
    return PlanResult(prepared, nomad_plan(nomad, prepared), options)


def nomad_plan(nomad, prepared: Prepared) -> dict:
    """Nomad's plan of the prepared job, checked to replace every allocation of a move."""
    answer = nomad.plan_job(prepared.job)
    if prepared.move is not None:
        check_replaced(prepared.move, prepared.job, answer, prepared.target)
    return answer


def _warning(text: str) -> Event:
    return Event("warning", {"warning": text}, (f"warning: {text}",), WARNING)


def run(nomad, registry, options: RunOptions, report: Report) -> ExitCode | int:
    """Register and watch (or, with ``dry_run``, plan) the job; every line goes through
    ``report`` as an :class:`Event`. Returns the exit code."""
    if options.dry_run:
        result = plan(nomad, registry, options)
        for warning in result.warnings():
            report(_warning(warning))
        verbose = options.verbose
        report(Event("plan", result.to_json(), tuple(result.text(verbose=verbose).splitlines()),
                     RESULT, styler=lambda paint: tuple(result.text(paint, verbose)
                                                        .splitlines())))
        report(Event("hint", {}, tuple(result.submit_hint().splitlines()), HINT))
        return result.exit_code
    prepared = prepare(nomad, registry, options)
    job_id = prepared.job_id
    check_index = options.check_index
    if prepared.move is not None:
        # registered only against the job the plan saw, whose allocations all get replaced
        planned = nomad_plan(nomad, prepared)
        if check_index is None:
            check_index = int(planned.get("JobModifyIndex") or 0)
        report(_warning(move_warning(prepared)))
    for warning in prepared.warnings:
        report(_warning(warning))
    answer = nomad.register_job(prepared.job, check_index=check_index)
    nomad_warnings = plan_view.warning_lines(answer.get("Warnings") or "")
    for warning in nomad_warnings:
        report(_warning(f"Nomad: {warning}"))
    eval_id = answer.get("EvalID") or ""
    registered = {"job_id": job_id, **prepared.tenant_json(), "eval_id": eval_id,
                  "job_modify_index": answer.get("JobModifyIndex"),
                  "moved_from": prepared.move.to_json() if prepared.move else None,
                  "warnings": [*prepared.warnings, *nomad_warnings],
                  "transform": [c.to_json() for c in prepared.changes]}
    where = f"tenant {prepared.target.label} ({prepared.target.subnet_text})"
    done = (f"moved job {job_id} from {prepared.move.describe()} to {where}"
            if prepared.move is not None else f"registered job {job_id} in {where}")
    report(Event("registered", registered, (f"{done}; evaluation {eval_id[:8]}",), RESULT))
    if options.detach or not eval_id:
        return ExitCode.OK
    return watch(nomad, job_id, eval_id, report, timeout=options.timeout)
