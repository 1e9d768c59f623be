"""The pure plan: which twins and masks Consul should hold, and the actions that get it there."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Interface

import pytest
from reconcile_support import (
    ALLOC_A,
    ALLOC_B,
    MASK_A,
    MASK_B,
    SID_A,
    SID_B,
    TWIN_A,
    TWIN_B,
    job_allocation,
    nomad_service,
    observation_of,
    recorded_observation,
    tcp_service,
    tenancy,
    weave_container,
    with_checks,
    with_services,
)

from weavenomad.config import ReconcilerSettings
from weavenomad.reconcile import desired
from weavenomad.reconcile.consul import mask_definition, service_definition
from weavenomad.reconcile.model import Container, Observation
from weavenomad.reconcile.plan import (
    EXPOSE_SUBNET,
    REGISTER_MASK,
    REGISTER_TWIN,
    REMOVE_MASK,
    REMOVE_TWIN,
    SET_TTL,
    plan,
)
from weavenomad.reconcile.registrations import AgentCheck, AgentService

ALLOC = "11111111-2222-3333-4444-555555555555"


def rendered(action) -> dict:
    """The request body of a register action, as the Consul module renders it."""
    return service_definition(action.twin) if action.twin is not None \
        else mask_definition(action.mask)


def converge(obs: Observation, **kwargs) -> Observation:
    """What Consul holds after the plan's actions, as a Consul agent would apply them."""
    result = plan(obs, **kwargs)
    services, checks = dict(obs.services), dict(obs.checks)
    for action in result.actions:
        if action.kind == REGISTER_TWIN:
            body = rendered(action)
            services[action.id] = AgentService(body["ID"], body["Name"], body["Address"],
                                               body["Port"], tuple(body["Tags"]),
                                               dict(body["Meta"]))
            checks = {k: v for k, v in checks.items() if v.service_id != action.id}
            for check in body.get("Checks", []):
                checks[check["CheckID"]] = AgentCheck(check["CheckID"], action.id, check["Name"],
                                                      check.get("Status", "critical"))
        elif action.kind == REGISTER_MASK:
            body = rendered(action)
            checks[action.id] = AgentCheck(action.id, body["ServiceID"], body["Name"],
                                           body["Status"], body["Notes"])
        elif action.kind == REMOVE_TWIN:
            services.pop(action.id)
            checks = {k: v for k, v in checks.items() if v.service_id != action.id}
        elif action.kind == REMOVE_MASK:
            checks.pop(action.id)
        elif action.kind == SET_TTL:
            old = checks[action.id]
            checks[action.id] = AgentCheck(old.id, old.service_id, old.name, action.status)
    return Observation(obs.allocations, services, checks, obs.containers, obs.tenancy)


def kinds(result) -> list[tuple[str, str]]:
    return [(a.kind, a.id) for a in result.actions]


def twin_action(result):
    """The plan's first twin registration (masks come before their twins)."""
    return next((a for a in result.actions if a.kind == REGISTER_TWIN), None)


def test_the_recorded_node_gets_a_twin_and_a_mask_per_nomad_service():
    result = plan(recorded_observation())
    assert kinds(result) == [(REGISTER_MASK, MASK_A), (REGISTER_MASK, MASK_B),
                             (REGISTER_TWIN, TWIN_A), (REGISTER_TWIN, TWIN_B)]
    twin = rendered(twin_action(result))
    assert twin["Name"] == "httpbackend" and twin["Address"] == "10.32.1.1"
    assert twin["Port"] == 8081 and twin["Tags"] == []
    assert twin["Meta"]["external-source"] == "nomad"
    assert twin["Meta"]["weavenomad-managed"] == "true"
    assert twin["Meta"]["weavenomad-source"] == SID_A
    assert twin["Checks"] == [{"CheckID": TWIN_A + "-check-0",
                               "Name": 'service: "httpbackend" check', "Interval": "5s",
                               "Timeout": "2s", "TCP": "10.32.1.1:8081"}]
    mask = result.actions[0]
    assert rendered(mask)["ServiceID"] == SID_A and rendered(mask)["Status"] == "critical"
    assert rendered(mask)["TTL"] and "DeregisterCriticalServiceAfter" not in rendered(mask)
    assert result.actions[2].requires == MASK_A  # the twin waits for its mask
    assert result.twins == 2 and result.masks == 2 and not result.converged


