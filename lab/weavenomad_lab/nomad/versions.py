"""Which Nomad the lab's simulated Nomad plays, for how its clients register services in Consul.

Two behaviours, a lab-wide setting (``S/nomad/settings.json``, ``{"version": "1.7.7"}``, read at
start; :func:`weavenomad_lab.nomad.control.set_version` changes it while the lab runs):

* **1.0 semantics** (Nomad 1.0.18, verified; ``command/agent/consul/service_client.go`` at
  v1.0.18): a service is registered first and its checks in separate calls afterwards (a
  service without checks counts as passing in between); a re-registration of a changed service
  is a plain ``PUT /v1/agent/service/register``, so Consul keeps every check on it.
* **1.7+ semantics** (source only): the registration carries the service's checks
  (hashicorp/nomad PR #14944, "register checks along with service on initial registration",
  ``serviceRegs`` fills ``AgentServiceRegistration.Checks``), and since PR #18559 (1.7.0) a
  re-registration because a compared field changed (kind, ID, port, address, name,
  enable_tag_override, meta, tagged addresses, tags, sidecar: ``different``) is sent with
  ``replace-existing-checks``, so a Consul >= 1.6.1 drops every check of the service the request
  does not carry: foreign ones such as weavenomad's masks. The periodic sync still removes only
  ``_nomad-check-`` checks of Nomad's own services.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_VERSION = "1.0.18"
SETTINGS_FILE = "settings.json"
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


class UnknownVersion(ValueError):
    """A version the lab cannot play; the message names it and the accepted form."""


@dataclass(frozen=True)
class NomadSemantics:
    version: str = DEFAULT_VERSION

    @property
    def parts(self) -> tuple[int, int, int]:
        match = _VERSION.match(self.version)
        if match is None:
            raise UnknownVersion(f"unknown Nomad version {self.version!r}: write it as "
                                 "MAJOR.MINOR.PATCH (1.0.18 or 1.7.7)")
        return int(match[1]), int(match[2]), int(match[3])

    @property
    def modern(self) -> bool:
        """1.7+ semantics: checks in the service's registration, re-registrations replacing
        the service's checks."""
        return self.parts >= (1, 7, 0)


def parse(version: str) -> NomadSemantics:
    semantics = NomadSemantics(version.strip())
    semantics.parts  # noqa: B018 - validates
    return semantics


def settings_path(component_dir: Path) -> Path:
    return Path(component_dir) / SETTINGS_FILE


def read_settings(component_dir: Path) -> NomadSemantics:
    path = settings_path(component_dir)
    if not path.exists():
        return NomadSemantics()
    try:
        return parse(str(json.loads(path.read_text())["version"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UnknownVersion(f"{path}: {exc}") from None


def write_settings(component_dir: Path, version: str) -> NomadSemantics:
    semantics = parse(version)
    path = settings_path(component_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": semantics.version}) + "\n")
    return semantics
