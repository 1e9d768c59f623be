"""Start-up time of ``weavenomad --help`` (issue target: under 150 ms).

Times the console script installed next to this interpreter (not a pyenv/asdf shim in front of
it, which adds its own ~100 ms of bash) over repeated runs and prints min / median / p90.
Usage: python benchmarks/cli_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

TARGET_MS = 150.0


def console_script() -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "weavenomad")
    if os.path.exists(script):
        return [script]
    return [sys.executable, "-m", "weavenomad"]


def time_runs(argv: list[str], runs: int) -> list[float]:
    subprocess.run(argv, capture_output=True, check=True)  # warm the page cache
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        samples.append((time.perf_counter() - start) * 1000)
    return sorted(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    base = time_runs([sys.executable, "-c", "pass"], args.runs)
    argv = console_script() + ["--help"]
    samples = time_runs(argv, args.runs)
    p90 = samples[int(0.9 * (len(samples) - 1))]
    median = statistics.median(samples)
    print(f"command: {' '.join(argv)}  ({args.runs} runs)")
    print(f"bare interpreter start: median {statistics.median(base):.1f} ms")
    print(f"weavenomad --help: min {samples[0]:.1f} ms, median {median:.1f} ms, p90 {p90:.1f} ms")
    print(f"target {TARGET_MS:.0f} ms: {'met' if median < TARGET_MS else 'MISSED'}")


if __name__ == "__main__":
    main()
