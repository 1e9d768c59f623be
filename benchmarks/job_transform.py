"""Time of the tenant transform on a job with 200 groups x 5 Docker tasks (target: under 20 ms).

Usage: python benchmarks/job_transform.py [--runs N]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from ipaddress import IPv4Network
from pathlib import Path

from weavenomad.jobs.transform import apply_tenant
from weavenomad.tenancy.contract import TenantTarget

RECORDED = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "recorded"
TARGET_MS = 20.0


def big_job(groups: int, tasks: int) -> dict:
    seed = json.loads((RECORDED / "nomad-jobs-parse.json").read_text())["body"]
    group_template = seed["TaskGroups"][0]
    task_template = dict(group_template["Tasks"][0], Env={})
    job = dict(seed, TaskGroups=[])
    for g in range(groups):
        group = copy.deepcopy(group_template)
        group["Name"] = f"g{g}"
        group["Tasks"] = [dict(copy.deepcopy(task_template), Name=f"t{t}") for t in range(tasks)]
        job["TaskGroups"].append(group)
    return job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    job = big_job(200, 5)
    target = TenantTarget("acme", IPv4Network("10.32.1.0/24"), IPv4Network("10.32.0.0/24"))
    samples = []
    for _ in range(args.runs):
        start = time.perf_counter()
        apply_tenant(job, target)
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    median = statistics.median(samples)
    print(f"transform 200 groups x 5 tasks ({args.runs} runs): min {samples[0]:.2f} ms, "
          f"median {median:.2f} ms, max {samples[-1]:.2f} ms")
    print(f"target {TARGET_MS:.0f} ms: {'met' if median < TARGET_MS else 'MISSED'}")


if __name__ == "__main__":
    main()
