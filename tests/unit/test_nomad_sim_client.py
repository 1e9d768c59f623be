"""The simulated Nomad client's pure parts: agent config, container spec, task lifecycle,
Go formats."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_nomad_sim_support import Cluster, recorded
from weavenomad_lab.layout import LabLayout, NodeLayout
from weavenomad_lab.nomad import agentconfig, dockertask, gostyle, lifecycle, shapes
from weavenomad_lab.nomad.gostyle import MINUTE, SECOND

from weavenomad.errors import ConfigError

# -- agent config ---------------------------------------------------------------------------


def load(tmp_path: Path, **files: str) -> agentconfig.AgentConfig:
    for name, text in files.items():
        (tmp_path / name.replace("_", ".", 1)).write_text(text)
    return agentconfig.load_dir(tmp_path)


def test_plugin_block_sets_the_docker_endpoint(tmp_path):
    config = load(tmp_path, agent_hcl='plugin "docker" {\n config {\n'
                  '  endpoint = "unix:///var/run/weave/weave.sock"\n }\n}\n')
    assert config.docker_endpoint == "unix:///var/run/weave/weave.sock"


def test_legacy_options_form_with_quoted_keys(tmp_path):
    config = load(tmp_path, agent_hcl='client {\n  enabled = true\n  options {\n'
                  '    "docker.endpoint" = "unix:///var/run/weave/weave.sock"\n  }\n}\n')
    assert config.docker_endpoint == "unix:///var/run/weave/weave.sock"
    assert config.client_options == {"docker.endpoint": "unix:///var/run/weave/weave.sock"}


def test_plugin_block_replaces_options_entirely(tmp_path):
    config = load(tmp_path,
                  a_hcl='client { options = { "docker.endpoint" = "unix:///opt/x.sock" } }',
                  b_json='{"plugin": {"docker": {"config": {"volumes": {"enabled": true}}}}}')
    assert config.docker_endpoint == agentconfig.DEFAULT_DOCKER_ENDPOINT
    assert config.files[0].endswith("a.hcl")


def test_unparsable_config_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="agent.hcl"):
        load(tmp_path, agent_hcl="client { enabled = }")


def test_endpoints_map_to_the_nodes_own_sockets_and_never_leave_the_lab():
    lab = LabLayout.plan("tx", Path("/tmp/tx"), 1)
    node = lab.nodes[0]
    assert agentconfig.lab_socket("unix:///var/run/weave/weave.sock", node,
                                  lab.state_dir) == node.weave_sock
    assert agentconfig.lab_socket("unix:///var/run/docker.sock", node,
                                  lab.state_dir) == node.docker_sock
    assert agentconfig.lab_socket(node.docker_host, node, lab.state_dir) == node.docker_sock
    assert agentconfig.lab_socket("unix:///srv/other.sock", node, lab.state_dir) is None
    assert agentconfig.lab_socket("tcp://127.0.0.1:2375", node, lab.state_dir) is None


def test_default_config_reads_back(tmp_path):
    node = NodeLayout("n1", 1, "tx-n1", "192.168.56.3", tmp_path / "n1")
    node.nomad_config_dir.mkdir(parents=True)
    (node.nomad_config_dir / "agent.hcl").write_text(agentconfig.default_text(node))
    config = agentconfig.load_dir(node.nomad_config_dir)
    assert config.docker_endpoint == node.docker_host and config.name == "n1"


# -- the container ---------------------------------------------------------------------------


def test_container_spec_matches_the_recorded_container(tmp_path):
    cluster = Cluster(nodes=1)
    cluster.register_seed_job()
    alloc = next(iter(cluster.state.allocs.values()))
    task = alloc["Job"]["TaskGroups"][0]["Tasks"][0]
    spec = dockertask.container_spec(alloc, task, cluster.nodes[0], tmp_path / alloc["ID"])
    inspect = recorded("docker-container-inspect-nomad-task.json")["body"]
    config, host = inspect["Config"], inspect["HostConfig"]
    assert spec["name"] == f"httpbackend-{alloc['ID']}"
    assert spec["command"] == config["Cmd"] and spec["entrypoint"] is None
    assert spec["labels"] == {dockertask.ALLOC_LABEL: alloc["ID"]}
    recorded_env = [e.replace("496e93a7-1a21-2d3d-58e6-14355eed58dc", alloc["ID"])
                    for e in config["Env"]]
    assert spec["environment"] == recorded_env
    hc = spec["host_config"]
    assert (hc["mem_limit"], hc["memswap_limit"], hc["cpu_shares"]) == (
        host["Memory"], host["MemorySwap"], host["CpuShares"])
    assert hc["dns"] == host["Dns"] and hc["network_mode"] == host["NetworkMode"]
    assert hc["cap_drop"] == host["CapDrop"] and hc["log_config"]["type"] == "json-file"
    assert [b.split(":")[1] for b in hc["binds"]] == ["/alloc", "/local", "/secrets"]


# -- lifecycle -------------------------------------------------------------------------------

POLICY = {"Attempts": 2, "Delay": 15 * SECOND, "Interval": 30 * MINUTE, "Mode": "fail"}


def test_restart_within_policy_then_fail():
    first = lifecycle.restart_decision(POLICY, "service", 1, 0, 0)
    assert first.restart and first.delay == 15 * SECOND
    last = lifecycle.restart_decision(POLICY, "service", 1, 2, 0)
    assert not last.restart and last.failed
    assert last.reason == 'Exceeded allowed attempts 2 in interval 30m0s and mode is "fail"'


def test_batch_success_completes_and_delay_mode_waits_for_the_interval():
    assert not lifecycle.restart_decision(POLICY, "batch", 0, 0, 0).restart
    delayed = lifecycle.restart_decision(dict(POLICY, Mode="delay"), "service", 1, 2, MINUTE)
    assert delayed.restart and delayed.delay == MINUTE


@pytest.mark.parametrize("states, expected", [
    ({"a": {"State": "running"}, "b": {"State": "pending"}}, "running"),
    ({"a": {"State": "pending"}}, "pending"),
    ({"a": {"State": "dead", "Failed": True}, "b": {"State": "running"}}, "failed"),
    ({"a": {"State": "dead", "Failed": False}}, "complete"),
])
def test_client_status(states, expected):
    assert lifecycle.client_status(states)[0] == expected


def test_deployment_health_needs_passing_checks_for_min_healthy_time():
    update = {"HealthCheck": "checks", "MinHealthyTime": 10 * SECOND,
              "HealthyDeadline": 5 * MINUTE}
    given = dict(update=update, all_running=True, running_since=0, check_statuses=["passing"],
                 passing_since=5 * SECOND, placed_at=0)
    assert lifecycle.deployment_health(lifecycle.HealthInput(now=12 * SECOND, **given)) is None
    assert lifecycle.deployment_health(lifecycle.HealthInput(now=15 * SECOND, **given)) is True
    given.update(check_statuses=["critical"], passing_since=None)
    assert lifecycle.deployment_health(lifecycle.HealthInput(now=6 * MINUTE, **given)) is False


def test_task_events_display_like_nomad():
    assert shapes.task_event("Killing", 1, KillTimeout=5 * SECOND)["DisplayMessage"] == (
        "Sent interrupt. Waiting 5s before force killing")
    assert shapes.task_event("Terminated", 1, ExitCode=137)["DisplayMessage"] == "Exit Code: 137"
    assert shapes.task_event("Restarting", 1, StartDelay=15 * SECOND)["DisplayMessage"] == (
        "Task restarting in 15s")


# -- Go formats ----------------------------------------------------------------------------


@pytest.mark.parametrize("nanos, text", [(5 * SECOND, "5s"), (90 * SECOND, "1m30s"),
                                         (60 * MINUTE, "1h0m0s"), (500_000_000, "500ms"),
                                         (0, "0s"), (1500, "1.5µs")])
def test_duration_string_and_parse_round_trip(nanos, text):
    assert gostyle.duration_string(nanos) == text
    assert gostyle.parse_duration(text) == nanos


def test_rfc3339_like_go():
    assert gostyle.rfc3339(1795315384030787440) == "2026-11-22T02:43:04.03078744Z"
    with pytest.raises(ValueError):
        gostyle.parse_duration("soon")


def test_a_restart_within_policy_waits_its_delay_plus_nomads_jitter():
    """Recorded (day-two/1c): a 15 s delay became 16.06 s and 17.66 s (Nomad adds up to 25 %)."""
    from weavenomad_lab.nomad import lifecycle

    policy = {"Attempts": 2, "Delay": 15 * 10**9, "Interval": 1800 * 10**9, "Mode": "fail"}
    decision = lifecycle.restart_decision(policy, "service", 0, 0, 0)
    assert lifecycle.jittered(decision, 0.0).delay == 15 * 10**9
    assert lifecycle.jittered(decision, 0.1).delay == 16_500_000_000
    exhausted = lifecycle.restart_decision(policy, "service", 0, 2, 10**9)
    assert lifecycle.jittered(exhausted, 0.25) == exhausted  # no restart: nothing to jitter
