"""The container Nomad 1.0's Docker driver creates for a task, as docker-SDK arguments. Pure.

Checked against ``fixtures/recorded/docker-container-inspect-nomad-task.json``: name
``<task>-<allocID>``, label ``com.hashicorp.nomad.alloc_id``, Cmd ``[command] + args``, the
``NOMAD_*`` environment plus the task's env (sorted), binds of the alloc/local/secrets
directories, Memory = MemorySwap = MemoryMB MiB, CpuShares = CPU, Dns, LogConfig,
NetworkMode ``default``, CapDrop NET_RAW (Nomad 1.0's default capability set).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ALLOC_LABEL = "com.hashicorp.nomad.alloc_id"
_REFERENCE = re.compile(r"\$\{([^}]+)\}")


def container_name(task_name: str, alloc_id: str) -> str:
    return f"{task_name}-{alloc_id}"


def task_environment(alloc: dict, task: dict, node: dict) -> dict[str, str]:
    """NOMAD_* variables (as the recorded container has them) plus ports, meta and the task's
    own env, whose values may refer to ``${NOMAD_*}``, ``${attr.*}``, ``${node.*}`` or
    ``${meta.*}``."""
    job = alloc["Job"]
    group = next(g for g in job["TaskGroups"] if g["Name"] == alloc["TaskGroup"])
    resources = task.get("Resources") or {}
    env = {
        "NOMAD_ALLOC_DIR": "/alloc",
        "NOMAD_ALLOC_ID": alloc["ID"],
        "NOMAD_ALLOC_INDEX": alloc["Name"].rsplit("[", 1)[-1].rstrip("]"),
        "NOMAD_ALLOC_NAME": alloc["Name"],
        "NOMAD_CPU_LIMIT": str(resources.get("CPU") or 0),
        "NOMAD_DC": node.get("Datacenter") or "dc1",
        "NOMAD_GROUP_NAME": group["Name"],
        "NOMAD_JOB_ID": job["ID"],
        "NOMAD_JOB_NAME": job["Name"],
        "NOMAD_MEMORY_LIMIT": str(resources.get("MemoryMB") or 0),
        "NOMAD_NAMESPACE": job.get("Namespace") or "default",
        "NOMAD_REGION": job.get("Region") or "global",
        "NOMAD_SECRETS_DIR": "/secrets",
        "NOMAD_TASK_DIR": "/local",
        "NOMAD_TASK_NAME": task["Name"],
    }
    meta = {**(job.get("Meta") or {}), **(group.get("Meta") or {}), **(task.get("Meta") or {})}
    for key, value in meta.items():
        env[f"NOMAD_META_{key}"] = value
        env[f"NOMAD_META_{key.upper()}"] = value
    for label, ip, host_port, to in task_ports(alloc, task["Name"]):
        env[f"NOMAD_IP_{label}"] = ip
        env[f"NOMAD_HOST_PORT_{label}"] = str(host_port)
        env[f"NOMAD_PORT_{label}"] = str(to or host_port)
        env[f"NOMAD_ADDR_{label}"] = f"{ip}:{to or host_port}"
        env[f"NOMAD_HOST_ADDR_{label}"] = f"{ip}:{host_port}"
    for key, value in (task.get("Env") or {}).items():
        env[key] = interpolate(str(value), env, node)
    return env


def task_ports(alloc: dict, task_name: str) -> list[tuple[str, str, int, int]]:
    """(label, host IP, host port, container port or 0) of the group's and the task's ports."""
    found = []
    shared = (alloc.get("AllocatedResources") or {}).get("Shared") or {}
    for port in shared.get("Ports") or []:
        found.append((port["Label"], port.get("HostIP") or "", int(port["Value"]),
                      int(port.get("To") or 0)))  # fmt: skip
    task_res = ((alloc.get("AllocatedResources") or {}).get("Tasks") or {}).get(task_name) or {}
    for network in task_res.get("Networks") or []:
        for port in (network.get("ReservedPorts") or []) + (network.get("DynamicPorts") or []):
            found.append((port["Label"], network.get("IP") or "", int(port["Value"]),
                          int(port.get("To") or 0)))  # fmt: skip
    return found


def interpolate(text: str, env: dict[str, str], node: dict) -> str:
    def value(match: re.Match) -> str:
        ref = match.group(1)
        if ref in env:
            return env[ref]
        scope, _, key = ref.partition(".")
        if scope == "attr":
            return (node.get("Attributes") or {}).get(key, match.group(0))
        if scope == "meta":
            return (node.get("Meta") or {}).get(key, match.group(0))
        if scope == "node":
            return {"unique.id": node.get("ID"), "unique.name": node.get("Name"),
                    "datacenter": node.get("Datacenter"), "class": node.get("NodeClass")
                    }.get(key) or match.group(0)  # fmt: skip
        return match.group(0)

    return _REFERENCE.sub(value, text)


def _interpolate_config(value: Any, env: dict[str, str], node: dict) -> Any:
    if isinstance(value, str):
        return interpolate(value, env, node)
    if isinstance(value, list):
        return [_interpolate_config(v, env, node) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate_config(v, env, node) for k, v in value.items()}
    return value


def _first_block(value: Any) -> dict:
    """HCL blocks in a driver config arrive as a list of maps (``logging = [{…}]``)."""
    if isinstance(value, list):
        return value[0] if value and isinstance(value[0], dict) else {}
    return value if isinstance(value, dict) else {}


def container_spec(alloc: dict, task: dict, node: dict, alloc_dir: Path) -> dict:
    """Keyword arguments of ``docker.APIClient.create_container`` (``host_config`` holds the
    keyword arguments of ``create_host_config``)."""
    env = task_environment(alloc, task, node)
    config = _interpolate_config(task.get("Config") or {}, env, node)
    resources = task.get("Resources") or {}
    memory = int(resources.get("MemoryMB") or 300) * 1024 * 1024
    command = None
    if config.get("command"):
        command = [config["command"], *(config.get("args") or [])]
    elif config.get("args"):
        command = list(config["args"])
    labels: dict[str, str] = {}
    for block in config.get("labels") or []:
        labels.update(block if isinstance(block, dict) else {})
    if isinstance(config.get("labels"), dict):
        labels.update(config["labels"])
    labels[ALLOC_LABEL] = alloc["ID"]
    logging = _first_block(config.get("logging"))
    task_dir = alloc_dir / task["Name"]
    host_config: dict[str, Any] = {
        "binds": [f"{alloc_dir / 'alloc'}:/alloc", f"{task_dir / 'local'}:/local",
                  f"{task_dir / 'secrets'}:/secrets", *(config.get("volumes") or [])],
        "mem_limit": memory,
        "memswap_limit": memory,
        "mem_swappiness": 0,
        "cpu_shares": int(resources.get("CPU") or 100),
        "network_mode": config.get("network_mode") or "default",
        "cap_drop": ["NET_RAW"],
        "log_config": {"type": logging.get("type") or "json-file",
                       "config": _first_block(logging.get("config"))},  # fmt: skip
    }
    if config.get("dns_servers"):
        host_config["dns"] = list(config["dns_servers"])
    if config.get("dns_search_domains"):
        host_config["dns_search"] = list(config["dns_search_domains"])
    if config.get("cap_add"):
        host_config["cap_add"] = list(config["cap_add"])
    if config.get("privileged"):
        host_config["privileged"] = True
    if config.get("extra_hosts"):
        host_config["extra_hosts"] = dict(h.split(":", 1) for h in config["extra_hosts"])
    port_map = _first_block(config.get("port_map"))
    wanted = set(config.get("ports") or [])
    bindings: dict[str, list[tuple[str, int]]] = {}
    for label, ip, host_port, to in task_ports(alloc, task["Name"]):
        if wanted and label not in wanted and not port_map:
            continue
        inside = int(port_map.get(label) or to or host_port)
        for proto in ("tcp", "udp"):
            bindings[f"{inside}/{proto}"] = [(ip, host_port)]
    if bindings:
        host_config["port_bindings"] = bindings
    spec = {
        "image": config.get("image"),
        "name": container_name(task["Name"], alloc["ID"]),
        "command": command,
        "entrypoint": list(config["entrypoint"]) if config.get("entrypoint") else None,
        "environment": sorted(f"{k}={v}" for k, v in env.items()),
        "labels": labels,
        "host_config": host_config,
    }
    if bindings:
        spec["ports"] = [(int(key.split("/")[0]), key.split("/")[1]) for key in bindings]
    if config.get("hostname"):
        spec["hostname"] = config["hostname"]
    if config.get("work_dir"):
        spec["working_dir"] = config["work_dir"]
    if task.get("User"):
        spec["user"] = task["User"]
    return spec
