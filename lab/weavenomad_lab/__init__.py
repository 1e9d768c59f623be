"""The local lab: what a 3-node Nomad + Consul + Weave cluster looks like, on one machine.

Real parts: a private dockerd per node (real containers), Linux network namespaces, bridges,
veth pairs and iptables. Emulated parts: Weave Net (its Docker API proxy, IPAM, HTTP API and
``weave`` command), and simulated Consul and Nomad HTTP APIs that answer like the recorded real
ones in ``tests/fixtures/recorded``. See :mod:`weavenomad_lab.layout` for names and paths.

The product code never knows it talks to the lab: it only sees addresses, sockets and the
``weave`` command on PATH, exactly as on a real node.
"""

__version__ = "0.1.0"
