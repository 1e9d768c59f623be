"""A plain install of the product, as an operator gets it: a fresh venv, ``pip install`` of the
product from this checkout (not editable, not the lab). Nothing that only the lab uses comes
with it, its commands work, and it says how to get ``lab`` and ``demo``.

One venv for the module (about half a minute with pip's cache warm). A failed install fails
the tests; it never skips them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = "weavenomad"
LAB = "weavenomad-lab"
#: what the lab's own dependencies bring beyond their names (cryptography needs cffi, which
#: needs pycparser): none of these may come with the product unless the product needs them
LAB_TRANSITIVE = ("cffi", "pycparser")
#: the venv's own tools
TOOLS = {"pip", "setuptools", "wheel"}
INSTALL_TIMEOUT = 600


@dataclass(frozen=True)
class PlainInstall:
    venv: Path
    site_packages: Path
    cwd: Path
    env: dict[str, str]

    def weavenomad(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.venv / "bin" / "weavenomad"), *args], cwd=self.cwd,
                              env=self.env, capture_output=True, text=True, timeout=60)


def _clean_env() -> dict[str, str]:
    """The environment without anything that would let the venv see this checkout's code."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV",
                                                             "PYTHONHOME", "PYTHONSTARTUP")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> PlainInstall:
    work = tmp_path_factory.mktemp("plain-install")
    # a copy of what the product's distribution is built from: an in-tree build would leave
    # build/ in the checkout, and a stale build/ could put deleted modules into the wheel
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / PRODUCT, source / PRODUCT,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    venv, env = work / "venv", _clean_env()
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        # the pinned versions, as scripts/install-deps takes them: the test is about which
        # distributions come along, and must not change with a release made today
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "-c", str(ROOT / "constraints.txt"), str(source)],
    ]
    for argv in steps:
        done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True,
                              timeout=INSTALL_TIMEOUT)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n"
                        f"{done.stderr}", pytrace=False)
    (site_packages,) = (venv / "lib").glob("python3*/site-packages")
    return PlainInstall(venv, site_packages, work, env)


def _installed(site_packages: Path) -> dict[str, metadata.Distribution]:
    return {canonicalize_name(d.metadata["Name"]): d
            for d in metadata.distributions(path=[str(site_packages)])}


def _needed_by(root: str, installed: dict[str, metadata.Distribution]) -> set[str]:
    """``root`` and every installed distribution its declared requirements pull in."""
    needed: set[str] = set()
    pending = [(canonicalize_name(root), frozenset())]
    while pending:
        name, extras = pending.pop()
        if name in needed or name not in installed:
            continue
        needed.add(name)
        for text in installed[name].requires or ():
            requirement = Requirement(text)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in {"", *extras}):
                pending.append((canonicalize_name(requirement.name),
                                frozenset(requirement.extras)))
    return needed


def _lab_dependencies() -> set[str]:
    declared = tomllib.loads((ROOT / "lab" / "pyproject.toml").read_text())
    names = {canonicalize_name(Requirement(r).name) for r in declared["project"]["dependencies"]}
    return names | {canonicalize_name(n) for n in (LAB, *LAB_TRANSITIVE)}


def test_nothing_only_the_lab_uses_is_installed(plain):
    installed = _installed(plain.site_packages)
    needed = _needed_by(PRODUCT, installed)
    assert PRODUCT in needed
    extra = sorted(set(installed) - needed - TOOLS)
    assert extra == [], f"installed but not required by the product: {extra}"
    lab_only = sorted((_lab_dependencies() - needed) & set(installed))
    assert lab_only == [], f"what only the lab uses came with the product: {lab_only}"
    assert LAB not in installed


def test_the_product_is_installed_from_the_checkout_not_linked_to_it(plain):
    (record,) = [d for name, d in _installed(plain.site_packages).items() if name == PRODUCT]
    files = [str(f) for f in record.files or ()]
    assert "weavenomad/cli/__init__.py" in files  # a real copy, not an editable .pth


def test_a_product_command_runs(plain):
    done = plain.weavenomad("reconciler", "run", "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage: weavenomad reconciler run" in done.stdout


def test_help_says_how_to_get_the_lab(plain):
    done = plain.weavenomad("--help")
    assert done.returncode == 0, done.stderr
    listed, _, not_installed = done.stdout.partition("Not installed:")
    assert "\n  lab " not in listed and "\n  demo " not in listed
    assert "demo, lab" in not_installed and "pip install ./lab" in not_installed


@pytest.mark.parametrize("argv", [["lab"], ["lab", "up"], ["demo"]])
def test_the_lab_commands_fail_in_one_line_naming_the_install(plain, argv):
    done = plain.weavenomad(*argv)
    assert done.returncode != 0 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert f"'weavenomad {argv[0]}' comes with the local lab, which is not installed" in line
    assert "pip install ./lab" in line
