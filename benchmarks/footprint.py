"""The product's footprint: what a plain install weighs and how fast it starts.

    python benchmarks/footprint.py [--checkout DIR ...] [--runs N] [--constraints FILE]

For each checkout (default: the one this script is in; give several, e.g. an old commit's
``git worktree`` and this one, to compare them side by side) it prints:

* the installed size (MB) of ``pip install DIR`` (the product alone, not the lab) in a fresh
  venv, and the distributions that install pulls in, with their versions and sizes;
* ``weavenomad --help``'s start-up time: the median of ``--runs`` runs of the console script;
* the import time of the reconciler daemon's entry point: the cumulative time that
  ``python -X importtime -c 'import weavenomad.reconcile.runner'`` reports for it, median;
* the Python line counts of the product (``weavenomad/``) and of the lab
  (``lab/weavenomad_lab/``; before the lab was split off it lived in ``weavenomad/lab/``, which
  is then shown as part of the product).

Every checkout is installed with the same pins (``--constraints``, by default this checkout's
constraints.txt), so the sizes differ by what each checkout pulls in, not by release. The
sources are copied to a temporary directory first, so nothing is built inside a checkout.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
ENTRY_POINT = "weavenomad.reconcile.runner"
#: what a checkout's product install needs (README.md: pyproject's readme)
SOURCES = ("pyproject.toml", "README.md", "weavenomad")
#: what every fresh venv has before the product comes
TOOLING = {"pip", "setuptools", "wheel"}
MB = 1024 * 1024

#: run inside the fresh venv: every installed distribution with its version and size on disk
_DISTRIBUTIONS = """
import json
from importlib.metadata import distributions
found = []
for dist in distributions():
    size = 0
    for file in dist.files or ():
        path = file.locate()
        if path.is_file():
            size += path.stat().st_size
    found.append([dist.metadata["Name"], dist.version, size])
