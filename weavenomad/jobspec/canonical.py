"""Nomad's job model as data: which HCL names map to which JSON fields, how values convert, and
the defaults Nomad's ``api`` package fills in (``Job.Canonicalize``, Nomad 1.0.18).

The tables below are the single source of truth for the parser (HCL body -> job dict) and the
emitter (job dict -> HCL). A field absent from a decoded dict is a nil pointer in Go terms;
:func:`canonicalize` fills defaults the way Nomad does, :func:`complete` adds every remaining
field with its Go zero value so the result has the exact shape of Nomad's JSON answer.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from weavenomad.errors import ValidationError

SECOND = 1_000_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE


@dataclass(frozen=True)
class Pos:
    filename: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.filename}:{self.line}:{self.column}"


class JobspecError(ValidationError):
    """A job file that cannot be turned into a job, located as ``FILE:LINE:COL``.

    ``summary`` and ``detail`` follow HCL's diagnostics; :meth:`nomad_style` renders the text
    Nomad's ``/v1/jobs/parse`` answers with (``input.hcl:4,16: Summary; Detail``).
    """

    def __init__(self, pos: Pos, summary: str, detail: str = ""):
        self.pos, self.summary, self.detail = pos, summary, detail
        super().__init__(f"{pos}: {summary}" + (f"; {detail}" if detail else ""))

    def nomad_style(self, filename: str = "input.hcl") -> str:
        text = f"{filename}:{self.pos.line},{self.pos.column}: {self.summary}"
        return text + (f"; {self.detail}" if self.detail else "")


# -- evaluated HCL bodies (built by weavenomad.jobspec.hcl) -----------------------------------


@dataclass
class Attr:
    name: str
    pos: Pos
    evaluate: Callable[[], Any]
    #: the expression is a literal ``{ ... }``; Nomad wraps those in a list inside ``config``
    object_literal: bool = False
    #: the unevaluated expression (a lark tree), for the few places that read syntax
    expr: Any = None


@dataclass
class Block:
    type: str
    labels: list[str]
    body: Body
    pos: Pos


@dataclass
class Body:
    attrs: dict[str, Attr]
    blocks: list[Block]
    pos: Pos


# -- the schema --------------------------------------------------------------------------------

STR, INT, BOOL, DUR, STRS = "string", "number", "bool", "duration", "list of string"
SMAP, LMAP, ANY = "map of string", "map of list of string", "config"
BLOCK, BLOCKS = "block", "blocks"
BLOCK_KINDS = {SMAP, LMAP, ANY, BLOCK, BLOCKS}


@dataclass(frozen=True)
class F:
    api: str
    hcl: str | None = None  # None: set by the server, never written in a job file
    kind: str = STR
    zero: Any = None  # Go's zero value in JSON: None for pointers, "" / 0 / False for values
    struct: Struct | None = None
    attr_ok: bool = False  # map also accepted as `meta = { ... }` (jobspec2 decodeAsAttribute)


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: the tables are singletons
class Struct:
    name: str
    fields: tuple[F, ...]
    label: str | None = None  # JSON field that takes the block's one label
    unsupported: frozenset[str] = frozenset()  # valid Nomad, not understood offline
    by_hcl: dict[str, F] = field(default_factory=dict)

    def __post_init__(self):
        self.by_hcl.update({f.hcl: f for f in self.fields if f.hcl})


def _struct(name, fields, label=None, unsupported=""):
    return Struct(name, tuple(fields), label, frozenset(unsupported.split()))


CHECK_RESTART = _struct("check_restart", [
    F("Limit", "limit", INT, 0), F("Grace", "grace", DUR),
    F("IgnoreWarnings", "ignore_warnings", BOOL, False)])
CHECK = _struct("check", [
    F("AddressMode", "address_mode", STR, ""), F("Args", "args", STRS),
    F("CheckRestart", "check_restart", BLOCK, struct=CHECK_RESTART),
    F("Command", "command", STR, ""), F("Expose", "expose", BOOL, False),
    F("FailuresBeforeCritical", "failures_before_critical", INT, 0),
    F("GRPCService", "grpc_service", STR, ""), F("GRPCUseTLS", "grpc_use_tls", BOOL, False),
    F("Header", "header", LMAP), F("Id", "id", STR, ""),
    F("InitialStatus", "initial_status", STR, ""), F("Interval", "interval", DUR, 0),
    F("Method", "method", STR, ""), F("Name", "name", STR, ""), F("Path", "path", STR, ""),
    F("PortLabel", "port", STR, ""), F("Protocol", "protocol", STR, ""),
    F("SuccessBeforePassing", "success_before_passing", INT, 0),
    F("TLSSkipVerify", "tls_skip_verify", BOOL, False), F("TaskName", "task", STR, ""),
    F("Timeout", "timeout", DUR, 0), F("Type", "type", STR, "")])
SERVICE = _struct("service", [
    F("AddressMode", "address_mode", STR, ""), F("CanaryMeta", "canary_meta", SMAP),
    F("CanaryTags", "canary_tags", STRS),
    F("CheckRestart", "check_restart", BLOCK, struct=CHECK_RESTART),
    F("Checks", "check", BLOCKS, struct=CHECK), F("Connect"),
    F("EnableTagOverride", "enable_tag_override", BOOL, False), F("Id", "id", STR, ""),
    F("Meta", "meta", SMAP), F("Name", "name", STR, ""), F("PortLabel", "port", STR, ""),
    F("Tags", "tags", STRS), F("TaskName", "task", STR, "")], unsupported="connect")
PORT = _struct("port", [
    F("Label", None, STR, ""), F("Value", "static", INT, 0), F("To", "to", INT, 0),
    F("HostNetwork", "host_network", STR, "")], label="Label")
DNS = _struct("dns", [F("Servers", "servers", STRS), F("Searches", "searches", STRS),
                      F("Options", "options", STRS)])
NETWORK = _struct("network", [
    F("CIDR", "cidr", STR, ""), F("DNS", "dns", BLOCK, struct=DNS),
    F("Device", "device", STR, ""), F("DynamicPorts", "port", BLOCKS, struct=PORT),
    F("IP", "ip", STR, ""), F("MBits", "mbits", INT), F("Mode", "mode", STR, ""),
    F("ReservedPorts", "reserved_ports", BLOCKS, struct=PORT)])
RESOURCES = _struct("resources", [
    F("CPU", "cpu", INT), F("Devices"), F("DiskMB", "disk", INT), F("IOPS", "iops", INT),
    F("MemoryMB", "memory", INT), F("Networks", "network", BLOCKS, struct=NETWORK)],
    unsupported="device")
UPDATE = _struct("update", [
    F("AutoPromote", "auto_promote", BOOL), F("AutoRevert", "auto_revert", BOOL),
    F("Canary", "canary", INT), F("HealthCheck", "health_check", STR),
    F("HealthyDeadline", "healthy_deadline", DUR), F("MaxParallel", "max_parallel", INT),
    F("MinHealthyTime", "min_healthy_time", DUR),
    F("ProgressDeadline", "progress_deadline", DUR), F("Stagger", "stagger", DUR)])
RESTART = _struct("restart", [
    F("Attempts", "attempts", INT), F("Delay", "delay", DUR), F("Interval", "interval", DUR),
    F("Mode", "mode", STR)])
RESCHEDULE = _struct("reschedule", [
    F("Attempts", "attempts", INT), F("Delay", "delay", DUR),
    F("DelayFunction", "delay_function", STR), F("Interval", "interval", DUR),
    F("MaxDelay", "max_delay", DUR), F("Unlimited", "unlimited", BOOL)])
MIGRATE = _struct("migrate", [
    F("HealthCheck", "health_check", STR), F("HealthyDeadline", "healthy_deadline", DUR),
    F("MaxParallel", "max_parallel", INT), F("MinHealthyTime", "min_healthy_time", DUR)])
EPHEMERAL_DISK = _struct("ephemeral_disk", [
    F("Migrate", "migrate", BOOL), F("SizeMB", "size", INT), F("Sticky", "sticky", BOOL)])
LOGS = _struct("logs", [F("MaxFileSizeMB", "max_file_size", INT),
                        F("MaxFiles", "max_files", INT)])
LIFECYCLE = _struct("lifecycle", [F("Hook", "hook", STR, ""),
                                  F("Sidecar", "sidecar", BOOL, False)])
#: decoded under its HCL names, then turned into LTarget/Operand/RTarget by _constraint()
CONSTRAINT_OPERANDS = ("version", "semver", "regexp", "set_contains")
CONSTRAINT = _struct("constraint", [
    *(F(n, n) for n in ("attribute", "value", "operator", *CONSTRAINT_OPERANDS)),
    F("distinct_hosts", "distinct_hosts", BOOL), F("distinct_property", "distinct_property")],
    unsupported="set_contains_all set_contains_any")
CONSTRAINT_ZERO = {"LTarget": "", "Operand": "", "RTarget": ""}
TASK = _struct("task", [
    F("Affinities"), F("Artifacts"), F("Config", "config", ANY),
    F("Constraints", "constraint", BLOCKS, struct=CONSTRAINT), F("DispatchPayload"),
    F("Driver", "driver", STR, ""), F("Env", "env", SMAP, attr_ok=True),
    F("KillSignal", "kill_signal", STR, ""), F("KillTimeout", "kill_timeout", DUR),
    F("Kind", "kind", STR, ""), F("Leader", "leader", BOOL, False),
    F("Lifecycle", "lifecycle", BLOCK, struct=LIFECYCLE),
    F("LogConfig", "logs", BLOCK, struct=LOGS), F("Meta", "meta", SMAP, attr_ok=True),
    F("Name", None, STR, ""), F("Resources", "resources", BLOCK, struct=RESOURCES),
    F("RestartPolicy", "restart", BLOCK, struct=RESTART), F("ScalingPolicies"),
    F("Services", "service", BLOCKS, struct=SERVICE),
    F("ShutdownDelay", "shutdown_delay", DUR, 0), F("Templates"), F("User", "user", STR, ""),
    F("Vault"), F("VolumeMounts")], label="Name",
    unsupported="affinity artifact template vault dispatch_payload volume_mount csi_plugin "
                "scaling")
GROUP = _struct("group", [
    F("Affinities"), F("Constraints", "constraint", BLOCKS, struct=CONSTRAINT),
    F("Count", "count", INT), F("EphemeralDisk", "ephemeral_disk", BLOCK, struct=EPHEMERAL_DISK),
    F("Meta", "meta", SMAP, attr_ok=True), F("Migrate", "migrate", BLOCK, struct=MIGRATE),
    F("Name", None, STR), F("Networks", "network", BLOCKS, struct=NETWORK),
    F("ReschedulePolicy", "reschedule", BLOCK, struct=RESCHEDULE),
    F("RestartPolicy", "restart", BLOCK, struct=RESTART), F("Scaling"),
    F("Services", "service", BLOCKS, struct=SERVICE),
    F("ShutdownDelay", "shutdown_delay", DUR), F("Spreads"),
    F("StopAfterClientDisconnect", "stop_after_client_disconnect", DUR),
    F("Tasks", "task", BLOCKS, struct=TASK), F("Update", "update", BLOCK, struct=UPDATE),
    F("Volumes")], label="Name", unsupported="affinity spread volume scaling vault")
JOB = _struct("job", [
    F("Affinities"), F("AllAtOnce", "all_at_once", BOOL),
    F("Constraints", "constraint", BLOCKS, struct=CONSTRAINT),
    F("ConsulToken", "consul_token", STR), F("CreateIndex"),
    F("Datacenters", "datacenters", STRS), F("Dispatched", None, BOOL, False),
    F("ID", "id", STR), F("JobModifyIndex"), F("Meta", "meta", SMAP, attr_ok=True),
    F("Migrate", "migrate", BLOCK, struct=MIGRATE), F("ModifyIndex"), F("Multiregion"),
    F("Name", "name", STR), F("Namespace", "namespace", STR), F("NomadTokenID"),
    F("ParameterizedJob"), F("ParentID"), F("Payload"), F("Periodic"),
    F("Priority", "priority", INT), F("Region", "region", STR),
    F("Reschedule", "reschedule", BLOCK, struct=RESCHEDULE), F("Spreads"), F("Stable"),
    F("Status"), F("StatusDescription"), F("Stop"), F("SubmitTime"),
    F("TaskGroups", "group", BLOCKS, struct=GROUP), F("Type", "type", STR),
    F("Update", "update", BLOCK, struct=UPDATE), F("VaultNamespace"),
    F("VaultToken", "vault_token", STR), F("Version")],
    unsupported="affinity spread multiregion periodic parameterized vault task "
                "vault_namespace")


# -- value conversion (what gohcl/cty accept for each Go type) --------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1000, "µs": 1000, "μs": 1000, "ms": 10**6, "s": SECOND,
          "m": MINUTE, "h": HOUR}


def parse_duration(text: str) -> int | None:
    """Go's ``time.ParseDuration`` in nanoseconds, or None when ``text`` is not one."""
    sign, rest = (-1, text[1:]) if text[:1] == "-" else (1, text.lstrip("+"))
    if rest == "0":
        return 0
    total, at = Fraction(0), 0
    for match in _DURATION_PART.finditer(rest):
        if match.start() != at:
            return None
        total += Fraction(match.group(1)) * _UNITS[match.group(2)]
        at = match.end()
    if at == 0 or at != len(rest):
        return None
    return sign * int(total)


