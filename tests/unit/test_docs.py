"""The README and docs/ stay true: the command reference is the generated one, the architecture
picture was rendered from its current source, the first lines' commands exist, and every
relative link resolves. No graphviz needed."""

import difflib
import hashlib
import os
import re
from pathlib import Path

import click
import pytest

from weavenomad.cli import reference

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOT = ROOT / "docs" / "architecture.dot"
SVG = ROOT / "docs" / "architecture.svg"
RENDER = "run scripts/render-docs"

# [text](target) and ![alt](target), not inside code spans or blocks (stripped first)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_BLOCK = re.compile(r"^```.*?^```", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")


@pytest.fixture(scope="module")
def readme() -> str:
    return README.read_text(encoding="utf-8")


def test_command_reference_is_current(readme):
    current = reference.current_section(readme)
    assert current is not None, f"README.md lacks the {reference.BEGIN} / {reference.END} markers"
    generated = reference.generate().strip()
    changes = "".join(list(difflib.unified_diff(
        current.splitlines(True), generated.splitlines(True), "README.md", "generated", n=0))[:40])
    assert current == generated, (
        f"README.md's command reference is out of date: {RENDER}\n{changes}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def sample():
    """A sample group.

    \b
    sample run --fast
    """


@sample.command(name="run")
@click.argument("target")
@click.argument("extra", nargs=-1, required=False)
@click.option("--count", type=click.IntRange(1, 16), default=3, show_default=True,
              help="How many   times,\n   at most 16.")
@click.option("--every", type=click.FloatRange(min=1.0), metavar="SECONDS",
              help="Seconds between <runs>.")
@click.option("--fast/--slow", default=True, show_default=True, help="Speed.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.option("--label", multiple=True, help="A label (repeatable).")
@click.option("--token", envvar="SAMPLE_TOKEN", required=True, help="The ``token``.")
@click.option("--quiet", is_flag=True, help="Say less.")
@click.option("--secret", hidden=True)
def sample_run(**_):
    """Run TARGET."""


def test_reference_entries_come_from_what_the_options_declare():
    """The layout is the reference's own, the same under every click release: spellings (short
    first, a metavar or the type's name), help on one line, then the shown default, the range
    and 'required' in one bracket, then the environment variable; the help option is only
    listed for the top-level command, hidden options never."""
    entries = list(reference.walk(sample, reference.context(sample, "weavenomad")))
    top, run = (reference.render_entry(entry, ()) for entry in entries)
    assert "```\nweavenomad [OPTIONS] COMMAND [ARGS]...\n```" in top
    assert "```sh\nsample run --fast\n```" in top
    assert "- `-h, --help`: Show this message and exit." in top
    assert "Subcommands: [`run`](#weavenomad-run)." in top
    assert run.split("Options:\n\n", 1)[1].splitlines()[:7] == [
        "- `--count INTEGER RANGE`: How many times, at most 16. [default: 3; 1&lt;=x&lt;=16]",
        "- `--every SECONDS`: Seconds between &lt;runs>. [x>=1.0]",
        "- `--fast / --slow`: Speed. [default: fast]",
        "- `-o, --output [text|json]`: [default: text]",
        "- `--label TEXT`: A label (repeatable).",
        "- `--token TEXT`: The `token`. [required] [env: SAMPLE_TOKEN]",
        "- `--quiet`: Say less.",
    ]
    assert "```\nweavenomad run [OPTIONS] TARGET [EXTRA]...\n```" in run
    assert "--help" not in run and "--secret" not in run


def test_reference_covers_every_command():
    from weavenomad.cli import COMMANDS

    generated = reference.generate()
    for name in COMMANDS:
        assert f"### `weavenomad {name}`" in generated
    for nested in ("tenant create", "lab up", "reconciler run", "config show"):
        assert f"### `weavenomad {nested}`" in generated


def test_replace_section_rewrites_only_between_the_markers():
    document = f"head\n{reference.BEGIN}\nold text\n{reference.END}\ntail\n"
    updated = reference.replace_section(document, "new text")
    assert updated == f"head\n{reference.BEGIN}\n\nnew text\n\n{reference.END}\ntail\n"
    assert reference.replace_section(updated, "new text") == updated
    with pytest.raises(ValueError):
        reference.replace_section("no markers here", "new text")


def test_svg_was_rendered_from_the_current_dot():
    digest = hashlib.sha256(DOT.read_bytes()).hexdigest()
    head = SVG.read_text(encoding="utf-8")[:400]
    found = re.search(r"<!-- source-sha256: ([0-9a-f]{64}) -->", head)
    assert found, f"{SVG.name} has no source-sha256 marker: {RENDER}"
    assert found.group(1) == digest, f"{SVG.name} was rendered from another {DOT.name}: {RENDER}"
    assert "<svg" in SVG.read_text(encoding="utf-8")


def test_first_lines_name_the_demo_and_the_tests(readme):
    first = "\n".join(readme.splitlines()[:5])
    for script in ("scripts/demo", "scripts/test"):
        assert f"`{script}`" in first, f"README.md's first lines must name {script}"
        path = ROOT / script
        assert path.is_file(), f"{script} does not exist"
        assert os.access(path, os.X_OK), f"{script} is not executable"


def _headings_anchors(text: str) -> set[str]:
    """GitHub's anchors: lower case, punctuation but '-' and '_' dropped, spaces to '-'."""
    anchors = set()
    for line in CODE_BLOCK.sub("", text).splitlines():
        heading = re.match(r"#{1,6}\s+(.*)", line)
        if heading:
            title = heading.group(1).strip().lower().replace("`", "")
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_every_relative_link_resolves(readme):
    prose = CODE_SPAN.sub("", CODE_BLOCK.sub("", readme))
    targets = LINK.findall(prose)
    assert targets, "no links found: the pattern is broken"
    anchors = _headings_anchors(readme)
    broken = []
    for target in targets:
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, fragment = target.partition("#")
        if not path:
            if fragment not in anchors:
                broken.append(target)
        elif not (ROOT / path).exists():
            broken.append(target)
    assert not broken, f"README.md links to what does not exist: {broken}"
