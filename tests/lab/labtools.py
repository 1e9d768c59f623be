"""Helpers shared by the lab tests: waiting, talking to a node's agents, and wiring a node's
Nomad to the Weave proxy the way an operator (or ``weavenomad bootstrap``) does."""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import sys
import threading
import time

import pytest
import requests
from weavenomad_lab.layout import LabLayout, NodeLayout
from weavenomad_lab.nomad import control

TIMEOUT = 60.0
NOMAD_ALLOC_LABEL = "com.hashicorp.nomad.alloc_id"
WEAVE_PROXY_CONFIG = ('client {\n  enabled = true\n}\n'
                      'plugin "docker" {\n  config {\n'
                      '    endpoint = "unix:///var/run/weave/weave.sock"\n  }\n}\n')


def wait_for(what: str, probe, timeout: float = TIMEOUT, every: float = 0.2):
    """Poll ``probe`` until it returns something truthy; fail naming ``what``."""
    stop = threading.Event()
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        stop.wait(every)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {value!r})")


def nomad(node: NodeLayout, method: str, path: str, **kwargs):
    answer = requests.request(method, node.url("nomad") + path, timeout=30, **kwargs)
    answer.raise_for_status()
    return answer.json()


def consul(node: NodeLayout, method: str, path: str, **kwargs):
    answer = requests.request(method, node.url("consul") + path, timeout=10, **kwargs)
    answer.raise_for_status()
    return answer.json() if answer.text.strip() else None


def docker_client(node: NodeLayout):
    import docker

    return docker.DockerClient(base_url=node.docker_host, timeout=30)


def weave(lab: LabLayout, node: NodeLayout, *args: str) -> str:
    """Run the node's ``weave`` command; fail the test on a non-zero exit."""
    done = subprocess.run(
        [sys.executable, "-m", "weavenomad_lab.weave.shim", "--lab-state-dir",
         str(lab.state_dir), "--node", node.name, *args],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def launch_weave(lab: LabLayout) -> None:
    """``weave launch`` on every node with the seed's range and the other nodes as peers."""
    peers = [n.host_ip for n in lab.nodes]
    for node in lab.nodes:
        weave(lab, node, "launch", "--no-dns", "--ipalloc-range", "10.32.0.0/16",
              "--ipalloc-default-subnet", "10.32.0.0/24", "--no-default-ipalloc",
              *[p for p in peers if p != node.host_ip])


def weave_overlay(lab: LabLayout, sync: float | None = None) -> None:
    """Weave launched on every node and each node's Nomad using the Weave proxy (its Docker
    driver healthy again); with ``sync``, Nomad's Consul sync every ``sync`` seconds and no
    probation, so tests need not wait 30 s for it."""
    launch_weave(lab)
    for node in lab.nodes:
        set_endpoint(lab, node, WEAVE_PROXY_CONFIG)
        wait_for(f"{node.name}'s docker driver", lambda node=node: driver(node)["Healthy"])
    if sync is not None:
        control.set_sync_timing(lab, interval=sync, probation=0)


def set_endpoint(lab: LabLayout, node: NodeLayout, config_text: str) -> None:
    """Rewrite the node's Nomad agent config and restart the agent."""
    (node.nomad_config_dir / "agent.hcl").write_text(config_text)
    control.restart_agent(lab, node.name)


def restore_endpoint(lab: LabLayout, node: NodeLayout) -> None:
    from weavenomad_lab.nomad.agentconfig import default_text

    set_endpoint(lab, node, default_text(node))


def driver(node: NodeLayout) -> dict:
    ours = [n for n in nomad(node, "GET", "/v1/nodes") if n["Address"] == node.host_ip][0]
    return ours["Drivers"]["docker"]


def task_containers(lab: LabLayout, job_id: str | None = None) -> list:
    """Nomad's task containers on every node (of one job when ``job_id`` is given)."""
    found = []
    for node in lab.nodes:
        for container in docker_client(node).containers.list(
                all=True, ignore_removed=True, filters={"label": NOMAD_ALLOC_LABEL}):
            env = container.attrs["Config"]["Env"] or []
            if job_id is None or f"NOMAD_JOB_ID={job_id}" in env:
                found.append(container)
    return found


def ethwe_address(container) -> ipaddress.IPv4Interface:
    address = ethwe_address_if_any(container)
    assert address is not None, f"{container.name}: ethwe has no IPv4 address"
    return address


def ethwe_address_if_any(container) -> ipaddress.IPv4Interface | None:
    """The address on ``ethwe``, or None while the proxy's attach has created the interface
    but not yet given it its address (a moment that probes may observe)."""
    code, output = container.exec_run(["ip", "-4", "-o", "addr", "show", "ethwe"])
    assert code == 0, output
    found = re.search(rb"inet (\S+)", output)
    return ipaddress.ip_interface(found.group(1).decode()) if found else None


def node_cli_env(lab: LabLayout, node: NodeLayout, **extra: str) -> dict:
    """The environment ``lab env --node`` gives a shell, for running ``weavenomad`` as a user."""
    from weavenomad_lab import core

    env = dict(os.environ)
    for line in core.env_lines(lab, node):
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value.strip("'") if key != "PATH" else f"{node.bin_dir}:{os.environ['PATH']}"
    env.update(extra)
    return env


def in_node_command(lab: LabLayout, node: NodeLayout, *argv: str,
                    env: dict | None = None) -> tuple[list[str], dict]:
    """The argv and environment that run ``argv`` inside the node, as ``lab exec`` does: in its
    network namespace, with its agents at their in-node addresses (a real node's daemons,
    the reconciler above all, see its own weave bridge and iptables). ``env`` is added."""
    from weavenomad_lab import core

    environment = core.exec_env(lab, node, os.environ)
    environment.update(env or {})
    return core.exec_argv(lab, node, list(argv)), environment


def on_node(lab: LabLayout, node: NodeLayout, *argv: str, env: dict | None = None,
            timeout: float = 180) -> subprocess.CompletedProcess:
    command, environment = in_node_command(lab, node, *argv, env=env)
    return subprocess.run(command, env=environment, capture_output=True, text=True,
                          timeout=timeout)


def weavenomad_on(lab: LabLayout, node: NodeLayout, *args: str, env: dict | None = None,
                  timeout: float = 180) -> subprocess.CompletedProcess:
    """``weavenomad ARGS`` run inside the node, as an operator logged in there would."""
    return on_node(lab, node, sys.executable, "-m", "weavenomad", *args, env=env,
                   timeout=timeout)


def longest_wrong_stretch(samples: list[tuple[float, bool]], every: float) -> float:
    """The longest run of wrong answers in ``samples`` (moment, answer was right), in seconds:
    from the first wrong sample to the last one of the run, plus one sampling interval.

    Only wrong answers count: on two loaded cores one slow request spaces two right answers
    apart by more than a second, and that is the sampler waiting, not Consul lacking a task.
    """
    longest, first_wrong, last_wrong = 0.0, None, None
    for moment, right in [*samples, (float("inf"), True)]:
        if not right:
            first_wrong = moment if first_wrong is None else first_wrong
            last_wrong = moment
        elif first_wrong is not None:
            longest = max(longest, last_wrong - first_wrong + every)
            first_wrong = None
    return longest
