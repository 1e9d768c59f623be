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


# -- day two: failed launches, resets of a stopped Weave, blocked evaluations ------------------


def test_a_failed_launch_runs_its_undo_and_says_what_was_removed():
    """Recorded (day-two/1d): a launch whose router dies leaves containers, bridge and socket;
    the undo registered before the step runs removes them, and the message lists them."""

    @dataclass
    class Cleaning(RecordingExecutor):
        def run(self, action):
            if isinstance(action, st.WeaveReset):
                self.ran.append(action)
                return Outcome(None, "removed container weave (exited (1)), container weavedb "
                                     "(created), the weave bridge")
            return super().run(action)

    executor = Cleaning(fail_on={"WeaveLaunch"})
    launch = st.Step("launch", LAUNCH.action, st.WeaveReset(), undo_if_failed=True)
    with pytest.raises(StepFailed) as info:
        apply_plan(st.Plan((launch, EXPOSE)), executor, lambda line: None)
    assert executor.ran == [LAUNCH.action, st.WeaveReset()]
    message = info.value.one_line()
    assert "rolled back: weave reset (removed container weave (exited (1)), container " \
           "weavedb (created), the weave bridge)" in message
    # nothing to remove: nothing had been changed
    nothing = RecordingExecutor(fail_on={"WeaveLaunch"})
    nothing.run = lambda action, base=nothing.run: (
        Outcome(None, "nothing of Weave was left", changed=False)
        if isinstance(action, st.WeaveReset) else base(action))
    with pytest.raises(StepFailed, match="nothing had been changed"):
        apply_plan(st.Plan((launch,)), nothing, lambda line: None)


def test_a_commit_keeps_what_was_done_before_it_whatever_fails_later():
    """A reset that moved Nomad off the Weave proxy and then fails never points it back."""
    restore = st.Step("restore the config", st.RestoreConfig("/x", "docker", False),
                      st.RestoreConfig("/x", "weave", False))
    verify = st.Step("verify", st.VerifyNomad(DOCKER_SOCK), commits=True)
    reset = st.Step("reset Weave", st.WeaveReset(force=True))
    executor = RecordingExecutor(fail_on={"WeaveReset"})
    with pytest.raises(StepFailed) as info:
        apply_plan(st.Plan((restore, RESTART, verify, reset)), executor, lambda line: None)
    assert st.RestoreConfig("/x", "weave", False) not in executor.ran
    message = info.value.one_line()
    assert "nothing had been changed; kept (done before the failure, and safe as it is): " \
           "restore the config; restart; verify" in message


class ResetClients:
    def __init__(self, weave_up: bool, refuse_plain: bool = False):
        self.weave_up, self.refuse_plain = weave_up, refuse_plain
        self.resets: list[bool] = []
        self.weave, self.weave_command, self.docker = self, self, None

    def report(self):
        if not self.weave_up:
            raise BackendUnavailable("connection refused", backend="weave")
        return {}

    def reset(self, force=False):
        self.resets.append(force)
        if self.refuse_plain and not force:
            raise BackendError("weave reset failed (exit 1): ERROR: weave is not running; "
                               "unable to remove from cluster.", backend="weave")


def stand_in_leftovers(monkeypatch, tmp_path, states: list):
    """Weave's containers as the fake Docker lists them, one list per look, and a bridge that
    exists while containers do."""
    from weavenomad.bootstrap import leftovers, system
    from weavenomad.bootstrap.leftovers import WeaveContainer

    sock = tmp_path / "weave.sock"
    import socket as socket_module

    listener = socket_module.socket(socket_module.AF_UNIX)
    listener.bind(str(sock))
    listener.close()  # a socket file nobody listens on: what a dead proxy leaves
    router = WeaveContainer("weave", "exited", 1, ("--port", "6783", "-H", f"unix://{sock}"))
    looks = [[router, WeaveContainer("weavedb", "created")] if full else [] for full in states]
    monkeypatch.setattr(leftovers, "weave_containers", lambda docker: looks.pop(0))
    monkeypatch.setattr(system, "link_exists", lambda name: bool(looks))
    return sock


