"""Observed node facts for the bootstrap tests, imported by the other test_bootstrap_* files: a
fresh node like a lab node before bootstrap, and the same node bootstrapped (the shapes of the
recorded answers in tests/fixtures/recorded)."""

from __future__ import annotations

import copy
import json
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

from weavenomad.bootstrap.observe import NodeFacts
from weavenomad.nodeconfig.edit import ConfigFile
from weavenomad.tenancy.model import Cluster, Registry, Tenant

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"

WEAVE_SOCK = "unix:///var/run/weave/weave.sock"
DOCKER_SOCK = "unix:///var/run/docker.sock"
CONFIG_PATH = "/etc/nomad.d/agent.hcl"
CLUSTER = Cluster(IPv4Network("10.32.0.0/16"), IPv4Network("10.32.0.0/24"))
GUARD = "-A FORWARD -i docker0 -o weave -j DROP"
OURS = '-m comment --comment "weavenomad isolation guard"'
#: bootstrap's guards as ``iptables -S`` prints them (Weave's own docker0 -> weave DROP aside)
OUR_FORWARD = [
    f"-A FORWARD -i docker0 -o docker0 {OURS} -j DROP",
    f"-A FORWARD -i weave -o docker0 {OURS} -j DROP",
    f"-A FORWARD -i weave -o weave -m physdev ! --physdev-is-bridged {OURS} -j DROP",
]
OUR_NAT = f"-A POSTROUTING -o weave -m physdev --physdev-is-bridged {OURS} -j ACCEPT"
#: Weave 2.8's filter rules (net/bridge.go, no NPC) over Docker 20.10's, as on a real node
WEAVE_FORWARD = [
    GUARD,
    "-A FORWARD -i weave -o weave -j ACCEPT",
    "-A FORWARD -o weave -j WEAVE-EXPOSE",
    "-A FORWARD -i weave ! -o weave -j ACCEPT",
    "-A FORWARD -o weave -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
]
DOCKER_FORWARD = [
    "-A FORWARD -j DOCKER-USER",
    "-A FORWARD -j DOCKER-ISOLATION-STAGE-1",
    "-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    "-A FORWARD -o docker0 -j DOCKER",
    "-A FORWARD -i docker0 ! -o docker0 -j ACCEPT",
    "-A FORWARD -i docker0 -o docker0 -j ACCEPT",
]
OTHER_CHAINS = [
    "-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT",
    "-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2",
    "-A DOCKER-ISOLATION-STAGE-1 -j RETURN",
    "-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP",
    "-A DOCKER-ISOLATION-STAGE-2 -j RETURN",
    "-A DOCKER-USER -j RETURN",
    "-A WEAVE-EXPOSE -d 10.32.0.0/24 -j ACCEPT",
    "-A WEAVE-EXPOSE -d 10.32.1.0/24 -j ACCEPT",
]
FILTER_HEAD = ["-P INPUT ACCEPT", "-P FORWARD DROP", "-P OUTPUT ACCEPT", "-N DOCKER",
               "-N DOCKER-ISOLATION-STAGE-1", "-N DOCKER-ISOLATION-STAGE-2", "-N DOCKER-USER",
               "-N WEAVE-EXPOSE"]
NAT_HEAD = ["-P PREROUTING ACCEPT", "-P INPUT ACCEPT", "-P OUTPUT ACCEPT",
            "-P POSTROUTING ACCEPT", "-N DOCKER", "-N WEAVE",
            "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER"]
NAT_TAIL = ["-A POSTROUTING -j WEAVE",
            "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
            "-A DOCKER -i docker0 -j RETURN",
            "-A WEAVE -s 10.32.0.0/24 -d 224.0.0.0/4 -j RETURN",
            "-A WEAVE -s 10.32.0.0/24 ! -d 10.32.0.0/24 -j MASQUERADE"]


def filter_table(*forward: str) -> list[str]:
    return [*FILTER_HEAD, *forward, *OTHER_CHAINS]


#: a bootstrapped node: our guards on top, then Weave's block, then Docker's
BOOTSTRAPPED_FILTER = filter_table(*OUR_FORWARD, *WEAVE_FORWARD, *DOCKER_FORWARD)
BOOTSTRAPPED_NAT = [*NAT_HEAD, OUR_NAT, *NAT_TAIL]