def test_a_converged_node_plans_nothing_and_stays_converged():
    obs = converge(recorded_observation())
    again = plan(obs)
    assert again.actions == () and again.converged
    assert plan(converge(obs)).actions == ()


def test_drift_of_a_twin_is_repaired_by_re_registering_it():
    obs = converge(recorded_observation())
    edited = AgentService(TWIN_A, "httpbackend", "172.17.0.2", 8081, (),
                          dict(obs.services[TWIN_A].meta))
    result = plan(with_services(obs, edited))
    assert kinds(result) == [(REGISTER_TWIN, TWIN_A)]
    assert "address '172.17.0.2' -> '10.32.1.1'" in twin_action(result).why
    # a lost check is drift too
    result = plan(with_checks(obs, drop=(TWIN_B + "-check-0",)))
    assert kinds(result) == [(REGISTER_TWIN, TWIN_B)]


def test_a_mask_that_was_removed_or_passed_comes_back():
    obs = converge(recorded_observation())
    assert kinds(plan(with_checks(obs, drop=(MASK_A,)))) == [(REGISTER_MASK, MASK_A)]
    passed = AgentCheck(MASK_B, SID_B, "weave address mask", "passing", obs.checks[MASK_B].notes)
    result = plan(with_checks(obs, passed))
    assert kinds(result) == [(REGISTER_MASK, MASK_B)] and result.actions[0].requires is None


def test_a_new_weave_address_moves_the_twin():
    obs = converge(recorded_observation())
    moved = recorded_observation({ALLOC_A: "10.32.1.9/24", ALLOC_B: "10.32.1.2/24"})
    result = plan(Observation(obs.allocations, obs.services, obs.checks, moved.containers,
                              obs.tenancy))
    assert kinds(result) == [(REGISTER_MASK, MASK_A), (REGISTER_TWIN, TWIN_A)]
    assert rendered(twin_action(result))["Checks"][0]["TCP"] == "10.32.1.9:8081"


def test_a_stopped_allocation_or_dropped_service_loses_everything_of_ours():
    obs = converge(recorded_observation())
    stopping = dict(obs.allocations)
    stopping[ALLOC_A] = dataclasses.replace(stopping[ALLOC_A], desired_status="stop")
    result = plan(Observation(stopping, obs.services, obs.checks, obs.containers, obs.tenancy))
    assert kinds(result) == [(REMOVE_MASK, MASK_A), (REMOVE_TWIN, TWIN_A)]
    # Nomad deregistered its service (Consul dropped the mask with it) and its allocation
    # announces no restart: once Nomad had the time to say so, the twin goes
    gone = with_checks(with_services(obs, drop=(SID_B,)), drop=(MASK_B,))
    assert kinds(plan(gone, now=100.0, orphans={TWIN_B: 94.0})) == [(REMOVE_TWIN, TWIN_B)]


def test_orphans_of_ours_go_and_nothing_foreign_is_touched():
    obs = converge(recorded_observation())
    orphan = AgentService("weavenomad-deadbeef-0000-0000-0000-000000000000-t-s-80", "s",
                          "10.32.1.50", 80, (), {"weavenomad-managed": "true"})
    lookalike = AgentService("weavenomad-not-ours", "s", "10.32.1.51", 80, (), {})
    foreign = AgentService("redis-1", "redis", "10.0.0.1", 6379, (), {})
    stale_mask = AgentCheck("weavenomad-mask-test", SID_A, "weave address mask", "critical")
    foreign_check = AgentCheck("ops-note", SID_B, "note", "critical")
    result = plan(with_checks(with_services(obs, orphan, lookalike, foreign),
                              stale_mask, foreign_check))
    assert kinds(result) == [(REMOVE_MASK, "weavenomad-mask-test"), (REMOVE_TWIN, orphan.id)]


