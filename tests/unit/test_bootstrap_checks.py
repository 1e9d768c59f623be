"""The preflight and doctor checks: pure functions of observed facts."""

from ipaddress import IPv4Interface, IPv4Network

import pytest
from test_bootstrap_facts import (
    DOCKER_SOCK,
    agent_self,
    bootstrapped,
    fresh,
    recorded,
    weave_report,
)

from weavenomad.bootstrap import checks as ck
from weavenomad.bootstrap import doctor
from weavenomad.tenancy.model import Registry, Tenant

DOCKER_25 = {"Version": "25.0.3", "ApiVersion": "1.44", "MinAPIVersion": "1.24"}
DOCKER_29 = {"Version": "29.0.0", "ApiVersion": "1.52", "MinAPIVersion": "1.44"}
DOCKER_20 = {"Version": "20.10.24", "ApiVersion": "1.41", "MinAPIVersion": "1.12"}


def test_weave_2_8_works_with_docker_20():
    assert ck.check_docker_weave_api(DOCKER_20, "2.8.1", None).status == ck.PASS


def test_weave_2_8_against_docker_25_fails_and_points_at_the_fork():
    check = ck.check_docker_weave_api(DOCKER_25, "2.8.1", "1.44")  # 2.8 ignores the override
    assert check.status == ck.FAIL
    assert "speaks 1.18" in check.detail and "rajch/weave 2.9.0" in check.fix


def test_the_fork_needs_docker_api_version_for_docker_29():
    check = ck.check_docker_weave_api(DOCKER_29, "2.9.0", None)
    assert check.status == ck.FAIL and "DOCKER_API_VERSION=1.44" in check.fix
    assert ck.check_docker_weave_api(DOCKER_29, "2.9.0", "1.44").status == ck.PASS
    assert ck.check_docker_weave_api(DOCKER_25, "2.9.0", None).status == ck.PASS


def test_ports_taken_by_something_else_fail():
    assert ck.check_ports(set(), False).status == ck.PASS
    assert ck.check_ports({("tcp", 6784)}, True).status == ck.PASS
    check = ck.check_ports({("tcp", 6783), ("tcp", 22)}, False)
    assert check.status == ck.FAIL and "TCP 6783" in check.detail and "ss -ltnup" in check.fix


def test_kernel_and_iptables():
    assert ck.check_kernel("6.1.0-13-amd64", [], None).status == ck.PASS
    assert ck.check_kernel("3.2.0", [], None).status == ck.FAIL
    check = ck.check_kernel("6.1.0", None, "iptables: command not found")
    assert check.status == ck.FAIL and "install iptables" in check.fix
    assert ck.check_kernel("6.1.0", None, "Permission denied", root=False).status == ck.WARN


def test_peers_ipam_and_exposes_from_the_recorded_report():
    report = weave_report()
    assert ck.check_peers(report).status == ck.WARN  # the recording is a one-node overlay
    assert ck.check_ipam(report).status == ck.PASS
    report["Router"]["Connections"] = [{"Address": "192.168.56.4:6783", "State": "established"}]
    report["Router"]["Targets"] = ["192.168.56.4", "192.168.56.5"]
    check = ck.check_peers(report)
    assert check.status == ck.FAIL and "192.168.56.5" in check.detail
    report["IPAM"]["Paxos"] = {"Elector": True}
    assert ck.check_ipam(report).status == ck.FAIL
    exposed = [IPv4Interface("10.32.0.2/24")]
    subnets = [IPv4Network("10.32.0.0/24"), IPv4Network("10.32.1.0/24")]
    check = ck.check_exposed(exposed, subnets)
    assert check.status == ck.FAIL and "10.32.1.0/24" in check.detail


def test_weave_router_must_match_the_registry():
    facts = bootstrapped()
    assert ck.check_weave_router(facts.weave_report, None, facts.cluster).status == ck.PASS
    report = weave_report()
    report["IPAM"]["DefaultSubnet"] = "10.32.5.0/24"
    assert ck.check_weave_router(report, None, facts.cluster).status == ck.FAIL
    assert ck.check_weave_router(None, "refused", facts.cluster).status == ck.FAIL


def test_nomad_endpoint_check():
    assert doctor.check_nomad_endpoint(bootstrapped()).status == ck.PASS
    check = doctor.check_nomad_endpoint(bootstrapped(nomad_self=agent_self(DOCKER_SOCK)))
    assert check.status == ck.FAIL and check.fix == "weavenomad bootstrap"
    sick = dict(recorded("nomad-nodes.json")[0])
    sick["Drivers"] = {"docker": {"Healthy": False, "HealthDescription": "no socket"}}
    assert "no socket" in doctor.check_nomad_endpoint(bootstrapped(nomad_node=sick)).detail


