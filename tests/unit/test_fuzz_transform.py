"""The tenant transform on generated canonical jobs (random groups, tasks, drivers, env, network
modes, privileges, templates, meta, and now and then a malformed part): never a traceback; a job
is accepted exactly when none of its parts would place a task outside the tenant; every Docker
task of an accepted job carries a WEAVE_CIDR inside the tenant; refusals are one line naming the
job. Each generated part carries its own verdict, so the oracle does not re-implement the policy.

Examples are derandomized, so a failure reproduces on every run and in CI."""

import copy
import json
from ipaddress import IPv4Network

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weavenomad.errors import ValidationError
from weavenomad.jobs.transform import apply_tenant
from weavenomad.tenancy import weavecidr
from weavenomad.tenancy.contract import META_SUBNET, META_TENANT, TenantTarget

FUZZ = settings(max_examples=80, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
ACME = TenantTarget("acme", IPv4Network("10.32.1.0/24"), IPv4Network("10.32.0.0/24"))
ABSENT = object()

#: (value, escapes the tenant) for each part a Docker task may carry
WEAVE_CIDRS = [(ABSENT, False), ("net:10.32.1.0/24", False), ("net:10.32.1.128/25", False),
               ("ip:10.32.1.9/24", False), ("10.32.1.9/26", False),
               ("net:10.32.1.0/26 ip:10.32.1.200/24", False),
               ("net:10.32.2.0/24", True), ("ip:10.32.2.9/24", True), ("net:default", True),
               ("", True), ("none", True), ("ip:10.32.1.9/16", True), ("net:${NOMAD_META_x}", True),
               ("garbage", True), ("net:10.32.1.0/24 net:10.32.2.0/24", True), (7, True)]
NETWORK_MODES = [(ABSENT, False), ("", False), ("bridge", False), ("default", False),
                 ("none", False), ("weave", False), ("host", True), ("container:db-1", True),
                 ("mynet", True), ("${NOMAD_META_mode}", True), (True, True)]
PRIVILEGES = [({}, False), ({"privileged": False}, False), ({"cap_add": ["CHOWN"]}, False),
              ({"volumes": ["local/x:/x"]}, False), ({"extra_hosts": ["a:10.32.2.1"]}, False),
              ({"privileged": True}, True), ({"cap_add": ["NET_ADMIN"]}, True),
              ({"pid_mode": "host"}, True), ({"volumes": ["/var/run/docker.sock:/d"]}, True)]
TEMPLATES = [(ABSENT, False), ([{"EmbeddedTmpl": "A=1\n", "Envvars": True}], False),
             ([{"EmbeddedTmpl": 'B={{ key "b" }}', "Envvars": True}], False),
             ([{"EmbeddedTmpl": "WEAVE_CIDR=x", "Envvars": False, "DestPath": "local/f"}], False),
             ([{"EmbeddedTmpl": "WEAVE_CIDR=net:10.32.2.0/24", "Envvars": True}], True)]
#: group networks; any driver's group is refused when it makes a network namespace
GROUP_NETWORKS = [(ABSENT, False), (None, False), ([], False), ([{"Mode": "host"}], False),
                  ([{"Mode": "", "DynamicPorts": [{"Label": "http"}]}], False),
                  ([{"Mode": "bridge"}], True), ([{"Mode": "cni/weave"}], True)]
#: damage to a task's shape
TASK_DAMAGE = [(None, False), ("Env", True), ("Config", True), ("env", True), ("DRIVER", True)]
DRIVERS = ["docker", "docker", "docker", "exec", "raw_exec", "java", "podman", ""]

names = st.text(alphabet="abcdefghij-_.0123", min_size=1, max_size=6)
env_extra = st.dictionaries(st.sampled_from(["A", "PATH", "weave_cidr", "WEAVE_CIDR_X", "ü"]),
                            st.text(max_size=6), max_size=2)
meta = st.one_of(st.none(), st.dictionaries(
    st.sampled_from(["owner", META_TENANT, META_SUBNET, "x"]), st.text(max_size=6), max_size=2))


def pick(table):
    """One (value, escapes) row; escaping rows one time in eight, so that accepted jobs with
    several tasks are common too."""
    good = [row for row in table if not row[1]]
    bad = [row for row in table if row[1]]
    return st.integers(0, 7).flatmap(lambda n: st.sampled_from(bad if n == 0 else good))


@st.composite
def tasks(draw, name: str):
    """A task and whether it escapes the tenant."""
    driver = draw(st.sampled_from(DRIVERS))
    cidr, cidr_bad = draw(pick(WEAVE_CIDRS))
    mode, mode_bad = draw(pick(NETWORK_MODES))
    extra, extra_bad = draw(pick(PRIVILEGES))
    templates, template_bad = draw(pick(TEMPLATES))
    damage, damage_bad = draw(pick(TASK_DAMAGE))
    env = draw(env_extra)
    if cidr is not ABSENT:
        env[weavecidr.ENV_NAME] = cidr
    config = {"image": "bb:local", **extra}
    if mode is not ABSENT:
        config["network_mode"] = mode
    task = {"Name": name, "Driver": driver, "Config": config,
            "Env": env or draw(st.sampled_from([None, {}])), "Meta": draw(meta),
            "Resources": {"CPU": 100, "MemoryMB": 300, "Networks": None},
            "KillTimeout": 5_000_000_000, "Leader": False, "Services": None}
    if templates is not ABSENT:
        task["Templates"] = templates
    if damage in ("Env", "Config"):
        task[damage] = ["not", "an", "object"]
    elif damage == "env":
        task["env"] = {weavecidr.ENV_NAME: "net:10.32.2.0/24"}
    elif damage == "DRIVER":
        task["DRIVER"] = "docker"
    # other drivers are left alone, but a key Nomad reads as ours is refused on any task
    docker_bad = cidr_bad or mode_bad or extra_bad or template_bad or damage_bad
    return task, damage in ("env", "DRIVER") or (driver == "docker" and docker_bad)


@st.composite
def groups(draw, name: str):
    task_names = draw(st.lists(names, min_size=0, max_size=4, unique=True))
    drawn = [draw(tasks(n)) for n in task_names]
    networks, networks_bad = draw(pick(GROUP_NETWORKS))
    group = {"Name": name, "Count": draw(st.integers(0, 3)), "Tasks": [t for t, _ in drawn],
             "Meta": draw(meta), "Services": None}
    if networks is not ABSENT:
        group["Networks"] = networks
    return group, networks_bad or any(bad for _, bad in drawn)


@st.composite
def jobs(draw):
    group_names = draw(st.lists(names, min_size=0, max_size=4, unique=True))
    drawn = [draw(groups(n)) for n in group_names]
    job_id = draw(names)
    job = {"ID": job_id, "Name": job_id, "Type": draw(st.sampled_from(["service", "batch"])),
           "Datacenters": ["dc1"], "Meta": draw(meta), "TaskGroups": [g for g, _ in drawn]}
    return job, any(bad for _, bad in drawn)


@FUZZ
@given(jobs())
def test_a_job_is_accepted_exactly_when_nothing_in_it_escapes_the_tenant(drawn):
    job, escapes = drawn
    before = copy.deepcopy(job)
    try:
        result = apply_tenant(job, ACME)
    except ValidationError as exc:
        assert escapes, f"refused a job that stays inside the tenant: {exc}"
        assert "\n" not in str(exc) and str(exc).startswith(f"job {job['ID']!r}"), str(exc)
        assert job == before
        return
    assert not escapes, "accepted a job with a task outside the tenant"
    assert job == before, "the input must not be modified"
    assert result.job["Meta"][META_TENANT] == "acme"
    assert result.job["Meta"][META_SUBNET] == "10.32.1.0/24"
    for group_in, group_out in zip(job["TaskGroups"], result.job["TaskGroups"], strict=True):
        for task_in, task_out in zip(group_in["Tasks"], group_out["Tasks"], strict=True):
            if task_in["Driver"] != "docker":
                assert task_out == task_in
                continue
            value = task_out["Env"][weavecidr.ENV_NAME]
            for request in weavecidr.parse(value).effective_requests():
                home = ACME.subnet
                assert (request.subnet or request.address.network).subnet_of(home), value
            assert task_out["Config"].get("network_mode", "") in {"", "bridge", "default",
                                                                   "none"}
            assert {k: v for k, v in task_out["Env"].items() if k != weavecidr.ENV_NAME} == {
                k: v for k, v in (task_in["Env"] or {}).items() if k != weavecidr.ENV_NAME}
    json.dumps(result.job)  # what gets registered is plain JSON
    assert all("\n" not in w for w in result.warnings)


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.sampled_from(["Name", "Tasks", "Driver", "Env", "Config", "Networks",
                                     "Mode", "Templates", "Envvars", "EmbeddedTmpl",
                                     "network_mode", "WEAVE_CIDR", "cap_add", "volumes",
                                     "mount", "Resources", "Meta", "TaskGroups", "x"]),
                    inner, max_size=4)), max_leaves=12)


@FUZZ
@given(st.one_of(json_values, jobs().map(lambda d: d[0])), st.data())
def test_any_json_job_gives_a_job_or_one_line_never_a_traceback(job, data):
    if isinstance(job, dict) and job.get("TaskGroups") and data.draw(st.booleans()):
        # graft a random value somewhere into an otherwise well-formed job
        group = data.draw(st.sampled_from(job["TaskGroups"]))
        target = data.draw(st.sampled_from([group] + group["Tasks"]))
        target[data.draw(st.sampled_from(sorted(target)))] = data.draw(json_values)
    try:
        apply_tenant(job, ACME)
    except ValidationError as exc:
        assert "\n" not in str(exc) and str(exc).strip()
