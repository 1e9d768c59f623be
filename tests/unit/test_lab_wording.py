"""What the lab and the demo say (issue 17's wording faults): ``lab up`` names what it waits
for, a missing node is not sent to a ``--node`` flag it may not have, the demo says each
bootstrap once and names no log it deletes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from weavenomad_lab import core, demo
from weavenomad_lab.cli import format_table
from weavenomad_lab.errors import LabError
from weavenomad_lab.layout import LabLayout

from weavenomad.cli.style import ansi


def layout(nodes: int = 3) -> LabLayout:
    return LabLayout.plan("ta", Path("/tmp/ta-s"), nodes)


class Part:
    def __init__(self, name: str, started: list):
        self.name, self.started = name, started

    def up(self, lab) -> None:
        self.started.append(self.name)


def test_lab_up_says_what_each_step_waits_for():
    said, started = [], []
    core._start(layout(1), [Part("dockerd", started), Part("nomad", started),
                            Part("extra", started)], False, said.append)
    assert said == ["lab up: dockerd: waiting for each node's dockerd to answer",
                    "lab up: nomad: waiting for each node's Nomad agent to answer",
                    "lab up: extra: waiting for it to start"]
    assert started == ["dockerd", "nomad", "extra"]
    assert set(core.WAITS_FOR) >= {part.split(".")[-1].split(":")[0] for part in
                                   ("network", "dockerd", "image", "weave", "security",
                                    "consul", "nomad")}


def test_an_unknown_node_names_the_nodes_not_a_flag():
    with pytest.raises(LabError) as caught:
        layout(2).node("n9")
    assert caught.value.one_line() == "no node 'n9' in lab 'ta' (nodes: n1, n2)"


def test_lab_status_colours_its_states_on_a_terminal_only():
    rows = [{"part": "nomad", "node": "n1", "healthy": True, "address": "http://x",
             "detail": "fine"},
            {"part": "weave", "node": None, "healthy": False, "address": None, "detail": "down"}]
    plain = format_table(rows).splitlines()
    assert plain[0].split() == ["PART", "NODE", "STATE", "ADDRESS", "DETAIL"]
    assert plain[1].split() == ["nomad", "n1", "ok", "http://x", "fine"]
    coloured = format_table(rows, ansi)
    assert "\033[32mok   \033[0m" in coloured and "\033[31mFAIL \033[0m" in coloured


class Scripted(demo.Demo):
    """The demo with ``weavenomad`` answered from a script instead of run."""

    def __init__(self, tmp_path: Path, answers: dict, out: list, keep: bool = False):
        super().__init__(tmp_path, demo.Story(out.append))
        self.lab = layout(3)
        self.answers = answers
        self.keep = keep

    def weavenomad(self, *args: str, node: str | None = None):
        stdout = self.answers.get(args[0], "")
        return subprocess.CompletedProcess(args, 0, stdout, "")


def test_the_demo_says_each_bootstrap_once(tmp_path):
    out: list[str] = []
    scripted = Scripted(tmp_path, {"bootstrap": "plan (3 step(s)):\n...\nbootstrap done\n"},
                        out)
    scripted.bootstrap()
    lines = [line for line in out if "bootstrap" in line and not line.startswith("\n==")]
    assert lines == [f"   ok    bootstrap n{i}: bootstrap done" for i in (1, 2, 3)] + [
        "   FAIL  a second bootstrap changes nothing"]  # the script says no "no changes"


def test_the_demo_says_each_tenant_once(tmp_path):
    out: list[str] = []
    scripted = Scripted(tmp_path, {"tenant": "created tenant acme: 10.32.1.0/24\n",
                                   "run": "deployment 1 successful\n"}, out)
    scripted.containers = lambda job_id: []
    scripted.tenants_and_jobs()
    # one check line per tenant, no note repeating what the command printed
    assert [line for line in out if "created tenant" in line] == [
        "   ok    created tenant acme: 10.32.1.0/24"] * 2


@pytest.mark.parametrize("keep", [False, True])
def test_the_demo_names_reconciler_logs_only_when_they_stay(tmp_path, monkeypatch, keep):
    out: list[str] = []
    scripted = Scripted(tmp_path, {}, out)

    class Started:
        def __init__(self, argv, stdout, stderr):
            stdout.close()

    monkeypatch.setattr(demo.subprocess, "Popen", Started)
    monkeypatch.setattr(scripted, "wait", lambda probe, timeout=None: {("10.32.1.2", 8081)})
    scripted.after({"acme": []}, keep)
    started = [line for line in out if "started on" in line]
    assert len(started) == 3
    assert all(("(log " in line) == keep for line in started)
