"""One lab node goes down and comes back (:func:`reboot`), as a real reboot does to a node of
the recorded cluster (tests/fixtures/recorded/day-two/1a-*).

Down: the node's Nomad agent dies (it stops or deregisters nothing), Weave's processes die and
the kernel forgets the weave bridge, its addresses and every iptables rule, the agents of
Consul stop, and the node's dockerd stops with every container. Kept, as on disk: Weave's IPAM
(weavedb) and launch flags, Consul's catalog and KV store, Nomad's allocations and node ID.

Up, in the order the daemons start on a booting node: dockerd, whose ``--restart=always``
router container brings Weave back (a new bridge without the exposed addresses, though its
IPAM still owns them), Consul, then Nomad's agent, which takes its allocations up again and
starts the tasks whose containers died. Nothing of weavenomad's is touched: its reconciler is
the operator's (or the test's) to start, as systemd would.

The lab's Consul is one process for the whole cluster, so every node's agent restarts with it
(keeping what it held).
"""

from __future__ import annotations

import threading
import time

from weavenomad_lab import dockerd
from weavenomad_lab.consul.component import COMPONENT as CONSUL
from weavenomad_lab.errors import LabError
from weavenomad_lab.layout import LabLayout
from weavenomad_lab.nomad import control as nomad_control
from weavenomad_lab.weave import COMPONENT_NAME as WEAVE
from weavenomad_lab.weave import control_call

#: seconds the router container gets to bring Weave back after dockerd started
WEAVE_BACK_WITHIN = 60.0


def node_down(lab: LabLayout, name: str) -> None:
    node = lab.node(name)
    nomad_control.crash_agent(lab, node.name)
    _weave(lab, {"op": "node-down", "node": node.name})
    CONSUL.daemon(lab).stop()
    dockerd.kill_task_containers(node)
    dockerd.stop_dockerd(dockerd.daemon(lab, node))


def node_up(lab: LabLayout, name: str) -> None:
    node = lab.node(name)
    dockerd.start_node(lab, node)
    CONSUL.up(lab)
    if node.name in _weave(lab, {"op": "options"}).get("nodes", []):  # it was launched
        _wait_for_weave(lab, node.name)
    nomad_control.boot_agent(lab, node.name)


def reboot(lab: LabLayout, name: str, down_for: float = 1.0) -> None:
    node_down(lab, name)
    threading.Event().wait(down_for)
    node_up(lab, name)


def _weave(lab: LabLayout, request: dict) -> dict:
    answer = control_call(lab.component_dir(WEAVE), request)
    if not answer.get("ok"):
        raise LabError(f"the weave emulator refused {request['op']}: {answer.get('error')}")
    return answer


def _wait_for_weave(lab: LabLayout, name: str) -> None:
    deadline = time.monotonic() + WEAVE_BACK_WITHIN
    while time.monotonic() < deadline:
        if name in _weave(lab, {"op": "launched"}).get("nodes", {}):
            return
        threading.Event().wait(0.1)
    raise LabError(f"Weave of node {name} did not come back within "
                   f"{WEAVE_BACK_WITHIN:.0f}s of its dockerd", hint="see the weave log")
