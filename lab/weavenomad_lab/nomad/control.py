"""Talk to a running simulated Nomad over its control socket (lab-only levers)."""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any

from weavenomad_lab.errors import LabError
from weavenomad_lab.layout import LabLayout
from weavenomad_lab.nomad.server import control_socket_path

TIMEOUT = 30.0


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def request(lab: LabLayout, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    conn = _UnixConnection(str(control_socket_path(lab)), TIMEOUT)
    try:
        conn.request(method, path, body=json.dumps(body).encode() if body is not None else None)
        answer = conn.getresponse()
        text = answer.read()
    except OSError as exc:
        raise LabError(f"the lab's Nomad does not answer on {control_socket_path(lab)}: {exc}",
                       hint="run 'weavenomad lab up'") from None
    finally:
        conn.close()
    return answer.status, (json.loads(text) if text.strip() else None)


def restart_agent(lab: LabLayout, node: str) -> None:
    """``systemctl restart nomad`` on a lab node: re-read its agent config (the files in
    ``node.nomad_config_dir``) and fingerprint its Docker endpoint again."""
    status, answer = request(lab, "POST", f"/restart/{lab.node(node).name}")
    if status != 200:
        detail = (answer or {}).get("error") or f"status {status}"
        raise LabError(f"Nomad on lab node {node} did not restart: {detail}",
                       hint=f"fix the files in {lab.node(node).nomad_config_dir}")


def crash_agent(lab: LabLayout, node: str) -> None:
    """A node's Nomad agent dies (the node goes down): see :meth:`NomadDaemon.crash`."""
    _post(lab, f"/crash/{lab.node(node).name}", "crash")


def boot_agent(lab: LabLayout, node: str) -> None:
    """The node's Nomad agent starts again after its node came back up."""
    _post(lab, f"/boot/{lab.node(node).name}", "start")


def _post(lab: LabLayout, path: str, what: str) -> None:
    status, answer = request(lab, "POST", path)
    if status != 200:
        detail = (answer or {}).get("error") or f"status {status}"
        raise LabError(f"cannot {what} the lab Nomad's agent ({path}): {detail}")


def set_sync_timing(lab: LabLayout, interval: float | None = None,
                    probation: float | None = None) -> None:
    """Change every client's Consul sync interval / probation (tests need short ones)."""
    status, answer = request(lab, "PUT", "/sync", {"interval": interval, "probation": probation})
    if status != 200:
        raise LabError(f"cannot change the lab Nomad's sync timing: {answer}")


def set_version(lab: LabLayout, version: str) -> dict:
    """Play Nomad ``version``'s service registrations from now on (1.0.18: 1.0 semantics,
    1.7.0 and later: 1.7+ semantics; see :mod:`weavenomad_lab.nomad.versions`)."""
    status, answer = request(lab, "PUT", "/version", {"version": version})
    if status != 200:
        raise LabError(f"the lab's Nomad cannot play version {version!r}: "
                       f"{(answer or {}).get('error') or status}",
                       hint="a version as MAJOR.MINOR.PATCH, e.g. 1.0.18 or 1.7.7")
    return answer


def status(lab: LabLayout) -> list[dict]:
    code, answer = request(lab, "GET", "/status")
    if code != 200:
        raise LabError(f"the lab's Nomad status failed with {code}")
    return answer
