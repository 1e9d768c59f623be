"""``weavenomad run``'s policy: every way a job could place a task outside its tenant is refused
with one line naming the job, group, task and field (weavenomad.jobs.policy)."""

import json
from ipaddress import IPv4Network

import pytest

from weavenomad.errors import ValidationError
from weavenomad.jobs.transform import apply_tenant
from weavenomad.tenancy.contract import TenantTarget

ACME = TenantTarget("acme", IPv4Network("10.32.1.0/24"), IPv4Network("10.32.0.0/24"))
DEFAULT = TenantTarget("net:default", None, IPv4Network("10.32.0.0/24"))
WHERE = "job 'j' group 'g' task 't'"


def job_with(task_fields=None, config=None, env=None, group_fields=None) -> dict:
    task = {"Name": "t", "Driver": "docker", "Config": {"image": "bb:local", **(config or {})},
            "Env": env, **(task_fields or {})}
    group = {"Name": "g", "Tasks": [task], **(group_fields or {})}
    return {"ID": "j", "Name": "j", "TaskGroups": [group]}


def refusal(job, target=ACME) -> str:
    with pytest.raises(ValidationError) as caught:
        apply_tenant(job, target)
    text = caught.value.one_line()
    assert "\n" not in str(caught.value)
    return text


def the_task(result):
    return result.job["TaskGroups"][0]["Tasks"][0]


# -- WEAVE_CIDR set by the job ------------------------------------------------------------------


@pytest.mark.parametrize("value, why", [
    ("net:10.32.2.0/24", "outside tenant 'acme'"),              # another tenant's subnet
    ("ip:10.32.2.9/24", "outside tenant 'acme'"),               # another tenant's address
    ("ip:10.99.0.9/24", "outside tenant 'acme'"),               # no tenant's address
    ("10.32.2.9/24", "outside tenant 'acme'"),                  # bare claim, as ip:
    ("net:default", "outside tenant 'acme'"),
    ("", "outside tenant 'acme'"),                              # empty means net:default
    ("net:10.32.1.0/24 ip:10.32.3.4/24", "outside tenant 'acme'"),  # one bad entry of several
    ("net:10.32.1.0/24  net:default", "outside tenant 'acme'"),
    ("ip:10.32.1.7/16", "outside tenant 'acme'"),               # own address, other subnets' route
    ("net:10.32.0.0/16", "outside tenant 'acme'"),              # a supernet of the tenant
    ("none", "keeps the task off"),
    ("net:${NOMAD_META_subnet}", "uses interpolation"),
    ("net:10.32.1.0/24 ${NOMAD_META_more}", "uses interpolation"),
    ("net:10.32.1.0/255.255.255.0", "is invalid"),              # Weave wants a prefix length
    ("ip:default", "is invalid"),
])
def test_job_set_weave_cidr_outside_the_tenant_is_refused(value, why):
    text = refusal(job_with(env={"WEAVE_CIDR": value}))
    assert text.startswith(f"{WHERE}: env WEAVE_CIDR ") and why in text


@pytest.mark.parametrize("value", [7, ["net:10.32.1.0/24"], {"net": "10.32.1.0/24"}])
def test_a_weave_cidr_that_is_not_text_is_refused(value):
    assert "env WEAVE_CIDR must be a string" in refusal(job_with(env={"WEAVE_CIDR": value}))


@pytest.mark.parametrize("value", ["net:10.32.1.0/24", "net:10.32.1.128/25", "ip:10.32.1.7/24",
                                   "ip:10.32.1.7/26", "net:10.32.1.0/26 net:10.32.1.64/26"])
def test_job_set_weave_cidr_inside_the_tenant_is_kept(value):
    assert the_task(apply_tenant(job_with(env={"WEAVE_CIDR": value}), ACME))["Env"] == {
        "WEAVE_CIDR": value}


def test_a_default_subnet_job_may_claim_there_but_not_in_a_tenant():
    apply_tenant(job_with(env={"WEAVE_CIDR": "ip:10.32.0.9/24"}), DEFAULT)
    assert "outside tenant 'net:default'" in refusal(
        job_with(env={"WEAVE_CIDR": "net:10.32.1.0/24"}), DEFAULT)


# -- network modes ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode, why", [
    ("host", "not attached by the Weave proxy"),
    ("container:other-task", "not attached by the Weave proxy"),
    ("mynet", "not attached by the Weave proxy"),
    ("Bridge", "not attached by the Weave proxy"),    # Docker reads it as a named network
    ("${NOMAD_META_mode}", "uses interpolation"),
    ("bridge${NOMAD_META_x}", "uses interpolation"),
    (False, "must be a string"),                      # cty would make it "false": a named network
    (0, "must be a string"),
    (["host"], "must be a string"),
])
def test_task_network_modes_that_escape_are_refused(mode, why):
    text = refusal(job_with(config={"network_mode": mode}))
    assert text.startswith(f"{WHERE}: config network_mode ") and why in text


