"""Which Consul the lab's simulated Consul plays: its version and edition, and what follows.

Consul 1.4.0 is what the recordings were made with and stays the default. Two behaviours change
with the version, and the lab plays both:

* ``replace-existing-checks`` on ``PUT /v1/agent/service/register``: Consul 1.4.0 ignores the
  parameter (recorded: ``tests/fixtures/recorded/mask-removed/replace-existing-checks-consul-1.4
  .txt``: 200 and every check kept); from 1.6.1 on (hashicorp/consul PR #4905, ``agent/agent.go``
  ``addServiceInternal``) the agent removes every check of the service the request does not
  carry, whoever registered it. Source only: not run here.
* Namespaces (Enterprise 1.7.0+) and admin partitions (Enterprise 1.11+): the agent endpoints
  take ``?ns=`` and ``?partition=``, a registration names its namespace in the body's
  ``Namespace`` (and ``Partition``), and the answers carry both fields (Consul's docs,
  developer.hashicorp.com/consul/docs/discovery/services "ACLs": services land in a namespace
  only when the definition names it; /consul/commands/namespace/create: "added in Consul
  Enterprise 1.7"; the ``-partition`` API option of every command). Consul CE answers ``?ns=``
  with 400 ``Invalid query parameter: "ns" - Namespaces are a Consul Enterprise feature``
  (its ``agent/http_oss.go`` ``parseEntMeta``). Source only as well.

The setting is lab-wide: ``S/consul/settings.json`` (``{"version": "1.16.2+ent"}``), read when
the simulated Consul starts (:func:`write_settings` writes it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_VERSION = "1.4.0"
SETTINGS_FILE = "settings.json"
DEFAULT_NAMESPACE = "default"
DEFAULT_PARTITION = "default"
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)(\+ent)?$")


class UnknownVersion(ValueError):
    """A version the lab cannot play; the message names it and the accepted form."""


@dataclass(frozen=True)
class ConsulFlavour:
    version: str = DEFAULT_VERSION
    #: a lab lever: namespaces the lab's token may not write in (403), to play a token of
    #: too narrow a policy
    denied_namespaces: tuple[str, ...] = ()

    @property
    def parts(self) -> tuple[int, int, int]:
        match = _VERSION.match(self.version)
        if match is None:
            raise UnknownVersion(f"unknown Consul version {self.version!r}: write it as "
                                 "MAJOR.MINOR.PATCH, with +ent for Enterprise (1.16.2+ent)")
        return int(match[1]), int(match[2]), int(match[3])

    @property
    def enterprise(self) -> bool:
        return self.version.endswith("+ent")

    @property
    def replaces_existing_checks(self) -> bool:
        """Whether ``replace-existing-checks`` removes the checks a registration leaves out."""
        return self.parts >= (1, 6, 1)

    @property
    def namespaces(self) -> bool:
        return self.enterprise and self.parts >= (1, 7, 0)

    @property
    def partitions(self) -> bool:
        return self.enterprise and self.parts >= (1, 11, 0)

    @property
    def plain_version(self) -> str:
        """The version as ``Config.Version`` shows it (without the edition)."""
        return self.version.removesuffix("+ent")


def parse(version: str, denied_namespaces: tuple[str, ...] = ()) -> ConsulFlavour:
    flavour = ConsulFlavour(version.strip(), tuple(denied_namespaces))
    flavour.parts  # noqa: B018 - validates
    return flavour


def settings_path(component_dir: Path) -> Path:
    return Path(component_dir) / SETTINGS_FILE


def read_settings(component_dir: Path) -> ConsulFlavour:
    """The flavour ``S/consul/settings.json`` asks for; the default without the file."""
    path = settings_path(component_dir)
    if not path.exists():
        return ConsulFlavour()
    try:
        data = json.loads(path.read_text())
        return parse(str(data["version"]), tuple(data.get("denied_namespaces") or ()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UnknownVersion(f"{path}: {exc}") from None


def write_settings(component_dir: Path, version: str,
                   denied_namespaces: tuple[str, ...] = ()) -> ConsulFlavour:
    """Ask the next start of the simulated Consul to play ``version``; raises for an unknown
    one (before anything is written)."""
    flavour = parse(version, denied_namespaces)
    path = settings_path(component_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": flavour.version,
                                "denied_namespaces": list(flavour.denied_namespaces)}) + "\n")
    return flavour