def test_an_id_registered_by_someone_else_is_left_alone():
    obs = recorded_observation()
    squatter = AgentService(TWIN_A, "httpbackend", "1.2.3.4", 1, (), {})
    result = plan(with_services(obs, squatter))
    assert (REGISTER_TWIN, TWIN_A) not in kinds(result)
    assert (REGISTER_MASK, MASK_A) not in kinds(result)
    assert [p.reason for p in result.problems] == [desired.ID_TAKEN]


def test_tenant_audit_hides_a_task_outside_its_tenants_subnet():
    raw = job_allocation(ALLOC, meta={"weavenomad.tenant": "acme",
                                      "weavenomad.subnet": "10.32.1.0/24"},
                         tasks=[{"Name": "web", "Driver": "docker",
                                 "Env": {"WEAVE_CIDR": "net:10.32.1.0/24"},
                                 "Services": [tcp_service("web", "8080")]}])
    service = nomad_service(ALLOC, "web", "web", "8080", port=8080)
    outside = observation_of([raw], [service], [weave_container(ALLOC, "web", "10.32.2.7/24")],
                             tenancy=tenancy(acme="10.32.1.0/24"))
    result = plan(outside)
    assert kinds(result) == [(REGISTER_MASK, f"weavenomad-mask-{ALLOC}-web-web-8080")]
    assert "tenant violation" in rendered(result.actions[0])["Notes"]
    (problem,) = result.problems
    assert problem.reason == desired.TENANT_VIOLATION and problem.tenant == "acme"
    # the registry is authoritative over the job's meta, and "default" means the default subnet
    inside = observation_of([raw], [service], [weave_container(ALLOC, "web", "10.32.2.7/24")],
                            tenancy=tenancy(acme="10.32.2.0/24"))
    assert twin_action(plan(inside)) is not None


def test_several_addresses_pick_the_lowest_in_the_tenant_subnet():
    raw = job_allocation(ALLOC, meta={"weavenomad.tenant": "acme"},
                         tasks=[{"Name": "web", "Driver": "docker",
                                 "Services": [tcp_service("web", "8080")]}])
    service = nomad_service(ALLOC, "web", "web", "8080")
    container = weave_container(ALLOC, "web", "10.32.0.9/24", "10.32.1.20/24", "10.32.1.5/24")
    result = plan(observation_of([raw], [service], [container],
                                 tenancy=tenancy(acme="10.32.1.0/24")))
    assert rendered(twin_action(result))["Address"] == "10.32.1.5"
    no_tenant = job_allocation(ALLOC, tasks=[{"Name": "web", "Driver": "docker",
                                              "Services": [tcp_service("web", "8080")]}])
    result = plan(observation_of([no_tenant], [service], [container]))
    assert rendered(twin_action(result))["Address"] == "10.32.0.9"


def test_ports_resolve_to_the_container_port_never_the_host_port():
    group_port = job_allocation(
        ALLOC, shared_ports=[{"Label": "http", "Value": 23456, "To": 8080}],
        tasks=[{"Name": "web", "Driver": "docker", "Config": {"ports": ["http"]},
                "Services": [tcp_service("web", "http", mode="host")]}])
    legacy = job_allocation(
        ALLOC, task_networks={"web": [{"DynamicPorts": [{"Label": "http", "Value": 25000}]}]},
        tasks=[{"Name": "web", "Driver": "docker", "Config": {"port_map": [{"http": 9090}]},
                "Services": [tcp_service("web", "http")]}])
    unmapped = job_allocation(
        ALLOC, task_networks={"web": [{"ReservedPorts": [{"Label": "http", "Value": 7070}]}]},
        tasks=[{"Name": "web", "Driver": "docker", "Services": [tcp_service("web", "http")]}])
    for raw, port in ((group_port, 8080), (legacy, 9090), (unmapped, 7070)):
        service = nomad_service(ALLOC, "web", "web", "http", "192.168.56.3", 23456)
        result = plan(observation_of([raw], [service],
                                     [weave_container(ALLOC, "web", "10.32.1.3/24")]))
        body = rendered(twin_action(result))
        assert (body["Port"], body["Checks"][0]["TCP"]) == (port, f"10.32.1.3:{port}")


