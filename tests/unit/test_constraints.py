"""constraints.txt, which scripts/install-deps installs with, pins every dependency that the
product and the lab declare (the test extras included) at a version their ranges allow, so it
cannot fall behind a pyproject.toml without a test saying so."""

import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "constraints.txt"
PROJECTS = (ROOT / "pyproject.toml", ROOT / "lab" / "pyproject.toml")
REMAKE = "run scripts/lock (see scripts/lock --help)"


def own_names() -> set[str]:
    return {canonicalize_name(tomllib.loads(p.read_text())["project"]["name"]) for p in PROJECTS}


def declared() -> list[tuple[str, Requirement]]:
    """Every requirement of both distributions, extras included, with where it is declared."""
    found = []
    for path in PROJECTS:
        project = tomllib.loads(path.read_text(encoding="utf-8"))["project"]
        where = path.relative_to(ROOT)
        found += [(f"{where} dependencies", Requirement(text))
                  for text in project.get("dependencies", [])]
        for extra, texts in project.get("optional-dependencies", {}).items():
            found += [(f"{where} [{extra}]", Requirement(text)) for text in texts]
    return found


@pytest.fixture(scope="module")
def lock_text() -> str:
    return LOCK.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def pins(lock_text) -> dict[str, str]:
    pinned = {}
    for line in lock_text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        found = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        assert found, f"constraints.txt: {line!r} is not name==version: {REMAKE}"
        name = canonicalize_name(found.group(1))
        assert name not in pinned, f"constraints.txt pins {name} twice: {REMAKE}"
        pinned[name] = found.group(2)
    return pinned


@pytest.fixture(scope="module")
def locked_python(lock_text) -> str:
    found = re.search(r"^# For Python (\d+\.\d+) ", lock_text, re.M)
    assert found, "constraints.txt's header does not say which Python it is for: " + REMAKE
    return found.group(1)


def test_every_declared_dependency_is_pinned_within_its_range(pins, locked_python):
    environment = {"python_version": locked_python, "python_full_version": f"{locked_python}.0"}
    ours = own_names()
    missing, outside = [], []
    for where, requirement in declared():
        name = canonicalize_name(requirement.name)
        if name in ours:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue  # not installed on the Python the lock is for (e.g. tomli before 3.11)
        if name not in pins:
            missing.append(f"{requirement} ({where})")
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            outside.append(f"{name}=={pins[name]} is outside {requirement} ({where})")
    assert not missing, f"constraints.txt does not pin {missing}: {REMAKE}"
    assert not outside, f"constraints.txt is stale: {outside}: {REMAKE}"


def test_the_project_itself_is_not_pinned(pins):
    assert not own_names() & pins.keys(), "constraints.txt pins the project itself: " + REMAKE


def test_install_deps_installs_with_the_lock():
    script = (ROOT / "scripts" / "install-deps").read_text(encoding="utf-8")
    commands = script.replace("\\\n", " ").splitlines()
    installs = [line for line in commands if "pip install" in line]
    assert installs and all('-c "$lock"' in line for line in installs), installs
    assert "lock=constraints.txt" in commands