def test_registry_and_reconciler_checks():
    assert doctor.check_registry(bootstrapped()).status == ck.PASS
    assert doctor.check_registry(fresh()).status == ck.FAIL
    overlapping = Registry({n: Tenant(n, IPv4Network(s), "t") for n, s in
                            (("a", "10.32.1.0/24"), ("b", "10.32.1.0/25"))})
    assert doctor.check_registry(bootstrapped(registry=overlapping)).status == ck.FAIL
    assert doctor.check_reconciler(False, None).status == ck.WARN
    assert doctor.check_reconciler(True, False).status == ck.FAIL
    assert doctor.check_reconciler(True, True).status == ck.PASS


def test_a_missing_guard_keeper_is_a_warning_with_the_install_command():
    assert doctor.check_guard_keeper(False, None).status == ck.WARN
    inactive = doctor.check_guard_keeper(True, False)
    assert inactive.status == ck.WARN and inactive.fix == "weavenomad guard install"
    assert doctor.check_guard_keeper(True, True).status == ck.PASS


ALLOC = "8d747bc4-0d03-9893-a4f6-97207e7c3aaa"


def test_service_ids_and_task_containers():
    assert doctor.split_service_id(f"_nomad-task-{ALLOC}-httpbackend-httpbackend-8081") == (
        ALLOC, "httpbackend-httpbackend-8081")
    assert doctor.split_service_id(f"weavenomad-{ALLOC}-web-api-80") == (ALLOC, "web-api-80")
    assert doctor.split_service_id("consul") is None
    containers = [{"Id": "c1", "Names": [f"/web-{ALLOC}"]},
                  {"Id": "c2", "Names": [f"/web-api-{ALLOC}"]}]
    assert doctor.task_container(ALLOC, "web-api-http-80", containers) == "c2"
    assert doctor.task_container(ALLOC, "web-http-80", containers) == "c1"


def test_consul_entries_with_wrong_addresses_fail_and_point_at_the_reconciler():
    right = doctor.ConsulEntry("web", "weavenomad-x", "10.32.1.2", ("10.32.1.2",))
    wrong = doctor.ConsulEntry("web", "_nomad-task-y", "172.17.0.2", ("10.32.1.3",))
    off_overlay = doctor.ConsulEntry("db", "_nomad-task-z", "172.17.0.9", ())
    assert doctor.check_consul_addresses([right, off_overlay], None).status == ck.PASS
    check = doctor.check_consul_addresses([right, wrong], None)
    assert check.status == ck.FAIL and "172.17.0.2" in check.detail
    assert "reconciler" in check.fix


class FakeConsul:
    def agent_services(self):
        return recorded("consul-agent-services.json")

    def health_service(self, name, passing=False):
        assert passing and name == "httpbackend"
        return 1, recorded("consul-health-service.json")


def test_consul_entries_from_recorded_answers():
    """Recorded answers of one run (Consul lists the tasks' 172.17.0.x addresses), with the
    tasks' containers given Weave addresses: the check sees the mismatch."""
    services = recorded("consul-agent-services.json")
    entries_in_consul = recorded("consul-health-service.json")
    ids = [e["Service"]["ID"] for e in entries_in_consul]
    containers, owned = [], {}
    for number, service_id in enumerate(ids, 1):
        alloc, _ = doctor.split_service_id(service_id)
        containers.append({"Id": f"c{number}", "Names": [f"/httpbackend-{alloc}"]})
        owned[f"c{number}"] = [IPv4Interface(f"10.32.1.{number}/24")]

    class Clients:
        consul = FakeConsul()

        class docker:  # noqa: N801
            @staticmethod
            def nomad_containers(all=True):
                return containers

        class weave:  # noqa: N801
            @staticmethod
            def owned():
                return owned

    found = doctor.consul_entries(Clients)
    assert {e.service_id for e in found} == set(ids) & set(services) and len(found) == 2
    assert {e.weave_ips for e in found} == {("10.32.1.1",), ("10.32.1.2",)}
    assert doctor.check_consul_addresses(found, None).status == ck.FAIL


HELD_ID = f"_nomad-task-{ALLOC}-web-weavenomad-hidden-web-http"
HELD = {"ID": HELD_ID, "Service": "weavenomad-hidden-web", "Address": "172.17.0.2",
        "Meta": {"weavenomad-service": "web"}}
HELD_TWIN = {"ID": f"weavenomad-{ALLOC}-web-weavenomad-hidden-web-http", "Service": "web",
             "Address": "10.32.1.2", "Meta": {"weavenomad-service": "web"}}