def test_an_unresolvable_port_is_a_problem_and_nothing_is_half_written():
    raw = job_allocation(ALLOC, tasks=[{"Name": "web", "Driver": "docker",
                                        "Services": [tcp_service("web", "nope")]}])
    service = nomad_service(ALLOC, "web", "web", "nope")
    result = plan(observation_of([raw], [service],
                                 [weave_container(ALLOC, "web", "10.32.1.3/24")]))
    assert result.actions == ()
    assert [(p.service_id, p.reason) for p in result.problems] == [
        (service.id, desired.PORT_UNRESOLVED)]
    # same when only a check's own port label is unresolvable
    raw = job_allocation(ALLOC, tasks=[{"Name": "web", "Driver": "docker", "Services": [
        tcp_service("web", "8080", check_port="admin")]}])
    service = nomad_service(ALLOC, "web", "web", "8080")
    result = plan(observation_of([raw], [service],
                                 [weave_container(ALLOC, "web", "10.32.1.3/24")]))
    assert result.actions == () and result.problems[0].reason == desired.PORT_UNRESOLVED


def test_http_and_grpc_checks_are_re_aimed_and_script_checks_mirrored():
    checks = [
        {"Name": "ready", "Type": "http", "Path": "health", "Protocol": "https",
         "Method": "POST", "Header": {"X-A": ["1"]}, "TLSSkipVerify": True,
         "Interval": 10_000_000_000, "Timeout": 1_500_000_000},
        {"Name": "rpc", "Type": "grpc", "GRPCService": "svc.Health", "GRPCUseTLS": True,
         "Interval": 5_000_000_000},
        {"Name": "script", "Type": "script", "Command": "/bin/check", "Interval": 30_000_000_000},
    ]
    raw = job_allocation(ALLOC, tasks=[{"Name": "web", "Driver": "docker", "Services": [
        tcp_service("web", "8443", checks=checks)]}])
    service = nomad_service(ALLOC, "web", "web", "8443")
    nomads_script_check = AgentCheck("_nomad-check-abc", service.id, "script", "passing")
    obs = observation_of([raw], [service], [weave_container(ALLOC, "web", "10.32.1.3/24")],
                         checks=[nomads_script_check])
    result = plan(obs, ReconcilerSettings(resync=60.0))
    http, grpc, mirror = rendered(twin_action(result))["Checks"]
    assert http["HTTP"] == "https://10.32.1.3:8443/health" and http["Method"] == "POST"
    assert http["Header"] == {"X-A": ["1"]} and http["TLSSkipVerify"] is True
    assert (http["Interval"], http["Timeout"]) == ("10s", "1500ms")
    assert grpc["GRPC"] == "10.32.1.3:8443/svc.Health" and grpc["GRPCUseTLS"] is True
    assert mirror["TTL"] == "210s" and mirror["Status"] == "passing"
    assert [p.reason for p in result.problems] == [desired.CHECK_NOT_REAIMABLE]
    assert (REGISTER_MASK, f"weavenomad-mask-{ALLOC}-web-web-8443") in kinds(result)
    # the mirror follows Nomad's check without re-registering the twin
    done = converge(obs, settings=ReconcilerSettings(resync=60.0))
    failing = AgentCheck("_nomad-check-abc", service.id, "script", "critical")
    result = plan(with_checks(done, failing), ReconcilerSettings(resync=60.0))
    assert [(a.kind, a.status) for a in result.actions] == [(SET_TTL, "critical")]
    refreshed = plan(done, ReconcilerSettings(resync=60.0), refresh_mirrors=True)
    assert [(a.kind, a.why) for a in refreshed.actions] == [(SET_TTL, "refresh")]
    assert refreshed.converged


