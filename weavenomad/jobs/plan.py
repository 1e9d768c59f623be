"""How a plan reads: Nomad's plan answer (``POST /v1/job/<id>/plan``) as ``nomad job plan``
prints it, with the tenant transform's changes marked. Pure: the answer in, text out.

The layout is ``command/job_plan.go``'s (Nomad 1.0): ``+`` added, ``-`` deleted, ``+/-``
edited; a line per task group with what the scheduler would do to its allocations
(``(1 create, 2 in-place update)``); the job's and a group's fields and objects only when they
were edited; then the scheduler's dry run and the job modify index. Checked against the real
CLI's texts in ``tests/fixtures/recorded/plan-dns-catalog-checks/a4``-``a6``.

Exit codes are ``nomad job plan``'s: 0 when no allocation would be created, destroyed,
migrated, replaced or canaried (in-place updates included), 1 when one would, 255 on error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from weavenomad.jobs.monitor import Paint, alloc_metric_lines
from weavenomad.jobs.transform import Change

#: ``nomad job plan``'s exit codes
NO_CHANGES = 0
CHANGES = 1
PLAN_ERROR = 255

#: how the transform's changes are marked in the diff
TRANSFORM_MARK = "weavenomad"

#: the count lines of go-multierror and of Nomad's warnings formatter
_MULTIERROR_HEADER = re.compile(r"^\d+ (warning\(s\)|errors? occurred):$")


def plain(text: str, _style: str) -> str:
    return text


_MARKERS = {"Added": ("+", "green"), "Deleted": ("-", "red"), "Edited": ("+/-", "yellow")}
#: the group line's counts, coloured as Nomad colours them
_UPDATE_STYLE = {"create": "green", "destroy": "red", "migrate": "blue",
                 "in-place update": "cyan", "create/destroy update": "yellow",
                 "canary": "yellow"}
#: DesiredTGUpdates that change allocations (job_plan.go getExitCode)
_CHANGING = ("Stop", "Place", "Migrate", "DestructiveUpdate", "Canary")


def exit_code(answer: Mapping) -> int:
    updates = ((answer.get("Annotations") or {}).get("DesiredTGUpdates") or {}).values()
    changing = any(sum(int((u or {}).get(k) or 0) for k in _CHANGING) for u in updates)
    return CHANGES if changing else NO_CHANGES


def unchanged(answer: Mapping) -> bool:
    """The registered job is the same and no allocation would change."""
    return (answer.get("Diff") or {}).get("Type") == "None" and exit_code(answer) == NO_CHANGES


@dataclass(frozen=True)
class _Where:
    """Where a field sits, to find the transform's changes in the diff."""

    group: str | None = None
    task: str | None = None
    section: str | None = None


