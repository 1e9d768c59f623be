"""The product stands without its lab: no product module imports or names ``weavenomad_lab`` (nor
pulls in what only the lab needs), and the ``weavenomad`` command says how to get ``lab`` and
``demo`` when the lab is not installed. The lab's own distribution adds them through the
``weavenomad.commands`` entry points (tests/packaging checks a real install without it)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import weavenomad
import weavenomad.cli as weavenomad_cli
from weavenomad.errors import ExitCode

PRODUCT = Path(weavenomad.__file__).resolve().parent
LAB_PACKAGE = "weavenomad_lab"
#: distributions only the lab uses (its CA, its state directory)
LAB_ONLY = ("cryptography", "platformdirs")

IMPORT_EVERY_MODULE = """
import importlib, json, pkgutil, sys
import weavenomad
names = sorted(m.name for m in pkgutil.walk_packages(weavenomad.__path__, "weavenomad.")
               if not m.name.endswith(".__main__"))
for name in names:
    importlib.import_module(name)
print(json.dumps({"imported": names, "loaded": sorted(sys.modules)}))
"""


def test_importing_every_product_module_loads_nothing_of_the_lab():
    done = subprocess.run([sys.executable, "-c", IMPORT_EVERY_MODULE], capture_output=True,
                          text=True, timeout=120, cwd=PRODUCT.parent)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert "weavenomad.cli" in result["imported"] and len(result["imported"]) > 30
    loaded = [name for name in result["loaded"]
              if name.partition(".")[0] in (LAB_PACKAGE, *LAB_ONLY)]
    assert loaded == []


def _lab_mentions(path: Path, root: Path = PRODUCT.parent) -> list[str]:
    """Where a file imports or names the lab's package (imports, names, attributes, strings),
    as ``path:line`` relative to ``root``, in line order."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            texts = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            texts = [node.module or ""]
        elif isinstance(node, ast.Name):
            texts = [node.id]
        elif isinstance(node, ast.Attribute):
            texts = [node.attr]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            texts = [node.value]
        else:
            continue
        if any(LAB_PACKAGE in text for text in texts):
            found.append((node.lineno, f"{path.relative_to(root)}:{node.lineno}"))
    return [where for _, where in sorted(found)]


def test_no_product_file_imports_or_names_the_lab():
    files = sorted(PRODUCT.rglob("*.py"))
    assert len(files) > 30
    assert [where for path in files for where in _lab_mentions(path)] == []


def test_the_static_check_sees_every_way_of_naming_the_lab(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import weavenomad_lab\n"
        "from weavenomad_lab.nomad import jobspec\n"
        "import importlib\n"
        "importlib.import_module('weavenomad_lab.demo')\n"
        "x = weavenomad_lab\n"
    )
    assert _lab_mentions(sample, tmp_path) == [
        "sample.py:1", "sample.py:2", "sample.py:4", "sample.py:5"]


# -- the command without the lab -------------------------------------------------------------


def _run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        weavenomad_cli.main(argv, {})
    return exit_info.value.code


@pytest.fixture
def no_lab(monkeypatch):
    """The ``weavenomad`` command as a plain install of the product has it: no distribution
    adds commands through the entry points."""
    monkeypatch.setattr(weavenomad_cli, "plugin_commands", lambda: {})


def test_help_says_how_to_get_the_lab(no_lab, capsys):
    assert _run(["--help"]) == ExitCode.OK
    out = capsys.readouterr().out
    listed, _, not_installed = out.partition("Not installed:")
    assert " lab " not in listed and " demo " not in listed
    assert "demo, lab: the local lab and its demo" in " ".join(not_installed.split())
    assert "pip install ./lab" in not_installed and "scripts/install-deps" in not_installed


@pytest.mark.parametrize("argv", [["lab", "up"], ["demo"], ["lab", "--help"]])
def test_lab_commands_fail_in_one_line_naming_the_install(no_lab, capsys, argv):
    assert _run(argv) == ExitCode.USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith(f"weavenomad: error: 'weavenomad {argv[0]}' comes with the local lab,"
                           " which is not installed")
    assert "pip install ./lab" in line


def test_other_commands_do_not_look_for_plugins(monkeypatch, capsys):
    def scan():
        raise AssertionError("the entry points were scanned")

    monkeypatch.setattr(weavenomad_cli, "plugin_commands", scan)
    assert _run(["reconciler", "run", "--help"]) == ExitCode.OK
    assert "Usage: weavenomad reconciler run" in capsys.readouterr().out


def test_the_lab_installed_offers_its_commands(monkeypatch, capsys):
    installed = {"lab": "weavenomad_lab.cli:lab", "demo": "weavenomad_lab.cli:demo"}
    monkeypatch.setattr(weavenomad_cli, "plugin_commands", lambda: installed)
    assert _run(["--help"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "Not installed" not in out and "\n  lab " in out and "\n  demo " in out


def test_a_plugin_that_cannot_load_is_listed_and_explains_itself(monkeypatch, capsys):
    monkeypatch.setattr(weavenomad_cli, "plugin_commands",
                        lambda: {"lab": "no_such_module_for_the_lab:lab"})
    assert _run(["--help"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "Cannot be loaded: ModuleNotFoundError" in " ".join(out.split())
    assert "demo: the local lab and its demo" in " ".join(out.split())
    assert _run(["lab", "up", "--nodes", "2"]) == ExitCode.ERROR
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("weavenomad: error: 'weavenomad lab' is installed "
                           "(no_such_module_for_the_lab:lab) but cannot be loaded: "
                           "ModuleNotFoundError")
