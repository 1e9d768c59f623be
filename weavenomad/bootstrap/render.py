"""How checks and plans read on a terminal. Pure: data in, lines out."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from weavenomad.bootstrap import steps as st
from weavenomad.bootstrap.checks import Check

_MARK = {"pass": "PASS", "warn": "WARN", "fail": "FAIL"}


def _plain(text: str, _style: str) -> str:
    return text


#: the status words' colours on a terminal
_STYLE = {"pass": "green", "warn": "yellow", "fail": "red"}


def check_lines(checks: Iterable[Check], indent: str = "",
                paint: Callable[[str, str], str] = _plain) -> list[str]:
    """One line per check (``PASS  name  detail``) and the fix under each that did not pass;
    ``paint(text, style)`` colours the status word on a terminal."""
    checks = list(checks)
    width = max((len(c.name) for c in checks), default=0)
    lines = []
    for check in checks:
        mark = paint(_MARK[check.status], _STYLE[check.status])
        lines.append(f"{indent}{mark}  {check.name:<{width}}  {check.detail}")
        if check.fix and check.status != "pass":
            lines.append(f"{indent}      {'':<{width}}  fix: {check.fix}")
    return lines


def plan_lines(plan: st.Plan, weave: str = "weave") -> list[str]:
    lines = []
    total = len(plan.steps)
    for number, step in enumerate(plan.steps, 1):
        lines.append(f"  {number}/{total}  {step.title}")
        command = st.command_line(step.action, weave)
        if command:
            lines.append(f"        $ {command}")
        diff = st.diff_of(step.action)
        if diff:
            lines += ["        " + line for line in diff.rstrip("\n").splitlines()]
        elif not command:
            lines.append(f"        {st.describe(step.action)}")
        lines += [f"        ({note})" for note in step.notes]
        if step.undo is not None:
            when = "if it or a later step fails" if step.undo_if_failed else "on failure"
            lines.append(f"        undo {when}: {st.describe(step.undo)}")
        if step.commits:
            lines.append("        once done, kept whatever fails later")
    lines += [f"  note: {note}" for note in plan.notes]
    return lines
