"""What a lab node's Nomad client reports about itself: the Docker driver's fingerprint (as
``drivers/docker/fingerprint.go``: healthy when the endpoint answers ``/version``, else
"Failed to connect to docker daemon", undetected until it has once been seen) and the node
document the servers store (``structs.Node``)."""

from __future__ import annotations

import hashlib
import os
import platform
from typing import Any

from weavenomad_lab.nomad import shapes
from weavenomad_lab.nomad.gostyle import rfc3339

CONNECT_FAILED = "Failed to connect to docker daemon"
OUTSIDE_LAB = "Failed to connect to docker daemon: the lab only reaches its own Docker sockets"


def docker_driver(client: Any | None, seen_before: bool, now: int,
                  refusal: str = CONNECT_FAILED) -> dict:  # fmt: skip
    """Drivers.docker of the node. ``client`` is a docker.DockerClient or None when the
    configured endpoint is not one the lab may use."""
    if client is not None:
        try:
            version = client.version()
            info = client.info()
        except Exception:  # any failure to talk to the daemon: connection, API, timeout
            refusal = CONNECT_FAILED
        else:
            attributes = {
                "driver.docker": "true",
                "driver.docker.os_type": version.get("Os") or "linux",
                "driver.docker.runtimes": ",".join(sorted((info.get("Runtimes") or {}).keys())),
                "driver.docker.version": version.get("Version") or "",
            }
            return shapes.driver_info(True, True, "Healthy", attributes, now)
    return shapes.driver_info(seen_before, False, refusal, None, now)


def node_id_for(lab_name: str, node_name: str, salt: str) -> str:
    """A stable node ID (Nomad keeps its node ID in the data dir across restarts)."""
    raw = hashlib.sha256(f"{lab_name}/{node_name}/{salt}".encode()).hexdigest()
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:32]}"


def _memory_mb() -> int:
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 4096
    return pages // (1024 * 1024)


def node_document(*, node_id: str, name: str, ip: str, datacenter: str, docker: dict,
                  meta: dict[str, str], now: int, status: str = "ready",
                  status_description: str = "") -> dict:  # fmt: skip
    cores = os.cpu_count() or 1
    mhz = 2000
    memory = _memory_mb()
    attributes = {
        "cpu.arch": platform.machine() or "amd64",
        "cpu.numcores": str(cores),
        "cpu.totalcompute": str(cores * mhz),
        "kernel.name": "linux",
        "kernel.version": platform.release(),
        "memory.totalbytes": str(memory * 1024 * 1024),
        "nomad.advertise.address": f"{ip}:4646",
        "nomad.revision": "",
        "nomad.version": shapes.NODE_VERSION,
        "os.name": "debian",
        "unique.hostname": name,
        "unique.network.ip-address": ip,
        "consul.datacenter": datacenter,
        "unique.consul.name": name,
    }
    if docker.get("Healthy"):
        attributes.update({"driver.docker": "1",
                           **{k: v for k, v in (docker["Attributes"] or {}).items()
                              if k != "driver.docker"}})  # fmt: skip
    network = {"CIDR": f"{ip}/32", "DNS": None, "Device": "eth0", "DynamicPorts": None,
               "IP": ip, "MBits": 1000, "Mode": "host", "ReservedPorts": None}  # fmt: skip
    return {
        "Attributes": attributes,
        "CSIControllerPlugins": None,
        "CSINodePlugins": None,
        "ComputedClass": "v1:" + hashlib.sha1(datacenter.encode()).hexdigest()[:19],
        "CreateIndex": 0,
        "Datacenter": datacenter,
        "Drain": False,
        "DrainStrategy": None,
        # the lab runs Docker tasks only; the other built-in drivers report as on a host
        # without them
        "Drivers": {
            "docker": docker,
            "exec": shapes.driver_info(False, False, "", None, now),
            "java": shapes.driver_info(False, False, "", None, now),
            "qemu": shapes.driver_info(False, False, "", None, now),
            "raw_exec": shapes.driver_info(False, False, "disabled", None, now),
        },
        "Events": [{"CreateIndex": 0, "Details": None, "Message": "Node registered",
                    "Subsystem": "Cluster", "Timestamp": rfc3339(now)}],  # fmt: skip
        "HTTPAddr": f"{ip}:4646",
        "HostNetworks": None,
        "HostVolumes": None,
        "ID": node_id,
        "Links": None,
        "Meta": dict(meta),
        "ModifyIndex": 0,
        "Name": name,
        "NodeClass": "",
        "NodeResources": {
            "Cpu": {"CpuShares": cores * mhz},
            "Devices": None,
            "Disk": {"DiskMB": 100000},
            "Memory": {"MemoryMB": memory},
            "Networks": [network],
        },
        "Reserved": {"CPU": 0, "Devices": None, "DiskMB": 0, "IOPS": 0, "MemoryMB": 0,
                     "Networks": None},  # fmt: skip
        "ReservedResources": {"Cpu": {"CpuShares": 0}, "Disk": {"DiskMB": 0},
                              "Memory": {"MemoryMB": 0},
                              "Networks": {"ReservedHostPorts": ""}},  # fmt: skip
        "Resources": {"CPU": cores * mhz, "Devices": None, "DiskMB": 100000, "IOPS": 0,
                      "MemoryMB": memory, "Networks": [network]},  # fmt: skip
        "SchedulingEligibility": "eligible",
        "SecretID": "",
        "Status": status,
        "StatusDescription": status_description,
        "StatusUpdatedAt": now // 1_000_000_000,
        "TLSEnabled": False,
    }
