"""``python -m weavenomad_lab.consul --state-dir S``: the lab's simulated Consul daemon.

Reads the lab layout from ``S/lab.json`` and serves one agent per lab node, inside the node's
namespace on 127.0.0.1:8500 and on the host loopback at the node's ``consul`` port. The first
node is the server (and leader). With the lab's ACLs (``lab up --acl``) requests need the token
in ``S/security/consul.token``, as with Consul's master token; with its TLS (``--tls``) every
listener serves HTTPS only. Tokens are read from files, never from the command line, so they
do not show in a process list. SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import ssl
import sys
import threading
from pathlib import Path

from weavenomad.errors import WeavenomadError
from weavenomad_lab import security
from weavenomad_lab.consul import persist, versions
from weavenomad_lab.consul.component import write_dns_ports
from weavenomad_lab.consul.dns import DNS_PORT
from weavenomad_lab.consul.server import ConsulSimulator, SimNode
from weavenomad_lab.errors import LabError
from weavenomad_lab.layout import CONSUL_PORT, LabLayout

log = logging.getLogger("weavenomad_lab.consul")


def build(layout: LabLayout, acl_token: str | None = None,
          tls: ssl.SSLContext | None = None) -> ConsulSimulator:
    """The simulator for ``layout``, listening on every node's two addresses (not started),
    playing the Consul version ``S/consul/settings.json`` names (:mod:`.versions`)."""
    nodes = [SimNode(n.name, n.host_ip, n.netns, server=(i == 0))
             for i, n in enumerate(layout.nodes)]
    try:
        flavour = versions.read_settings(layout.component_dir("consul"))
    except versions.UnknownVersion as exc:
        raise LabError(str(exc), hint="see weavenomad_lab.consul.versions") from None
    sim = ConsulSimulator(nodes, acl_token=acl_token, tls=tls, flavour=flavour)
    dns_ports: dict[str, int] = {}
    try:
        for node in layout.nodes:
            if "consul" not in node.ports:
                raise LabError(f"lab.json of {layout.state_dir} has no consul port for node "
                               f"{node.name}", hint="run 'weavenomad lab up' again")
            where = f"127.0.0.1:{CONSUL_PORT} in namespace {node.netns}"
            try:
                sim.listen(node.name, "127.0.0.1", CONSUL_PORT, netns=node.netns)
                where = f"127.0.0.1:{node.ports['consul']} on the host"
                sim.listen(node.name, "127.0.0.1", node.ports["consul"])
                where = f"UDP 127.0.0.1:{DNS_PORT} in namespace {node.netns}"
                sim.listen_dns("127.0.0.1", DNS_PORT, netns=node.netns)
                where = "a free UDP port on the host's 127.0.0.1"
                dns_ports[node.name] = sim.listen_dns("127.0.0.1", 0)
            except OSError as exc:
                raise LabError(f"simulated Consul cannot listen on {where} for node "
                               f"{node.name}: {exc.strerror or exc}",
                               hint="is the lab network up and the port free? "
                                    "run 'weavenomad lab up' again") from None
        write_dns_ports(layout, dns_ports)
    except BaseException:
        sim.stop()
        raise
    return sim



def run(layout: LabLayout, stop: threading.Event, *, acl_token: str | None = None,
        tls: ssl.SSLContext | None = None) -> None:
    """Serve until ``stop`` is set. What the cluster held when it last stopped comes back
    (:mod:`.persist`), and what it holds now is kept for the next start."""
    sim = build(layout, acl_token, tls)
    state_file = layout.component_dir("consul") / persist.STATE_FILE
    try:
        saved = persist.load(state_file)
    except ValueError as exc:
        sim.stop()
        raise LabError(str(exc), hint="remove the file to start with an empty Consul") from None
    if saved is not None:
        sim.state.restore(saved)
        log.info("restored the catalog and KV store of %s", state_file)
    sim.start()
    try:
        for node in layout.nodes:
            log.info("agent %s: 127.0.0.1:%d in %s, 127.0.0.1:%d on the host", node.name,
                     CONSUL_PORT, node.netns, node.ports["consul"])
        stop.wait()
    finally:
        sim.stop()
        persist.save(state_file, sim.state.dump())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m weavenomad_lab.consul",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        layout = LabLayout.load(args.state_dir)
        token = security.token(layout, "consul")
        if layout.security.acl and token is None:
            raise LabError(f"the lab has ACLs but no token in "
                           f"{layout.security_files.token('consul')}",
                           hint="run 'weavenomad lab up' again")
        try:
            tls = security.server_context(layout)
        except OSError as exc:  # ssl.SSLError too
            raise LabError(f"cannot load the lab's TLS files: {exc}",
                           hint="run 'weavenomad lab up' again") from None
        run(layout, stop, acl_token=token, tls=tls)
    except WeavenomadError as exc:
        print(f"simulated consul: {exc.one_line()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
