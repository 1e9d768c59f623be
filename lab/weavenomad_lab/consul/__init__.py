"""The lab's simulated Consul 1.4: one process holds the cluster, each lab node has an agent.

- :mod:`.state` (+ :mod:`.reads`, :mod:`.kv`, :mod:`.records`): the catalog, checks, KV and
  Raft-like indexes, and blocking queries;
- :mod:`.http` (+ :mod:`.endpoints`, :mod:`.kv_api`, :mod:`.registration`, :mod:`.decode`):
  the HTTP API with Consul's shapes, status codes and error texts;
- :mod:`.checks`: TCP/HTTP/TTL checks run from the node's network namespace;
- :mod:`.server`: listeners and the :class:`~.server.ConsulSimulator` that ties it together;
- :mod:`.component`: ``weavenomad lab up/down/status`` integration; ``python -m
  weavenomad_lab.consul --state-dir S`` is the daemon it starts.
"""

from pathlib import Path

COMPONENT_NAME = "consul"


def acl_token_file(state_dir: Path) -> Path:
    """The master token of the lab's Consul when the lab has ACLs (``lab up --acl``); see
    :mod:`weavenomad_lab.security`."""
    return Path(state_dir) / "security" / f"{COMPONENT_NAME}.token"
