"""``weavenomad run``, ``plan`` and ``render``: jobs in a tenant's Weave subnet."""

from __future__ import annotations

import json
import sys

import click

from weavenomad.cli.options import (
    app_context,
    connection_options,
    key_value_pairs,
    output_options,
)

TENANT_HELP = ("net:CIDR (a subnet of the Weave range), net:default (Weave's default subnet), "
               "or a tenant name.")


class EventPrinter:
    """Where run's and plan's events go: results on stdout; progress, warnings and hints on
    stderr. With --json every result and progress event is one JSON object on its own line of
    stdout (a plan is one indented document). On a terminal the deployment's table is redrawn
    in place, as Nomad's deployment monitor does; piped, each change is one plain line."""

    def __init__(self, app, json_output: bool = False, out=None, err=None):
        from weavenomad.cli.style import painter

        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.json = json_output
        self.live = not json_output and self.err.isatty()
        self.paint_out = painter(self.out, app.environ)
        self.paint_err = painter(self.err, app.environ)
        self._drawn = 0  # lines of the live block on the terminal now

    def __call__(self, event) -> None:
        from weavenomad.jobs.monitor import HINT, RESULT, WARNING

        if event.stream in (WARNING, HINT):
            self._commit()
            self._write(self.err, [self._warning(line) for line in event.lines]
                        if event.stream == WARNING else event.lines)
        elif self.json:
            indent = 2 if event.kind == "plan" else None
            text = json.dumps(event.to_json(), indent=indent, sort_keys=True, default=str,
                              ensure_ascii=False)
            self._write(self.out, [text])
        elif self.live and event.live:
            self._redraw(event.live)
            if event.stream == RESULT:
                self._commit()
                self._write(self.out, event.styled(self.paint_out))
        else:
            self._commit()
            stream = self.out if event.stream == RESULT else self.err
            paint = self.paint_out if stream is self.out else self.paint_err
            self._write(stream, event.styled(paint))

    def _warning(self, line: str) -> str:
        if line.startswith("warning: "):
            return self.paint_err("warning:", "yellow") + line[len("warning:"):]
        return line

    def _redraw(self, block: tuple[str, ...]) -> None:
        if self._drawn:
            self.err.write(f"\033[{self._drawn}F\033[J")
        self._write(self.err, [self.paint_err(block[0], "bold"), *block[1:]])
        self._drawn = len(block)

    def _commit(self) -> None:
        """What was drawn stays; the next line goes below it."""
        self._drawn = 0

    @staticmethod
    def _write(stream, lines) -> None:
        from weavenomad.cli.redaction import hide

        for line in lines:
            stream.write(hide(line) + "\n")
        stream.flush()


def job_options(func):
    """JOBFILE, --tenant and the job variables, the same for run, plan and render."""
    decorators = (
        click.argument("jobfile", type=click.Path()),  # read_text names a directory
        click.option("--tenant", "tenant_spec", required=True, metavar="SPEC", help=TENANT_HELP),
    )
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def variable_options(var_help: str, file_help: str):
    def decorate(func):
        func = click.option("--var-file", "var_files", multiple=True,
                            type=click.Path(dir_okay=False), help=file_help)(func)
        return click.option("--var", "variables", multiple=True, metavar="NAME=VALUE",
                            callback=key_value_pairs, help=var_help)(func)
    return decorate


RUN_VARIABLES = variable_options("An HCL2 job variable (repeatable).",
                                 "A file of HCL2 job variables (repeatable).")


MOVE_TENANT = click.option(
    "--move-tenant", is_flag=True,
    help="Allow moving a job registered in another tenant into this one: Nomad replaces all "
         "its allocations (refused if it would update any in place). Without it, such a job "
         "is refused.")


def _run(jobfile, tenant_spec, variables, var_files, *, check_index=None, detach=False,
         dry_run=False, timeout=600.0, verbose=False, move_tenant=False) -> None:
    from weavenomad.clients import nomad_client
    from weavenomad.errors import WeavenomadError
    from weavenomad.jobs import plan as plan_view
    from weavenomad.jobs import submit
    from weavenomad.tenancy.operations import registry_for

    app = app_context()
    try:
        options = submit.RunOptions(
            path=jobfile, tenant=tenant_spec, variables=variables, var_files=var_files,
            check_index=check_index, detach=detach, dry_run=dry_run, timeout=timeout,
            verbose=verbose, move_tenant=move_tenant)
        printer = EventPrinter(app, bool(app.flags.get("json_output")))
        code = submit.run(nomad_client(app.settings), registry_for(app.settings), options,
                          printer)
    except WeavenomadError as exc:
        if dry_run:  # nomad job plan's exit code for every error
            exc.exit_code = plan_view.PLAN_ERROR
        raise
    click.get_current_context().exit(int(code))


PLAN_EXIT_CODES = ("Exit codes, as nomad job plan's: 0 no allocation would be created, destroyed, "
                   "migrated or replaced (in-place updates included), 1 some would, 255 error; 64 "
                   "bad flags, 130 interrupted.")


@click.command()
@job_options
@RUN_VARIABLES
@click.option("--check-index", type=click.IntRange(min=0), help="Register only if the job's "
              "modify index is this (0: only if the job does not exist), as nomad job run "
              "-check-index; 'weavenomad plan' prints the index.")
@click.option("--detach", is_flag=True, help="Return after registration, without watching.")
@click.option("--dry-run", is_flag=True,
              help="Show what registering would change, as 'weavenomad plan' does; register "
                   "nothing.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=600.0,
              show_default=True, metavar="SECONDS",
              help="How long to watch the evaluation and deployment (above 0).")
