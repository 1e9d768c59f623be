"""What ``weavenomad run`` adds over a direct registration (issue target: under 100 ms).

Brings up a 1-node lab (root needed), records the Weave range and a tenant, then times, for the
seed job file, the direct path through Nomad's API (POST /v1/jobs/parse, POST /v1/jobs) against
``weavenomad run --detach`` (parse through Nomad, read the tenant registry in Consul, transform,
register). The job targets a datacenter no node has, so registrations schedule nothing and the
figures are not disturbed by containers starting.
Usage: python benchmarks/run_overhead.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from ipaddress import IPv4Network
from pathlib import Path

from weavenomad_lab import core

from weavenomad.clients.consul import ConsulAPI
from weavenomad.clients.nomad import NomadAPI
from weavenomad.jobs.submit import RunOptions, run
from weavenomad.tenancy.model import Cluster
from weavenomad.tenancy.registry import TenantRegistry

TARGET_MS = 100.0
JOB = Path(__file__).resolve().parents[1] / "jobs" / "httpbackend-another-subnet.nomad"


def timed(action, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        samples.append((time.perf_counter() - start) * 1000)
    return sorted(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="wnbench-"))
    lab = core.up(state, "wnbench", 1)
    try:
        node = lab.nodes[0]
        nomad = NomadAPI(node.url("nomad"))
        registry = TenantRegistry(ConsulAPI(node.url("consul")), "bench/")
        registry.record_cluster(Cluster(IPv4Network("10.32.0.0/16"), IPv4Network("10.32.0.0/24")))
        registry.create("acme")
        job_file = state / "job.nomad"
        job_file.write_text(JOB.read_text().replace('["dc1"]', '["nowhere"]'))
        text = job_file.read_text()

        def direct() -> None:
            nomad.register_job(nomad.parse_job(text, filename=str(job_file)))

        def weavenomad_run() -> None:
            run(nomad, registry, RunOptions(str(job_file), "acme", detach=True), lambda _: None)

        direct(), weavenomad_run()  # warm up connections and caches
        base = timed(direct, args.runs)
        ours = timed(weavenomad_run, args.runs)
        added = statistics.median(ours) - statistics.median(base)
        print(f"direct parse + register: median {statistics.median(base):.1f} ms "
              f"(p90 {base[int(0.9 * (len(base) - 1))]:.1f})")
        print(f"weavenomad run --detach:  median {statistics.median(ours):.1f} ms "
              f"(p90 {ours[int(0.9 * (len(ours) - 1))]:.1f})")
        print(f"added by weavenomad run: {added:.1f} ms (target {TARGET_MS:.0f} ms: "
              f"{'met' if added < TARGET_MS else 'MISSED'})")
    finally:
        core.down(state)


if __name__ == "__main__":
    main()
