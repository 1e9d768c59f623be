"""A JSON job -> an HCL job file that parses back to the same canonical job (for GitOps).

The output leaves out what Nomad would fill in anyway (default namespace, region, restart
policy, a group update equal to the job's ...), so it reads like a hand-written job. Every
result is checked by parsing it back; when the short form does not round-trip, the explicit
form (every field written out) is used, and a job that no HCL can express raises
:class:`weavenomad.errors.ValidationError` naming the field.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from weavenomad.errors import ValidationError
from weavenomad_lab.nomad.jobspec import canonical, schema

#: set by Nomad when it stores a job; a job file never carries them
SERVER_FIELDS = {"Stop", "ParentID", "Dispatched", "Payload", "NomadTokenID", "Status",
                 "StatusDescription", "Stable", "Version", "SubmitTime", "CreateIndex",
                 "ModifyIndex", "JobModifyIndex", "VaultNamespace"}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
_RUNTIME = re.compile(r"\$\{([A-Za-z_][\w-]*)((?:\.[A-Za-z_][\w-]*|\[\d+\])*)\}")
_KEYWORDS = {"var", "local", "true", "false", "null", "for", "in", "if", "else", "endif",
             "endfor", "for_each"}
_UNITS = (("h", schema.HOUR), ("m", schema.MINUTE), ("s", schema.SECOND), ("ms", 10**6),
          ("us", 1000), ("ns", 1))
#: blocks that mean the same as their absence once every default is left out
_EMPTY_IS_ABSENT = {schema.RESOURCES, schema.EPHEMERAL_DISK, schema.LOGS}


def render_hcl(job: dict[str, Any]) -> str:
    """Render a Nomad JSON job (canonical or not, optionally wrapped as ``{"Job": ...}``)."""
    from weavenomad_lab.nomad.jobspec.hcl import (
        parse_job,  # emit <-> parse check; avoid import cycle
    )

    if isinstance(job, dict) and set(job) == {"Job"}:
        job = job["Job"]
    if not isinstance(job, dict):
        raise ValidationError("the job to render is not a JSON object",
                              hint='pass a job as Nomad returns it, or {"Job": {...}}')
    normalized = _normalize(schema.JOB, job, "Job")
    expected = canonical.complete(schema.JOB, canonical.canonicalize(normalized))
    for compact in (True, False):
        try:
            text = "".join(_Emitter(compact).job(expected))
            if parse_job(text, "rendered.hcl") == expected:
                return text
        except RecursionError:
            break
        except ValidationError as err:
            if not isinstance(err, schema.JobspecError):
                raise  # a value no HCL can hold, named by the emitter
            continue
    raise ValidationError("the job cannot be written as an HCL job file that Nomad reads back "
                          "the same", hint="submit it as JSON instead")


def _is_zero(value: Any) -> bool:
    return value is None or value in ("", [], {}) or (
        type(value) in (int, bool, float) and value == 0)


def _normalize(struct: schema.Struct, value: Any, path: str) -> dict[str, Any]:
    """Keep what a job file can say; reject what weavenomad cannot write, drop server fields."""
    if not isinstance(value, dict):
        raise ValidationError(f"{path} is not a JSON object", hint="check the job JSON")
    if struct is schema.CONSTRAINT:
        for key in schema.CONSTRAINT_ZERO:
            _check_type(schema.STR, value.get(key, ""), f"{path}.{key}")
        return {k: value.get(k, "") for k in schema.CONSTRAINT_ZERO}
    fields = {f.api: f for f in struct.fields}
    out: dict[str, Any] = {}
    for key, item in value.items():
        f = fields.get(key)
        if struct is schema.JOB and key in SERVER_FIELDS:
            continue
        if f is None or (f.hcl is None and key != struct.label):
            if _is_zero(item):
                continue
            raise ValidationError(f"{path}.{key} is set, and weavenomad cannot write it as HCL",
                                  hint="remove it, or submit the JSON job to Nomad directly")
        if item is not None and f.kind not in (schema.BLOCK, schema.BLOCKS):
            _check_type(f.kind, item, f"{path}.{key}")
        if item is not None and f.kind == schema.BLOCK:
            item = _normalize(f.struct, item, f"{path}.{key}")
        elif item is not None and f.kind == schema.BLOCKS:
            if not isinstance(item, list):
                raise ValidationError(f"{path}.{key} is not a list", hint="check the job JSON")
            item = [_normalize(f.struct, v, f"{path}.{key}[{i}]") for i, v in enumerate(item)]
        out[key] = item
    return out


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def quote(text: str, runtime: bool = True) -> str:
    """An HCL string literal whose value is ``text``. With ``runtime``, interpolations Nomad
    keeps verbatim (``${NOMAD_ALLOC_ID}``) stay readable; anything else template-like is
    escaped."""
    return '"' + _keep_runtime(text, _escape, runtime) + '"'


def _keep_runtime(text: str, escape, runtime: bool = True) -> str:
    out, at = [], 0
    for match in _RUNTIME.finditer(text) if runtime else ():
        if match.group(1) in _KEYWORDS or text[:match.start()].endswith("$"):
            continue
        out.append(escape(text[at:match.start()]) + match.group())
        at = match.end()
    return "".join(out) + escape(text[at:])


def string_value(text: str) -> str:
    """A string as an attribute value: a heredoc when it is several lines (scripts, files)."""
    lines = text.split("\n")
    if len(lines) < 3 or lines[-1] or "\r" in text:
        return quote(text)
    marker = "EOT"
    while marker in (line.strip() for line in lines):
        marker += "_"
    body = "".join(_template_escape(line) + "\n" for line in lines[:-1])
    return f"<<{marker}\n{body}{marker}"


def _template_escape(text: str) -> str:
    return _keep_runtime(text, lambda t: t.replace("${", "$${").replace("%{", "%%{"))


def _escape(text: str) -> str:
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    text = text.replace("\r", "\\r").replace("\t", "\\t")
    text = re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\u{ord(m.group()):04x}", text)
    return text.replace("${", "$${").replace("%{", "%%{")


def duration(nanos: int) -> str:
    for name, unit in _UNITS:
        if nanos % unit == 0 and nanos != 0:
            return f'"{nanos // unit}{name}"'
    return '"0s"'


def expression(value: Any, where: str) -> str:
    """Any JSON value as an HCL expression."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(f"{where} is {value}, which HCL cannot write",
                                  hint="use a finite number")
        return repr(value)
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, list):
        return "[" + ", ".join(expression(v, where) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{quote(str(k), False)} = {expression(v, where)}" for k, v in value.items())
        return "{ " + ", ".join(items) + " }" if value else "{}"
    raise ValidationError(f"{where} has a value HCL cannot write", hint="check the job JSON")


def _check_type(kind: str, value: Any, where: str) -> None:
    def strings(v):
        return isinstance(v, list) and all(isinstance(x, str) for x in v)

    whole = isinstance(value, int) and not isinstance(value, bool)
    ok = {schema.STR: isinstance(value, str), schema.BOOL: isinstance(value, bool),
          schema.INT: whole, schema.DUR: whole, schema.STRS: strings(value),
          schema.SMAP: isinstance(value, dict) and all(isinstance(v, str)
                                                       for v in value.values()),
          schema.LMAP: isinstance(value, dict) and all(strings(v) for v in value.values()),
          schema.ANY: isinstance(value, dict)}[kind]
    if not ok:
        raise ValidationError(f"{where} must be a {kind}, got {value!r}"[:200],
                              hint="check the job JSON")


def _scalar(kind: str, value: Any, where: str) -> str:
    _check_type(kind, value, where)
    if kind == schema.DUR:
        return duration(value)
    return string_value(value) if kind == schema.STR else expression(value, where)


class _Emitter:
    def __init__(self, compact: bool):
        self.compact = compact
        self.ctx: dict[str, dict] = {}

    def job(self, job: dict[str, Any]):
        self.ctx = {"job": job}
        yield "# Written by weavenomad from a JSON job; `nomad job run` reads it back the same.\n"
        yield f"job {quote(job['ID'], False)} {{\n"
        yield from self.body(schema.JOB, job, 1)
        yield "}\n"

    def body(self, struct: schema.Struct, value: dict[str, Any], depth: int):
        pad = "  " * depth
        attrs, blocks = [], []
        for f in struct.fields:
            item = value.get(f.api)
            if struct is schema.NETWORK and f.api == "ReservedPorts":
                continue  # written as `port` blocks: Nomad sorts ports by their `static`
            if struct is schema.NETWORK and f.api == "DynamicPorts":
                item = (item or []) + (value.get("ReservedPorts") or []) or None
            if f.hcl is None or item is None or self.skip(struct, f, item):
                continue
            where = f"{struct.name}.{f.hcl}"
            if f.kind in (schema.SMAP, schema.LMAP):
                blocks.append(self.map_field(f, item, depth, where))
            elif f.kind == schema.ANY:
                blocks.append(f"{pad}{f.hcl} {{\n{self.config(item, depth + 1, where)}{pad}}}\n")
            elif f.kind == schema.BLOCK:
                inner = "".join(self.body(f.struct, item, depth + 1))
                if inner or not (self.compact and f.struct in _EMPTY_IS_ABSENT):
                    blocks.append(f"{pad}{f.hcl} {{\n{inner}{pad}}}\n")
            elif f.kind == schema.BLOCKS:
                blocks.extend(self.blocks(struct, f, item, depth))
            else:
                attrs.append(f"{pad}{f.hcl} = {_scalar(f.kind, item, where)}\n")
        yield from attrs
        yield from blocks

    def blocks(self, struct: schema.Struct, f, items: list[dict], depth: int):
        pad = "  " * depth
        for item in items:
            label = f" {quote(item[f.struct.label], False)}" if f.struct.label else ""
            if f.struct is schema.GROUP:
                self.ctx.update(group=item, task=None)
            elif f.struct is schema.TASK:
                self.ctx["task"] = item
            inner = (self.constraint(item, depth + 1) if f.struct is schema.CONSTRAINT
                     else "".join(self.body(f.struct, item, depth + 1)))
            yield f"{pad}{f.hcl}{label} {{\n{inner}{pad}}}\n"

    def constraint(self, c: dict[str, Any], depth: int) -> str:
        pad = "  " * depth
        lines = [f"{pad}attribute = {quote(c['LTarget'])}\n" if c["LTarget"] else "",
                 f"{pad}operator = {quote(c['Operand'])}\n" if c["Operand"] != "=" else "",
                 f"{pad}value = {quote(c['RTarget'])}\n" if c["RTarget"] else ""]
        return "".join(lines)

    def map_field(self, f, value: dict[str, Any], depth: int, where: str) -> str:
        pad = "  " * depth
        if f.attr_ok and not all(_IDENTIFIER.match(k) for k in value):
            return f"{pad}{f.hcl} = {expression(value, where)}\n"
        if not all(_IDENTIFIER.match(k) for k in value):
            raise ValidationError(f"{where} has keys HCL cannot write in a block",
                                  hint="use keys made of letters, digits, _ and -")
        kind = schema.STR if f.kind == schema.SMAP else schema.STRS
        inner = "".join(f"{pad}  {k} = {_scalar(kind, v, f'{where}.{k}')}\n"
                        for k, v in value.items())
        return f"{pad}{f.hcl} {{\n{inner}{pad}}}\n"

    def config(self, value: dict[str, Any], depth: int, where: str) -> str:
        """A driver config body; lists of maps become blocks, as Nomad reads them back."""
        pad, out = "  " * depth, []
        for key, item in value.items():
            if not _IDENTIFIER.match(key) or isinstance(item, dict):
                raise ValidationError(f"{where}.{key} cannot be written in HCL",
                                      hint="Nomad reads maps in config only inside lists")
            if self._as_blocks(item):
                out.extend(f"{pad}{key} {{\n{self.config(v, depth + 1, where)}{pad}}}\n"
                           for v in item)
            else:
                text = string_value(item) if isinstance(item, str) else expression(
                    item, f"{where}.{key}")
                out.append(f"{pad}{key} = {text}\n")
        return "".join(out)

    def _as_blocks(self, item: Any) -> bool:
        return isinstance(item, list) and bool(item) and all(
            isinstance(v, dict) and all(_IDENTIFIER.match(k) and not isinstance(x, dict)
                                        for k, x in v.items()) for v in item)

    def skip(self, struct: schema.Struct, f, value: Any) -> bool:
        """Leave out what parses back to the same value anyway."""
        if f.zero is not None and _same(value, f.zero):
            return True
        if struct is schema.JOB and f.api == "ID":
            return True  # the label
        if not self.compact:
            return False
        implied = _implied(struct, self.ctx)
        return f.api in implied and _same(value, implied[f.api])


def _implied(struct: schema.Struct, ctx: dict[str, Any]) -> dict[str, Any]:
    """What Nomad fills in for fields of ``struct`` left out, given the enclosing job,
    group and task (``ctx``)."""
    job, group, task = ctx["job"], ctx.get("group"), ctx.get("task")
    kind = job["Type"]
    if struct is schema.JOB:
        return {"Namespace": "default", "Priority": 50, "Region": "global", "Type": "service",
                "AllAtOnce": False, "ConsulToken": "", "VaultToken": "", "Name": job["ID"],
                "Update": canonical.DEFAULT_UPDATE if kind == "service" else None}
    if struct is schema.GROUP:
        job_update = job.get("Update")
        restart = canonical.DEFAULT_RESTART["service" if kind in ("service", "system") else "batch"]
        reschedule = canonical.DEFAULT_RESCHEDULE.get(kind, canonical.NO_RESCHEDULE)
        return {"Count": 1, "EphemeralDisk": canonical.DEFAULT_EPHEMERAL_DISK,
                "RestartPolicy": restart,
                "Update": None if job_update is None or canonical.is_empty_update(job_update)
                else job_update,
                "ReschedulePolicy": _inherited(job.get("Reschedule"), reschedule,
                                               kind != "system"),
                "Migrate": _inherited(job.get("Migrate"), canonical.DEFAULT_MIGRATE,
                                      kind == "service")}
    if struct is schema.TASK:
        return {"KillTimeout": 5 * schema.SECOND, "LogConfig": canonical.DEFAULT_LOGS,
                "RestartPolicy": group["RestartPolicy"]}
    if struct is schema.SERVICE:
        names = [job["Name"], group["Name"]] + ([task["Name"]] if task else [])
        return {"AddressMode": "auto", "Name": "-".join(names)}
    return {schema.RESOURCES: canonical.DEFAULT_RESOURCES, schema.LOGS: canonical.DEFAULT_LOGS,
            schema.EPHEMERAL_DISK: canonical.DEFAULT_EPHEMERAL_DISK}.get(struct, {})


def _inherited(from_job: dict | None, defaults: dict, has_default: bool) -> dict | None:
    if from_job is None:
        return dict(defaults) if has_default else None
    return {**defaults, **{k: v for k, v in from_job.items() if v is not None}}
