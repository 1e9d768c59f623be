"""Behaviour of the simulated Consul that the product relies on: foreign checks survive Nomad's
re-registrations, ``?passing`` hides critical instances, KV check-and-set under concurrent
writers, blocking queries, agent-local versus cluster-wide views, indexes and ACLs."""

from __future__ import annotations

import base64
import json
import statistics
import threading
import time

import pytest
from test_consul_sim_support import nomad_service, running_sim
from weavenomad_lab.consul import versions

MASK = "weavenomad-mask-a1"


@pytest.fixture
def sim():
    with running_sim() as running:
        yield running


def mask(service_id: str) -> dict:
    return {"ID": MASK, "Name": "weave address mask", "ServiceID": service_id, "TTL": "87600h",
            "Status": "critical", "Notes": "superseded"}


def instances(client, name: str, query: str = "") -> list[str]:
    answer = client.get(f"/v1/health/service/{name}{query}")
    return sorted(entry["Service"]["ID"] for entry in answer.json())


def wait_for(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_a_foreign_check_survives_nomads_re_registration_and_goes_with_the_service(sim):
    u1 = sim["u1"]
    original = nomad_service("a1")
    u1.ok("PUT", "/v1/agent/service/register", original)
    u1.ok("PUT", "/v1/agent/check/register", mask(original["ID"]))
    u1.ok("PUT", "/v1/agent/service/register", original)  # Nomad's sync, unchanged
    changed = dict(original, Tags=["v2"], Checks=[dict(original["Checks"][0], Interval="5s")])
    u1.ok("PUT", "/v1/agent/service/register", changed)  # Nomad updates its own service
    checks = u1.get("/v1/agent/checks").json()
    assert checks[MASK]["Status"] == "critical"
    assert checks[MASK]["ServiceTags"] == ["v2"]
    u1.ok("PUT", f"/v1/agent/service/deregister/{original['ID']}")
    assert u1.get("/v1/agent/checks").json() == {}
    assert u1.get("/v1/health/checks/httpbackend").json() == []


def test_replace_existing_checks_drops_the_ones_not_sent_again():
    with running_sim(flavour=versions.parse("1.6.1")) as sim:
        u1 = sim["u1"]
        original = nomad_service("a1")
        u1.ok("PUT", "/v1/agent/service/register", original)
        u1.ok("PUT", "/v1/agent/check/register", mask(original["ID"]))
        u1.ok("PUT", "/v1/agent/service/register?replace-existing-checks", original)
        assert sorted(u1.get("/v1/agent/checks").json()) == ["_nomad-check-a1"]


def test_consul_1_4_ignores_replace_existing_checks_as_recorded(sim):
    """mask-removed/replace-existing-checks-consul-1.4.txt: 200, and the mask stays."""
    u1 = sim["u1"]
    original = nomad_service("a1")
    u1.ok("PUT", "/v1/agent/service/register", original)
    u1.ok("PUT", "/v1/agent/check/register", mask(original["ID"]))
    u1.ok("PUT", "/v1/agent/service/register?replace-existing-checks=true",
          dict(original, Tags=["v2"]))
    assert sorted(u1.get("/v1/agent/checks").json()) == ["_nomad-check-a1", MASK]
    assert u1.get("/v1/agent/self").json()["Config"]["Version"] == "1.4.0"


def test_enterprise_namespaces_on_register_and_reads():
    with running_sim(flavour=versions.parse("1.16.2+ent", ("locked",))) as sim:
        u1 = sim["u1"]
        team = dict(nomad_service("a1"), Namespace="team")
        u1.ok("PUT", "/v1/agent/service/register", team)
        u1.ok("PUT", "/v1/agent/check/register?ns=team", mask(team["ID"]))
        assert u1.get("/v1/agent/services").json() == {}
        listed = u1.get("/v1/agent/services?ns=team").json()
        assert listed[team["ID"]]["Namespace"] == "team"
        assert listed[team["ID"]]["Partition"] == "default"
        checks = u1.get("/v1/agent/checks?ns=*").json()
        assert {c["Namespace"] for c in checks.values()} == {"team"}
        assert instances(u1, "httpbackend", "?ns=team") == [team["ID"]]
        assert instances(u1, "httpbackend") == []
        refused = u1.request("PUT", "/v1/agent/service/register?ns=locked",
                             data=json.dumps(nomad_service("a2")))
        assert refused.status_code == 403
        self_config = u1.get("/v1/agent/self").json()["Config"]
        assert (self_config["Version"], self_config["VersionMetadata"]) == ("1.16.2+ent", "ent")


def test_consul_ce_refuses_the_namespace_parameter(sim):
    answer = sim["u1"].request("GET", "/v1/agent/services?ns=team")
    assert answer.status_code == 400
    assert answer.text == ('Invalid query parameter: "ns" - Namespaces are a Consul Enterprise '
                           'feature')


def test_health_state_any_lists_every_check_with_its_service(sim):
    u1 = sim["u1"]
    original = nomad_service("a1")
    u1.ok("PUT", "/v1/agent/service/register", original)
    u1.ok("PUT", "/v1/agent/check/register", mask(original["ID"]))
    checks = u1.get("/v1/health/state/any").json()
    assert {(c["CheckID"], c["ServiceName"]) for c in checks} >= {
        ("serfHealth", ""), (MASK, "httpbackend"), ("_nomad-check-a1", "httpbackend")}
    critical = {c["CheckID"] for c in u1.get("/v1/health/state/critical").json()}
    assert MASK in critical and "serfHealth" not in critical
    assert u1.request("GET", "/v1/health/state/bogus").status_code == 400


def test_passing_hides_an_instance_with_any_non_passing_check_but_the_catalog_keeps_it(sim):
    u1 = sim["u1"]
    original, twin = nomad_service("a1"), nomad_service("a1", address="10.32.1.1")
    twin["ID"] = "weavenomad-a1-httpbackend"
    twin["Checks"][0]["CheckID"] = "weavenomad-check-a1"
    u1.ok("PUT", "/v1/agent/service/register", original)
    u1.ok("PUT", "/v1/agent/service/register", twin)
    wait_for(lambda: len(instances(u1, "httpbackend", "?passing")) == 2)
    u1.ok("PUT", "/v1/agent/check/register", mask(original["ID"]))
    assert instances(u1, "httpbackend", "?passing") == [twin["ID"]]
    assert instances(u1, "httpbackend", "?passing=1") == [twin["ID"]]
    assert instances(u1, "httpbackend", "?passing=false") == sorted([original["ID"], twin["ID"]])
    assert instances(u1, "httpbackend") == sorted([original["ID"], twin["ID"]])
    catalog = u1.get("/v1/catalog/service/httpbackend").json()
    assert sorted(e["ServiceID"] for e in catalog) == sorted([original["ID"], twin["ID"]])
    u1.ok("PUT", f"/v1/agent/check/pass/{MASK}")
    assert len(instances(u1, "httpbackend", "?passing")) == 2
    u1.ok("PUT", f"/v1/agent/check/warn/{MASK}")  # warning is not passing either
    assert instances(u1, "httpbackend", "?passing") == [twin["ID"]]


def test_tag_and_node_meta_filters(sim):
    u1, u2 = sim["u1"], sim["u2"]
    u1.ok("PUT", "/v1/agent/service/register", {"Name": "web", "ID": "w1", "Tags": ["Blue"]})
    u2.ok("PUT", "/v1/agent/service/register", {"Name": "web", "ID": "w2", "Tags": ["green"]})
    assert instances(u1, "web", "?tag=blue") == ["w1"]  # tags match case-insensitively
    assert [e["ServiceID"] for e in u1.get("/v1/catalog/service/web?tag=green").json()] == ["w2"]
    assert instances(u1, "web", "?node-meta=consul-network-segment:") == ["w1", "w2"]
    assert instances(u1, "web", "?node-meta=rack:r1") == []


def test_agent_lists_only_its_own_node_catalog_and_health_see_all(sim):
    u1, u2 = sim["u1"], sim["u2"]
    u1.ok("PUT", "/v1/agent/service/register", {"Name": "web", "ID": "w1", "Port": 80})
    u2.ok("PUT", "/v1/agent/service/register", {"Name": "web", "ID": "w2", "Port": 80})
    assert list(u1.get("/v1/agent/services").json()) == ["w1"]
    assert list(u2.get("/v1/agent/services").json()) == ["w2"]
    catalog = u2.get("/v1/catalog/service/web").json()
    assert {(e["Node"], e["Address"], e["ServiceAddress"]) for e in catalog} == {
        ("u1", "127.0.0.1", ""), ("u2", "127.0.0.2", "")}
    assert u1.get("/v1/agent/services").json()["w1"]["Address"] == ""
    u1.ok("PUT", "/v1/agent/service/deregister/w2")  # not u1's: nothing happens
    assert instances(u1, "web") == ["w1", "w2"]
    assert set(u1.get("/v1/catalog/services").json()) == {"consul", "web"}


def test_indexes_move_only_on_change(sim):
    u1 = sim["u1"]
    service = {"Name": "web", "ID": "w1", "Port": 80}
    u1.ok("PUT", "/v1/agent/service/register", service)
    first = int(u1.get("/v1/catalog/service/web").headers["X-Consul-Index"])
    u1.ok("PUT", "/v1/agent/service/register", service)
    assert int(u1.get("/v1/catalog/service/web").headers["X-Consul-Index"]) == first
    u1.ok("PUT", "/v1/agent/service/register", dict(service, Port=81))
    second = int(u1.get("/v1/catalog/service/web").headers["X-Consul-Index"])
    assert second > first
    u1.ok("PUT", "/v1/kv/other", "x")  # another service's or table's write: not this index
    assert int(u1.get("/v1/catalog/service/web").headers["X-Consul-Index"]) == second
    entry = u1.get("/v1/kv/other")
    assert int(entry.headers["X-Consul-Index"]) == entry.json()[0]["ModifyIndex"]


def test_kv_check_and_set_under_concurrent_writers(sim):
    writers, increments = 4, 15
    sim["u1"].ok("PUT", "/v1/kv/counter", "0")
    conflicts = []

    def writer(node: str) -> None:
        client = sim[node]
        done = 0
        while done < increments:
            entry = client.get("/v1/kv/counter").json()[0]
            value = int(base64.b64decode(entry["Value"]))
            answer = client.put(f"/v1/kv/counter?cas={entry['ModifyIndex']}", str(value + 1))
            if answer.json() is True:
                done += 1
            else:
                conflicts.append(node)

    threads = [threading.Thread(target=writer, args=("u1" if i % 2 else "u2",))
               for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    final = sim["u1"].get("/v1/kv/counter?raw").text
    assert int(final) == writers * increments  # no lost update, whatever the interleaving


def test_kv_cas_zero_creates_only_and_delete_cas(sim):
    u1 = sim["u1"]
    assert u1.put("/v1/kv/k?cas=0", "a").json() is True
    assert u1.put("/v1/kv/k?cas=0", "b").json() is False
    index = u1.get("/v1/kv/k").json()[0]["ModifyIndex"]
    assert u1.delete(f"/v1/kv/k?cas={index + 1}").json() is False
    assert u1.delete(f"/v1/kv/k?cas={index}").json() is True
    assert u1.get("/v1/kv/k").status_code == 404
    assert u1.delete("/v1/kv/k?cas=7").json() is True  # Consul: a missing key "deletes" fine


def test_kv_recurse_keys_and_delete_tree(sim):
    u1 = sim["u1"]
    for key in ("t/a/1", "t/a/2", "t/b", "u"):
        u1.ok("PUT", f"/v1/kv/{key}", key)
    assert [e["Key"] for e in u1.get("/v1/kv/t/?recurse").json()] == ["t/a/1", "t/a/2", "t/b"]
    assert u1.get("/v1/kv/t/?keys&separator=/").json() == ["t/a/", "t/b"]
    assert u1.get("/v1/kv/?keys").json() == ["t/a/1", "t/a/2", "t/b", "u"]
    assert u1.delete("/v1/kv/t/?recurse").json() is True
    gone = u1.get("/v1/kv/t/?recurse")
    assert gone.status_code == 404 and int(gone.headers["X-Consul-Index"]) > 1
    assert u1.get("/v1/kv/t/?keys").status_code == 404
    u1.ok("PUT", "/v1/kv/empty", b"")
    assert u1.get("/v1/kv/empty").json()[0]["Value"] is None


def _blocking_wakeup(sim, change) -> float:
    u1 = sim["u1"]
    index = u1.get("/v1/health/service/web").headers["X-Consul-Index"]
    returned = {}

    def block() -> None:
        answer = u1.get(f"/v1/health/service/web?index={index}&wait=10s")
        returned["at"] = time.monotonic()
        returned["index"] = answer.headers["X-Consul-Index"]

    thread = threading.Thread(target=block)
    thread.start()
    time.sleep(0.1)
    changed_at = time.monotonic()
    change()
    thread.join(timeout=10)
    assert int(returned["index"]) > int(index)
    return returned["at"] - changed_at


def test_a_blocking_query_wakes_within_50ms_of_the_change(sim):
    sim["u2"].ok("PUT", "/v1/agent/service/register", {"Name": "web", "ID": "w", "Port": 1})
    latencies = [
        _blocking_wakeup(sim, lambda i=i: sim["u2"].ok(
            "PUT", "/v1/agent/service/register", {"Name": "web", "ID": "w", "Port": 2 + i}))
        for i in range(5)
    ]
    # the write's own round trip is inside the measurement, so this is an upper bound
    # woken by the change rather than the wait; the 50 ms target is printed by
    # benchmarks/consul_sim.py, not asserted under a loaded CI machine
    assert statistics.median(latencies) < 2.0, latencies


def test_a_blocking_query_without_change_returns_the_same_index_after_wait(sim):
    u1 = sim["u1"]
    u1.ok("PUT", "/v1/kv/watched", "x")
    index = u1.get("/v1/kv/watched").headers["X-Consul-Index"]
    started = time.monotonic()
    u1.ok("PUT", "/v1/kv/unrelated", "y")  # another key: does not wake a watch on this one
    answer = u1.get(f"/v1/kv/watched?index={index}&wait=300ms")
    assert 0.25 < time.monotonic() - started < 2
    assert answer.headers["X-Consul-Index"] == index


def test_acl_mode_needs_the_token_as_consul_does():
    token = "lab-master-token"
    with running_sim(token=None, acl_token=token) as anonymous:
        client = anonymous["u1"]
        denied = client.put("/v1/agent/service/register", {"Name": "web"})
        assert (denied.status_code, denied.text) == (403, "Permission denied")
        wrong = client.get("/v1/agent/services", headers={"X-Consul-Token": "nope"})
        assert (wrong.status_code, wrong.text) == (403, "ACL not found")
        assert client.get("/v1/status/leader").status_code == 200
        client.ok("PUT", f"/v1/agent/service/register?token={token}", {"Name": "web"})
        client.ok("PUT", f"/v1/kv/secret?token={token}", "s")
        assert client.get("/v1/agent/services").json() == {}  # filtered, as Consul's ACLs do
        assert client.get("/v1/catalog/service/web").json() == []
        assert client.get("/v1/kv/secret").status_code == 403
        assert client.get("/v1/agent/self").status_code == 403
        allowed = client.get("/v1/catalog/service/web", headers={"X-Consul-Token": token})
        assert [e["ServiceName"] for e in allowed.json()] == ["web"]


def test_a_restart_keeps_the_catalog_the_checks_and_the_kv_store(tmp_path):
    """Consul's servers keep the catalog and KV in their log and each agent its services and
    checks in its data directory: what the node had before a reboot is there after it (the
    recorded reboot, day-two/1a: the twins and their checks were still registered)."""
    from weavenomad_lab.consul import persist

    # TEST-NET-1 (RFC 5737): the TCP check can never connect, so its status cannot change
    # between the two looks (172.17.0.2:8081 may answer on a machine that runs Docker tasks)
    service = nomad_service("a1", address="192.0.2.10")
    with running_sim() as before:
        u1 = before["u1"]
        u1.ok("PUT", "/v1/agent/service/register", service)
        u1.ok("PUT", "/v1/agent/check/register", mask(service["ID"]))
        u1.ok("PUT", "/v1/kv/weavenomad/tenants", '{"acme": {}}')
        u1.ok("DELETE", "/v1/kv/weavenomad/gone")
        kv_index = u1.get("/v1/kv/weavenomad/tenants").json()[0]["ModifyIndex"]
        services = u1.get("/v1/agent/services").json()
        checks = u1.get("/v1/agent/checks").json()
        index = int(u1.get("/v1/catalog/services").headers["X-Consul-Index"])
    persist.save(tmp_path / persist.STATE_FILE, before.sim.state.dump())
    with running_sim() as after:
        after.sim.state.restore(persist.load(tmp_path / persist.STATE_FILE))
        u1 = after["u1"]
        assert u1.get("/v1/agent/services").json() == services
        assert {k: (c["Status"], c["ServiceID"]) for k, c in
                u1.get("/v1/agent/checks").json().items()} == {
            k: (c["Status"], c["ServiceID"]) for k, c in checks.items()}
        entry = u1.get("/v1/kv/weavenomad/tenants").json()[0]
        assert entry["ModifyIndex"] == kv_index
        assert base64.b64decode(entry["Value"]) == b'{"acme": {}}'
        assert int(u1.get("/v1/catalog/services").headers["X-Consul-Index"]) >= index
        u1.ok("PUT", "/v1/kv/weavenomad/next", "x")  # indexes go on from the saved ones
        assert u1.get("/v1/kv/weavenomad/next").json()[0]["ModifyIndex"] > kv_index
