"""Bodies of agent/service/register, agent/check/register and agent/check/update, turned into
specs the way Consul 1.4's agent endpoints validate them (with their 400 texts)."""

from __future__ import annotations

import re
from typing import Any

from weavenomad_lab.consul.decode import (
    DecodeError,
    as_bool,
    as_duration,
    as_header,
    as_int,
    as_list,
    as_object,
    as_str,
    as_str_list,
    as_str_map,
    decode_fields,
    decode_json,
    new_errors,
)
from weavenomad_lab.consul.records import STATUSES, CheckDefinition, CheckSpec, ServiceSpec


class BadRequest(Exception):
    """Consul answers 400 with this text."""


_CHECK_FIELDS = {
    "CheckID": as_str, "ID": as_str, "Name": as_str, "Notes": as_str, "Status": as_str,
    "ServiceID": as_str, "Token": as_str, "ScriptArgs": as_str_list, "Args": as_str_list,
    "Script": as_str, "HTTP": as_str, "Header": as_header, "Method": as_str, "TCP": as_str,
    "Interval": as_duration, "Timeout": as_duration, "TTL": as_duration,
    "DockerContainerID": as_str, "Shell": as_str, "GRPC": as_str, "GRPCUseTLS": as_bool,
    "TLSSkipVerify": as_bool, "AliasNode": as_str, "AliasService": as_str,
    "DeregisterCriticalServiceAfter": as_duration, "Namespace": as_str, "Partition": as_str,
}
_WEIGHT_FIELDS = {"Passing": as_int, "Warning": as_int}
_SERVICE_FIELDS = {
    "ID": as_str, "Name": as_str, "Tags": as_str_list, "Address": as_str, "Meta": as_str_map,
    "Port": as_int, "Weights": as_object, "EnableTagOverride": as_bool, "Kind": as_str,
    "Check": as_object, "Checks": as_list, "Token": as_str, "Namespace": as_str,
    "Partition": as_str,
}
_META_KEY = re.compile(r"^[a-zA-Z0-9_-]+$")


def _decode(body: bytes, fields: dict) -> dict[str, Any]:
    try:
        return decode_fields(decode_json(body), fields)
    except DecodeError as exc:
        raise BadRequest(f"Request decode failed: {exc}") from None


def _check_definition(fields: dict[str, Any]) -> CheckDefinition:
    """Consul's CheckType and its Validate(), as a lab definition."""
    script = bool(fields.get("ScriptArgs") or fields.get("Args") or fields.get("Script"))
    alias = bool(fields.get("AliasNode") or fields.get("AliasService"))
    interval, ttl = fields.get("Interval", 0.0), fields.get("TTL", 0.0)
    interval_check = script or any(fields.get(k) for k in ("HTTP", "TCP", "GRPC"))
    problem = None
    if interval > 0 and ttl > 0:
        problem = "Interval and TTL cannot both be specified"
    elif interval_check and interval <= 0:
        problem = "Interval must be > 0 for Script, HTTP, or TCP checks"
    elif interval_check and alias:
        problem = "Interval cannot be set for Alias checks"
    elif alias and ttl > 0:
        problem = "TTL must be not be set for Alias checks"
    elif not interval_check and not alias and ttl <= 0:
        problem = "TTL must be > 0 for TTL checks"
    if problem:
        raise BadRequest(f"Invalid check: {problem}")
    if script:
        kind = "docker" if fields.get("DockerContainerID") else "script"
    elif fields.get("HTTP"):
        kind = "http"
    elif fields.get("TCP"):
        kind = "tcp"
    elif fields.get("GRPC"):
        kind = "grpc"
    else:
        kind = "alias" if alias else "ttl"
    header = tuple(sorted((k, tuple(v)) for k, v in fields.get("Header", {}).items()))
    return CheckDefinition(
        kind=kind, tcp=fields.get("TCP", ""), http=fields.get("HTTP", ""),
        method=fields.get("Method", ""), header=header,
        tls_skip_verify=fields.get("TLSSkipVerify", False), interval=interval,
        timeout=fields.get("Timeout", 0.0), ttl=ttl,
        deregister_after=fields.get("DeregisterCriticalServiceAfter", 0.0),
    )


