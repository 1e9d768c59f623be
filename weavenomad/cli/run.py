"""``weavenomad run`` and ``weavenomad render``: jobs in a tenant's Weave subnet."""

from __future__ import annotations

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


class _Reporter:
    """Plain lines, except on a terminal, where deployment progress updates in place."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty()
        self._progress_shown = False

    def __call__(self, line: str) -> None:
        from weavenomad.cli.redaction import hide

        line = hide(line)
        progress = self.live and line.startswith("deployment ") and ": desired " in line
        if self._progress_shown:
            self.stream.write("\r\033[K" if progress else "\n")
        self.stream.write(line if progress else line + "\n")
        self.stream.flush()
        self._progress_shown = progress


@click.command()
@click.argument("jobfile", type=click.Path())  # read_text names a directory in one line
@click.option("--tenant", "tenant_spec", required=True, metavar="SPEC", help=TENANT_HELP)
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE",
              callback=key_value_pairs, help="An HCL2 job variable (repeatable).")
@click.option("--var-file", "var_files", multiple=True, type=click.Path(dir_okay=False),
              help="A file of HCL2 job variables (repeatable).")
@click.option("--check-index", type=int, help="Register only if the job's modify index is this "
              "(0: only if the job does not exist), as nomad job run -check-index.")
@click.option("--detach", is_flag=True, help="Return after registration, without watching.")
@click.option("--dry-run", is_flag=True,
              help="Print the transformed job and its diff with the running one; register nothing.")
@click.option("--timeout", type=float, default=600.0, show_default=True,
              help="Seconds to watch the evaluation and deployment.")
@connection_options
@output_options
def run(jobfile, tenant_spec, variables, var_files, check_index, detach, dry_run, timeout):
    """Run JOBFILE with every Docker task in the tenant's Weave subnet.

    Parses the job with Nomad's own parser, sets WEAVE_CIDR on every Docker task, removes
    network_mode = "weave" (the Weave proxy ignores containers on named networks), records the
    tenant in the job's meta, refuses tasks that would land outside the tenant, then registers
    and watches the job like 'nomad job run'. Exit codes: 0 success, 2 placement failures or a
    failed deployment, 1 error.

    --var/--var-file go to Nomad's parser with the job. A Nomad whose parser ignores them
    (Nomad 1.0) would quietly use the variables' defaults; there a local nomad CLI evaluates
    the job instead ('nomad job run -output', no server involved), and without one the run is
    refused before anything is registered.
    """
    from weavenomad.clients import nomad_client
    from weavenomad.jobs import submit
    from weavenomad.tenancy.operations import registry_for

    app = app_context()
    options = submit.RunOptions(
        path=jobfile, tenant=tenant_spec, variables=variables,
        var_files=var_files, check_index=check_index, detach=detach, dry_run=dry_run,
        timeout=timeout,
    )
    code = submit.run(nomad_client(app.settings), registry_for(app.settings), options,
                      _Reporter())
    click.get_current_context().exit(int(code))


@click.command()
@click.argument("jobfile", type=click.Path())  # read_text names a directory in one line
@click.option("--tenant", "tenant_spec", required=True, metavar="SPEC", help=TENANT_HELP)
@click.option("-o", "--output", "output_format", type=click.Choice(["hcl", "json"]),
              default="hcl", show_default=True)
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE",
              callback=key_value_pairs,
              help="An HCL2 job variable for -o json, evaluated by the nomad CLI (repeatable).")
@click.option("--var-file", "var_files", multiple=True, type=click.Path(dir_okay=False),
              help="A file of HCL2 job variables for -o json, as --var (repeatable).")
@connection_options
@output_options
def render(jobfile, tenant_spec, output_format, variables, var_files):
    """Print JOBFILE transformed for a tenant, without a Nomad server (for GitOps).

    The same checks and changes as 'weavenomad run': WEAVE_CIDR on every Docker task,
    network_mode = "weave" removed, the tenant in the job's meta.

    -o hcl writes JOBFILE itself back with those changes (comments and layout are not kept).
    The file is read with python-hcl2 for what it states literally; it cannot evaluate
    variables, locals, function calls, operators, for expressions or %{ } directives, so these
    stay as written for Nomad to evaluate at submission, and --var/--var-file do not apply (a
    warning says so). What decides where a task runs must therefore be literal: dynamic blocks
    that make groups, tasks, networks, templates or Docker config, and a driver, network_mode,
    privilege, mount, WEAVE_CIDR, network mode or env template that is an expression are
    refused; check such jobs with -o json and a nomad CLI, or with 'weavenomad run --dry-run'.

    -o json prints {"Job": ...}. With a nomad CLI on PATH it is the complete job as 'nomad job
    run -output' evaluates it, with --var/--var-file (no server involved). Without one it holds
    only what weavenomad reads and sets, from literal values (a warning says it is not a
    complete job), and --var/--var-file are refused.

    Nomad's runtime interpolations (${NOMAD_...}, ${attr...}, ${meta...}, ${node...}, ${env...})
    stay verbatim. A JSON job file (.json) is read as Nomad's JSON job, for -o json. net:CIDR
    and net:default need no server; a tenant name is looked up in Consul.
    """
    from weavenomad.jobs import render as render_job

    app = app_context()
    click.echo(render_job.render(
        app.settings, jobfile, tenant_spec, output_format,
        variables=variables, var_files=var_files,
        warn=lambda text: click.echo(f"warning: {text}", err=True),
    ), nl=False)
