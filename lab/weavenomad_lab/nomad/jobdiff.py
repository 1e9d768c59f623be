"""Nomad 1.0's job diff (``nomad/structs/diff.go``) over canonical JSON jobs. Pure.

What ``POST /v1/job/<id>/plan`` with ``"Diff": true`` answers in ``Diff``: a tree of
``JobDiff`` > ``TaskGroupDiff`` > ``TaskDiff`` > ``ObjectDiff`` > ``FieldDiff``, each with a
``Type`` of ``Added``, ``Deleted``, ``Edited`` or ``None``. The plan endpoint diffs
*contextually*: an object that changed lists its unchanged fields too (as ``None``), while
the primitive fields of jobs, groups and tasks list only what changed. Field names are
``flatmap``'s: ``Meta[key]``, ``args[0]``, ``logging[0][type]``; values are strings
(durations in nanoseconds, booleans ``true``/``false``).

Checked against real Nomad 1.0.18's answers (``tests/fixtures/recorded/plan-dns-catalog-
checks/a1``-``a3``): a new job, the registered job unchanged, its count changed. Objects the
recordings do not show (constraints, templates, ports, …) follow the same source.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any

ADDED, DELETED, EDITED, NONE = "Added", "Deleted", "Edited", "None"

#: job fields a diff ignores (``Job.Diff``'s filter): set by the servers, or secrets
JOB_FILTER = ("ID", "Status", "StatusDescription", "Version", "Stable", "CreateIndex",
              "ModifyIndex", "JobModifyIndex", "Update", "SubmitTime", "NomadTokenID",
              "VaultToken")
#: map-typed fields, flattened as ``Name[key]`` even among primitive fields
MAP_FIELDS = frozenset({"Meta", "Env", "CanaryMeta"})


# -- flatmap -----------------------------------------------------------------------------------


def go_value(value: Any) -> str:
    """How Go's ``%v`` prints a JSON scalar decoded into the job's typed fields."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    return str(value)