def _validate_meta(meta: dict[str, str]) -> None:
    if len(meta) > 64:
        raise BadRequest("Invalid Service Meta: Node metadata cannot contain more than 64 "
                         "key/value pairs")
    for key, value in meta.items():
        problem = None
        if not key:
            problem = "Key cannot be blank"
        elif not _META_KEY.match(key):
            problem = "Key contains invalid characters"
        elif len(key) > 128:
            problem = "Key is too long (limit: 128 characters)"
        elif key.startswith("consul-"):
            problem = "Key prefix 'consul-' is reserved for internal use"
        elif len(value) > 512:
            problem = "Value is too long (limit: 512 characters)"
        if problem:
            raise BadRequest(f"Invalid Service Meta: Couldn't load metadata pair ('{key}', "
                             f"'{value}'): {problem}")


def parse_service(body: bytes) -> ServiceSpec:
    errors = new_errors()
    try:
        raw = decode_json(body)
        fields = decode_fields(raw, _SERVICE_FIELDS, errors)
        check_raws = ([fields["Check"]] if "Check" in fields else []) + list(
            fields.get("Checks", []))
        check_fields = [decode_fields(c, _CHECK_FIELDS, errors, where="Check")
                        for c in check_raws]
        weights = decode_fields(fields.get("Weights", {}), _WEIGHT_FIELDS, errors, "Weights")
        errors.raise_if_any()
    except DecodeError as exc:
        raise BadRequest(f"Request decode failed: {exc}") from None
    name = fields.get("Name", "")
    if not name:
        raise BadRequest("Missing service name")
    address = fields.get("Address", "")
    if address in ("0.0.0.0", "::", "[::]"):
        raise BadRequest("Invalid service address")
    meta = fields.get("Meta", {})
    _validate_meta(meta)
    passing, warning = 1, 1
    if "Weights" in fields:
        passing, warning = weights.get("Passing", 0), weights.get("Warning", 0)
        if passing < 1:
            raise BadRequest("Invalid Weights: Passing must be greater than 0")
        if warning < 0:
            raise BadRequest("Invalid Weights: Warning must be greater or equal than 0")
    service_id = fields.get("ID") or name
    check_fields = [c for c in check_fields if c]  # an empty Check object is no check
    definitions = [_check_definition(c) for c in check_fields]
    checks = []
    for i, (cf, definition) in enumerate(zip(check_fields, definitions, strict=True)):
        status = cf.get("Status") or None
        if status is not None and status not in STATUSES:
            raise BadRequest("Status for checks must 'passing', 'warning', 'critical'")
        check_id = cf.get("CheckID") or cf.get("ID") or f"service:{service_id}"
        if not (cf.get("CheckID") or cf.get("ID")) and len(check_fields) > 1:
            check_id += f":{i + 1}"
        checks.append(CheckSpec(
            check_id=check_id, name=cf.get("Name") or f"Service '{name}' check",
            definition=definition, notes=cf.get("Notes", ""), status=status,
            service_id=service_id,
        ))
    return ServiceSpec(
        service_id=service_id, name=name, tags=tuple(fields.get("Tags", ())), address=address,
        port=fields.get("Port", 0), meta=meta,
        enable_tag_override=fields.get("EnableTagOverride", False), weights=(passing, warning),
        kind=fields.get("Kind", ""), checks=tuple(checks),
        namespace=fields.get("Namespace") or None, partition=fields.get("Partition") or None,
    )


def parse_check(body: bytes) -> CheckSpec:
    fields = _decode(body, _CHECK_FIELDS)
    name = fields.get("Name", "")
    if not name:
        raise BadRequest("Missing check name")
    status = fields.get("Status") or None
    if status is not None and status not in STATUSES:
        raise BadRequest("Bad check status")
    definition = _check_definition(fields)
    return CheckSpec(
        check_id=fields.get("ID") or fields.get("CheckID") or name, name=name,
        definition=definition, notes=fields.get("Notes", ""), status=status,
        service_id=fields.get("ServiceID", ""),
        namespace=fields.get("Namespace") or None, partition=fields.get("Partition") or None,
    )


def parse_check_update(body: bytes) -> tuple[str, str]:
    fields = _decode(body, {"Status": as_str, "Output": as_str})
    status = fields.get("Status", "")
    if status not in STATUSES:
        raise BadRequest(f"Invalid check status: '{status}'")
    return status, fields.get("Output", "")
