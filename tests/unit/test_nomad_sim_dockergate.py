"""The simulated Nomad client's gate around container removals (a Docker 20.10 deadlock) and
its way of stopping a task: signal, kill timeout, then SIGKILL alone on the node."""

from __future__ import annotations

import threading

import pytest
import requests
from weavenomad_lab.nomad.dockergate import DockerGate, stop_container


class DockerStatus(Exception):
    def __init__(self, status: int):
        super().__init__(f"status {status}")
        self.response = type("Response", (), {"status_code": status})()


class FakeAPI:
    """A container that exits on the signals in ``exits_on``; records each kill with whether
    the gate was held exclusively at that moment."""

    def __init__(self, gate: DockerGate, exits_on: tuple[str, ...] = (), running: bool = True,
                 gone_status: int = 409):
        self.gate, self.exits_on, self.running = gate, exits_on, running
        self.gone_status = gone_status
        self.kills: list[tuple[str, bool]] = []

    def kill(self, container_id: str, signal: str) -> None:
        if not self.running:
            raise DockerStatus(self.gone_status)
        self.kills.append((signal, self.gate._removing))
        if signal in self.exits_on or signal == "SIGKILL":
            self.running = False

    def wait(self, container_id: str, timeout: float) -> dict:
        if self.running:
            raise requests.exceptions.ReadTimeout()  # the wait's own timeout
        return {"StatusCode": 137}


def stop(api: FakeAPI, signal: str = "") -> None:
    stop_container(api, "c1", signal, 0.01, api.gate)


def test_a_task_that_obeys_the_signal_never_takes_the_gate():
    api = FakeAPI(DockerGate(), exits_on=("SIGTERM",))
    stop(api)
    assert api.kills == [("SIGTERM", False)]


def test_the_tasks_own_kill_signal_is_sent_first():
    api = FakeAPI(DockerGate(), exits_on=("SIGINT",))
    stop(api, "SIGINT")
    assert api.kills == [("SIGINT", False)]


def test_a_task_that_ignores_the_signal_is_killed_holding_the_gate():
    api = FakeAPI(DockerGate())
    stop(api)
    assert api.kills == [("SIGTERM", False), ("SIGKILL", True)]
    assert not api.running


def test_a_stopped_or_removed_container_is_done():
    for status in (404, 409):
        api = FakeAPI(DockerGate(), running=False, gone_status=status)
        stop(api)
        assert api.kills == []


def test_other_errors_are_the_callers():
    api = FakeAPI(DockerGate())
    api.kill = lambda *a, **k: (_ for _ in ()).throw(DockerStatus(500))
    with pytest.raises(DockerStatus):
        stop(api)


def test_starts_share_the_gate_and_a_removal_waits_for_them():
    gate = DockerGate()
    order: list[str] = []
    with gate.starting(), gate.starting():  # two starts at once
        remover = threading.Thread(target=lambda: _hold(gate.removing(), order, "removed"))
        remover.start()
        remover.join(0.1)
        assert remover.is_alive(), "the removal ran beside starts"
        order.append("starts done")
    remover.join(5)
    assert order == ["starts done", "removed"]


def test_a_waiting_removal_keeps_new_starts_out():
    gate = DockerGate()
    order: list[str] = []
    first = gate.starting()
    first.__enter__()
    remover = threading.Thread(target=lambda: _hold(gate.removing(), order, "removed"))
    remover.start()
    _until(lambda: gate._removals_waiting == 1)
    starter = threading.Thread(target=lambda: _hold(gate.starting(), order, "started"))
    starter.start()
    starter.join(0.1)
    assert starter.is_alive(), "a new start overtook the waiting removal"
    first.__exit__(None, None, None)
    remover.join(5)
    starter.join(5)
    assert order == ["removed", "started"]


def test_removals_run_one_at_a_time():
    gate = DockerGate()
    inside, most = [0], [0]
    lock = threading.Lock()

    def remove():
        with gate.removing():
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            threading.Event().wait(0.01)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=remove) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert most[0] == 1


def _hold(context, order: list[str], label: str) -> None:
    with context:
        order.append(label)


def _until(predicate, timeout: float = 5.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        done.wait(0.01)
    raise AssertionError("condition not reached")
