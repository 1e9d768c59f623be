"""A job file read literally for the tenant transform, and the transform's changes written back
into the user's own document. Pure: python-hcl2 documents and job JSON in and out.

:func:`read_job` builds, from what the file states literally, the job JSON that
:func:`weavenomad.jobs.transform.apply_tenant` reads (the fields of
:data:`weavenomad.jobs.policy.FIELDS`, under Nomad's JSON names). What Nomad evaluates at
submission (``var.x``, locals, functions) stays an :class:`~weavenomad.jobs.hcl_literal.Expression`
where the transform does not look; where it does look, an expression is refused, because the
check would pass on text that Nomad later turns into something else: a dynamic block that makes
groups, tasks, networks, templates or Docker config, and a driver, Docker ``network_mode``,
privilege, mount, ``WEAVE_CIDR``, network mode or ``env`` template that is an expression.

:func:`write_back` applies the differences between the job read and the transformed one (each
task's ``env`` and ``config``, the job's ``meta``) to the document, for ``hcl2.dumps``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

from hcl2.const import IS_BLOCK

from weavenomad.errors import ValidationError
from weavenomad.jobs import policy
from weavenomad.jobs.hcl_literal import (
    IDENTIFIER,
    RESERVED,
    Expression,
    blocks,
    expressions_in,
    hcl_key,
    hcl_string,
    is_block_list,
    key_text,
    value,
)
from weavenomad.tenancy import weavecidr

#: per level, the blocks the transform reads: a dynamic one could hide a group, a task or what
#: decides a task's network from it
READ_BLOCKS = {
    "job": frozenset({"group", "task", "meta"}),
    "group": frozenset({"task", "network", "service"}),
    "task": frozenset({"config", "env", "template", "resources", "service"}),
    "resources": frozenset({"network"}),
    "service": frozenset({"check", "meta", "canary_meta"}),
}
#: Docker config keys the policy checks; each must be written literally
CHECKED_CONFIG = frozenset({"network_mode", *policy.PRIVILEGE_KEYS})
CHECK_EVALUATED = ("check the evaluated job: 'weavenomad render -o json' with a nomad CLI on "
                   "PATH, or 'weavenomad run --dry-run' against Nomad")
EVALUATED_HINT = f"write it literally, or {CHECK_EVALUATED}"


def _named(kind: str, name: str) -> str:
    return f"{kind} {json.dumps(name, ensure_ascii=False)}"


class _Reader:
    def __init__(self, path: str):
        self.path = path

    def refuse(self, where: str, what: str, why: str, hint: str = EVALUATED_HINT):
        return ValidationError(f"{self.path}: {where}: {what} {why}", hint=hint)

    def evaluated(self, where: str, what: str, found: Expression) -> ValidationError:
        return self.refuse(where, what, f"is an expression ({_short(found.source)}) that Nomad "
                           "evaluates only when the job is submitted")

    def no_dynamic(self, body: dict, level: str, where: str) -> None:
        for labels, _ in blocks(body, "dynamic"):
            if labels and labels[0] in READ_BLOCKS[level]:
                raise self.refuse(where, f'dynamic "{labels[0]}"', "makes blocks that weavenomad "
                                  "must check and cannot see without evaluating the job",
                                  hint=f"write the blocks out, or {CHECK_EVALUATED}")

    def one_label(self, labels: tuple[str, ...], kind: str, where: str) -> str:
        if len(labels) != 1 or not isinstance(labels[0], str) or isinstance(labels[0],
                                                                             Expression):
            raise self.refuse(where, f"a {kind} block", "needs exactly one label, its name",
                              hint=f'write {kind} "name" {{ … }}')
        return labels[0]

    def sub_blocks(self, body: dict, name: str, where: str) -> list[tuple[tuple[str, ...], dict]]:
        """``blocks``, refusing the attribute form (``network = …``) Nomad would refuse too."""
        if name in body and not is_block_list(body[name]):
            raise self.refuse(where, name, "must be a block", hint=f"write {name} {{ … }}")
        return blocks(body, name)

    def mapping(self, body: dict, name: str, where: str) -> Any:
        """A map written as a block or as an attribute (``env { … }`` or ``env = { … }``)."""
        found = blocks(body, name)
        if len(found) > 1:
            raise self.refuse(where, name, f"is given {len(found)} times",
                              hint=f"merge the {name} blocks into one")
        raw = found[0][1] if found else body.get(name)
        if raw is None:
            return None
        result = value(raw)
        if not isinstance(result, dict | Expression):
            raise self.refuse(where, name, "must be a block or a map",
                              hint=f"write {name} {{ … }}")
        return result

    def literal(self, raw: Any, where: str, what: str) -> Any:
        result = value(raw)
        parts = expressions_in(result)
        if parts:
            raise self.evaluated(where, what, parts[0])
        return result

    # -- levels ------------------------------------------------------------------------------

    def job(self, document: dict) -> dict:
        found = blocks(document, "job")
        if len(found) != 1:
            raise ValidationError(f"{self.path}: expected one job block, found {len(found)}",
                                  hint='a job file holds one job "name" { … } block')
        labels, body = found[0]
        job_id = self.one_label(labels, "job", "the job file")
        where = _named("job", job_id)
        self.no_dynamic(body, "job", where)
        if "task" in body:
            raise self.refuse(where, "task", "is outside a group", hint="put it in a group block")
        meta = self.mapping(body, "meta", where)
        if isinstance(meta, Expression):
            raise self.refuse(where, "meta", f"is an expression ({_short(meta.source)}) that "
                              "weavenomad cannot add its keys to",
                              hint="write meta as a block or a map")
        name = value(body["name"]) if "name" in body else job_id
        groups = [self.group(block, labels, where)
                  for labels, block in self.sub_blocks(body, "group", where)]
        return {"ID": job_id, "Name": name, "TaskGroups": groups, "Meta": meta}

    def group(self, body: dict, labels: tuple[str, ...], where_job: str) -> dict:
        name = self.one_label(labels, "group", where_job)
        where = f"{where_job} {_named('group', name)}"
        self.no_dynamic(body, "group", where)
        networks = [self.network(block, where, f"network[{index}] mode") for index, (_, block)
                    in enumerate(self.sub_blocks(body, "network", where))]
        tasks = [self.task(block, labels, where)
                 for labels, block in self.sub_blocks(body, "task", where)]
        group = {"Name": name, "Networks": networks or None, "Tasks": tasks}
        self.services(body, group, where)
        return group

    def services(self, body: dict, record: dict, where: str) -> None:
        """A group's or task's ``service`` blocks, as far as ``run`` holds them under private
        names (:mod:`weavenomad.jobs.services`): what it renames must be literal."""
        found = self.sub_blocks(body, "service", where)
        if found:
            record["Services"] = [self.service(block, f"{where} service[{index}]")
                                  for index, (_, block) in enumerate(found)]

    def service(self, body: dict, where: str) -> dict:
        self.no_dynamic(body, "service", where)
        service: dict[str, Any] = {}
        for api, hcl in (("Name", "name"), ("Provider", "provider"), ("Tags", "tags"),
                         ("CanaryTags", "canary_tags")):
            if hcl in body:
                service[api] = self.literal(body[hcl], where, hcl)
        for api, hcl in (("Meta", "meta"), ("CanaryMeta", "canary_meta")):
            found = self.mapping(body, hcl, where)
            if isinstance(found, Expression):
                raise self.evaluated(where, hcl, found)
            parts = expressions_in(found)
            if parts:
                raise self.evaluated(where, hcl, parts[0])
            if found is not None:
                service[api] = found
        checks = [{"Name": self.literal(block["name"], where, "check name")
                   if "name" in block else None}
                  for _, block in self.sub_blocks(body, "check", where)]
        if checks:
            service["Checks"] = checks
        return service

    def network(self, body: dict, where: str, what: str) -> dict:
        return {"Mode": self.literal(body["mode"], where, what)} if "mode" in body else {}

    def task(self, body: dict, labels: tuple[str, ...], where_group: str) -> dict:
        name = self.one_label(labels, "task", where_group)
        where = f"{where_group} {_named('task', name)}"
        self.no_dynamic(body, "task", where)
        driver = self.literal(body.get("driver"), where, "driver")
        task: dict[str, Any] = {"Name": name, "Driver": driver,
                                "Config": self.mapping(body, "config", where),
                                "Env": self.mapping(body, "env", where)}
        templates = [self.template(block, where, index, driver == "docker")
                     for index, (_, block) in enumerate(self.sub_blocks(body, "template", where))]
        resources = [block for _, block in self.sub_blocks(body, "resources", where)]
        if len(resources) > 1:
            raise self.refuse(where, "resources", f"is given {len(resources)} times",
                              hint="merge the resources blocks into one")
        if resources:
            self.no_dynamic(resources[0], "resources", where)
            networks = [self.network(block, where, f"resources network[{index}] mode")
                        for index, (_, block)
                        in enumerate(self.sub_blocks(resources[0], "network", where))]
            task["Resources"] = {"Networks": networks or None}
        task["Templates"] = templates or None
        if driver == "docker":
            self.docker(body, task, where)
            self.services(body, task, where)
        return task

    def docker(self, body: dict, task: dict, where: str) -> None:
        """What the policy checks in a Docker task must be literal."""
        config, env = task["Config"], task["Env"]
        if isinstance(config, Expression):
            raise self.evaluated(where, "config", config)
        for _, block in blocks(body, "config"):
            if _has_dynamic(block):
                raise self.refuse(where, "config", "holds a dynamic block, which can make "
                                  "mounts or network settings weavenomad must check",
                                  hint=f"write the blocks out, or {CHECK_EVALUATED}")
        for key in sorted(CHECKED_CONFIG & (config or {}).keys()):
            parts = expressions_in(config[key])
            if parts:
                raise self.evaluated(where, f"config {key}", parts[0])
        if isinstance(env, Expression):
            raise self.evaluated(where, "env", env)
        cidr = (env or {}).get(weavecidr.ENV_NAME)
        if isinstance(cidr, Expression):
            raise self.evaluated(where, f"env {weavecidr.ENV_NAME}", cidr)

    def template(self, body: dict, where: str, index: int, checked: bool) -> dict:
        """A template's fields the policy reads; with ``env = true`` its text must be literal,
        as it can set the task's environment."""
        here = f"template[{index}]"
        fields = {"Envvars": "env", "EmbeddedTmpl": "data", "LeftDelim": "left_delimiter",
                  "SourcePath": "source"}
        template = {api: value(body[hcl]) for api, hcl in fields.items() if hcl in body}
        if not checked:
            return template
        envvars = template.get("Envvars")
        if isinstance(envvars, Expression):
            raise self.evaluated(where, f"{here} env", envvars)
        if envvars is True or envvars == "true":
            for api in ("EmbeddedTmpl", "LeftDelim"):
                if isinstance(template.get(api), Expression):
                    raise self.evaluated(where, f"{here} {fields[api]}", template[api])
        return template


