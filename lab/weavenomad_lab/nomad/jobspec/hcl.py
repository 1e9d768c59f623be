"""Job files (HCL2, as Nomad 1.0's jobspec2 reads them) -> Nomad's JSON job, with no server.

What can be evaluated offline is evaluated the way Nomad does it:

* literals, lists, objects, string templates and heredocs, arithmetic, comparisons and
  conditionals (:mod:`~weavenomad_lab.nomad.jobspec.expressions`);
* ``variable`` / ``variables`` blocks and ``var.x`` with values from defaults, ``NOMAD_VAR_*``,
  var files and ``--var k=v`` (later ones win), and ``locals`` built from those
  (:mod:`~weavenomad_lab.nomad.jobspec.variables`);
* any other name (``${NOMAD_ALLOC_ID}``, ``${attr.kernel.name}``, ``${meta.rack}``) stays the
  literal ``"${...}"`` text, exactly as Nomad keeps runtime interpolations.

What cannot be evaluated offline raises :class:`JobspecError` naming the construct and its
``FILE:LINE:COL``: function calls, ``for`` expressions, splats, template directives
(``%{ if }``), ``dynamic`` blocks, and Nomad blocks outside the supported set (``template``,
``artifact``, ``vault``, ``volume``, ``connect``, ``periodic`` ...).

The text becomes a :class:`~.syntax.Body` (:mod:`.syntax`), which this module decodes by the
tables of :mod:`.schema`; Nomad's defaults come from :mod:`.canonical`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from weavenomad_lab.nomad.jobspec.canonical import canonicalize, complete
from weavenomad_lab.nomad.jobspec.expressions import Evaluator
from weavenomad_lab.nomad.jobspec.schema import (
    ANY,
    BLOCK,
    BLOCK_KINDS,
    BLOCKS,
    CONSTRAINT,
    CONSTRAINT_OPERANDS,
    JOB,
    LMAP,
    NETWORK,
    SMAP,
    STR,
    STRS,
    F,
    JobspecError,
    Pos,
    Struct,
    convert,
    plain,
)
from weavenomad_lab.nomad.jobspec.syntax import (
    Block,
    Body,
    build_body,
    kids,
    parse_expression,
    parse_tree,
)
from weavenomad_lab.nomad.jobspec.variables import resolve_variables

# -- decoding an evaluated body by the schema -------------------------------------------------


def _reject(pos: Pos, struct: Struct, name: str, is_block: bool) -> None:
    if name in struct.unsupported or (is_block and name in ("dynamic",)):
        raise JobspecError(
            pos, "Unsupported construct",
            f'"{name}" in a {struct.name} block is valid Nomad but weavenomad cannot evaluate '
            "it offline; submit the job through a reachable Nomad (--nomad-addr)")
    if is_block:
        raise JobspecError(pos, "Unsupported block type",
                           f'Blocks of type "{name}" are not expected here')
    raise JobspecError(pos, "Unsupported argument",
                       f'An argument named "{name}" is not expected here')


def decode_config(body: Body) -> dict[str, Any]:
    """A driver ``config`` body as Nomad's jobspec2 reads it (hclutil.BlocksAsAttrs): nested
    blocks become lists of maps, labels nest maps, and an attribute written as an object
    literal becomes a one-element list."""
    out: dict[str, Any] = {}
    for name, attr in body.attrs.items():
        value = plain(attr.evaluate())
        out[name] = [value] if attr.object_literal else value
    for block in body.blocks:
        if block.type in body.attrs:
            raise JobspecError(block.pos, "Duplicate argument",
                               f'"{block.type}" is set both as an argument and as a block')
        value = decode_config(block.body)
        for label in reversed(block.labels):
            value = {label: [value]}
        out.setdefault(block.type, []).append(value)
    return out


def _decode_map(field_: F, body: Body) -> dict[str, Any]:
    for block in body.blocks:
        raise JobspecError(block.pos, "Unsupported block type",
                           f'Blocks of type "{block.type}" are not expected in {field_.hcl}')
    element = STR if field_.kind == SMAP else STRS
    return {name: convert(element, attr.evaluate(), f"{field_.hcl}.{name}", attr.pos)
            for name, attr in body.attrs.items()}


def _check_labels(block: Block, struct: Struct | None) -> None:
    wanted = 1 if struct is not None and struct.label else 0
    if len(block.labels) < wanted:
        raise JobspecError(block.pos, f"Missing name for {block.type}",
                           f"All {block.type} blocks must have 1 labels (name)")
    if len(block.labels) > wanted:
        raise JobspecError(block.pos, f"Extraneous label for {block.type}",
                           f"Only {wanted} labels (name) are expected for {block.type} blocks")


def decode(struct: Struct, body: Body, labels: list[str] = ()) -> dict[str, Any]:
    """Decode ``body`` into a job-dict fragment holding only what the file sets."""
    out: dict[str, Any] = {struct.label: labels[0]} if struct.label else {}
    for name, attr in body.attrs.items():
        f = struct.by_hcl.get(name)
        if f is None or (f.kind in BLOCK_KINDS and not f.attr_ok):
            _reject(attr.pos, struct, name, is_block=False)
        value = attr.evaluate()
        if value is not None:  # null leaves the field unset, as gohcl does
            out[f.api] = convert(f.kind, value, name, attr.pos)
    for block in body.blocks:
        f = struct.by_hcl.get(block.type)
        if f is None or f.kind not in BLOCK_KINDS:
            _reject(block.pos, struct, block.type, is_block=True)
        _check_labels(block, f.struct)
        if f.kind != BLOCKS and f.api in out:
            raise JobspecError(block.pos, f"Duplicate {block.type} block",
                               f'Only one block of type "{block.type}" is allowed here')
        if f.kind == ANY:
            out[f.api] = decode_config(block.body)
        elif f.kind in (SMAP, LMAP):
            out[f.api] = _decode_map(f, block.body)
        elif f.kind == BLOCK:
            out[f.api] = decode(f.struct, block.body, block.labels)
        else:
            item = decode(f.struct, block.body, block.labels)
            out.setdefault(f.api, []).append(_constraint(item) if f.struct is CONSTRAINT else item)
    if struct is NETWORK:
        _split_static_ports(out)
    return out


def _constraint(raw: dict[str, Any]) -> dict[str, Any]:
    """jobspec2 decodeConstraint: the shorthand operands win over ``operator``."""
    c = {"LTarget": raw.get("attribute", ""), "RTarget": raw.get("value", ""),
         "Operand": raw.get("operator", "")}
    for operand in CONSTRAINT_OPERANDS:
        if raw.get(operand):
            c["Operand"], c["RTarget"] = operand, raw[operand]
    if raw.get("distinct_hosts"):
        c["Operand"] = "distinct_hosts"
    if raw.get("distinct_property"):
        c["Operand"], c["LTarget"] = "distinct_property", raw["distinct_property"]
    c["Operand"] = c["Operand"] or "="
    return c


def _split_static_ports(network: dict[str, Any]) -> None:
    """jobspec2 normalizeNetworkPorts: a ``port`` with ``static`` is a reserved port."""
    ports = network.get("DynamicPorts")
    if ports:
        network["DynamicPorts"] = [p for p in ports if p.get("Value", 0) <= 0] or None
        network["ReservedPorts"] = [p for p in ports if p.get("Value", 0) > 0] or None


# -- the entry point ----------------------------------------------------------------------------


def parse_job(
    text: str,
    filename: str = "input.hcl",
    *,
    variables: Mapping[str, str] | None = None,
    var_files: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    canonical: bool = True,
) -> dict[str, Any]:
    """Turn a job file's text into the JSON job Nomad's ``/v1/jobs/parse`` answers.

    ``variables`` are ``--var`` values, ``var_files`` maps a var file's name to its text (HCL,
    or JSON when the name ends in ``.json``), ``env`` is scanned for ``NOMAD_VAR_<name>``.
    ``canonical`` fills Nomad's defaults (``Canonicalize: true``). Raises
    :class:`JobspecError` (a ValidationError) with ``FILE:LINE:COL`` for anything wrong.
    """
    if not isinstance(text, str):
        raise JobspecError(Pos(filename, 1, 1), "Invalid job", "the job file must be text")
    try:
        return _parse_job(text.replace("\r\n", "\n"), filename, variables or {},
                          var_files or {}, env or {}, canonical)
    except RecursionError:
        raise JobspecError(Pos(filename, 1, 1), "Nested too deeply",
                           "the job nests blocks or expressions too deeply") from None


def _parse_job(text, filename, variables, var_files, env, canonical) -> dict[str, Any]:
    if text.lstrip(" ").startswith("{"):
        raise JobspecError(Pos(filename, 1, 1), "Unsupported construct",
                           "JSON job files cannot be read offline; use HCL")
    ev = Evaluator(filename, {})  # variables and locals are filled in once known
    body = build_body(kids(parse_tree(text, filename))[0], ev)
    for name, attr in body.attrs.items():
        raise JobspecError(attr.pos, "Unsupported argument",
                           f'An argument named "{name}" is not expected here')
    for block in body.blocks:
        if block.type not in ("variable", "variables", "locals", "job"):
            raise JobspecError(block.pos, "Unsupported block type",
                               f'Blocks of type "{block.type}" are not expected here')
    values, local_attrs = resolve_variables(body, filename, variables, var_files, env)
    ev.variables, ev.local_attrs = values, {k: a.expr for k, a in local_attrs.items()}
    for name in local_attrs:
        ev._lookup("local", name, None)
    jobs = [b for b in body.blocks if b.type == "job"]
    if not jobs:
        raise JobspecError(Pos(filename, 1, 1), "Missing job block", "A job block is required")
    if len(jobs) > 1:
        raise JobspecError(jobs[1].pos, "Duplicate job block",
                           f"Only one job block is allowed; the first is at {jobs[0].pos}")
    if len(jobs[0].labels) != 1:
        raise JobspecError(jobs[0].pos, "Missing name for job",
                           "A job block needs exactly one label")
    job = decode(JOB, jobs[0].body)
    job.setdefault("ID", jobs[0].labels[0])
    job.setdefault("Name", jobs[0].labels[0])
    return complete(JOB, canonicalize(job) if canonical else job)


__all__ = ["Evaluator", "build_body", "parse_expression", "parse_job"]