def held_clients(local: dict, asked: list):
    """Clients of a node where weavenomad run held service web under its private name."""
    class Consul:
        def agent_services(self):
            return local

        def health_service(self, name, passing=False):
            asked.append(name)
            return 1, [{"Service": s} for s in local.values() if s["Service"] == name]

    class Clients:
        consul = Consul()

        class docker:  # noqa: N801
            @staticmethod
            def nomad_containers(all=True):
                return [{"Id": "c1", "Names": [f"/web-{ALLOC}"]}]

        class weave:  # noqa: N801
            @staticmethod
            def owned():
                return {"c1": [IPv4Interface("10.32.1.2/24")]}

    return Clients


def test_a_held_service_is_judged_by_its_public_name_where_its_twin_answers():
    asked: list[str] = []
    found = doctor.consul_entries(held_clients({HELD_ID: HELD, HELD_TWIN["ID"]: HELD_TWIN},
                                               asked))
    # nobody asks for the private name, where Nomad's Docker-bridge address is
    assert asked == ["web"]
    assert found == [doctor.ConsulEntry("web", HELD_TWIN["ID"], "10.32.1.2", ("10.32.1.2",))]
    assert doctor.check_consul_addresses(found, None).status == ck.PASS


def test_a_held_service_without_its_twin_fails_and_points_at_the_reconciler():
    asked: list[str] = []
    found = doctor.consul_entries(held_clients({HELD_ID: HELD}, asked))
    assert found == [doctor.ConsulEntry("web", HELD_ID, "", ("10.32.1.2",), unanswered=True)]
    check = doctor.check_consul_addresses(found, None)
    assert check.status == ck.FAIL and "Consul answers nothing for 1 task service(s)" in \
        check.detail and "web (Weave: 10.32.1.2)" in check.detail, check.detail
    assert "reconciler" in check.fix and "weavenomad status" in check.fix


def test_peers_and_restart_commands():
    from weavenomad.bootstrap import system
    from weavenomad.errors import ValidationError

    assert system.resolve_peer("192.168.56.4") == "192.168.56.4"
    assert system.resolve_peer("127.0.0.1:6783") == "127.0.0.1:6783"
    with pytest.raises(ValidationError, match="bad port"):
        system.resolve_peer("192.168.56.4:99999")
    assert system.restart_argv("python -m x 'a b'", None) == ("python", "-m", "x", "a b")
    assert system.restart_argv(None, True) == ("systemctl", "restart", "nomad")
    assert system.restart_argv(None, None) is None


# -- the agents: not there, refusing our token, or not trusted -----------------------------------


def test_an_agent_that_answers_passes():
    check = ck.check_agent("nomad-agent", "the Nomad agent", {"config": {}}, None, "start it")
    assert check.status == ck.PASS


def test_an_agent_that_is_not_there_gets_the_start_fix():
    failure = ck.Failure("Nomad at http://127.0.0.1:4646 does not answer: connection refused")
    check = ck.check_agent("nomad-agent", "the Nomad agent", None, failure, "start Nomad")
    assert check.status == ck.FAIL
    assert check.detail.startswith("the Nomad agent does not answer: ")
    assert check.fix == "start Nomad"


def test_an_agent_that_refuses_the_token_is_not_called_absent():
    from weavenomad.bootstrap.observe import NodeFacts, probe
    from weavenomad.errors import BackendAuthError

    def denied():
        raise BackendAuthError("Nomad denied GET /v1/agent/self: Permission denied",
                               backend="nomad", status=403,
                               hint="set --nomad-token or NOMAD_TOKEN")

    facts = NodeFacts()
    assert probe(facts, "nomad", denied) is None
    check = ck.check_agent("nomad-agent", "the Nomad agent", None, facts.failures["nomad"],
                           "start Nomad, or set NOMAD_ADDR")
    assert check.detail == ("the Nomad agent answered with an error: "
                            "Nomad denied GET /v1/agent/self: Permission denied")
    assert check.fix == "set --nomad-token or NOMAD_TOKEN"
    assert "NOMAD_TOKEN" in facts.errors["nomad"]  # the one-line form keeps the hint


def test_an_untrusted_certificate_gets_the_adapters_tls_fix():
    failure = ck.Failure("TLS handshake with Consul failed: certificate verify failed",
                         hint="set CONSUL_CACERT to the CA that signed Consul's certificate")
    check = ck.check_agent("consul-agent", "the Consul agent", None, failure, "start Consul")
    assert check.detail.startswith("the Consul agent does not answer: TLS handshake")
    assert check.fix.startswith("set CONSUL_CACERT")