def test_a_group_service_uses_the_leader_or_the_first_task_with_an_address():
    tasks = [{"Name": "sidecar", "Driver": "docker", "Services": []},
             {"Name": "app", "Driver": "docker", "Services": []}]
    raw = job_allocation(ALLOC, tasks=tasks, group_services=[tcp_service("api", "8080")])
    service = nomad_service(ALLOC, "group-web", "api", "8080")
    containers = [weave_container(ALLOC, "sidecar"), weave_container(ALLOC, "app", "10.32.1.8/24")]
    result = plan(observation_of([raw], [service], containers))
    assert twin_action(result).id == f"weavenomad-{ALLOC}-group-web-api-8080"
    assert rendered(twin_action(result))["Address"] == "10.32.1.8"
    tasks[0]["Leader"] = True
    containers[0] = weave_container(ALLOC, "sidecar", "10.32.1.7/24")
    raw = job_allocation(ALLOC, tasks=tasks, group_services=[tcp_service("api", "8080")])
    result = plan(observation_of([raw], [service], containers))
    assert rendered(twin_action(result))["Address"] == "10.32.1.7"


def test_containers_without_a_weave_address():
    raw = job_allocation(ALLOC, tasks=[{"Name": "web", "Driver": "docker",
                                        "Env": {"WEAVE_CIDR": "net:10.32.1.0/24"},
                                        "Services": [tcp_service("web", "8080")]}])
    service = nomad_service(ALLOC, "web", "web", "8080")
    fresh = weave_container(ALLOC, "web", started_at=100.0)
    waiting = plan(observation_of([raw], [service], [fresh]), now=101.0)
    assert waiting.actions == () and waiting.waiting == (service.id,) and not waiting.problems
    late = plan(observation_of([raw], [service], [fresh]), now=200.0)
    assert late.actions == () and late.problems[0].reason == desired.NO_WEAVE_ADDRESS
    not_known = Container("c1", ALLOC, "web", True, None)
    assert plan(observation_of([raw], [service], [not_known])).waiting == (service.id,)
    # a task that never asked for the overlay keeps Nomad's registration, silently
    plain = job_allocation(ALLOC, tasks=[{"Name": "web", "Driver": "docker",
                                          "Services": [tcp_service("web", "8080")]}])
    quiet = plan(observation_of([plain], [service], [weave_container(ALLOC, "web")]))
    assert quiet.actions == () and not quiet.problems and not quiet.waiting


def test_nothing_to_do_when_nomad_already_advertises_the_weave_address():
    raw = job_allocation(ALLOC, tasks=[{"Name": "web", "Driver": "docker",
                                        "Services": [tcp_service("web", "8080")]}])
    right = nomad_service(ALLOC, "web", "web", "8080", "10.32.1.3", 8080)
    assert plan(observation_of([raw], [right],
                               [weave_container(ALLOC, "web", "10.32.1.3/24")])).actions == ()


def test_an_allocation_missing_from_the_nomad_snapshot_means_look_again():
    obs = recorded_observation()
    partial = {ALLOC_A: obs.allocations[ALLOC_A]}
    result = plan(Observation(partial, obs.services, obs.checks, obs.containers, obs.tenancy))
    assert result.waiting == (SID_B,)
    assert kinds(result) == [(REGISTER_MASK, MASK_A), (REGISTER_TWIN, TWIN_A)]


