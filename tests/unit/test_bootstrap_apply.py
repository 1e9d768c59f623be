"""Applying plans: steps run in order, a failure undoes what ran in reverse and says so; the
config step's real file I/O leaves the file byte-identical after a rollback."""

from dataclasses import dataclass, field

import pytest
from test_bootstrap_facts import DOCKER_SOCK, agent_self, healthy_node

from weavenomad.bootstrap import steps as st
from weavenomad.bootstrap.apply import Executor, Outcome, StepFailed, apply_plan
from weavenomad.errors import BackendError, BackendUnavailable
from weavenomad.nodeconfig.edit import ConfigFile, plan_endpoint

WEAVE_SOCK = "unix:///var/run/weave/weave.sock"


@dataclass
class RecordingExecutor:
    """Runs nothing; records actions and fails on the kinds it is told to."""

    fail_on: set = field(default_factory=set)
    interrupt_on: set = field(default_factory=set)
    ran: list = field(default_factory=list)
    restart_tried: bool = False
    restart_argv: tuple = ()

    def run(self, action):
        self.ran.append(action)
        if st.kind(action) in self.interrupt_on:
            raise KeyboardInterrupt
        if st.kind(action) in self.fail_on:
            raise BackendError(f"{st.kind(action)} broke", backend="test")
        if isinstance(action, st.RestartNomad):
            self.restart_tried, self.restart_argv = True, action.argv
        return Outcome({st.WeaveLaunch: st.WeaveReset(),
                        st.WeaveExpose: st.WeaveHide(getattr(action, "specs", ())),
                        st.RestoreConfig: None}.get(type(action)))


LAUNCH = st.Step("launch", st.WeaveLaunch("10.32.0.0/16", "10.32.0.0/24", ()), st.WeaveReset())
EXPOSE = st.Step("expose", st.WeaveExpose(("net:default",)), st.WeaveHide(("net:default",)))
RESTART = st.Step("restart", st.RestartNomad(("systemctl", "restart", "nomad")))
RECORD = st.Step("record", st.RecordCluster(None, None))


def test_steps_run_in_order_and_report_progress():
    lines = []
    executor = RecordingExecutor()
    apply_plan(st.Plan((LAUNCH, EXPOSE, RECORD)), executor, lines.append)
    assert [st.kind(a) for a in executor.ran] == ["WeaveLaunch", "WeaveExpose", "RecordCluster"]
    assert lines[0] == "[1/3] launch"


def test_failure_undoes_the_applied_steps_in_reverse_and_names_them():
    executor = RecordingExecutor(fail_on={"RecordCluster"})
    lines = []
    with pytest.raises(StepFailed) as info:
        apply_plan(st.Plan((LAUNCH, EXPOSE, RECORD)), executor, lines.append)
    assert [st.kind(a) for a in executor.ran] == ["WeaveLaunch", "WeaveExpose", "RecordCluster",
                                                  "WeaveHide", "WeaveReset"]
    message = info.value.one_line()
    assert message.startswith("step 3/3 (record) failed: RecordCluster broke")
    assert "rolled back: weave hide net:default; weave reset" in message
    assert "    rolling back: weave reset" in lines


def test_a_failing_undo_is_reported_as_not_rolled_back():
    executor = RecordingExecutor(fail_on={"RecordCluster", "WeaveHide"})
    with pytest.raises(StepFailed) as info:
        apply_plan(st.Plan((LAUNCH, EXPOSE, RECORD)), executor, lambda line: None)
    assert "NOT rolled back, fix by hand: weave hide net:default (WeaveHide broke)" in (
        info.value.one_line())
    assert st.WeaveReset() in executor.ran  # the rest is still undone


def test_first_step_failing_changes_nothing():
    executor = RecordingExecutor(fail_on={"WeaveLaunch"})
    with pytest.raises(StepFailed, match="nothing had been changed"):
        apply_plan(st.Plan((LAUNCH, EXPOSE)), executor, lambda line: None)


def test_ctrl_c_undoes_the_interrupted_step_too_then_interrupts():
    executor = RecordingExecutor(interrupt_on={"WeaveExpose"})
    with pytest.raises(KeyboardInterrupt):
        apply_plan(st.Plan((LAUNCH, EXPOSE)), executor, lambda line: None)
    assert executor.ran[-2:] == [st.WeaveHide(("net:default",)), st.WeaveReset()]


def test_an_os_error_is_a_step_failure_with_rollback():
    class Broken(RecordingExecutor):
        def run(self, action):
            if isinstance(action, st.RecordCluster):
                self.ran.append(action)
                raise PermissionError(13, "Permission denied")
            return super().run(action)

    executor = Broken()
    with pytest.raises(StepFailed, match="Permission denied.*rolled back: weave reset"):
        apply_plan(st.Plan((LAUNCH, RECORD)), executor, lambda line: None)


# -- the real executor on real files ---------------------------------------------------------


class FakeNomad:
    def __init__(self, answers):
        self.answers = list(answers)

    def agent_self(self):
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def node(self, node_id):
        return healthy_node()


@dataclass
class FakeClients:
    nomad: object = None
    weave: object = None