@pytest.mark.parametrize("networks, field", [
    ([{"Mode": "bridge"}], "network[0] mode"),
    ([{"Mode": "host"}, {"Mode": "cni/mynet"}], "network[1] mode"),
    ([{"Mode": "none"}], "network[0] mode"),
])
def test_group_network_modes_that_make_a_namespace_are_refused(networks, field):
    text = refusal(job_with(group_fields={"Networks": networks}))
    assert text.startswith(f"job 'j' group 'g': {field} = ")


def test_task_level_network_modes_other_than_host_are_refused():
    job = job_with(task_fields={"Resources": {"Networks": [{"Mode": "bridge"}]}})
    assert refusal(job).startswith(f"{WHERE}: resources network[0] mode = 'bridge'")
    apply_tenant(job_with(task_fields={"Resources": {"Networks": [{"Mode": "host"}]}}), ACME)


# -- privileges, sockets, templates ------------------------------------------------------------


@pytest.mark.parametrize("config, field", [
    ({"privileged": True}, "config privileged"),
    ({"privileged": "true"}, "config privileged"),
    ({"privileged": "${NOMAD_META_p}"}, "config privileged"),
    ({"cap_add": ["net_admin"]}, "config cap_add"),
    ({"cap_add": ["chown", "CAP_NET_ADMIN"]}, "config cap_add"),
    ({"cap_add": ["SYS_ADMIN"]}, "config cap_add"),
    ({"cap_add": ["all"]}, "config cap_add"),
    ({"pid_mode": "host"}, "config pid_mode"),
    ({"volumes": ["/var/run/docker.sock:/var/run/docker.sock"]}, "config volumes[0]"),
    ({"volumes": ["/run:/host-run:ro"]}, "config volumes[0]"),
    ({"volumes": ["/:/host"]}, "config volumes[0]"),
    ({"volumes": ["/var/run/weave/:/w"]}, "config volumes[0]"),
    ({"volumes": ["${meta.sock}:/s"]}, "config volumes[0]"),
    ({"mount": [{"type": "bind", "source": "/run/containerd", "target": "/c"}]},
     "config mount[0] source"),
    ({"mounts": [{"type": "volume", "target": "/d", "volume_options": [{"driver_config": [
        {"name": "local", "options": [{"type": "none", "o": "bind", "device": "/var/run"}]}]}]}]},
     "config mounts[0] volume_options device"),
])
def test_privileges_and_api_sockets_are_refused(config, field):
    assert refusal(job_with(config=config)).startswith(f"{WHERE}: {field} ")


@pytest.mark.parametrize("config", [
    {"cap_add": ["CHOWN", "NET_BIND_SERVICE"]}, {"privileged": False}, {"pid_mode": ""},
    {"volumes": ["local/conf:/etc/conf", "${NOMAD_TASK_DIR}/x:/x", "/srv/data:/data"]},
    {"mount": [{"type": "bind", "source": "/srv/run", "target": "/r"}]},
    {"extra_hosts": ["db:10.32.2.5"], "dns_servers": ["10.32.2.53"], "hostname": "h",
     "mac_address": "02:42:ac:11:00:02", "port_map": [{"http": 80}], "ipc_mode": "host",
     "sysctl": [{"net.core.somaxconn": "1024"}]},
])
def test_harmless_settings_are_accepted(config):
    assert the_task(apply_tenant(job_with(config=config), ACME))["Env"]["WEAVE_CIDR"] == (
        "net:10.32.1.0/24")


def test_env_templates_that_set_weave_cidr_are_refused_dynamic_ones_warned():
    literal = {"Templates": [{"EmbeddedTmpl": "WEAVE_CIDR=net:10.32.2.0/24\n", "Envvars": True}]}
    assert refusal(job_with(task_fields=literal)).startswith(
        f"{WHERE}: template[0] data sets WEAVE_CIDR")
    files = {"Templates": [{"EmbeddedTmpl": "WEAVE_CIDR=x", "Envvars": False,
                            "DestPath": "local/f"}]}
    assert apply_tenant(job_with(task_fields=files), ACME).warnings == ()
    dynamic = {"Templates": [{"EmbeddedTmpl": 'DB={{ key "db" }}', "Envvars": True},
                             {"SourcePath": "local/env.tpl", "Envvars": True}]}
    warnings = apply_tenant(job_with(task_fields=dynamic), ACME).warnings
    assert [w.split(":")[0] for w in warnings] == [f"{WHERE} template[0]", f"{WHERE} template[1]"]