def test_ports_are_not_called_free_while_weave_answers_from_elsewhere():
    """Issue 17: doctor from the host of a lab node (or with WEAVE_HTTP_ADDR pointing away)
    saw no listener on 6783/6784 and said they were free while Weave answered."""
    check = ck.check_ports(set(), True)
    assert check.status == ck.WARN and "free" not in check.detail
    assert "another one" in check.detail and "Weave's node" in check.fix


def test_check_lines_colour_the_status_words_only_when_asked():
    from weavenomad.bootstrap.render import check_lines
    from weavenomad.cli.style import ansi

    checks = [ck.Check("ports", ck.PASS, "free"), ck.Check("kernel", ck.FAIL, "old", "upgrade")]
    assert check_lines(checks) == ["PASS  ports   free", "FAIL  kernel  old",
                                   "              fix: upgrade"]
    coloured = check_lines(checks, "", ansi)
    assert coloured[0] == "\033[32mPASS\033[0m  ports   free"
    assert coloured[1].startswith("\033[31mFAIL\033[0m")


def test_addresses_the_ipam_owns_but_the_bridge_lost_are_not_exposed():
    """Recorded (day-two/1a-after-reboot-weavenomad-doctor-noreconciler.txt): doctor said
    PASS weave-exposed while the rebooted node's new bridge had no address at all."""
    from weavenomad.bootstrap.observe import bridge_exposure

    ipam = [IPv4Interface("10.32.0.1/24"), IPv4Interface("10.32.1.1/24")]
    subnets = [IPv4Network("10.32.0.0/24"), IPv4Network("10.32.1.0/24")]
    exposed, foreign = bridge_exposure(ipam, [])
    check = ck.check_exposed(exposed, subnets, ipam, foreign, IPv4Network("10.32.0.0/24"))
    assert check.status == ck.FAIL
    assert "10.32.1.0/24 (Weave's IPAM owns 10.32.1.1/24 for this host, but the weave bridge " \
        "lacks it, as after a reboot)" in check.detail
    assert "weave expose net:default net:10.32.1.0/24" in check.fix
    exposed, foreign = bridge_exposure(ipam, ipam)
    assert ck.check_exposed(exposed, subnets, ipam, foreign).status == ck.PASS


def test_a_foreign_address_on_the_bridge_fails_with_how_to_remove_it():
    from weavenomad.bootstrap.observe import bridge_exposure

    ipam = [IPv4Interface("10.32.0.1/24")]
    stray = IPv4Interface("10.32.0.77/24")
    exposed, foreign = bridge_exposure(ipam, [*ipam, stray, IPv4Interface("192.168.9.1/24")])
    assert foreign == [stray, IPv4Interface("192.168.9.1/24")]
    check = ck.check_exposed(exposed, [IPv4Network("10.32.0.0/24")], ipam, foreign)
    assert check.status == ck.FAIL and "10.32.0.77/24" in check.detail
    assert "192.168.9.1" not in check.detail  # outside Weave's subnets: the operator's own
    assert check.fix == "ip addr del 10.32.0.77/24 dev weave"


def test_doctor_says_what_a_weave_restart_would_do_to_the_nodes_tasks():
    """The recorded allocation after one Weave restart (day-two/1c-alloc-83f67a40-after.json):
    1 of its 2 restart attempts used in its 30 min interval."""
    import json
    from pathlib import Path

    from weavenomad.bootstrap.doctor import check_weave_restart, proxied_tasks

    alloc = json.loads((Path(__file__).resolve().parents[1] / "fixtures/recorded/day-two" /
                        "1c-alloc-83f67a40-after.json").read_text())
    then = 1796528300 * 10**9  # 45 s after the restart
    (task,) = proxied_tasks([alloc], then)
    assert (task.task, task.attempts_left, task.delay_s, task.interval_s) == (
        "httpbackend", 1, 15.0, 1800.0)
    facts = bootstrapped()
    check = check_weave_restart(facts, [task], None)
    assert check.status == ck.PASS
    assert "breaks Nomad's waits on 1 Docker task(s) here" in check.detail
    assert "(up to 19 s)" in check.detail and "twins answering" in check.detail
    alloc["TaskStates"]["httpbackend"]["Restarts"] = 2
    doomed = check_weave_restart(facts, proxied_tasks([alloc], then), None)
    assert doomed.status == ck.WARN and "httpbackend (alloc 83f67a40)" in doomed.detail
    # past the interval the attempts are back
    assert proxied_tasks([alloc], then + 1800 * 10**9)[0].attempts_left == 2
    # Nomad on Docker's own socket: a Weave restart does not touch its tasks
    direct = bootstrapped(nomad_self=agent_self(DOCKER_SOCK))
    assert check_weave_restart(direct, None, "x").status == ck.PASS