def recorded(name: str):
    return json.loads((RECORDED / name).read_text())["body"]


def config_text(endpoint: str) -> str:
    return ('# u1\nname = "u1"\n\nclient {\n  enabled = true\n}\n\n'
            f'plugin "docker" {{\n  config {{\n    endpoint = "{endpoint}"\n  }}\n}}\n')


def agent_self(endpoint: str) -> dict:
    doc = copy.deepcopy(recorded("nomad-agent-self.json"))
    doc["config"]["Plugins"] = [{"Args": None, "Config": {"endpoint": endpoint},
                                 "Name": "docker"}]
    doc["config"]["Files"] = [CONFIG_PATH]
    return doc


def healthy_node() -> dict:
    return recorded("nomad-nodes.json")[0]


def registry(*tenants: tuple[str, str]) -> Registry:
    return Registry({name: Tenant(name, IPv4Network(subnet), "2026-11-22T00:00:00Z")
                     for name, subnet in tenants})


def fresh(**changes) -> NodeFacts:
    facts = NodeFacts(
        euid=0, kernel="6.1.0",
        docker_version={"Version": "20.10.24", "ApiVersion": "1.41", "MinAPIVersion": "1.12"},
        docker_bridge="docker0", docker_subnets=[IPv4Network("172.17.0.0/16")],
        weave_versions={"weave script": "2.8.1", "weave": "2.8.1"},
        iptables_rules=["-P FORWARD ACCEPT"], nat_rules=["-P POSTROUTING ACCEPT"],
        ip_forward=True, bridge_filtering=True,
        host_addresses=[("lo", IPv4Interface("127.0.0.1/8")),
                        ("eth0", IPv4Interface("192.168.56.3/24")),
                        ("docker0", IPv4Interface("172.17.0.1/16"))],
        nomad_self=agent_self(DOCKER_SOCK), nomad_node=healthy_node(), consul_self={},
        cluster=None, registry=registry(),
        config_source="/etc/nomad.d",
        config_files=[ConfigFile(CONFIG_PATH, config_text(DOCKER_SOCK))],
    )
    for key, value in changes.items():
        setattr(facts, key, value)
    return facts


def weave_report(targets=()) -> dict:
    report = copy.deepcopy(recorded("weave-report.json"))
    report["Router"]["Targets"] = list(targets) or None
    return report


def bootstrapped(**changes) -> NodeFacts:
    facts = fresh(
        weave_report=weave_report(), proxy_addrs=[WEAVE_SOCK],
        exposed=[IPv4Interface("10.32.0.1/24"), IPv4Interface("10.32.1.3/24")],
        iptables_rules=BOOTSTRAPPED_FILTER, nat_rules=BOOTSTRAPPED_NAT,
        host_addresses=fresh().host_addresses + [("weave", IPv4Interface("10.32.0.1/24"))],
        weave_bridge=True, listeners={("tcp", 6783), ("tcp", 6784), ("udp", 6783)},
        nomad_self=agent_self(WEAVE_SOCK), cluster=CLUSTER,
        registry=registry(("acme", "10.32.1.0/24")),
        config_files=[ConfigFile(CONFIG_PATH, config_text(WEAVE_SOCK))],
        backups={CONFIG_PATH: config_text(DOCKER_SOCK)},
    )
    for key, value in changes.items():
        setattr(facts, key, value)
    return facts


def test_the_built_facts_agree_with_the_recorded_answers():
    from weavenomad.bootstrap.checks import weave_settings
    from weavenomad.bootstrap.observe import agent_endpoint, docker_driver

    assert agent_endpoint(recorded("nomad-agent-self.json")) == DOCKER_SOCK
    assert agent_endpoint(bootstrapped().nomad_self) == WEAVE_SOCK
    assert docker_driver(bootstrapped().nomad_node)["Healthy"] is True
    assert weave_settings(bootstrapped().weave_report) == (CLUSTER.ipalloc_range,
                                                           CLUSTER.default_subnet)
    assert bootstrapped().tenant_subnets() == [IPv4Network("10.32.1.0/24")]
