"""The lab's simulated Nomad 1.0: the servers' HTTP API and one client per lab node.

The servers (``state``, ``scheduler``, ``http``) keep jobs, evaluations, allocations,
deployments and nodes with Nomad's indexes and blocking queries; each node's client
(``agent``, ``client``) reads its agent config (``agentconfig``), fingerprints its Docker
endpoint, runs tasks as real containers through that endpoint (its dockerd, or the Weave proxy
socket once the config says so) and registers their services in the node's Consul agent as
Nomad does (``consul_sync``, ``consul_client``). ``component`` plugs it into ``lab up``.
"""
