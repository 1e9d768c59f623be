"""Issue 15: a deleted tenant's subnet is quarantined while any task still holds an address in
it (Nomad's view: live allocations, lost ones on nodes that are down, jobs that will place),
and freed by the next ``tenant create`` or ``tenant delete`` that finds none."""

import json
from ipaddress import IPv4Network

import pytest
from fakes import FakeKV
from hypothesis import given, settings
from hypothesis import strategies as st

from weavenomad.errors import BackendUnavailable, ConflictError, ValidationError
from weavenomad.tenancy import holders
from weavenomad.tenancy.model import (
    Cluster,
    Quarantine,
    Registry,
    decode_registry,
    encode_registry,
    plan_create,
    plan_retire,
)
from weavenomad.tenancy.operations import (
    check_quarantine,
    create_tenant,
    delete_tenant,
    quarantine_lines,
)
from weavenomad.tenancy.registry import TenantRegistry, resolve_target
from weavenomad.tenancy.weavecidr import requested_networks

CLUSTER = Cluster(IPv4Network("10.32.0.0/16"), IPv4Network("10.32.0.0/24"))
ACME = IPv4Network("10.32.1.0/24")
KEY = "weavenomad/tenants"
WHEN = "2026-11-23T08:00:00Z"


def job(job_id, cidr, driver="docker", **stub):
    return {"ID": job_id, "TaskGroups": [{"Name": "g", "Tasks": [
        {"Name": "t", "Driver": driver, "Env": {"WEAVE_CIDR": cidr} if cidr else None}]}],
        **stub}


def alloc(alloc_id, job_id, cidr, status="running", driver="docker"):
    return {"ID": alloc_id, "JobID": job_id, "TaskGroup": "g", "ClientStatus": status,
            "Job": job(job_id, cidr, driver)}


class FakeNomad:
    """Nodes with allocations (with their jobs) and job stubs, as Nomad's API gives them."""

    def __init__(self, nodes=(), jobs=(), down: Exception | None = None):
        self._nodes = list(nodes)  # (node, [allocations])
        self._jobs = {j["ID"]: j for j in jobs}
        self.down = down

    def nodes(self):
        if self.down:
            raise self.down
        return [node for node, _ in self._nodes]

    def node_allocations(self, node_id, index=None, wait=None):
        return 1, next(allocs for node, allocs in self._nodes if node["ID"] == node_id)

    def jobs(self):
        return [{key: j.get(key) for key in ("ID", "Status", "Stop", "Periodic",
                                             "ParameterizedJob")} for j in self._jobs.values()]

    def job(self, job_id):
        return self._jobs[job_id]

    def job_allocations(self, job_id, index=None, wait=None):
        return 1, [a for _, allocs in self._nodes for a in allocs if a["JobID"] == job_id]


def node(name, status="ready"):
    return {"ID": f"{name}-id", "Name": name, "Status": status}


@pytest.fixture
def registry():
    reg = TenantRegistry(FakeKV(), clock=lambda: WHEN)
    reg.record_cluster(CLUSTER)
    reg.create("acme", cidr=ACME)
    return reg


# -- the record ----------------------------------------------------------------------------------


def test_a_quarantine_is_kept_in_the_document_as_version_2_and_read_back():
    base, _ = plan_create(Registry(), CLUSTER, "acme", created=WHEN, cidr=ACME)
    retired, tenant = plan_retire(base, "acme", deleted=WHEN)
    assert tenant.name == "acme" and retired.tenants == {}
    assert retired.quarantined == {ACME: Quarantine(ACME, "acme", WHEN)}
    raw = encode_registry(retired)
    document = json.loads(raw)
    assert document["version"] == 2
    assert document["quarantined"] == {"10.32.1.0/24": {"tenant": "acme", "deleted": WHEN}}
    assert decode_registry(raw, KEY) == retired
    # without a quarantine it stays version 1, readable by weavenomad before issue 15
    assert json.loads(encode_registry(base))["version"] == 1
    assert "quarantined" not in json.loads(encode_registry(base))


@pytest.mark.parametrize("quarantined, message", [
    ([], "field 'quarantined' must be an object"),
    ({"10.32.1.1/24": {"tenant": "acme", "deleted": WHEN}},
     "quarantined subnet '10.32.1.1/24': invalid subnet"),
    ({"10.32.1.0/24": []}, "quarantined subnet '10.32.1.0/24': must be an object, not a list"),
    ({"10.32.1.0/24": {"deleted": WHEN}}, "field 'tenant' is missing"),
    ({"10.32.1.0/24": {"tenant": "Acme!", "deleted": WHEN}}, "'Acme!' is not a tenant name"),
    ({"10.32.1.0/24": {"tenant": "acme", "deleted": 5}}, "field 'deleted' must be a string"),
])
def test_a_corrupt_quarantine_record_is_one_line_naming_the_key_and_subnet(quarantined, message):
    raw = json.dumps({"version": 2, "tenants": {}, "quarantined": quarantined}).encode()
    with pytest.raises(ValidationError) as caught:
        decode_registry(raw, KEY)
    assert message in str(caught.value) and KEY in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_tenant_record_without_a_subnet_is_one_line():
    raw = b'{"version": 1, "tenants": {"acme": {"created": "x"}}}'
    with pytest.raises(ValidationError, match=rf"^Consul key {KEY}: tenant 'acme': field "
                                              "'subnet' is missing$"):
        decode_registry(raw, KEY)


