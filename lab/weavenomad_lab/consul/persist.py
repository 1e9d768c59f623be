"""What the simulated Consul keeps across a restart, as real Consul does: the servers keep the
catalog and the KV store in their Raft log, and each agent keeps the services and checks
registered through it in its data directory (``services/``, ``checks/``, ``checks/state`` for
TTL statuses) and registers them again when it starts. The lab's Consul is one process for the
whole cluster, so one file holds it all: ``S/consul/state.json``, written when the process
stops and read when it starts (``lab down`` removes it with the component's directory).

Pure: the state's records to JSON-ready dicts and back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from weavenomad_lab.consul.kv import KVEntry, KVStore
from weavenomad_lab.consul.records import Check, CheckDefinition, Service

FORMAT = 1
STATE_FILE = "state.json"


def service_to_json(service: Service) -> dict:
    return {"id": service.service_id, "name": service.name, "tags": list(service.tags),
            "address": service.address, "port": service.port, "meta": dict(service.meta),
            "enable_tag_override": service.enable_tag_override,
            "weights": list(service.weights), "kind": service.kind,
            "create_index": service.create_index, "modify_index": service.modify_index,
            "namespace": service.namespace, "partition": service.partition}


def service_from_json(node: str, data: dict) -> Service:
    return Service(node, data["id"], data["name"], tuple(data["tags"]), data["address"],
                   int(data["port"]), dict(data["meta"]), bool(data["enable_tag_override"]),
                   tuple(data["weights"]), data.get("kind", ""), int(data["create_index"]),
                   int(data["modify_index"]), namespace=data.get("namespace"),
                   partition=data.get("partition"))


def definition_to_json(definition: CheckDefinition | None) -> dict | None:
    if definition is None:
        return None
    return {"kind": definition.kind, "tcp": definition.tcp, "http": definition.http,
            "method": definition.method,
            "header": [[name, list(values)] for name, values in definition.header],
            "tls_skip_verify": definition.tls_skip_verify, "interval": definition.interval,
            "timeout": definition.timeout, "ttl": definition.ttl,
            "deregister_after": definition.deregister_after}


def definition_from_json(data: dict | None) -> CheckDefinition | None:
    if data is None:
        return None
    header = tuple((name, tuple(values)) for name, values in data["header"])
    return CheckDefinition(data["kind"], data["tcp"], data["http"], data["method"], header,
                           bool(data["tls_skip_verify"]), float(data["interval"]),
                           float(data["timeout"]), float(data["ttl"]),
                           float(data["deregister_after"]))


def check_to_json(check: Check) -> dict:
    return {"id": check.check_id, "name": check.name, "status": check.status,
            "notes": check.notes, "output": check.output, "service_id": check.service_id,
            "definition": definition_to_json(check.definition),
            "create_index": check.create_index, "modify_index": check.modify_index,
            "ttl_output": check.ttl_output, "namespace": check.namespace,
            "partition": check.partition}


def check_from_json(node: str, data: dict, generation: int) -> Check:
    return Check(node, data["id"], data["name"], data["status"], data["notes"],
                 data["output"], data["service_id"], definition_from_json(data["definition"]),
                 int(data["create_index"]), int(data["modify_index"]), generation,
                 ttl_output=data.get("ttl_output", ""), namespace=data.get("namespace"),
                 partition=data.get("partition"))


def kv_to_json(kv: KVStore) -> dict:
    return {"entries": [{"key": e.key, "value": e.value.hex() if e.value else None,
                         "flags": e.flags, "create_index": e.create_index,
                         "modify_index": e.modify_index, "lock_index": e.lock_index}
                        for e in kv.under("")],
            "tombstones": dict(kv.tombstones()), "index": kv.table_index}


def kv_from_json(data: dict) -> KVStore:
    kv = KVStore()
    entries = [KVEntry(e["key"], bytes.fromhex(e["value"]) if e["value"] else None,
                       int(e["flags"]), int(e["create_index"]), int(e["modify_index"]),
                       int(e["lock_index"])) for e in data["entries"]]
    kv.restore(entries, {k: int(v) for k, v in data["tombstones"].items()}, int(data["index"]))
    return kv


def save(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"format": FORMAT, **data}) + "\n")
    os.replace(tmp, path)


def load(path: Path) -> dict | None:
    """The saved state, or None when there is none or it is of another format."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable Consul state: {exc}") from None
    return data if data.get("format") == FORMAT else None