class DiffText:
    """``formatJobDiff`` and its helpers. ``marked`` holds the transform's changes."""

    def __init__(self, paint: Paint = plain, changes: Iterable[Change] = (),
                 verbose: bool = False):
        self.paint = paint
        self.verbose = verbose
        self.marked = {(c.group, c.task, c.section, c.field) for c in changes}

    def marker(self, kind: str) -> tuple[str, int]:
        if kind not in _MARKERS:
            return "", 0
        mark, style = _MARKERS[kind]
        return self.paint(mark, style) + " ", len(mark) + 1

    def job(self, diff: Mapping) -> str:
        marker, _ = self.marker(diff.get("Type", ""))
        title = "Job: " + _q(diff.get("ID", ""))
        out = f"{marker}{self.paint(title, 'bold')}\n"
        fields, objects = diff.get("Fields") or [], diff.get("Objects") or []
        groups = diff.get("TaskGroups") or []
        longest_field, longest_marker = self.longest(fields, objects)
        longest_marker = max([longest_marker] + [self.marker(g["Type"])[1] for g in groups])
        if diff.get("Type") == "Edited" or self.verbose:
            text = self.aligned(fields, objects, 0, longest_field, longest_marker, _Where())
            out += text + ("\n" if text else "")
        for group in groups:
            out += self.group(group, longest_marker - self.marker(group["Type"])[1]) + "\n"
        return out

    def group(self, diff: Mapping, prefix: int) -> str:
        marker, _ = self.marker(diff.get("Type", ""))
        title = "Task Group: " + _q(diff["Name"])
        out = f"{marker}{' ' * prefix}{self.paint(title, 'bold')}"
        updates = diff.get("Updates") or {}
        if updates:
            counts = [self._count(kind, updates[kind]) for kind in sorted(updates)]
            out += f" ({', '.join(counts)})\n"
        else:
            out += "\n"
        fields, objects = diff.get("Fields") or [], diff.get("Objects") or []
        tasks = diff.get("Tasks") or []
        longest_field, longest_marker = self.longest(fields, objects)
        longest_marker = max([longest_marker] + [self.marker(t["Type"])[1] for t in tasks])
        start = prefix + 2
        if diff.get("Type") == "Edited" or self.verbose:
            text = self.aligned(fields, objects, start, longest_field, longest_marker,
                                _Where(diff["Name"]))
            out += text + ("\n" if text else "")
        for task in tasks:
            out += self.task(task, start, longest_marker - self.marker(task["Type"])[1],
                             diff["Name"]) + "\n"
        return out

    def _count(self, kind: str, count: int) -> str:
        text = f"{count} {kind}"
        return self.paint(text, _UPDATE_STYLE[kind]) if kind in _UPDATE_STYLE else text

    def task(self, diff: Mapping, start: int, prefix: int, group: str) -> str:
        marker, _ = self.marker(diff.get("Type", ""))
        title = self.paint("Task: " + _q(diff["Name"]), "bold")
        out = f"{' ' * start}{marker}{' ' * prefix}{title}"
        if diff.get("Annotations"):
            out += f" ({self.annotations(diff['Annotations'])})"
        kind = diff.get("Type")
        if kind == "None" or (kind in ("Added", "Deleted") and not self.verbose):
            return out
        fields, objects = diff.get("Fields") or [], diff.get("Objects") or []
        longest_field, longest_marker = self.longest(fields, objects)
        return out + "\n" + self.aligned(fields, objects, start + 2, longest_field,
                                         longest_marker, _Where(group, diff["Name"]))

    def annotations(self, notes: Iterable[str]) -> str:
        styles = {"forces create": "green", "forces destroy": "red",
                  "forces in-place update": "cyan", "forces create/destroy update": "red"}
        return ", ".join(self.paint(n, styles[n]) if n in styles else n for n in notes)

    def longest(self, fields: list, objects: list) -> tuple[int, int]:
        longest_field = max([0] + [len(f["Name"]) for f in fields])
        longest_marker = max([0] + [self.marker(f["Type"])[1] for f in fields]
                             + [self.marker(o["Type"])[1] for o in objects])
        return longest_field, longest_marker

    def aligned(self, fields: list, objects: list, start: int, longest_field: int,
                longest_marker: int, where: _Where) -> str:
        lines = [self.field(f, start, longest_marker - self.marker(f["Type"])[1],
                            longest_field - len(f["Name"]), where) for f in fields]
        lines += [self.object(o, start, longest_marker - self.marker(o["Type"])[1], where)
                  for o in objects]
        return "\n".join(lines)

    def object(self, diff: Mapping, start: int, key_prefix: int, where: _Where) -> str:
        marker, marker_len = self.marker(diff.get("Type", ""))
        out = f"{' ' * start}{marker}{' ' * key_prefix}{diff['Name']} {{\n"
        fields, objects = diff.get("Fields") or [], diff.get("Objects") or []
        longest_field, longest_marker = self.longest(fields, objects)
        inner = _Where(where.group, where.task, diff["Name"] if where.task else None)
        out += self.aligned(fields, objects, start + key_prefix + 2, longest_field,
                            longest_marker, inner)
        return f"{out}\n{' ' * (start + marker_len + key_prefix)}}}"

    def field(self, diff: Mapping, start: int, key_prefix: int, value_prefix: int,
              where: _Where) -> str:
        marker, _ = self.marker(diff.get("Type", ""))
        out = f"{' ' * start}{marker}{' ' * key_prefix}{diff['Name']}: {' ' * value_prefix}"
        kind = diff.get("Type")
        if kind == "Deleted":
            out += _q(diff.get("Old", ""))
        elif kind == "Edited":
            out += f"{_q(diff.get('Old', ''))} => {_q(diff.get('New', ''))}"
        else:
            out += _q(diff.get("New", ""))
        notes = list(diff.get("Annotations") or [])
        if notes:
            out += f" ({self.annotations(notes)})"
        if (where.group, where.task, where.section, diff["Name"]) in self.marked:
            out += f" ({self.paint(TRANSFORM_MARK, 'cyan')})"
        return out


