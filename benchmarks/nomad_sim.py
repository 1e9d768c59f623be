"""Blocking-query wake-up latency of the simulated Nomad (no lab needed).

    python benchmarks/nomad_sim.py [--rounds 50]

Serves the simulated API on 127.0.0.1 (a free port), parks ``GET /v1/jobs?index=N&wait=10s``
and registers a job; the latency is the time from the write to the answer's arrival. Prints
p50/p99/max in milliseconds (target: under 50 ms) and the time to list 500 jobs.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit"))

from test_nomad_sim_support import Cluster, recorded  # noqa: E402
from weavenomad_lab.netns import listen_tcp  # noqa: E402
from weavenomad_lab.nomad.server import _Listener  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    cluster = Cluster(nodes=2)
    stopping = threading.Event()
    listener = _Listener(listen_tcp("127.0.0.1", 0), cluster.api, stopping)
    threading.Thread(target=listener.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    base = f"http://127.0.0.1:{listener.server_address[1]}"
    template = recorded("nomad-jobs-parse.json")["body"]
    session = requests.Session()
    latencies = []
    pause = threading.Event()
    for round_ in range(args.rounds):
        index = int(session.get(base + "/v1/jobs", timeout=5).headers["X-Nomad-Index"])
        arrived: dict[str, float] = {}

        def block(index=index, arrived=arrived):
            requests.get(base + f"/v1/jobs?index={index}&wait=10s", timeout=20)
            arrived["at"] = time.perf_counter()

        waiter = threading.Thread(target=block)
        waiter.start()
        pause.wait(0.05)
        job = copy.deepcopy(template)
        job["ID"] = job["Name"] = f"bench{round_}"
        job["TaskGroups"][0]["Count"] = 1
        written = time.perf_counter()
        cluster.state.register_job(job)
        waiter.join()
        latencies.append((arrived["at"] - written) * 1000)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"blocking query wake-up over {args.rounds} rounds: p50 "
          f"{statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms")
    for round_ in range(args.rounds, 500):
        job = copy.deepcopy(template)
        job["ID"] = job["Name"] = f"bench{round_}"
        job["TaskGroups"][0]["Count"] = 0
        cluster.state.register_job(job)
    started = time.perf_counter()
    listed = session.get(base + "/v1/jobs", timeout=30).json()
    print(f"listing {len(listed)} jobs: {(time.perf_counter() - started) * 1000:.1f} ms")
    stopping.set()
    listener.shutdown()


if __name__ == "__main__":
    main()
