"""The plumbing the daemons share: Go durations and backoff, and that it stays plumbing.
(sd_notify, unit installation and the log formats are tested with their users:
test_reconcile_systemd.py, test_reconcile_status.py.)"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from weavenomad.runtime.backoff import backoff_ceiling, backoff_delay
from weavenomad.runtime.durations import go_duration_ns

RUNTIME = Path(__file__).resolve().parents[2] / "weavenomad" / "runtime"


@pytest.mark.parametrize("nanoseconds, text", [
    (5_000_000_000, "5s"), (1_500_000_000, "1500ms"), (5_000_000_001, "5000ms"),
    (1_000_000, "1ms"), (999, "1ms"), (210 * 10**9, "210s"),
])
def test_nanoseconds_as_go_durations(nanoseconds, text):
    assert go_duration_ns(nanoseconds) == text


def test_backoff_doubles_to_its_cap_and_jitter_spreads_the_upper_half():
    assert [backoff_ceiling(n, 0.05, 2.0) for n in range(1, 8)] == [
        0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0]
    assert backoff_delay(2, 0.25, 2.0, jitter=0.0) == 0.25
    assert backoff_delay(2, 0.25, 2.0, jitter=1.0) == 0.5


def test_runtime_imports_nothing_of_the_domain():
    for module in RUNTIME.glob("*.py"):
        tree = ast.parse(module.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                if name.startswith("weavenomad"):
                    assert name == "weavenomad.errors" or name.startswith("weavenomad.runtime"), \
                        f"{module.name} imports {name}"
                else:
                    top = name.split(".")[0]
                    assert top in sys.stdlib_module_names or top == "__future__", \
                        f"{module.name} imports {name}, which is not in the standard library"