# -- decisions -----------------------------------------------------------------------------------


def quarantined_registry() -> Registry:
    base, _ = plan_create(Registry(), CLUSTER, "acme", created=WHEN, cidr=ACME)
    return plan_retire(base, "acme", deleted=WHEN)[0]


def test_create_never_hands_out_a_quarantined_subnet():
    reg = quarantined_registry()
    _, tenant = plan_create(reg, CLUSTER, "globex", created=WHEN)
    assert tenant.subnet == IPv4Network("10.32.2.0/24")
    with pytest.raises(ConflictError) as caught:
        plan_create(reg, CLUSTER, "globex", created=WHEN, cidr=IPv4Network("10.32.0.0/23"),
                    held={ACME: "2 allocation(s) of job web still hold addresses in it"})
    assert caught.value.one_line() == (
        "subnet 10.32.1.0/24 is quarantined: tenant 'acme' was deleted at "
        f"{WHEN}, and 2 allocation(s) of job web still hold addresses in it (stop them "
        "('weavenomad status' lists them), or choose another --cidr)")
    with pytest.raises(ConflictError, match="it was not checked whether tasks still hold"):
        plan_create(reg, CLUSTER, "globex", created=WHEN, cidr=ACME)


def test_a_released_subnet_is_freed_in_the_same_write_and_may_be_taken():
    reg = quarantined_registry()
    after, tenant = plan_create(reg, CLUSTER, "globex", created=WHEN, released={ACME})
    assert tenant.subnet == ACME and after.quarantined == {}
    after, tenant = plan_create(reg, CLUSTER, "globex", created=WHEN, cidr=ACME,
                                released={ACME})
    assert tenant.subnet == ACME


def test_run_refuses_a_quarantined_subnet_given_as_net_cidr():
    reg = quarantined_registry()
    with pytest.raises(ConflictError, match=r"subnet 10.32.1.0/24 is quarantined: tenant 'acme' "
                                            "was deleted"):
        resolve_target("net:10.32.1.0/25", reg, CLUSTER)
    assert quarantine_lines(reg)[-1] == f"10.32.1.0/24  quarantined: tenant acme, deleted {WHEN}"
    assert quarantine_lines(Registry()) == []


# -- who holds a subnet --------------------------------------------------------------------------


def test_weave_cidr_values_say_which_networks_they_draw_from():
    assert requested_networks("net:10.32.1.0/24") == (ACME,)
    assert requested_networks("ip:10.32.1.7/24 net:default") == (IPv4Network("10.32.1.7/32"),)
    assert requested_networks("10.32.1.7/24") == (IPv4Network("10.32.1.7/32"),)
    for nothing in (None, "", "net:default", "none", "net:banana"):
        assert requested_networks(nothing) == ()


def test_holders_are_live_allocations_lost_ones_on_down_nodes_and_jobs_that_will_place():
    other = IPv4Network("10.32.2.0/24")
    found = holders.holders([ACME, other], [
        (node("n1"), [alloc("a1", "web", "net:10.32.1.0/24"),
                      alloc("a2", "web", "net:10.32.1.0/24", status="complete"),
                      alloc("a3", "old", "net:10.32.1.0/24", status="lost"),  # node is back
                      alloc("a4", "exec", "net:10.32.1.0/24", driver="exec"),
                      alloc("a5", "claim", "ip:10.32.1.9/24", status="pending")]),
        (node("n2", status="down"), [alloc("b1", "gone", "net:10.32.1.0/24", status="lost")]),
    ], [job("cron", "net:10.32.1.0/24", Status="running", Periodic=True)])
    assert found[other] == []
    assert found[ACME] == [
        holders.Holder("web", "a1", "n1", "running"),
        holders.Holder("claim", "a5", "n1", "pending"),
        holders.Holder("gone", "b1", "n2", "lost"),
        holders.Holder("cron", status="running")]
    assert holders.describe(found[ACME]) == (
        "3 allocation(s) of jobs claim, gone, web still hold addresses in it; job cron "
        "(running) will place tasks in it")
    assert holders.describe([]) == "nothing holds an address in it"


def test_only_jobs_that_may_place_later_are_read_in_full():
    assert holders.places_later({"Status": "pending"})
    assert holders.places_later({"Status": "running", "ParameterizedJob": True})
    assert not holders.places_later({"Status": "running"})  # its allocations tell
    assert not holders.places_later({"Status": "pending", "Stop": True})


# -- the operations ------------------------------------------------------------------------------