def test_interpolated_service_names_match_by_the_registered_name():
    raw = job_allocation(ALLOC, tasks=[{"Name": "web", "Driver": "docker", "Services": [
        tcp_service("${NOMAD_JOB_NAME}-web", "8080")]}])
    service = nomad_service(ALLOC, "web", "shop-web", "8080", tags=["v1"])
    result = plan(observation_of([raw], [service],
                                 [weave_container(ALLOC, "web", "10.32.1.3/24")]))
    assert rendered(twin_action(result))["Name"] == "shop-web"
    assert rendered(twin_action(result))["Tags"] == ["v1"]


def test_the_host_is_exposed_on_every_tenant_subnet_it_has_no_address_in():
    obs = dataclasses.replace(converge(acme_observation()),
                              tenancy=tenancy(acme="10.32.1.0/24", globex="10.32.2.0/24"),
                              exposed=(IPv4Interface("10.32.0.1/24"),
                                       IPv4Interface("10.32.1.3/24")))
    result = plan(obs)
    assert kinds(result) == [(EXPOSE_SUBNET, "10.32.2.0/24")]  # first, before any twin
    assert not result.converged
    # exposed everywhere: nothing to do; the default subnet counts too
    exposed = obs.exposed + (IPv4Interface("10.32.2.1/24"),)
    assert plan(dataclasses.replace(obs, exposed=exposed)).actions == ()
    bare = plan(dataclasses.replace(obs, exposed=()))
    assert [a.id for a in bare.actions if a.kind == EXPOSE_SUBNET] == [
        "10.32.0.0/24", "10.32.1.0/24", "10.32.2.0/24"]
    # Weave did not answer: nothing is known, nothing is planned, and nothing is ever hidden
    assert plan(dataclasses.replace(obs, exposed=None)).actions == ()
    extra = obs.exposed + exposed + (IPv4Interface("10.32.9.1/24"),)
    assert plan(dataclasses.replace(obs, exposed=extra)).actions == ()


def test_exposure_is_what_the_ipam_gave_the_host_and_the_bridge_still_has():
    """After a reboot Weave's IPAM (weavedb) still owns the host's addresses but the new
    bridge has none (recorded: day-two/1a-after-reboot-ip.json, -ip-addr-weave.txt)."""
    from weavenomad.reconcile.observe import exposure

    owned = {"weave:expose": [IPv4Interface("10.32.0.1/24"), IPv4Interface("10.32.1.1/24")]}
    assert exposure(owned, ()) == ((), ())
    assert exposure(owned, (IPv4Interface("10.32.1.1/24"),)) == (
        (IPv4Interface("10.32.1.1/24"),), ())
    foreign = IPv4Interface("10.32.1.77/24")
    assert exposure(owned, (foreign, IPv4Interface("10.32.0.1/24"))) == (
        (IPv4Interface("10.32.0.1/24"),), (foreign,))
    assert exposure(owned, None) == (tuple(owned["weave:expose"]), ())  # bridge unreadable
    assert exposure(None, ()) == (None, ())  # Weave did not answer


def acme_observation() -> Observation:
    """The recorded allocations as acme's jobs (issue 15: a job without tenant meta that holds
    an address in a tenant's subnet is a violation, not advertised)."""
    recorded = recorded_observation()
    acme_jobs = {alloc_id: dataclasses.replace(alloc, tenant="acme", tenant_subnet="10.32.1.0/24")
                 for alloc_id, alloc in recorded.allocations.items()}
    return dataclasses.replace(recorded, allocations=acme_jobs)


