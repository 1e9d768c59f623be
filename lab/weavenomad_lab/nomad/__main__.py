"""``python -m weavenomad_lab.nomad --state-dir S``: the lab's simulated Nomad process.

Its ACL token and TLS files come from the lab's security files (``S/security``), never from
the command line, so no token shows in a process list."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from weavenomad.errors import WeavenomadError
from weavenomad_lab import security
from weavenomad_lab.errors import LabError
from weavenomad_lab.layout import LabLayout
from weavenomad_lab.nomad.consul_client import DEFAULT_PROBATION, DEFAULT_SYNC_INTERVAL
from weavenomad_lab.nomad.server import NomadDaemon
from weavenomad_lab.nomad.versions import UnknownVersion


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m weavenomad_lab.nomad")
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
        layout = LabLayout.load(args.state_dir)
        token = security.token(layout, "nomad")
        if layout.security.acl and token is None:
            raise LabError(f"the lab has ACLs but no token in "
                           f"{layout.security_files.token('nomad')}",
                           hint="run 'weavenomad lab up' again")
        daemon = NomadDaemon(layout, sync_interval=args.sync_interval, probation=args.probation,
                             acl_token=token, tls=security.server_context(layout))
        daemon.start()
    except (WeavenomadError, OSError, UnknownVersion) as exc:
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