def test_reset_of_a_stopped_weave_uses_force_and_removes_the_stale_socket(monkeypatch, tmp_path):
    from weavenomad.bootstrap import leftovers

    sock = stand_in_leftovers(monkeypatch, tmp_path, [True, False])
    monkeypatch.setattr(leftovers, "last_words", lambda docker: "FATA: invalid CIDR address")
    clients = ResetClients(weave_up=False)
    outcome = Executor(clients).run(st.WeaveReset())
    assert clients.resets == [True]
    assert not sock.exists()
    assert outcome.note == (f"removed container weave (exited (1)), container weavedb "
                            f"(created), the weave bridge, the stale socket {sock} (with "
                            "--force: Weave was not running); the router's last log line: "
                            "FATA: invalid CIDR address")


def test_reset_of_a_weave_that_died_meanwhile_retries_with_force(monkeypatch, tmp_path):
    stand_in_leftovers(monkeypatch, tmp_path, [True, False])
    clients = ResetClients(weave_up=True, refuse_plain=True)
    outcome = Executor(clients).run(st.WeaveReset())
    assert clients.resets == [False, True] and "--force" in outcome.note


def test_an_expose_that_lost_a_race_with_the_reconciler_counts_as_done(monkeypatch):
    from ipaddress import IPv4Interface, IPv4Network

    from weavenomad.bootstrap import system

    class Clients:
        def __init__(self):
            self.weave_command, self.weave = self, self

        def expose(self, specs):
            raise BackendError("weave expose failed (exit 1): RTNETLINK answers: File exists",
                               backend="weave")

        def owned(self):
            return {"weave:expose": [IPv4Interface("10.32.0.1/24"),
                                     IPv4Interface("10.32.1.1/24")]}

        def default_subnet(self):
            return IPv4Network("10.32.0.0/24")

        def report(self):  # a peer owning a share of the range: its IPAM can allocate
            return {"Router": {"Name": "me"}, "IPAM": {"Entries": [{"Peer": "me", "Size": 9}]}}

    on_bridge = [("weave", IPv4Interface("10.32.0.1/24"))]
    monkeypatch.setattr(system, "host_addresses", lambda: on_bridge)
    expose = st.WeaveExpose(("net:default", "net:10.32.1.0/24"))
    with pytest.raises(BackendError):  # 10.32.1.0/24 is not on the bridge: a real failure
        Executor(Clients()).run(expose)
    on_bridge.append(("weave", IPv4Interface("10.32.1.1/24")))  # the reconciler's doing
    outcome = Executor(Clients()).run(expose)
    assert outcome.undo is None and "exposed meanwhile" in outcome.note


def test_jobs_with_a_blocked_evaluation_are_evaluated_again():
    class Nomad:
        def __init__(self):
            self.evaluated = []

        def evaluations(self):
            return [{"JobID": "web", "Status": "blocked"}, {"JobID": "web", "Status": "blocked"},
                    {"JobID": "db", "Status": "complete"}, {"JobID": "gone", "Status": "blocked"}]

        def evaluate_job(self, job_id):
            if job_id == "gone":
                from weavenomad.errors import BackendNotFound

                raise BackendNotFound("job not found", backend="nomad")
            self.evaluated.append(job_id)

    nomad = Nomad()
    outcome = Executor(FakeClients(nomad=nomad)).run(st.ReevaluateBlocked())
    assert nomad.evaluated == ["web"]
    assert outcome.note == "re-evaluated 1 job(s) with a blocked evaluation: web"


def test_a_config_that_names_weaves_reported_socket_already_is_what_verify_accepts(tmp_path):
    """Weave was stopped while planning (no socket reported, the default one planned); once
    relaunched it reports the socket the config names already: nothing is written, and the
    check of Nomad's endpoint accepts that socket."""
    lab_sock = "unix:///tmp/lab/nodes/n1/weave.sock"
    path, original, step = config_step(tmp_path, endpoint=lab_sock)
    Executor(FakeClients()).run(step.action)  # as an earlier bootstrap left it
    files = (ConfigFile(str(path), path.read_text()),)
    change = plan_endpoint(files, WEAVE_SOCK)
    assert change is not None  # planned against the default socket

    class Weave:
        def proxy_addrs(self):
            return [lab_sock]

    executor = Executor(FakeClients(nomad=FakeNomad([agent_self(lab_sock)]), weave=Weave()),
                        verify_timeout=0.1, verify_every=0.05)
    before = path.read_text()
    outcome = executor.run(st.WriteConfig(change, WEAVE_SOCK, files, True))
    assert outcome.undo is None and path.read_text() == before
    assert executor.run(st.VerifyNomad(WEAVE_SOCK)).note == "Docker driver healthy"