def format_number(value: int | float) -> str:
    """A number as cty prints it: integers without a fraction, others in plain decimals."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value) if isinstance(value, int) else format(Decimal(repr(value)), "f")


def number_or_none(value: Any) -> int | float | None:
    """A number, or a string holding one (cty converts those), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+(\.\d+)?([eE][-+]?\d{1,3})?\s*", value):
        number = Decimal(value.strip())
        if abs(number.adjusted()) > 40:
            return None  # far outside anything a job can use
        return int(number) if number == number.to_integral_value() else float(number)
    return None


def convert(kind: str, value: Any, what: str, pos: Pos) -> Any:
    """Convert an evaluated HCL value to the Go type of ``kind`` as gohcl would, or raise."""

    def fail(expected: str = kind):
        raise JobspecError(pos, "Incorrect attribute value type",
                           f'Inappropriate value for attribute "{what}": {expected} required')

    if kind == STR:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return format_number(value)
        return value if isinstance(value, str) else fail()
    if kind == INT:
        number = number_or_none(value)
        if number is None or number != int(number):
            fail("a whole number")
        return int(number)
    if kind == BOOL:
        if isinstance(value, bool):
            return value
        return {"true": True, "false": False}[value] if value in ("true", "false") else fail()
    if kind == DUR:
        if isinstance(value, str):
            nanos = parse_duration(value)
            if nanos is None:
                raise JobspecError(pos, "Unsuitable value type",
                                   f'Unsuitable duration value for "{what}": {value!r}')
            return nanos
        number = number_or_none(value)
        return int(number) if number is not None and number == int(number) else fail()
    if kind == STRS:
        if not isinstance(value, list) or any(v is None for v in value):
            fail()
        return [convert(STR, v, what, pos) for v in value]
    if kind == SMAP:
        if not isinstance(value, dict) or any(v is None for v in value.values()):
            fail()
        return {k: convert(STR, v, f"{what}.{k}", pos) for k, v in value.items()}
    if kind == LMAP:
        if not isinstance(value, dict):
            fail()
        return {k: convert(STRS, v, f"{what}.{k}", pos) for k, v in value.items()}
    return plain(value)


