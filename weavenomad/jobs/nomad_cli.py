"""A local ``nomad`` CLI as the job evaluator where Nomad's API cannot be one.

``nomad job run -output [-var K=V]... [-var-file F]... JOBFILE`` evaluates a job file the way
``nomad job run`` does (variables, locals, functions, dynamic blocks) and prints ``{"Job": …}``
without contacting a server (Nomad 1.0 and later). ``weavenomad run`` uses it when the cluster's
Nomad ignores job variables in ``/v1/jobs/parse`` (Nomad 1.0 does); ``weavenomad render`` for
``-o json``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping, Sequence

from weavenomad.clients.errors import summarize
from weavenomad.errors import BackendError, ValidationError

#: evaluating a job file is local work; a CLI that needs longer is stuck
EVALUATE_TIMEOUT = 60.0
INSTALL_HINT = "install the nomad CLI (any version from 1.0; it needs no server for this)"


def find() -> str | None:
    """The ``nomad`` executable on PATH, if any."""
    return shutil.which("nomad")


def output_argv(nomad: str, path: str, variables: Mapping[str, str],
                var_files: Sequence[str]) -> list[str]:
    argv = [nomad, "job", "run", "-output"]
    for name, text in variables.items():
        argv += ["-var", f"{name}={text}"]
    for var_file in var_files:
        argv += ["-var-file", var_file]
    # a path starting with "-" would read as a flag, and "-" alone as standard input
    return argv + ["./" + path if path.startswith("-") else path]


def job_output(nomad: str, path: str, variables: Mapping[str, str] | None = None,
               var_files: Sequence[str] = (), timeout: float = EVALUATE_TIMEOUT) -> dict:
    """The job as ``nomad job run -output`` prints it; every failure is one line naming
    ``path``."""
    argv = output_argv(nomad, path, variables or {}, var_files)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise BackendError(f"{path}: 'nomad job run -output' did not finish within "
                           f"{timeout:g}s", backend="nomad") from None
    except OSError as exc:
        raise BackendError(f"{path}: cannot run {nomad}: {exc.strerror}",
                           backend="nomad") from None
    if done.returncode != 0:
        detail = summarize(done.stderr.strip() or done.stdout.strip()) or f"exit {done.returncode}"
        raise ValidationError(f"{path}: the nomad CLI cannot evaluate it: {detail}")
    try:
        job = json.loads(done.stdout).get("Job")
    except (ValueError, AttributeError, RecursionError):
        job = None
    if not isinstance(job, dict):
        raise ValidationError(f"{path}: 'nomad job run -output' printed no job: "
                              f"{summarize(done.stdout) or 'nothing'}")
    return job
