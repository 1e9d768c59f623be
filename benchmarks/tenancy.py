"""``tenant create`` with 1,000 tenants present (issue target: under 200 ms).

Runs the registry against the lab's simulated Consul, in this process on 127.0.0.1 (no lab, no
root): fills the registry with 1,000 tenants of /28 subnets, then times creating one more
tenant (read, allocate, check-and-set write), deleting it after each round.
Usage: python benchmarks/tenancy.py [--tenants N] [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from ipaddress import IPv4Network

from weavenomad_lab.consul.server import ConsulSimulator, SimNode

from weavenomad.clients.consul import ConsulAPI
from weavenomad.tenancy.model import Cluster, Registry, Tenant, encode_registry
from weavenomad.tenancy.registry import TenantRegistry

TARGET_MS = 200.0
CLUSTER = Cluster(IPv4Network("10.32.0.0/16"), IPv4Network("10.32.0.0/24"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    sim = ConsulSimulator([SimNode("n1", "127.0.0.1", server=True)]).start()
    try:
        host, port = sim.listen("n1")
        registry = TenantRegistry(ConsulAPI(f"http://{host}:{port}"), "bench/")
        registry.record_cluster(CLUSTER)
        # 1,000 /28s from 10.32.1.0 on: written in one go, as many creates would leave them
        subnets = list(IPv4Network("10.32.1.0/24").supernet(new_prefix=18).subnets(
            new_prefix=28))[16:16 + args.tenants]
        tenants = {f"t{i}": Tenant(f"t{i}", s, "2026-11-22T00:00:00Z")
                   for i, s in enumerate(subnets)}
        registry.consul.kv_put(registry.tenants_key, encode_registry(Registry(tenants)))
        samples = []
        for _ in range(args.runs):
            start = time.perf_counter()
            created = registry.create("bench", prefix_len=24)
            samples.append((time.perf_counter() - start) * 1000)
            registry.delete("bench")
        samples.sort()
        median = statistics.median(samples)
        print(f"tenant create with {len(tenants)} tenants present ({args.runs} runs, got "
              f"{created.subnet}): min {samples[0]:.1f} ms, median {median:.1f} ms, "
              f"p90 {samples[int(0.9 * (len(samples) - 1))]:.1f} ms")
        print(f"target {TARGET_MS:.0f} ms: {'met' if median < TARGET_MS else 'MISSED'}")
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
