"""Job files without a Nomad server: HCL text -> Nomad's canonical JSON job, and back.

* :func:`parse_job` -- what Nomad 1.0's ``/v1/jobs/parse`` answers for a job file
  (``canonical=True`` is ``Canonicalize: true``); the lab's simulated Nomad and the offline
  ``weavenomad render`` use it.
* :func:`load_job_file` -- the same, reading the job file and var files from disk.
* :func:`render_hcl` -- a JSON job as an HCL job file that parses back to the same job.
* :func:`offline_limits` -- what cannot be evaluated without a Nomad, in one sentence.

Errors are :class:`JobspecError` (a :class:`weavenomad.errors.ValidationError`) whose message
starts with ``FILE:LINE:COL``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from weavenomad.errors import ValidationError
from weavenomad_lab.nomad.jobspec.canonical import canonicalize
from weavenomad_lab.nomad.jobspec.emit import render_hcl
from weavenomad_lab.nomad.jobspec.hcl import parse_job
from weavenomad_lab.nomad.jobspec.schema import JobspecError, Pos


def offline_limits() -> str:
    """One sentence naming what offline parsing cannot evaluate (for ``render --help``); each
    of these raises :class:`JobspecError` naming the construct and its position."""
    from weavenomad_lab.nomad.jobspec import schema

    structs = (schema.JOB, schema.GROUP, schema.TASK, schema.SERVICE, schema.RESOURCES)
    blocks = sorted({name for struct in structs for name in struct.unsupported} - {"task"})
    return ("Offline parsing cannot evaluate function calls, for expressions, splats, "
            "template directives (%{ }), dynamic blocks, or these blocks and arguments: "
            + ", ".join(blocks) + ". Runtime interpolations such as ${NOMAD_ALLOC_ID} or "
            "${attr.kernel.name} are kept verbatim, as Nomad keeps them.")


def load_job_file(
    path: str | Path,
    *,
    variables: Mapping[str, str] | None = None,
    var_files: Iterable[str | Path] = (),
    env: Mapping[str, str] | None = None,
    canonical: bool = True,
) -> dict[str, Any]:
    """Read a job file (and var files) and parse it like :func:`parse_job`."""

    def read(p: str | Path) -> str:
        try:
            return Path(p).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ValidationError(f"cannot read {p}: {err}",
                                  hint="check the path and that it is a UTF-8 text file") from None

    texts = {str(p): read(p) for p in var_files}
    return parse_job(read(path), str(path), variables=variables, var_files=texts, env=env,
                     canonical=canonical)


__all__ = ["JobspecError", "Pos", "canonicalize", "load_job_file", "offline_limits", "parse_job",
           "render_hcl"]
