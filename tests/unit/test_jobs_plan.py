"""A plan reads as ``nomad job plan`` prints it: checked against the real CLI's texts for the
same plans (``tests/fixtures/recorded/plan-dns-catalog-checks/a4``-``a6``, Nomad 1.0.18)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from weavenomad.cli.style import ansi
from weavenomad.jobs import plan
from weavenomad.jobs.transform import Change

FOLDER = Path(__file__).resolve().parents[1] / "fixtures" / "recorded" / "plan-dns-catalog-checks"


def answer(name: str) -> dict:
    return json.loads((FOLDER / f"{name}.json").read_text())


def cli_text(name: str) -> str:
    return (FOLDER / name).read_text()


#: the API answer and the CLI's output for the same plan, and the CLI's exit code (INDEX.txt)
CASES = [("a1-plan-api-unregistered", "a4-cli-plan-unregistered.txt", 1),
         ("a2c-plan-api-unchanged-from-parse", "a5-cli-plan-unchanged.txt", 0),
         ("a3-plan-api-count3", "a6-cli-plan-count3.txt", 1)]


@pytest.mark.parametrize(("api", "cli", "code"), CASES)
def test_the_diff_reads_as_nomad_job_plan_prints_it(api, cli, code):
    recorded = cli_text(cli)
    diff, _, rest = recorded.partition("\n\nScheduler dry-run:\n")
    if api == "a1-plan-api-unregistered":  # the CLI planned its own copy under another name
        diff = diff.replace("rec3-unregistered", answer(api)["Diff"]["ID"])
    assert plan.diff_text(answer(api)) == diff
    assert plan.dry_run_text(answer(api)) == rest.split("\n")[0]
    assert plan.exit_code(answer(api)) == code


def test_the_whole_text_adds_no_changes_only_when_nothing_changes():
    unchanged = plan.plan_text(answer("a2-plan-api-unchanged-from-get"))
    assert unchanged == ('Job: "httpbackend"\nTask Group: "httpbackend" (2 ignore)\n'
                         '  Task: "httpbackend"\n\nno changes\n\nScheduler dry-run:\n'
                         "- All tasks successfully allocated.\n\nJob Modify Index: 651\n")
    assert "no changes" not in plan.plan_text(answer("a3-plan-api-count3"))
    assert plan.unchanged(answer("a2-plan-api-unchanged-from-get"))


def test_nomads_warnings_become_one_line_each():
    lines = plan.warning_lines(answer("a3-plan-api-count3")["Warnings"])
    assert lines == ['Group "httpbackend": Task "httpbackend": task network resources have been '
                     "deprecated as of Nomad 0.12.0. Please configure networking via group "
                     "network block."]
    assert plan.warning_lines("") == []
    assert plan.warning_lines("something odd") == ["something odd"]


def edited_env() -> dict:
    """The registered job planned with the task's WEAVE_CIDR changed (another tenant)."""
    changed = copy.deepcopy(answer("a3-plan-api-count3"))
    group = changed["Diff"]["TaskGroups"][0]
    group["Fields"] = None
    group["Type"] = "Edited"
    group["Updates"] = {"create/destroy update": 2}
    group["Tasks"][0].update(Type="Edited", Annotations=["forces create/destroy update"], Fields=[
        {"Type": "Edited", "Name": "Env[WEAVE_CIDR]", "Old": "net:10.32.1.0/24",
         "New": "net:10.32.2.0/24", "Annotations": None}], Objects=[
        {"Type": "Deleted", "Name": "Config", "Objects": None, "Fields": [
            {"Type": "Deleted", "Name": "network_mode", "Old": "weave", "New": "",
             "Annotations": None},
            {"Type": "None", "Name": "image", "Old": "bb:local", "New": "bb:local",
             "Annotations": None}]}])
    changed["Diff"]["Fields"] = [{"Type": "Edited", "Name": "Meta[weavenomad.tenant]",
                                  "Old": "acme", "New": "globex", "Annotations": None}]
    changed["Annotations"]["DesiredTGUpdates"]["httpbackend"].update(
        Place=0, InPlaceUpdate=0, DestructiveUpdate=2)
    return changed


CHANGES = (Change("Meta[weavenomad.tenant]", None, "globex"),
           Change("Env[WEAVE_CIDR]", None, "net:10.32.2.0/24", "httpbackend", "httpbackend"),
           Change("network_mode", "weave", None, "httpbackend", "httpbackend", "Config"))


def test_the_transforms_changes_are_marked_where_the_diff_shows_them():
    """Indentation as command/job_plan.go computes it: an object's fields start two columns
    after its marker and key prefix, values align on the longest field name."""
    text = plan.diff_text(edited_env(), CHANGES)
    assert text.splitlines() == [
        '+/- Job: "httpbackend"',
        '+/- Meta[weavenomad.tenant]: "acme" => "globex" (weavenomad)',
        '+/- Task Group: "httpbackend" (2 create/destroy update)',
        '  +/- Task: "httpbackend" (forces create/destroy update)',
        '    +/- Env[WEAVE_CIDR]: "net:10.32.1.0/24" => "net:10.32.2.0/24" (weavenomad)',
        "    -   Config {",
        '        - network_mode: "weave" (weavenomad)',
        '          image:        "bb:local"',
        "        }"]
    assert plan.exit_code(edited_env()) == plan.CHANGES


def test_on_a_terminal_the_markers_are_coloured():
    text = plan.diff_text(edited_env(), CHANGES, paint=ansi)
    assert "\033[33m+/-\033[0m " in text and "\033[31m-\033[0m " in text
    assert "\033[36mweavenomad\033[0m" in text and "\033[1mJob: " in text


def test_a_placement_that_fails_reads_as_nomads_dry_run():
    failed = copy.deepcopy(answer("a1-plan-api-unregistered"))
    failed["FailedTGAllocs"] = {"httpbackend": {
        "NodesEvaluated": 1, "NodesExhausted": 1, "DimensionExhausted": {"memory": 1},
        "NodesAvailable": {"dc1": 1}, "CoalescedFailures": 1}}
    assert plan.dry_run_text(failed) == (
        "- WARNING: Failed to place all allocations.\n"
        '  Task Group "httpbackend" (failed to place 2 allocations):\n'
        "    * Resources exhausted on 1 nodes\n"
        '    * Dimension "memory" exhausted on 1 nodes')


def test_in_place_updates_alone_exit_0_as_nomad_job_plan_does():
    only_in_place = copy.deepcopy(answer("a3-plan-api-count3"))
    only_in_place["Annotations"]["DesiredTGUpdates"]["httpbackend"].update(Place=0)
    assert plan.exit_code(only_in_place) == plan.NO_CHANGES
    assert not plan.unchanged(only_in_place)  # the job did change


def test_values_are_quoted_as_go_quotes_them():
    assert plan._q('a"b\\c\nd\x01é') == '"a\\"b\\\\c\\nd\\x01é"'