def plain(value: Any) -> Any:
    """A value as Nomad stores it in ``config``: whole numbers become integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


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


# -- Canonicalize (api/jobs.go, api/tasks.go, api/services.go, api/resources.go @ 1.0) --------


def _defaults(target: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    for key, value in defaults.items():
        if target.get(key) is None:
            target[key] = copy.deepcopy(value)
    return target


def _merged(base: dict[str, Any] | None, override: dict[str, Any] | None) -> dict[str, Any]:
    merged = dict(base or {})
    merged.update({k: v for k, v in (override or {}).items() if v is not None})
    return merged


DEFAULT_UPDATE = {"Stagger": 30 * SECOND, "MaxParallel": 1, "HealthCheck": "checks",
                  "MinHealthyTime": 10 * SECOND, "HealthyDeadline": 5 * MINUTE,
                  "ProgressDeadline": 10 * MINUTE, "AutoRevert": False, "Canary": 0,
                  "AutoPromote": False}
DEFAULT_MIGRATE = {"MaxParallel": 1, "HealthCheck": "checks", "MinHealthyTime": 10 * SECOND,
                   "HealthyDeadline": 5 * MINUTE}
NO_RESCHEDULE = {"Attempts": 0, "Interval": 0, "Delay": 0, "DelayFunction": "", "MaxDelay": 0,
                  "Unlimited": False}
DEFAULT_RESCHEDULE = {
    "service": {"Delay": 30 * SECOND, "DelayFunction": "exponential", "MaxDelay": HOUR,
                "Unlimited": True, "Attempts": 0, "Interval": 0},
    "batch": {"Attempts": 1, "Interval": 24 * HOUR, "Delay": 5 * SECOND,
              "DelayFunction": "constant", "MaxDelay": 0, "Unlimited": False},
}
DEFAULT_RESTART = {
    "service": {"Delay": 15 * SECOND, "Attempts": 2, "Interval": 30 * MINUTE, "Mode": "fail"},
    "batch": {"Delay": 15 * SECOND, "Attempts": 3, "Interval": 24 * HOUR, "Mode": "fail"},
}
DEFAULT_EPHEMERAL_DISK = {"Sticky": False, "Migrate": False, "SizeMB": 300}
DEFAULT_LOGS = {"MaxFiles": 10, "MaxFileSizeMB": 10}
DEFAULT_RESOURCES = {"CPU": 100, "MemoryMB": 300}
JOB_DEFAULTS = {"ID": "", "ParentID": "", "Namespace": "default", "Priority": 50,
                "Stop": False, "Region": "global", "Type": "service", "AllAtOnce": False,
                "ConsulToken": "", "VaultToken": "", "VaultNamespace": "", "NomadTokenID": "",
                "Status": "", "StatusDescription": "", "Stable": False, "Version": 0,
                "CreateIndex": 0, "ModifyIndex": 0, "JobModifyIndex": 0}


def is_empty_update(update: dict[str, Any]) -> bool:
    return not any(update.get(key) for key in DEFAULT_UPDATE)


def canonicalize(job: dict[str, Any]) -> dict[str, Any]:
    """Nomad's ``Job.Canonicalize`` on a decoded job dict; returns a new dict."""
    job = _defaults(copy.deepcopy(job), JOB_DEFAULTS)
    job.setdefault("Name", None)
    _defaults(job, {"Name": job["ID"]})
    if job.get("Update") is not None:
        _defaults(job["Update"], DEFAULT_UPDATE)
    elif job["Type"] == "service":
        job["Update"] = dict(DEFAULT_UPDATE)
    for group in job.get("TaskGroups") or []:
        _canonicalize_group(group, job)
    return job


