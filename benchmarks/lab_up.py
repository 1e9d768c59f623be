"""Wall time of ``weavenomad lab up --nodes 1`` and ``weavenomad lab down`` (issue target: up
under 20 s).

Runs the real commands (root, dockerd) on a fresh lab of its own, several rounds, and prints
each round plus the median. Usage: sudo python benchmarks/lab_up.py [--rounds N] [--nodes N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

TARGET_UP_S = 20.0


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=1)
    args = parser.parse_args()
    state_dir = f"/tmp/wnbench-{os.getpid()}"
    lab = [sys.executable, "-m", "weavenomad", "lab"]
    where = ["--state-dir", state_dir]
    ups, downs = [], []
    try:
        for round_number in range(1, args.rounds + 1):
            ups.append(timed([*lab, "up", "--nodes", str(args.nodes), "--name",
                              f"b{os.getpid() % 100000}", *where]))
            downs.append(timed([*lab, "down", *where]))
            print(f"round {round_number}: lab up --nodes {args.nodes} {ups[-1]:.2f} s, "
                  f"lab down {downs[-1]:.2f} s")
    finally:
        subprocess.run([*lab, "down", *where], capture_output=True, timeout=120, check=False)
    up_median = statistics.median(ups)
    print(f"lab up --nodes {args.nodes}: median {up_median:.2f} s "
          f"(target {TARGET_UP_S:.0f} s: {'met' if up_median < TARGET_UP_S else 'MISSED'})")
    print(f"lab down: median {statistics.median(downs):.2f} s")


if __name__ == "__main__":
    main()
