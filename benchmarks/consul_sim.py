"""Speed of the lab's simulated Consul, over real HTTP on 127.0.0.1.

Prints the wake-up latency of blocking queries (from the moment a write is applied to the
moment the waiting client has the new answer; p50/p99) and the time to list 1,000 services
through the agent, catalog and health endpoints. Targets: wake-up within 50 ms, a
1,000-service list answered within 50 ms. Client and server share one process (and its GIL)
here, so the numbers are pessimistic for the lab, where the simulator runs alone.

    python benchmarks/consul_sim.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time

import requests
from weavenomad_lab.consul.records import ServiceSpec
from weavenomad_lab.consul.server import ConsulSimulator, SimNode

SERVICES = 1000
TARGET = 0.050


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def wakeups(base: str, rounds: int, path: str, change) -> list[float]:
    """Seconds from a write being applied to the blocked client having its new answer."""
    session = requests.Session()
    latencies = []
    for i in range(rounds):
        index = session.get(base + path, timeout=10).headers["X-Consul-Index"]
        url = f"{base}{path}{'&' if '?' in path else '?'}index={index}&wait=30s"
        returned: list[float] = []
        thread = threading.Thread(target=lambda url=url, returned=returned: (
            session.get(url, timeout=60), returned.append(time.perf_counter())))
        thread.start()
        time.sleep(0.02)  # let the request reach the server and start waiting
        changed_at = time.perf_counter()
        change(i)
        thread.join()
        latencies.append(returned[0] - changed_at)
    return latencies


def list_times(base: str, rounds: int) -> dict[str, tuple[list[float], list[float]]]:
    """Per endpoint: seconds until the whole answer is received, and until it is parsed."""
    session = requests.Session()
    paths = {"agent/services": "/v1/agent/services", "catalog/services": "/v1/catalog/services",
             "catalog/service": "/v1/catalog/service/web",
             "health/service": "/v1/health/service/web",
             "health/service?passing": "/v1/health/service/web?passing"}
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in paths}
    for _ in range(rounds):
        for name, path in paths.items():
            started = time.perf_counter()
            answer = session.get(base + path, timeout=10)  # reads the whole body
            received = time.perf_counter()
            answer.json()
            times[name][0].append(received - started)
            times[name][1].append(time.perf_counter() - started)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    sim = ConsulSimulator([SimNode("n1", "192.168.56.3", server=True)])
    sim.start()
    try:
        host, port = sim.listen("n1")
        base = f"http://{host}:{port}"
        state = sim.state
        state.register_service("n1", ServiceSpec("w", "web", port=1))
        kv = wakeups(base, args.rounds, "/v1/kv/bench",
                     lambda i: state.kv_put("bench", str(i).encode(), 0, None))
        health = wakeups(base, args.rounds, "/v1/health/service/web", lambda i: (
            state.register_service("n1", ServiceSpec("w", "web", port=i + 2))))
        for i in range(SERVICES):
            address = f"10.32.{i // 250}.{i % 250 + 1}"
            state.register_service("n1", ServiceSpec(f"web-{i}", "web", ("v1",), address, 8080,
                                                     {"k": "v"}))
        lists = list_times(base, max(10, args.rounds // 5))
    finally:
        sim.stop()
    ok = True
    for name, values in (("blocking KV get", kv), ("blocking health/service", health)):
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        ok &= p50 <= TARGET
        print(f"wake-up {name:28} p50 {p50 * 1000:6.2f} ms  p99 {p99 * 1000:6.2f} ms  "
              f"({len(values)} rounds)")
    for name, (received, parsed) in lists.items():
        p50 = statistics.median(received)
        ok &= p50 <= TARGET
        print(f"list {SERVICES} services {name:24} answered p50 {p50 * 1000:6.2f} ms "
              f"max {max(received) * 1000:6.2f} ms; parsed by the client p50 "
              f"{statistics.median(parsed) * 1000:6.2f} ms")
    print("targets met (p50 within 50 ms)" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