def _canonicalize_group(group: dict[str, Any], job: dict[str, Any]) -> None:
    kind = job["Type"]
    _defaults(group, {"Name": "", "Count": 1})
    group["EphemeralDisk"] = _defaults(group.get("EphemeralDisk") or {}, DEFAULT_EPHEMERAL_DISK)
    job_update = job.get("Update")
    if job_update is not None and group.get("Update") is not None:
        group["Update"] = _merged(job_update, group["Update"])
    elif job_update is not None and not is_empty_update(job_update):
        group["Update"] = dict(job_update)
    if group.get("Update") is not None:
        _defaults(group["Update"], DEFAULT_UPDATE)
    if job.get("Reschedule") is not None:
        group["ReschedulePolicy"] = _merged(job["Reschedule"], group.get("ReschedulePolicy"))
    if group.get("ReschedulePolicy") is None and kind != "system":
        group["ReschedulePolicy"] = {}
    if group.get("ReschedulePolicy") is not None:
        _defaults(group["ReschedulePolicy"], DEFAULT_RESCHEDULE.get(kind, NO_RESCHEDULE))
    if job.get("Migrate") is not None:
        group["Migrate"] = _merged(job["Migrate"], group.get("Migrate"))
    if group.get("Migrate") is None and kind == "service":
        group["Migrate"] = {}
    if group.get("Migrate") is not None:
        _defaults(group["Migrate"], DEFAULT_MIGRATE)
    restart_kind = "service" if kind in ("service", "system") else "batch"
    group["RestartPolicy"] = _merged(DEFAULT_RESTART[restart_kind], group.get("RestartPolicy"))
    for task in group.get("Tasks") or []:
        _canonicalize_task(task, group, job)
    for service in group.get("Services") or []:
        _canonicalize_service(service, None, group, job)