print(json.dumps(found))
"""


@dataclass
class Footprint:
    checkout: Path
    commit: str
    size_bytes: int
    distributions: list[tuple[str, str, int]]
    help_ms: float
    import_ms: float
    product_lines: int
    lab_lines: int | None
    inner_lab_lines: int | None


def python_lines(directory: Path) -> int | None:
    """Lines of every ``.py`` file under ``directory``; None when it does not exist."""
    if not directory.is_dir():
        return None
    return sum(len(path.read_bytes().splitlines()) for path in directory.rglob("*.py"))


def cumulative_import_us(stderr: str, module: str) -> int:
    """The cumulative microseconds ``-X importtime`` reports for ``module``. Pure."""
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        fields = [field.strip() for field in line[len("import time:"):].split("|")]
        if len(fields) == 3 and fields[2] == module and fields[1].isdigit():
            return int(fields[1])
    raise ValueError(f"-X importtime did not report {module}")


def commit_of(checkout: Path) -> str:
    answer = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True)
    return answer.stdout.strip() or "?"


def copy_sources(checkout: Path, target: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    target.mkdir(parents=True)
    for name in SOURCES:
        source = checkout / name
        if not source.exists():
            raise SystemExit(f"footprint: {checkout} has no {name}: not a weavenomad checkout")
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        else:
            shutil.copy2(source, target / name)
    return target


def installed(venv_python: Path, cwd: Path) -> dict[str, tuple[str, int]]:
    answer = subprocess.run([str(venv_python), "-c", _DISTRIBUTIONS], capture_output=True,
                            text=True, check=True, cwd=cwd)
    return {name: (version, size) for name, version, size in json.loads(answer.stdout)}


def median_ms(argv: list[str], runs: int, cwd: Path) -> float:
    subprocess.run(argv, capture_output=True, check=True, cwd=cwd)  # warm the page cache
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True, cwd=cwd)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def median_import_ms(venv_python: Path, runs: int, cwd: Path) -> float:
    argv = [str(venv_python), "-X", "importtime", "-c", f"import {ENTRY_POINT}"]
    subprocess.run(argv, capture_output=True, check=True, cwd=cwd)  # warm the page cache
    samples = []
    for _ in range(runs):
        answer = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=cwd)
        samples.append(cumulative_import_us(answer.stderr, ENTRY_POINT) / 1000)
    return statistics.median(samples)


def measure(checkout: Path, runs: int, constraints: Path | None, python: str) -> Footprint:
    with tempfile.TemporaryDirectory(prefix="wn-footprint-") as work:
        work_dir = Path(work)
        source = copy_sources(checkout, work_dir / "src")
        venv = work_dir / "venv"
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        venv_python = venv / "bin" / "python"
        # everything runs in an empty directory: python -c puts the working directory first
        # on sys.path, where a checkout's package or egg-info would shadow the installed one
        quiet_dir = work_dir / "cwd"
        quiet_dir.mkdir()
        before = installed(venv_python, quiet_dir)
        pins = ["-c", str(constraints)] if constraints else []
        subprocess.run([str(venv_python), "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", *pins, str(source)], check=True)
        after = installed(venv_python, quiet_dir)
        pulled = sorted(
            ((name, version, size) for name, (version, size) in after.items()
             if name not in before and name.lower() not in TOOLING),
            key=lambda row: row[0].lower())
        help_ms = median_ms([str(venv / "bin" / "weavenomad"), "--help"], runs, quiet_dir)
        import_ms = median_import_ms(venv_python, runs, quiet_dir)
    return Footprint(
        checkout=checkout,
        commit=commit_of(checkout),
        size_bytes=sum(size for _, _, size in pulled),
        distributions=pulled,
        help_ms=help_ms,
        import_ms=import_ms,
        product_lines=python_lines(checkout / "weavenomad") or 0,
        lab_lines=python_lines(checkout / "lab" / "weavenomad_lab"),
        inner_lab_lines=python_lines(checkout / "weavenomad" / "lab"),
    )


def table(results: list[Footprint], runs: int) -> str:
    def count(value: int | None) -> str:
        return "-" if value is None else str(value)

    rows = [
        ("checkout", [str(r.checkout) for r in results]),
        ("commit", [r.commit for r in results]),
        ("installed size of `pip install .`, MB", [f"{r.size_bytes / MB:.1f}" for r in results]),
        ("distributions it pulls (the product included)",
         [str(len(r.distributions)) for r in results]),
        (f"`weavenomad --help`, ms (median of {runs})", [f"{r.help_ms:.0f}" for r in results]),
        (f"import {ENTRY_POINT}, ms (cumulative, median of {runs})",
         [f"{r.import_ms:.0f}" for r in results]),
        ("Python lines, product (weavenomad/)", [count(r.product_lines) for r in results]),
        ("  of which the pre-split lab (weavenomad/lab/)",
         [count(r.inner_lab_lines) for r in results]),
        ("Python lines, lab (lab/weavenomad_lab/)", [count(r.lab_lines) for r in results]),
    ]
    label_width = max(len(label) for label, _ in rows)
    widths = [max(len(values[i]) for _, values in rows) for i in range(len(results))]
    lines = []
    for label, values in rows:
        cells = "  ".join(value.rjust(width) for value, width in zip(values, widths, strict=True))
        lines.append(f"{label.ljust(label_width)}  {cells}")
    for result in results:
        lines += ["", f"distributions of `pip install {result.checkout}` ({result.commit}):"]
        lines += [f"  {name}=={version}  {size / MB:.1f} MB"
                  for name, version, size in result.distributions]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, action="append",
                        help="a weavenomad checkout to measure (repeatable; default: this one)")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per figure")
    parser.add_argument("--constraints", type=Path, default=HERE / "constraints.txt",
                        help="pins for every install (default: this checkout's constraints.txt)")
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter the fresh venvs are made with")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    constraints = args.constraints if args.constraints.is_file() else None
    checkouts = [path.resolve() for path in (args.checkout or [HERE])]
    results = [measure(checkout, args.runs, constraints, args.python) for checkout in checkouts]
    print(table(results, args.runs))
    print("\npins: " + (str(constraints) if constraints else "none (newest releases)"))


if __name__ == "__main__":
    main()
