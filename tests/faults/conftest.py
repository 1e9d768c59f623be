"""The fault suite's lab (its own, 2 nodes, name ``f<pid>``) and world, and the table of
figures printed at the end of the session (through the terminal summary, so CI shows it
without ``-s``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
LAB_TESTS = str(HERE.parent / "lab")
if LAB_TESTS not in sys.path:  # labtools, shared with the lab tests
    sys.path.insert(0, LAB_TESTS)

from conftest import running_lab  # noqa: E402

from .faultlab import DAY_TWO, FIGURES, NOTES, day_two_table, figures_table  # noqa: E402


def fault_lab_name() -> str:
    return f"f{os.getpid() % 10_000_000}"


def fault_state_dir() -> Path:
    return Path(f"/tmp/wnlab-f{os.getpid()}")


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.lab)


def pytest_terminal_summary(terminalreporter):
    if not FIGURES and not NOTES and not DAY_TWO:
        return
    terminalreporter.section("fault suite: time from recovery to converged")
    for line in NOTES + figures_table():
        terminalreporter.write_line(line)
    for line in day_two_table():
        terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def fault_lab():
    state_dir = fault_state_dir()
    with running_lab(state_dir, fault_lab_name(), 2, "the fault suite's lab") as layout:
        yield layout