def _has_dynamic(body: dict) -> bool:
    if "dynamic" in body and is_block_list(body["dynamic"]):
        return True
    return any(_has_dynamic(block) for key, item in body.items()
               if key not in RESERVED and is_block_list(item) for _, block in blocks(body, key))


def _short(source: str, limit: int = 60) -> str:
    text = " ".join(source.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def read_job(document: dict, path: str) -> dict:
    """The job JSON the transform reads, from a job file's python-hcl2 document; raises
    :class:`ValidationError` (one line naming the file, the block and what to do) when what
    the transform must check is not stated literally."""
    return _Reader(path).job(document)


def require_literal(job: dict, path: str) -> None:
    """Refuse a job that still holds expressions (offline JSON output cannot evaluate them)."""
    first = next(_expressions(job), None)
    if first is not None:
        where, what, found = first
        raise ValidationError(
            f"{path}: {where}: {what} is an expression ({_short(found.source)}) that only "
            "Nomad evaluates, so -o json cannot print it without a nomad CLI",
            hint="install the nomad CLI ('nomad job run -output' evaluates it offline), or use "
                 "-o hcl, which keeps it for Nomad to evaluate")


#: how the file names the job JSON fields :func:`read_job` fills
HCL_NAMES = {"Name": "name", "Meta": "meta", "Driver": "driver", "Config": "config",
             "Env": "env", "Templates": "template", "Resources": "resources",
             "Networks": "network", "Mode": "mode", "Envvars": "env", "EmbeddedTmpl": "data",
             "LeftDelim": "left_delimiter", "SourcePath": "source", "Services": "service",
             "Tags": "tags", "CanaryTags": "canary_tags", "CanaryMeta": "canary_meta",
             "Provider": "provider", "Checks": "check"}


def _expressions(job: dict) -> Iterator[tuple[str, str, Expression]]:
    """``(block, field, expression)`` for every expression left in :func:`read_job`'s job."""
    where_job = _named("job", job["ID"])
    yield from _located({k: v for k, v in job.items() if k != "TaskGroups"}, where_job, "")
    for group in job["TaskGroups"]:
        where_group = f"{where_job} {_named('group', group['Name'])}"
        yield from _located({"Networks": group["Networks"], "Services": group.get("Services")},
                            where_group, "")
        for task in group["Tasks"]:
            yield from _located(task, f"{where_group} {_named('task', task['Name'])}", "")


def _located(item: Any, where: str, field: str) -> Iterator[tuple[str, str, Expression]]:
    if isinstance(item, Expression):
        yield where, field, item
    elif isinstance(item, dict):
        for key, inner in item.items():
            yield from _located(inner, where, f"{field} {HCL_NAMES.get(key, key)}".strip())
    elif isinstance(item, list):
        for index, inner in enumerate(item):
            yield from _located(inner, where, f"{field}[{index}]")


# -- writing back ------------------------------------------------------------------------------


def write_back(document: dict, before: dict, after: dict) -> dict:
    """A copy of ``document`` with the transform's changes (``before`` is :func:`read_job`'s
    job, ``after`` the transformed one): each task's ``env`` and ``config`` entries, the job's
    ``meta`` entries and each service's name, tags, meta and check names that differ."""
    edited = copy.deepcopy(document)
    ((_, job_body),) = blocks(edited, "job")
    _apply(job_body, "meta", before.get("Meta"), after.get("Meta"))
    for (_, group_body), group_before, group_after in zip(
            blocks(job_body, "group"), before["TaskGroups"], after["TaskGroups"], strict=True):
        _services_back(group_body, group_before, group_after)
        for (_, task_body), task_before, task_after in zip(
                blocks(group_body, "task"), group_before["Tasks"], group_after["Tasks"],
                strict=True):
            _apply(task_body, "env", task_before.get("Env"), task_after.get("Env"))
            _apply(task_body, "config", task_before.get("Config"), task_after.get("Config"))
            _services_back(task_body, task_before, task_after)
    return edited


def _services_back(body: dict, before: dict, after: dict) -> None:
    """Each ``service`` block's name, tags, canary tags, meta, canary meta and check names as
    the transform set them."""
    if not before.get("Services"):
        return
    for (_, service_body), old, new in zip(blocks(body, "service"), before["Services"],
                                           after["Services"], strict=True):
        if old.get("Name") != new.get("Name"):
            service_body["name"] = _hcl_value(new["Name"])
        for api, hcl in (("Tags", "tags"), ("CanaryTags", "canary_tags")):
            if old.get(api) != new.get(api):
                service_body[hcl] = [_hcl_value(tag) for tag in new[api]]
        for api, hcl in (("Meta", "meta"), ("CanaryMeta", "canary_meta")):
            _apply(service_body, hcl, old.get(api), new.get(api))
        for (_, check_body), check_old, check_new in zip(
                blocks(service_body, "check"), old.get("Checks") or (), new.get("Checks") or (),
                strict=True):
            if check_old.get("Name") != check_new.get("Name"):
                check_body["name"] = _hcl_value(check_new["Name"])


def _apply(body: dict, name: str, old: dict | None, new: dict | None) -> None:
    old, new = old or {}, new or {}
    for key in old.keys() - new.keys():
        _remove(body, name, key)
    for key, item in new.items():
        if key not in old or old[key] != item:
            _set(body, name, key, _hcl_value(item))


def _hcl_value(item: Any) -> Any:
    if isinstance(item, Expression) or not isinstance(item, str):
        raise ValueError(f"the transform set {item!r}, which render cannot write back")
    return hcl_string(item)


def _set(body: dict, name: str, key: str, text: str) -> None:
    found = blocks(body, name)
    if found and IDENTIFIER.match(key):
        _put(found[0][1], key, text)
        return
    if found:  # a key HCL cannot write in a block (weavenomad.tenant): use the map form
        body[name] = {k: v for k, v in found[0][1].items() if k not in RESERVED}
    if isinstance(body.get(name), dict):
        _put(body[name], key, text)
    elif IDENTIFIER.match(key):
        body[name] = [{key: text, IS_BLOCK: True}]
    else:
        body[name] = {hcl_key(key): text}


def _put(mapping: dict, key: str, text: str) -> None:
    for raw in mapping:
        if raw not in RESERVED and key_text(raw) == key:
            mapping[raw] = text
            return
    mapping[hcl_key(key)] = text


def _remove(body: dict, name: str, key: str) -> None:
    found = blocks(body, name)
    mapping = found[0][1] if found else body.get(name)
    if isinstance(mapping, dict):
        for raw in [raw for raw in mapping if raw not in RESERVED and key_text(raw) == key]:
            del mapping[raw]


def literal_document(document: dict) -> dict:
    """A whole document's literal reading, block labels kept: two documents that read the
    same here tell Nomad the same, but for the spelling of expressions."""
    result: dict[str, Any] = {}
    for key, item in document.items():
        if key in RESERVED:
            continue
        if is_block_list(item):
            result[key] = [{"labels": list(labels), "body": literal_document(body)}
                           for labels, body in blocks(document, key)]
        else:
            result[key] = without_expressions(value(item))
    return result


#: stands for any expression when two readings of a job are compared
ANY_EXPRESSION = "${…}"


def without_expressions(job: Any) -> Any:
    """``job`` with every expression replaced by one marker: python-hcl2 may respell an
    expression it writes back, which changes nothing Nomad evaluates."""
    if isinstance(job, Expression):
        return ANY_EXPRESSION
    if isinstance(job, dict):
        return {k: without_expressions(v) for k, v in job.items()}
    if isinstance(job, list):
        return [without_expressions(v) for v in job]
    return job
