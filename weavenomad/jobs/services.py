"""Hold a job's Consul services under private names, so that only the reconciler's twins carry
the names (and tags) consumers ask for. Pure: canonical JSON in and out.

Nomad registers a Docker task's service with the Docker-bridge address and reverts any edit of
it (docs/design.md). Masking it with a critical check hides it from health-filtered readers
only: the catalog, unfiltered health, the UI and Fabio with its default ``checksRequired = one``
still see it, and Nomad >= 1.7 wipes the mask whenever it re-registers the service. So ``run``
changes what Nomad registers instead (the design comparison: docs/design.md "Every read path"):

* ``Name`` -> :func:`~weavenomad.tenancy.contract.hidden_name` (``weavenomad-hidden-NAME``),
  and ``Meta``/``CanaryMeta`` gain ``weavenomad-service = NAME``, which the reconciler's twin
  takes as its name (Nomad interpolates meta as it does names, so ``${…}`` names work);
* every tag and canary tag gets the ``weavenomad-hidden:`` prefix, so no tag-driven router
  (Fabio's ``urlprefix-``, Traefik's ``traefik.``) picks Nomad's instance, and the twin strips
  it again (a canary's twin carries the canary tags, as Nomad's instance does);
* a check without a name gets Nomad's default name for the public service.

Only services for Consul (``provider`` empty or ``consul``) of groups with a Docker task are
held: nothing can stand in for Nomad's native service discovery. A service already held (a
rendered job run again) is left as it is.
"""

from __future__ import annotations

import re
from typing import Any

from weavenomad.errors import ValidationError
from weavenomad.jobs import policy
from weavenomad.tenancy.contract import (
    HIDDEN_PREFIX,
    MAX_SERVICE_NAME,
    META_SERVICE,
    hidden_name,
    hidden_tag,
)

_REFERENCE = re.compile(r"\$\{[^}]*\}")
#: Consul allows this many meta pairs on a service (``structs.MetaMaxKeyPairs``)
CONSUL_META_LIMIT = 64


def _held(service: dict) -> bool:
    return str(service.get("Name") or "").startswith(HIDDEN_PREFIX) and META_SERVICE in (
        service.get("Meta") or {})


def _interpolated_length(name: str) -> int:
    """The length Nomad checks, as Nomad does: each ``${…}`` counted as ``ENV-VAR``."""
    return len(_REFERENCE.sub("ENV-VAR", name))


def hold_service(service: Any, where: str, default_name: str
                 ) -> tuple[dict, tuple[str, str] | None]:
    """``service`` held under its private name, and (old name, new name) when it changed;
    ``default_name`` is Nomad's name for a service without one."""
    service = policy.as_object(service, where, "service")
    policy.check_keys(service, "service", where)
    if str(service.get("Provider") or "consul") != "consul" or _held(service):
        return service, None
    name = str(service.get("Name") or default_name)
    if "${" in name and _interpolated_length(hidden_name(name)) > MAX_SERVICE_NAME:
        room = MAX_SERVICE_NAME - len(HIDDEN_PREFIX)
        raise ValidationError(
            f"{where}: service name {name!r} cannot be held under a private name: "
            f"{hidden_name(name)!r} would exceed Nomad's {MAX_SERVICE_NAME} characters",
            hint=f"shorten the name to {room} characters (each ${{…}} counts as 7)")
    meta = dict(policy.as_object(service.get("Meta"), where, "Meta"))
    if len(meta) >= CONSUL_META_LIMIT:
        raise ValidationError(
            f"{where}: service {name!r} has {len(meta)} meta pairs; Consul allows "
            f"{CONSUL_META_LIMIT} and weavenomad needs one ({META_SERVICE})",
            hint="drop a meta pair of the service")
    held = {**service, "Name": hidden_name(name), "Meta": {**meta, META_SERVICE: name}}
    for key in ("Tags", "CanaryTags"):
        tags = policy.as_list(service.get(key), where, key)
        if tags:
            held[key] = [hidden_tag(str(tag)) for tag in tags]
    canary_meta = policy.as_object(service.get("CanaryMeta"), where, "CanaryMeta")
    if canary_meta:
        held["CanaryMeta"] = {**canary_meta, META_SERVICE: name}
    checks = []
    for number, check in enumerate(policy.as_list(service.get("Checks"), where, "Checks")):
        check = policy.as_object(check, f"{where} check #{number}", "check")
        if not check.get("Name"):
            check = {**check, "Name": f'service: "{name}" check'}
        checks.append(check)
    if checks:
        held["Checks"] = checks
    return held, (name, held["Name"])


def hold_services(services: Any, where: str, default_name: str
                  ) -> tuple[list[dict], list[tuple[str, str]]]:
    """Every service of a task or group held; the renames."""
    held, renamed = [], []
    for number, service in enumerate(policy.as_list(services, where, "Services")):
        service, change = hold_service(service, f"{where} service #{number}", default_name)
        held.append(service)
        if change is not None:
            renamed.append(change)
    return held, renamed