def test_after_a_reboot_every_subnet_is_exposed_again_and_a_foreign_address_is_a_problem():
    obs = dataclasses.replace(converge(acme_observation()),
                              tenancy=tenancy(acme="10.32.1.0/24"), exposed=())
    result = plan(obs)
    assert [a.id for a in result.actions if a.kind == EXPOSE_SUBNET] == [
        "10.32.0.0/24", "10.32.1.0/24"]
    foreign = dataclasses.replace(obs, foreign=(IPv4Interface("10.32.1.77/24"),
                                                IPv4Interface("192.168.7.1/24")))
    problems = plan(foreign).problems
    assert [(p.service_id, p.reason) for p in problems] == [
        ("weave-bridge", "foreign-bridge-address")]  # outside every subnet: not ours to judge
    assert "10.32.1.77/24" in problems[0].detail and "ip addr del" in problems[0].detail
    # it does not count as exposure: the host's own address goes next to it
    assert [a.id for a in plan(foreign).actions if a.kind == EXPOSE_SUBNET] == [
        "10.32.0.0/24", "10.32.1.0/24"]


def restarting(obs: Observation, alloc_id: str, at: float, delay: float) -> Observation:
    """Nomad's allocation after a Weave restart broke its wait on the task (day-two/1c):
    pending, its last event 'Restarting' in ``delay`` seconds, announced at ``at``."""
    from weavenomad.reconcile.model import restarting_until

    state = {"State": "pending", "Events": [
        {"Type": "Terminated", "Time": int(at * 1e9), "Message": "unexpected EOF"},
        {"Type": "Restarting", "Time": int(at * 1e9), "StartDelay": int(delay * 1e9)}]}
    alloc = obs.allocations[alloc_id]
    tasks = tuple(dataclasses.replace(t, restarting_until=restarting_until(state))
                  for t in alloc.tasks)
    allocations = {**obs.allocations, alloc_id: dataclasses.replace(
        alloc, client_status="pending", tasks=tasks)}
    return dataclasses.replace(obs, allocations=allocations)


def test_a_twin_outlives_nomads_deregistration_while_the_container_runs_on():
    """A Weave restart: Nomad deregistered the service and takes the running container over
    again after its restart delay; the twin keeps answering meanwhile, no longer."""
    obs = converge(recorded_observation())
    gone = restarting(with_checks(with_services(obs, drop=(SID_B,)), drop=(MASK_B,)),
                      ALLOC_B, at=1000.0, delay=16.06)
    kept = plan(gone, now=1000.1)
    assert kinds(kept) == [] and kept.kept == {TWIN_B: 1000.1}
    assert kept.next_look == pytest.approx(1000.0 + 16.06 + 10.0)  # the restart plus a margin
    assert plan(gone, now=1020.0, orphans=kept.kept).kept == {TWIN_B: 1000.1}
    # past the announced restart and its margin: it goes
    assert kinds(plan(gone, now=1026.1, orphans=kept.kept)) == [(REMOVE_TWIN, TWIN_B)]
    # before Nomad's allocation says it restarts: a short while only
    plain = with_checks(with_services(obs, drop=(SID_B,)), drop=(MASK_B,))
    assert plan(plain, now=50.0, orphans={TWIN_B: 46.0}).kept == {TWIN_B: 46.0}
    assert kinds(plan(plain, now=52.0, orphans={TWIN_B: 46.0})) == [(REMOVE_TWIN, TWIN_B)]


@pytest.mark.parametrize("real_stop", ["stopped", "exited", "moved", "no container"])
def test_a_real_stop_ends_a_kept_twin_at_once(real_stop):
    obs = converge(recorded_observation())
    gone = restarting(with_checks(with_services(obs, drop=(SID_B,)), drop=(MASK_B,)),
                      ALLOC_B, at=1000.0, delay=16.0)
    key = (ALLOC_B, "httpbackend")
    if real_stop == "stopped":
        allocations = {**gone.allocations, ALLOC_B: dataclasses.replace(
            gone.allocations[ALLOC_B], desired_status="stop")}
        gone = dataclasses.replace(gone, allocations=allocations)
    elif real_stop == "exited":
        containers = {**gone.containers, key: dataclasses.replace(gone.containers[key],
                                                                  running=False, addresses=())}
        gone = dataclasses.replace(gone, containers=containers)
    elif real_stop == "moved":
        containers = {**gone.containers, key: dataclasses.replace(
            gone.containers[key], addresses=(IPv4Interface("10.32.1.9/24"),))}
        gone = dataclasses.replace(gone, containers=containers)
    else:
        gone = dataclasses.replace(gone, containers={k: v for k, v in gone.containers.items()
                                                     if k != key})
    assert kinds(plan(gone, now=1001.0, orphans={TWIN_B: 1000.5})) == [(REMOVE_TWIN, TWIN_B)]