def config_step(tmp_path, endpoint=WEAVE_SOCK):
    path = tmp_path / "agent.hcl"
    original = ('# keep me\nclient {\n  enabled = true\n}\n\nplugin "docker" {\n  config {\n'
                f'    endpoint = "{DOCKER_SOCK}"\n  }}\n}}\n')
    path.write_bytes(original.encode())
    path.chmod(0o600)
    files = (ConfigFile(str(path), original),)
    change = plan_endpoint(files, endpoint)
    return path, original, st.Step("config", st.WriteConfig(change, endpoint, files),
                                   st.RestoreConfig(str(path), original, True))


def test_failed_restart_leaves_the_config_byte_identical_and_without_backup(tmp_path):
    path, original, step = config_step(tmp_path)
    before = path.read_bytes()
    restart = st.Step("restart", st.RestartNomad(("false",)))
    lines = []
    with pytest.raises(StepFailed) as info:
        apply_plan(st.Plan((step, restart)), Executor(FakeClients(), lines.append), lines.append)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.hcl"]
    # Nomad may have read the new file before failing: a restart is tried once more
    assert "restart Nomad (false)" in info.value.one_line()


def test_config_write_keeps_a_backup_and_the_mode(tmp_path):
    path, original, step = config_step(tmp_path)
    executor = Executor(FakeClients())
    outcome = executor.run(step.action)
    assert f'endpoint = "{WEAVE_SOCK}"' in path.read_text()
    assert (tmp_path / "agent.hcl.weavenomad.bak").read_text() == original
    assert path.stat().st_mode & 0o777 == 0o600
    executor.run(outcome.undo)
    assert path.read_text() == original
    assert not (tmp_path / "agent.hcl.weavenomad.bak").exists()


def test_a_file_changed_since_the_plan_is_not_overwritten(tmp_path):
    path, original, step = config_step(tmp_path)
    path.write_text(original + "# edited meanwhile\n")
    with pytest.raises(Exception, match="changed since the plan"):
        Executor(FakeClients()).run(step.action)


def test_late_endpoint_writes_the_socket_weave_reports(tmp_path):
    path, original, step = config_step(tmp_path)
    lab_sock = "unix:///tmp/lab/nodes/n1/weave.sock"

    class Weave:
        def proxy_addrs(self):
            return [lab_sock]

    action = st.WriteConfig(step.action.change, WEAVE_SOCK, step.action.files, True)
    said = []
    Executor(FakeClients(weave=Weave()), said.append).run(action)
    assert f'endpoint = "{lab_sock}"' in path.read_text()
    assert any(lab_sock in line for line in said)


def test_verify_waits_until_nomad_answers_with_the_socket_and_a_healthy_driver():
    nomad = FakeNomad([BackendUnavailable("down", backend="nomad"), agent_self(DOCKER_SOCK),
                       agent_self(WEAVE_SOCK)])
    executor = Executor(FakeClients(nomad=nomad), verify_timeout=10, verify_every=0.01)
    assert executor.run(st.VerifyNomad(WEAVE_SOCK)).note == "Docker driver healthy"


def test_verify_says_what_it_waits_for_once_per_change():
    nomad = FakeNomad([BackendUnavailable("down", backend="nomad"),
                       BackendUnavailable("down", backend="nomad"), agent_self(DOCKER_SOCK),
                       agent_self(WEAVE_SOCK)])
    said = []
    executor = Executor(FakeClients(nomad=nomad), said.append, verify_timeout=10,
                        verify_every=0.01)
    executor.run(st.VerifyNomad(WEAVE_SOCK))
    assert said == [
        "    waiting up to 10s for Nomad's Docker driver on the Weave proxy: down",
        "    waiting up to 10s for Nomad's Docker driver on the Weave proxy: the agent uses "
        f"Docker endpoint {DOCKER_SOCK}"]


def test_the_restart_says_what_it_runs_and_how_long_it_may_take():
    said = []
    Executor(FakeClients(), said.append).run(st.RestartNomad(("true",)))
    assert said == ["    waiting up to 180s for true"]


def test_verify_gives_up_naming_what_is_wrong():
    executor = Executor(FakeClients(nomad=FakeNomad([agent_self(DOCKER_SOCK)])),
                        verify_timeout=0.05, verify_every=0.01)
    with pytest.raises(BackendError, match=f"uses Docker endpoint {DOCKER_SOCK}"):
        executor.run(st.VerifyNomad(WEAVE_SOCK))


def test_the_planned_launch_command_is_exactly_what_runs(tmp_path):
    from weavenomad.clients.weave import WeaveCommand

    log = tmp_path / "argv"
    fake = tmp_path / "weave"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {log}\n')
    fake.chmod(0o755)
    launch = st.WeaveLaunch("10.32.0.0/16", "10.32.0.0/24", ("192.168.56.4", "u3:6783"))

    @dataclass
    class Clients:
        weave_command: object

    outcome = Executor(Clients(WeaveCommand(str(fake)))).run(launch)
    assert log.read_text().splitlines() == launch.args()
    assert st.command_line(launch) == "weave " + " ".join(launch.args())
    assert outcome.undo == st.WeaveReset()


def test_a_config_nomad_rejects_is_put_back_at_once(tmp_path, monkeypatch):
    path, original, step = config_step(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nomad"
    fake.write_text("#!/bin/sh\necho 'unknown key endpoint' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    with pytest.raises(StepFailed, match="unknown key endpoint"):
        apply_plan(st.Plan((step,)), Executor(FakeClients()), lambda line: None)
    assert path.read_text() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.hcl", "bin"]