def go_float(value: float) -> str:
    """``%v`` of a float64 (``%g`` with the shortest digits): the ``%e`` form when the
    exponent is below -4 or at least 6, as Go decides for the shortest precision."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    text = "".join(map(str, digits))
    point = len(text) + int(exponent)  # digits before the decimal point
    exp = point - 1
    prefix = "-" if sign else ""
    if exp < -4 or exp >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{prefix}{mantissa}e{'+' if exp >= 0 else '-'}{abs(exp):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{text}"
    if point >= len(text):
        return prefix + text + "0" * (point - len(text))
    return f"{prefix}{text[:point]}.{text[point:]}"


def primitive_flat(obj: dict | None, filter_out: tuple[str, ...] = ()) -> dict[str, str]:
    """``flatmap.Flatten(obj, filter, true)``: the scalar fields of one struct and its string
    maps (``Meta[k]``); nested structs, pointers and slices are left out."""
    flat: dict[str, str] = {}
    for name, value in (obj or {}).items():
        if name in filter_out or value is None:
            continue
        if isinstance(value, dict):
            if name in MAP_FIELDS:
                for key, inner in value.items():
                    if inner is not None and not isinstance(inner, dict | list):
                        flat[f"{name}[{key}]"] = go_value(inner)
            continue
        if isinstance(value, list):
            continue
        flat[name] = go_value(value)
    return flat


def deep_flat(value: Any, prefix: str = "") -> dict[str, str]:
    """``flatmap.Flatten(v, nil, false)``: everything, lists as ``[i]``, maps as ``[key]``
    (a top-level key without brackets), null as ``nil``."""
    flat: dict[str, str] = {}
    if isinstance(value, dict):
        for key, inner in value.items():
            flat.update(deep_flat(inner, f"{prefix}[{key}]" if prefix else str(key)))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            flat.update(deep_flat(inner, f"{prefix}[{index}]"))
    else:
        flat[prefix] = "nil" if value is None else go_value(value)
    return flat


# -- the diff records --------------------------------------------------------------------------


def field_diff(old: str, new: str, name: str, contextual: bool) -> dict | None:
    if old == new:
        if not contextual:
            return None
        kind = NONE
    elif old == "":
        kind = ADDED
    elif new == "":
        kind = DELETED
    else:
        kind = EDITED
    return {"Type": kind, "Name": name, "Old": old if kind != ADDED else "",
            "New": new if kind != DELETED else "", "Annotations": None}


def field_diffs(old: dict[str, str], new: dict[str, str], contextual: bool) -> list[dict]:
    diffs = []
    for name in sorted(set(old) | set(new)):
        diff = field_diff(old.get(name, ""), new.get(name, ""), name, contextual)
        if diff is not None:
            diffs.append(diff)
    return diffs


def _object(kind: str, name: str, fields: list[dict], objects: list[dict] | None = None) -> dict:
    return {"Type": kind, "Name": name, "Fields": fields or None, "Objects": objects or None}


def _kind(old: Any, new: Any) -> str:
    if old is None:
        return ADDED
    if new is None:
        return DELETED
    return EDITED


def primitive_object_diff(old: dict | None, new: dict | None, name: str, contextual: bool,
                          filter_out: tuple[str, ...] = ()) -> dict | None:
    """``primitiveObjectDiff``: an object of scalars, typed by what its fields did."""
    fields = field_diffs(primitive_flat(old, filter_out), primitive_flat(new, filter_out),
                         contextual)
    kinds = {f["Type"] for f in fields}
    if EDITED in kinds or {ADDED, DELETED} <= kinds:
        kind = EDITED
    elif ADDED in kinds:
        kind = ADDED
    elif DELETED in kinds:
        kind = DELETED
    else:
        return None
    return _object(kind, name, fields)


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _present(diffs: list[dict | None]) -> list[dict]:
    return [d for d in diffs if d is not None]


def _content_set_diffs(old: list | None, new: list | None, diff) -> list[dict]:
    """Nomad's set diffs by hash (``primitiveObjectSetDiff``, ``networkResourceDiffs``):
    entries matched by their whole content, so a changed one is one deleted and one added."""
    old_set = {_hash(o): o for o in old or []}
    new_set = {_hash(n): n for n in new or []}
    diffs = [diff(o, None) for key, o in old_set.items() if key not in new_set]
    diffs += [diff(None, n) for key, n in new_set.items() if key not in old_set]
    return _sorted(_present(diffs))


def primitive_object_set_diff(old: list | None, new: list | None, name: str,
                              contextual: bool) -> list[dict]:
    return _content_set_diffs(old, new,
                              lambda o, n: primitive_object_diff(o, n, name, contextual))


def string_set_diff(old: list | None, new: list | None, name: str,
                    contextual: bool) -> dict | None:
    old_set, new_set = set(old or []), set(new or [])
    if old_set == new_set and not contextual:
        return None
    fields = [field_diff(o, "", name, contextual) for o in old_set - new_set]
    if contextual:
        fields += [field_diff(o, o, name, contextual) for o in old_set & new_set]
    fields += [field_diff("", n, name, contextual) for n in new_set - old_set]
    fields = sorted((f for f in fields if f is not None), key=lambda f: (f["Name"], f["Old"],
                                                                          f["New"]))
    added, removed = bool(new_set - old_set), bool(old_set - new_set)
    if added and removed:
        kind = EDITED
    elif added:
        kind = ADDED
    elif removed:
        kind = DELETED
    elif not fields:
        return None
    else:
        kind = NONE
    return _object(kind, name, fields)


def _map_object_diff(old: dict | None, new: dict | None, name: str,
                     contextual: bool) -> dict | None:
    """``configDiff``/``checkHeaderDiff``: a free-form map, flattened whole."""
    if old == new:
        return None
    kind = ADDED if not old else DELETED if not new else EDITED
    return _object(kind, name, field_diffs(deep_flat(old or {}), deep_flat(new or {}),
                                           contextual))


def _sorted(objects: list[dict]) -> list[dict]:
    return sorted(objects, key=lambda o: o["Name"])


# -- networks, services, checks ----------------------------------------------------------------


def _port_diffs(old: list | None, new: list | None, dynamic: bool,
                contextual: bool) -> list[dict]:
    name = "Dynamic Port" if dynamic else "Static Port"
    skip = ("Value",) if dynamic else ()
    old_ports = {p.get("Label"): p for p in old or []}
    new_ports = {p.get("Label"): p for p in new or []}
    diffs = [primitive_object_diff(port, new_ports.get(label), name, contextual, skip)
             for label, port in old_ports.items()]
    diffs += [primitive_object_diff(None, port, name, contextual, skip)
              for label, port in new_ports.items() if label not in old_ports]
    return _sorted([d for d in diffs if d is not None])


def network_diff(old: dict | None, new: dict | None, contextual: bool) -> dict | None:
    if old == new:
        return None
    skip = ("Device", "CIDR", "IP")
    fields = field_diffs(primitive_flat(old, skip), primitive_flat(new, skip), contextual)
    objects = (_port_diffs((old or {}).get("ReservedPorts"), (new or {}).get("ReservedPorts"),
                           False, contextual)
               + _port_diffs((old or {}).get("DynamicPorts"), (new or {}).get("DynamicPorts"),
                             True, contextual))
    return _object(_kind(old, new), "Network", fields, objects)


def network_diffs(old: list | None, new: list | None, contextual: bool) -> list[dict]:
    return _content_set_diffs(old, new, lambda o, n: network_diff(o, n, contextual))


def check_diff(old: dict | None, new: dict | None, contextual: bool) -> dict | None:
    if old == new:
        return None
    fields = field_diffs(primitive_flat(old), primitive_flat(new), contextual)
    before, after = old or {}, new or {}
    objects = _present([
        _map_object_diff(before.get("Header"), after.get("Header"), "Header", contextual),
        primitive_object_diff(before.get("CheckRestart"), after.get("CheckRestart"),
                              "CheckRestart", contextual)])
    return _object(_kind(old, new), "Check", fields, objects)


def _by_name_diffs(old: list | None, new: list | None, diff) -> list[dict]:
    old_map = {o.get("Name"): o for o in old or []}
    new_map = {n.get("Name"): n for n in new or []}
    diffs = [diff(o, new_map.get(name)) for name, o in old_map.items()]
    diffs += [diff(None, n) for name, n in new_map.items() if name not in old_map]
    return _sorted(_present(diffs))


def service_diff(old: dict | None, new: dict | None, contextual: bool) -> dict | None:
    if old == new:
        return None
    fields = field_diffs(primitive_flat(old), primitive_flat(new), contextual)
    before, after = old or {}, new or {}
    objects = _present([string_set_diff(before.get(key), after.get(key), key, contextual)
                        for key in ("CanaryTags", "Tags")])
    objects += _by_name_diffs(before.get("Checks"), after.get("Checks"),
                              lambda o, n: check_diff(o, n, contextual))
    objects += _present([_map_object_diff(before.get("Connect"), after.get("Connect"),
                                           "ConsulConnect", contextual)])
    return _object(_kind(old, new), "Service", fields, objects)


def service_diffs(old: list | None, new: list | None, contextual: bool) -> list[dict]:
    return _by_name_diffs(old, new, lambda o, n: service_diff(o, n, contextual))


# -- tasks, groups, jobs -----------------------------------------------------------------------


def resources_diff(old: dict | None, new: dict | None, contextual: bool) -> dict | None:
    if old == new:
        return None
    fields = field_diffs(primitive_flat(old), primitive_flat(new), contextual)
    objects = network_diffs((old or {}).get("Networks"), (new or {}).get("Networks"),
                            contextual)
    objects += primitive_object_set_diff((old or {}).get("Devices"), (new or {}).get("Devices"),
                                         "Device", contextual)
    return _object(_kind(old, new), "Resources", fields, objects)


def task_diff(old: dict | None, new: dict | None, contextual: bool) -> dict:
    kind = NONE if old == new else _kind(old, new)
    before, after = old or {}, new or {}
    fields = field_diffs(primitive_flat(old, ("Name", "Config")),
                         primitive_flat(new, ("Name", "Config")), False)
    objects: list[dict] = []
    objects += primitive_object_set_diff(before.get("Constraints"), after.get("Constraints"),
                                         "Constraint", contextual)
    objects += primitive_object_set_diff(before.get("Affinities"), after.get("Affinities"),
                                         "Affinity", contextual)
    objects += _present([
        _map_object_diff(before.get("Config"), after.get("Config"), "Config", contextual),
        resources_diff(before.get("Resources"), after.get("Resources"), contextual),
        *(primitive_object_diff(before.get(key), after.get(key), key, contextual)
          for key in ("LogConfig", "DispatchPayload"))])
    objects += primitive_object_set_diff(before.get("Artifacts"), after.get("Artifacts"),
                                         "Artifact", contextual)
    objects += service_diffs(before.get("Services"), after.get("Services"), contextual)
    objects += _present([primitive_object_diff(before.get("Vault"), after.get("Vault"),
                                               "Vault", contextual)])
    objects += primitive_object_set_diff(before.get("Templates"), after.get("Templates"),
                                         "Template", contextual)
    objects += _present([primitive_object_diff(before.get("Lifecycle"),
                                               after.get("Lifecycle"), "Lifecycle",
                                               contextual)])
    return {"Type": kind, "Name": after.get("Name") or before.get("Name") or "",
            "Fields": fields or None, "Objects": objects or None, "Annotations": None}


def group_diff(old: dict | None, new: dict | None, contextual: bool) -> dict:
    kind = NONE if old == new else _kind(old, new)
    before, after = old or {}, new or {}
    fields = field_diffs(primitive_flat(old, ("Name",)), primitive_flat(new, ("Name",)), False)
    objects: list[dict] = []
    for key, name in (("Constraints", "Constraint"), ("Affinities", "Affinity"),
                      ("Spreads", "Spread")):
        objects += primitive_object_set_diff(before.get(key), after.get(key), name, contextual)
    objects += _present([primitive_object_diff(before.get(key), after.get(key), key,
                                               contextual, skip)
                         for key, skip in (("RestartPolicy", ()), ("ReschedulePolicy", ()),
                                           ("EphemeralDisk", ()), ("Update", ("Stagger",)))])
    objects += network_diffs(before.get("Networks"), after.get("Networks"), contextual)
    objects += service_diffs(before.get("Services"), after.get("Services"), contextual)
    tasks = _matched(before.get("Tasks"), after.get("Tasks"),
                     lambda o, n: task_diff(o, n, contextual))
    return {"Type": kind, "Name": after.get("Name") or before.get("Name") or "",
            "Fields": fields or None, "Objects": objects or None, "Tasks": tasks or None,
            "Updates": None}


def _matched(old: list | None, new: list | None, diff) -> list[dict]:
    """Diffs of the same-named entries, the removed and the added ones, by name."""
    old_map = {o.get("Name"): o for o in old or []}
    new_map = {n.get("Name"): n for n in new or []}
    names = sorted(set(old_map) | set(new_map), key=str)
    return [diff(old_map.get(name), new_map.get(name)) for name in names]


def job_diff(old: dict | None, new: dict, contextual: bool = True) -> dict:
    """``Job.Diff(other, contextual)``; the plan endpoint diffs contextually."""
    before = old or {}
    kind = ADDED if old is None else NONE
    fields = field_diffs(primitive_flat(old, JOB_FILTER), primitive_flat(new, JOB_FILTER), False)
    objects: list[dict] = []
    datacenters = string_set_diff(before.get("Datacenters"), new.get("Datacenters"),
                                  "Datacenters", False)
    if datacenters is not None and datacenters["Type"] != NONE:
        objects.append(datacenters)
    for key, name in (("Constraints", "Constraint"), ("Affinities", "Affinity"),
                      ("Spreads", "Spread")):
        objects += primitive_object_set_diff(before.get(key), new.get(key), name, contextual)
    groups = _matched(before.get("TaskGroups"), new.get("TaskGroups"),
                      lambda o, n: group_diff(o, n, contextual))
    objects += _present([primitive_object_diff(before.get(key), new.get(key), key, contextual)
                         for key in ("Periodic", "ParameterizedJob")])
    if kind == NONE and (any(f["Type"] != NONE for f in fields)
                         or any(o["Type"] != NONE for o in objects)
                         or any(g["Type"] != NONE for g in groups)):
        kind = EDITED
    return {"Type": kind, "ID": new.get("ID") or before.get("ID") or "",
            "Fields": fields or None, "Objects": objects or None, "TaskGroups": groups or None}