# -- the JSON shape ----------------------------------------------------------------------------


@pytest.mark.parametrize("mutate, field", [
    (lambda j: j["TaskGroups"][0]["Tasks"][0].update(env={"WEAVE_CIDR": "net:10.32.2.0/24"}),
     "'env' is read by Nomad as 'Env'"),
    (lambda j: j["TaskGroups"][0]["Tasks"][0].update(DRIVER="docker"),
     "'DRIVER' is read by Nomad as 'Driver'"),
    (lambda j: j.update(taskgroups=[]), "'taskgroups' is read by Nomad as 'TaskGroups'"),
    (lambda j: j.update(meta={"weavenomad.tenant": "globex"}), "'meta' is read by Nomad as"),
    (lambda j: j["TaskGroups"][0].update(networks=[{"Mode": "bridge"}]), "'networks' is read"),
    (lambda j: j["TaskGroups"][0]["Tasks"][0].update(Templates=[{"envvars": True}]),
     "'envvars' is read"),
    # Go folds the Kelvin sign and the long s onto k and s
    (lambda j: j.update({"Ta\u017fkGroups": []}), "is read by Nomad as 'TaskGroups'"),
])
def test_keys_nomad_would_read_as_our_fields_are_refused(mutate, field):
    job = job_with()
    mutate(job)
    assert field in refusal(job)


@pytest.mark.parametrize("job, text", [
    ([], "the job: document must be an object, not list"),
    ({"ID": "j", "TaskGroups": {}}, "job 'j': TaskGroups must be a list, not dict"),
    ({"ID": "j", "TaskGroups": ["g"]}, "job 'j' group #0: group must be an object, not str"),
    ({"ID": "j", "TaskGroups": [{"Name": "g", "Tasks": [[]]}]},
     "job 'j' group 'g' task #0: task must be an object, not list"),
    ({"ID": "j", "Meta": "x"}, "job 'j': Meta must be an object, not str"),
    (job_with(config=None, task_fields={"Config": "x"}), f"{WHERE}: Config must be an object"),
    (job_with(task_fields={"Env": ["WEAVE_CIDR=x"]}), f"{WHERE}: Env must be an object"),
    (job_with(group_fields={"Networks": [["bridge"]]}),
     "job 'j' group 'g': network[0] must be an object"),
])
def test_malformed_jobs_are_refused_in_one_line(job, text):
    assert refusal(job).startswith(text)


def test_a_recorded_nomad_job_passes_unchanged_but_for_the_tenant():
    from pathlib import Path

    recorded = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"
    job = json.loads((recorded / "nomad-jobs-parse.json").read_text())["body"]
    result = apply_tenant(job, ACME)
    assert result.warnings == ()
    assert the_task(result)["Env"]["WEAVE_CIDR"] == "net:10.32.1.0/24"


# -- through `weavenomad run`, the one place jobs are registered -------------------------------


class RecordingNomad:
    def __init__(self):
        self.registered = []

    def register_job(self, job, check_index=None):  # pragma: no cover - must not be reached
        self.registered.append(job)
        return {"EvalID": ""}


@pytest.mark.parametrize("job, text", [
    (job_with(config={"network_mode": "host"}), "config network_mode = 'host'"),
    (job_with(env={"WEAVE_CIDR": "ip:10.32.2.9/24"}), "env WEAVE_CIDR = 'ip:10.32.2.9/24'"),
    (job_with(task_fields={"env": {"WEAVE_CIDR": "net:10.32.2.0/24"}}), "'env' is read by"),
    ("[" * 50_000, "nested too deeply"),
])
def test_run_registers_nothing_when_the_policy_refuses(tmp_path, job, text):
    from fakes import FakeKV

    from weavenomad.jobs.submit import RunOptions, run
    from weavenomad.tenancy.model import Cluster
    from weavenomad.tenancy.registry import TenantRegistry

    registry = TenantRegistry(FakeKV())
    registry.record_cluster(Cluster(IPv4Network("10.32.0.0/16"), IPv4Network("10.32.0.0/24")))
    registry.create("acme")
    path = tmp_path / "job.json"
    path.write_text(job if isinstance(job, str) else json.dumps({"Job": job}))
    nomad = RecordingNomad()
    with pytest.raises(ValidationError) as caught:
        run(nomad, registry, RunOptions(path=str(path), tenant="acme"), lambda line: None)
    assert text in str(caught.value) and "\n" not in str(caught.value)
    assert nomad.registered == []
