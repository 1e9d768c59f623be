"""Nomad's job model as data: which HCL names map to which JSON fields, and how values convert.

The tables below are the single source of truth for the parser (HCL body -> job dict, in
:mod:`.hcl`) and the emitter (job dict -> HCL). A field absent from a decoded dict is a nil
pointer in Go terms; :mod:`.canonical` fills in Nomad's defaults and Go's zero values.
:class:`Pos` and :class:`JobspecError` locate every problem in a job file.
"""

from __future__ import annotations

import math
import re
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


__all__ = [
    "ANY", "BLOCK", "BLOCKS", "BLOCK_KINDS", "BOOL", "CHECK", "CHECK_RESTART", "CONSTRAINT",
    "CONSTRAINT_OPERANDS", "CONSTRAINT_ZERO", "DNS", "DUR", "EPHEMERAL_DISK", "GROUP", "HOUR",
    "INT", "JOB", "LIFECYCLE", "LMAP", "LOGS", "MIGRATE", "MINUTE", "NETWORK", "PORT",
    "RESCHEDULE", "RESOURCES", "RESTART", "SECOND", "SERVICE", "SMAP", "STR", "STRS", "TASK",
    "UPDATE", "F", "JobspecError", "Pos", "Struct", "convert", "format_number", "number_or_none",
    "parse_duration", "plain"]