def test_a_quarantined_subnet_stays_exposed_for_the_deleted_tenants_tasks():
    """A node that lost its bridge addresses (a reboot) while a deleted tenant's tasks still run
    exposes their quarantined subnet again, or Consul's checks of their twins would fail."""
    from ipaddress import IPv4Network

    from weavenomad.reconcile.model import Tenancy

    obs = dataclasses.replace(converge(acme_observation()), exposed=(),
                              tenancy=Tenancy({}, IPv4Network("10.32.0.0/24"),
                                              {IPv4Network("10.32.1.0/24"): "acme"}))
    assert [a.id for a in plan(obs).actions if a.kind == EXPOSE_SUBNET] == [
        "10.32.0.0/24", "10.32.1.0/24"]


def held_observation(name="weavenomad-hidden-web", public="web", address="172.17.0.9",
                     port=0):
    spec = tcp_service(name, "http", Meta={"weavenomad-service": public})
    raw = job_allocation(ALLOC, tasks=[{"Name": "t", "Driver": "docker", "Services": [spec]}],
                         shared_ports=[{"Label": "http", "Value": 25000, "To": 8080}])
    nomad = AgentService(f"_nomad-task-{ALLOC}-t-{name}-http", name, address, port,
                         ("weavenomad-hidden:urlprefix-/", "weavenomad-hidden:v1"),
                         {"external-source": "nomad", "weavenomad-service": public})
    return observation_of([raw], [nomad], [weave_container(ALLOC, "t", "10.32.1.5/24")])


def test_a_held_service_gets_a_twin_under_its_public_name_and_tags_and_no_mask():
    result = plan(held_observation())
    assert [a.kind for a in result.actions] == [REGISTER_TWIN]
    twin = rendered(result.actions[0])
    assert twin["Name"] == "web" and twin["Tags"] == ["urlprefix-/", "v1"]
    assert (twin["Address"], twin["Port"]) == ("10.32.1.5", 8080)
    assert twin["Meta"]["weavenomad-service"] == "web"
    assert result.masks == 0 and plan(converge(held_observation())).converged
    # even when Nomad registered the Weave address itself, only a twin has the public name
    same = held_observation(address="10.32.1.5", port=8080)
    assert [a.kind for a in plan(same).actions] == [REGISTER_TWIN]


def test_an_orphaned_twin_of_an_interpolated_held_name_is_matched_by_its_private_name():
    obs = held_observation(name="weavenomad-hidden-${NOMAD_META_app}", public="${NOMAD_META_app}")
    # Nomad interpolated both: name weavenomad-hidden-shop, meta weavenomad-service = shop
    service = obs.services[next(iter(obs.services))]
    registered = dataclasses.replace(
        service, id=f"_nomad-task-{ALLOC}-t-weavenomad-hidden-shop-http",
        name="weavenomad-hidden-shop", meta={**service.meta, "weavenomad-service": "shop"})
    obs = Observation(obs.allocations, {registered.id: registered}, obs.checks, obs.containers,
                      obs.tenancy)
    twin = converge(obs).services[f"weavenomad-{ALLOC}-t-weavenomad-hidden-shop-http"]
    assert twin.name == "shop"
    kept = desired.keep_orphan(twin, obs, ReconcilerSettings(), now=100.0, since=99.0)
    assert kept is not None
