"""The lab's emulated Weave Net: what ``weave launch`` gives a real node, for every lab node.

One daemon process per lab (:mod:`.daemon`) serves all nodes. Per launched node it runs the
Docker API proxy on ``node.weave_sock`` (:mod:`.proxy`), the HTTP API on 127.0.0.1:6784 inside
the node's namespace and on the node's host-loopback port (:mod:`.api`), and the node's bridge,
fabric link and isolation guard (:mod:`.plumbing`); one IPAM (:mod:`.ipam`) serves all nodes.
The ``weave`` command on a node's PATH is a shim (:mod:`.shim`) that talks to the daemon over
its control socket, so scripts run unchanged against the lab and against real Weave.

This module stays light: the shim imports it on every ``weave`` call.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from weavenomad_lab.errors import LabError

COMPONENT_NAME = "weave"
CONTROL_SOCKET = "control.sock"
#: seconds the shim waits for the daemon (launch creates bridges and listeners: well under 5 s)
CONTROL_TIMEOUT = 60.0


def control_socket(component_dir: Path) -> Path:
    return Path(component_dir) / CONTROL_SOCKET


def control_call(component_dir: Path, request: dict,
                 timeout: float | None = CONTROL_TIMEOUT) -> dict:
    """Send one request to the daemon and return its answer ``{"ok": bool, ...}``.

    Raises :class:`LabError` when the daemon cannot be reached."""
    path = control_socket(component_dir)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
        sock.sendall(json.dumps(request).encode() + b"\n")
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    except (FileNotFoundError, ConnectionRefusedError):
        raise LabError(
            "the lab's weave emulator is not running", hint="run 'weavenomad lab up'"
        ) from None
    except TimeoutError:
        raise LabError(f"the lab's weave emulator did not answer in {timeout or 0:.0f}s") from None
    except OSError as exc:
        raise LabError(f"cannot talk to the lab's weave emulator at {path}: {exc}") from None
    finally:
        sock.close()
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        raise LabError("the lab's weave emulator sent an unreadable answer") from None