def test_a_forced_delete_quarantines_while_tasks_run_and_the_next_create_avoids_it(registry):
    nomad = FakeNomad([(node("n1"), [alloc("a1", "web", "net:10.32.1.0/24")])])
    deletion = delete_tenant(registry, nomad, "acme", force=True)
    assert deletion.name == "acme" and deletion.held.startswith("1 allocation(s) of job web")
    assert deletion.text() == ("deleted tenant acme (10.32.1.0/24); 10.32.1.0/24 stays "
                               "quarantined: 1 allocation(s) of job web still hold addresses "
                               "in it")
    assert deletion.to_json()["quarantined"] is True
    assert set(registry.load().quarantined) == {ACME}
    created = create_tenant(registry, "globex", connect_nomad=lambda: nomad)
    assert created.subnet == IPv4Network("10.32.2.0/24")
    with pytest.raises(ConflictError, match="1 allocation.s. of job web still hold"):
        create_tenant(registry, "initech", cidr="10.32.1.0/24", connect_nomad=lambda: nomad)
    assert "initech" not in registry.load().tenants  # nothing half-applied
    # the task stopped: the next create frees the subnet, and may take it
    nomad._nodes = [(node("n1"), [alloc("a1", "web", "net:10.32.1.0/24", status="complete")])]
    created = create_tenant(registry, "initech", cidr="10.32.1.0/24", connect_nomad=lambda: nomad)
    assert created.subnet == ACME
    assert registry.load().quarantined == {}


def test_a_delete_with_nothing_left_frees_the_subnet_at_once(registry):
    deletion = delete_tenant(registry, FakeNomad([(node("n1"), [])]), "acme")
    assert deletion.held is None and deletion.text() == "deleted tenant acme (10.32.1.0/24)"
    assert registry.load().quarantined == {} and registry.load().tenants == {}
    assert registry.create("globex").subnet == ACME


def test_a_job_run_around_weavenomad_holds_the_subnet_too(registry):
    # no tenant meta: the non-forced delete's own check does not see it, the quarantine does
    nomad = FakeNomad([(node("n1"), [alloc("a1", "bypass", "net:10.32.1.0/24")])])
    deletion = delete_tenant(registry, nomad, "acme")
    assert deletion.held.startswith("1 allocation(s) of job bypass")


def test_when_nomad_cannot_be_asked_nothing_is_freed(registry):
    down = BackendUnavailable("cannot reach Nomad at http://127.0.0.1:4646: connection refused",
                              backend="nomad")
    deletion = delete_tenant(registry, FakeNomad(down=down), "acme", force=True)
    assert deletion.held.startswith("Nomad could not be asked whether tasks still hold "
                                    "addresses in it (cannot reach Nomad")
    warnings = []
    created = create_tenant(registry, "globex", connect_nomad=lambda: FakeNomad(down=down),
                            warn=warnings.append)
    assert created.subnet != ACME and set(registry.load().quarantined) == {ACME}
    assert warnings == ["cannot ask Nomad whether tasks still hold addresses in the quarantined "
                        "subnets (cannot reach Nomad at http://127.0.0.1:4646: connection "
                        "refused); they stay quarantined"]
    assert check_quarantine(None, registry.load()).released == frozenset()


def test_create_asks_nomad_only_when_something_is_quarantined(registry):
    def unreachable():
        raise AssertionError("Nomad was asked with nothing quarantined")

    assert create_tenant(registry, "globex", connect_nomad=unreachable).subnet == \
        IPv4Network("10.32.2.0/24")


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(st.lists(st.integers(1, 40), max_size=6, unique=True),
       st.lists(st.integers(1, 40), max_size=6, unique=True), st.integers(22, 26))
def test_create_never_hands_out_what_a_quarantine_overlaps(tenants, quarantined, prefix_len):
    """Whatever mix of tenants and quarantines of any size, a new subnet overlaps none."""
    registry = Registry()
    for number in tenants:
        subnet = IPv4Network(f"10.32.{number}.0/24")
        if registry.quarantine_of(subnet) is None and registry.owner_of(subnet) is None:
            registry, _ = plan_create(registry, CLUSTER, f"t{number}", created=WHEN, cidr=subnet)
    for number in quarantined:
        name = f"q{number}"
        subnet = IPv4Network(f"10.32.{number * 2}.0/23")
        if all(not subnet.overlaps(s) for s in [*registry.subnets().values(),
                                                 *registry.quarantined]):
            registry, _ = plan_create(registry, CLUSTER, name, created=WHEN, cidr=subnet)
            registry, _ = plan_retire(registry, name, deleted=WHEN)
    assert decode_registry(encode_registry(registry), KEY) == registry
    _, tenant = plan_create(registry, CLUSTER, "new", created=WHEN, prefix_len=prefix_len)
    for other in [CLUSTER.default_subnet, *registry.subnets().values(), *registry.quarantined]:
        assert not tenant.subnet.overlaps(other), (tenant.subnet, other)
