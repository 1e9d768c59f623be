"""``python -m weavenomad.lab.nomad --state-dir S``: the lab's simulated Nomad process."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from weavenomad.errors import WeavenomadError
from weavenomad.lab.layout import LabLayout
from weavenomad.lab.nomad.consul_client import DEFAULT_PROBATION, DEFAULT_SYNC_INTERVAL
from weavenomad.lab.nomad.server import NomadDaemon


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m weavenomad.lab.nomad")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--sync-interval", type=float, default=DEFAULT_SYNC_INTERVAL,
                        help="seconds between two full Consul syncs of a client (Nomad: 30)")
    parser.add_argument("--probation", type=float, default=DEFAULT_PROBATION,
                        help="seconds after start during which unknown services are kept")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        daemon = NomadDaemon(LabLayout.load(args.state_dir), sync_interval=args.sync_interval,
                             probation=args.probation)
        daemon.start()
    except (WeavenomadError, OSError) as exc:
        text = exc.one_line() if isinstance(exc, WeavenomadError) else str(exc)
        print(f"nomad simulator: {text}", file=sys.stderr)
        return 1
    logging.getLogger(__name__).info("simulated Nomad ready for %d node(s)", len(daemon.agents))
    stop.wait()
    # the process only stops for 'lab down': take the task containers with it
    daemon.shutdown(remove_containers=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