def _canonicalize_task(task: dict[str, Any], group: dict[str, Any], job: dict[str, Any]):
    task["Resources"] = _defaults(task.get("Resources") or {}, DEFAULT_RESOURCES)
    _defaults(task, {"KillTimeout": 5 * SECOND})
    task["LogConfig"] = _defaults(task.get("LogConfig") or {}, DEFAULT_LOGS)
    for service in task.get("Services") or []:
        _canonicalize_service(service, task, group, job)
    if not (task.get("Lifecycle") or {}).get("Hook"):
        task["Lifecycle"] = None
    task["RestartPolicy"] = _merged(group["RestartPolicy"], task.get("RestartPolicy"))


def _canonicalize_service(service, task, group, job) -> None:
    if not service.get("Name"):
        parts = [job["Name"], group["Name"]] + ([task.get("Name", "")] if task else [])
        service["Name"] = "-".join(parts)
    if not service.get("AddressMode"):
        service["AddressMode"] = "auto"
    for check in service.get("Checks") or []:
        restart, own = service.get("CheckRestart"), check.get("CheckRestart")
        if restart is None:
            restart = own
        elif own is not None:  # CheckRestart.Merge: only set or true values override
            restart = dict(restart)
            restart.update({k: v for k, v in own.items()
                            if (v is not None if k == "Grace" else bool(v))})
        if restart is not None:
            restart = _defaults(dict(restart), {"Grace": SECOND})
        check["CheckRestart"] = restart
        for key in ("SuccessBeforePassing", "FailuresBeforeCritical"):
            check[key] = max(check.get(key) or 0, 0)


def complete(struct: Struct, value: dict[str, Any]) -> dict[str, Any]:
    """Every field of ``struct`` present, unset ones with Go's zero value (JSON shape)."""
    if struct is CONSTRAINT:
        return {**CONSTRAINT_ZERO, **value}
    out = {}
    for f in struct.fields:
        item = value.get(f.api)
        if item is None:
            out[f.api] = copy.deepcopy(f.zero)
        elif f.kind == BLOCK:
            out[f.api] = complete(f.struct, item)
        elif f.kind == BLOCKS:
            out[f.api] = [complete(f.struct, v) for v in item]
        else:
            out[f.api] = item
    return out