@MOVE_TENANT
@connection_options
@output_options
def run(jobfile, tenant_spec, variables, var_files, check_index, detach, dry_run, timeout,
        move_tenant):
    """Run JOBFILE with every Docker task in the tenant's Weave subnet.

    Parses the job with Nomad's own parser, sets WEAVE_CIDR on every Docker task, removes
    network_mode = "weave" (the Weave proxy ignores containers on named networks), records the
    tenant in the job's meta, refuses tasks that would land outside the tenant, then registers
    and watches the job like 'nomad job run': the registration and the deployment's outcome on
    stdout, progress, warnings and hints on stderr. On a terminal the deployment's table is
    updated in place. --json prints one JSON object per event (registered, evaluation,
    deployment) on its own line.

    Exit codes: 0 success, 1 error, 2 placement failures or a failed deployment, 64 bad flags,
    130 interrupted. With --dry-run, those of 'weavenomad plan'.

    --var/--var-file go to Nomad's parser with the job. A Nomad whose parser ignores them
    (Nomad 1.0) would quietly use the variables' defaults; there a local nomad CLI evaluates
    the job instead ('nomad job run -output', no server involved), and without one the run is
    refused before anything is registered.

    A job already registered in another tenant is refused unless --move-tenant is given; then
    it moves only if Nomad's plan replaces every allocation of its Docker tasks' groups, and
    it is registered against the job modify index that plan saw.
    """
    _run(jobfile, tenant_spec, variables, var_files, check_index=check_index, detach=detach,
         dry_run=dry_run, timeout=timeout, move_tenant=move_tenant)


@click.command()
@job_options
@RUN_VARIABLES
@click.option("-v", "--verbose", is_flag=True, help="Show the fields of added and deleted "
              "jobs, groups and tasks too, as nomad job plan -verbose does.")
@MOVE_TENANT
@connection_options
@output_options
def plan(jobfile, tenant_spec, variables, var_files, verbose, move_tenant):
    """Show what 'weavenomad run' would change, as 'nomad job plan' does; register nothing.

    Nomad's own plan endpoint dry-runs the job as the tenant transform leaves it: the diff
    against the registered version (+ added, - deleted, +/- edited), one line per task group
    with what the scheduler would do to its allocations (create, destroy, in-place update,
    create/destroy update, ignore), "no changes" when nothing would change, the scheduler's
    placement result and the job modify index for 'weavenomad run --check-index'. Fields the
    transform set are marked (weavenomad) and listed with the warnings on stderr. --json
    prints the whole answer with the transformed job.

    A job registered in another tenant is refused (exit 255) as 'run' refuses it, unless
    --move-tenant is given.

    Exit codes, as nomad job plan's: 0 no allocation would be created, destroyed, migrated or
    replaced (in-place updates included), 1 some would, 255 error; 64 bad flags, 130
    interrupted.
    """
    _run(jobfile, tenant_spec, variables, var_files, dry_run=True, verbose=verbose,
         move_tenant=move_tenant)


@click.command()
@job_options
@click.option("-o", "--output", "output_format", type=click.Choice(["hcl", "json"]),
              default="hcl", show_default=True)
@variable_options(
    "An HCL2 job variable for -o json, evaluated by the nomad CLI (repeatable).",
    "A file of HCL2 job variables for -o json, as --var (repeatable).")
@connection_options
@output_options
def render(jobfile, tenant_spec, output_format, variables, var_files):
    """Print JOBFILE transformed for a tenant, without a Nomad server (for GitOps).

    The same checks and changes as 'weavenomad run': WEAVE_CIDR on every Docker task,
    network_mode = "weave" removed, the tenant in the job's meta. The tenant spec is checked
    as run checks it, against the tenant registry in Consul when Consul answers; without it,
    net:CIDR is checked against the configured Weave range (bootstrap.ipalloc_range and
    bootstrap.default_subnet), with a warning when a Consul address was configured.

    -o hcl writes JOBFILE itself back with those changes (comments and layout are not kept).
    The file is read with python-hcl2 for what it states literally; it cannot evaluate
    variables, locals, function calls, operators, for expressions or %{ } directives, so these
    stay as written for Nomad to evaluate at submission, and --var/--var-file do not apply (a
    warning says so). What decides where a task runs must therefore be literal: dynamic blocks
    that make groups, tasks, networks, templates or Docker config, and a driver, network_mode,
    privilege, mount, WEAVE_CIDR, network mode or env template that is an expression are
    refused; check such jobs with -o json and a nomad CLI, or with 'weavenomad plan'.

    -o json prints {"Job": ...}. With a nomad CLI on PATH it is the complete job as 'nomad job
    run -output' evaluates it, with --var/--var-file (no server involved). Without one it holds
    only what weavenomad reads and sets, from literal values (a warning says it is not a
    complete job), and --var/--var-file are refused.

    Nomad's runtime interpolations (${NOMAD_...}, ${attr...}, ${meta...}, ${node...}, ${env...})
    stay verbatim. A JSON job file (.json) is read as Nomad's JSON job, for -o json. Results
    on stdout, warnings on stderr.
    """
    from weavenomad.jobs import render as render_job

    app = app_context()
    click.echo(render_job.render(
        app.settings, jobfile, tenant_spec, output_format,
        variables=variables, var_files=var_files, warn=app.warn,
    ), nl=False)