def _q(text: str) -> str:
    """Go's ``%q`` for the strings a plan holds."""
    escaped = []
    for char in str(text):
        if char in '"\\':
            escaped.append("\\" + char)
        elif char == "\n":
            escaped.append("\\n")
        elif char == "\t":
            escaped.append("\\t")
        elif ord(char) < 32 or ord(char) == 127:
            escaped.append(f"\\x{ord(char):02x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def diff_text(answer: Mapping, changes: Iterable[Change] = (), paint: Paint = plain,
              verbose: bool = False) -> str:
    """The job diff as ``nomad job plan`` prints it (without the trailing blank line)."""
    diff = answer.get("Diff")
    if not diff:
        return ""
    return DiffText(paint, changes, verbose).job(diff).strip()


def dry_run_text(answer: Mapping, job_type: str = "service", paint: Paint = plain) -> str:
    """``formatDryRun``: whether every allocation found a node, else why not per group."""
    failed = answer.get("FailedTGAllocs") or {}
    if not failed:
        return paint("- All tasks successfully allocated.", "green")
    where = " on all nodes" if job_type == "system" else " all"
    lines = [paint(f"- WARNING: Failed to place{where} allocations.", "yellow")]
    for group in sorted(failed):
        metric = failed[group] or {}
        count = int(metric.get("CoalescedFailures") or 0) + 1
        noun = "allocation" if count == 1 else "allocations"
        lines.append(paint(f"  Task Group {_q(group)} (failed to place {count} {noun}):",
                           "yellow"))
        lines += [paint(line, "yellow") for line in alloc_metric_lines(metric, "    ")]
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def transform_text(changes: Iterable[Change], tenant: str, paint: Paint = plain) -> str:
    """What the tenant transform set in the job file (the diff shows it only where Nomad's
    diff lists the field: edited jobs, groups and tasks)."""
    changes = list(changes)
    if not changes:
        return ""
    title = paint(f"Set by weavenomad for tenant {tenant}:", "bold")
    return "\n".join([title, *(f"  {c.describe()}" for c in changes)])


def plan_text(answer: Mapping, changes: Iterable[Change] = (), *, job_type: str = "service",
              tenant: str = "", paint: Paint = plain, verbose: bool = False) -> str:
    """What ``weavenomad plan`` prints on stdout: the diff ("no changes" when the job and its
    allocations would stay as they are), what the transform set, the scheduler's dry run, the
    job modify index."""
    changes = list(changes)
    parts = [diff_text(answer, changes, paint, verbose)]
    if unchanged(answer):
        parts.append(paint("no changes", "green"))
    if tenant:
        parts.append(transform_text(changes, tenant, paint))
    parts.append(paint("Scheduler dry-run:", "bold") + "\n" + dry_run_text(answer, job_type,
                                                                          paint))
    parts.append(paint(f"Job Modify Index: {int(answer.get('JobModifyIndex') or 0)}", "bold"))
    return "\n\n".join(part for part in parts if part) + "\n"


def warning_lines(warnings: str) -> list[str]:
    """Nomad's multi-line ``Warnings`` (nested go-multierror texts) as one line per warning,
    each naming its group: ``Group "g": Task "t": task network resources have been ...``."""
    lines, group = [], ""
    for raw in warnings.splitlines():
        text = raw.strip().removeprefix("* ").strip()
        head, sep, rest = text.partition(" has warnings: ")
        if sep:
            group, text = head + ": ", rest
        if text and not _MULTIERROR_HEADER.match(text):
            lines.append(group + text)
    return lines or ([" ".join(warnings.split())] if warnings.strip() else [])
