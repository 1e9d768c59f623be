"""The node's package manager and its Docker packages: would an upgrade bring Docker past the API
version the node's Weave speaks, and is Docker held against it? Pure: apt's answers in, facts
and one :class:`~.checks.Check` out (the reads are :func:`.system.apt_policy` and
:func:`.system.apt_holds`).

apt's formats and behaviour are recorded in ``tests/fixtures/recorded/apt-docker/``:
``apt-cache policy`` gives each package's installed version, its candidate (a hold does not
change it) and its version table, ``apt-mark showhold`` lists what is held. A hold keeps a
package through ``apt upgrade`` and a full upgrade to the next Debian release; holding only the
engine lets containerd and runc move under it (a9), and an explicit ``apt install docker.io``
changes a held package after asking (with ``-y`` it refuses, a10).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from weavenomad.bootstrap import versions as vs
from weavenomad.bootstrap.checks import PASS, WARN, Check

#: the package that holds dockerd, by where Docker comes from (Debian/Ubuntu, Docker's repo)
ENGINES = ("docker.io", "docker-ce")
#: what moves with each engine and should be held with it
COMPANIONS = {"docker.io": ("docker-cli", "containerd", "runc"),
              "docker-ce": ("docker-ce-cli", "containerd.io")}
#: every package ``apt-cache policy`` is asked about
ASKED = tuple(dict.fromkeys([*ENGINES, *(p for c in COMPANIONS.values() for p in c)]))
CHECK = "docker-packages"


@dataclass(frozen=True)
class Offer:
    """One version in a package's version table and where apt has it from."""

    version: str
    origins: tuple[str, ...] = ()


@dataclass(frozen=True)
class Policy:
    package: str
    installed: str | None
    candidate: str | None
    table: tuple[Offer, ...] = ()


def _none(value: str) -> str | None:
    return None if value in ("", "(none)") else value


def parse_policy(text: str) -> dict[str, Policy]:
    """``apt-cache policy PKG...`` -> {package: Policy}. Packages apt does not know print no
    block at all and are missing here."""
    found: dict[str, Policy] = {}
    package = installed = candidate = None
    table: list[Offer] = []

    def close() -> None:
        if package is not None:
            found[package] = Policy(package, installed, candidate, tuple(table))

    for line in text.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            close()
            package, installed, candidate, table = line[:-1], None, None, []
        elif line.startswith("  Installed:"):
            installed = _none(line.split(":", 1)[1].strip())
        elif line.startswith("  Candidate:"):
            candidate = _none(line.split(":", 1)[1].strip())
        elif re.match(r"^ (\*\*\*|   ) \S+ -?\d+$", line):
            table.append(Offer(line[5:].rsplit(" ", 1)[0]))
        elif re.match(r"^ {8}-?\d+ ", line) and table:
            origin = line.strip().split(" ", 1)[1]
            table[-1] = Offer(table[-1].version, (*table[-1].origins, origin))
    close()
    return found


def parse_showhold(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines() if line.strip()}


def upstream(version: str | None) -> str:
    """A Debian version's upstream part: ``5:24.0.7-1~debian.12`` -> ``24.0.7``,
    ``20.10.24+dfsg1-1+deb12u1+b6`` -> ``20.10.24+dfsg1``."""
    text = (version or "").split(":", 1)[-1]
    return text.rsplit("-", 1)[0] if "-" in text else text


@dataclass(frozen=True)
class AptFacts:
    """What apt says about the Docker packages (None fields: it could not be asked)."""

    policies: Mapping[str, Policy] = field(default_factory=dict)
    held: frozenset[str] = frozenset()
    #: why apt could not be asked (None: it answered)
    error: str | None = None

    @property
    def engine(self) -> Policy | None:
        """The installed Docker Engine package."""
        return next((self.policies[p] for p in ENGINES
                     if p in self.policies and self.policies[p].installed), None)

    def installed(self, packages: Iterable[str]) -> list[str]:
        return [p for p in packages if p in self.policies and self.policies[p].installed]


def hold_targets(apt: AptFacts) -> list[str]:
    """What to hold so that no apt run moves Docker: the engine and what moves with it, as far
    as installed. Empty when no Docker package is installed."""
    engine = apt.engine
    if engine is None:
        return []
    return apt.installed([engine.package, *COMPANIONS[engine.package]])


def hold_command(packages: Sequence[str]) -> str:
    return "apt-mark hold " + " ".join(packages)


def source_problem(apt: AptFacts, docker_version: str, docker_root: str | None) -> str | None:
    """Why apt does not stand for the Docker that runs (a snap, static binaries, another
    package than the running one), else None."""
    engine = apt.engine
    if docker_root and docker_root.startswith("/var/snap/"):
        return (f"Docker {docker_version} runs from a snap ({docker_root}): apt neither upgrades "
                "nor holds it (snap refresh --hold docker does)")
    if engine is None:
        return (f"Docker {docker_version} runs, but apt has no Docker package installed (static "
                "binaries or another source): apt neither upgrades nor holds it")
    if upstream(engine.installed) != docker_version and \
            not docker_version.startswith(upstream(engine.installed)):
        return (f"Docker {docker_version} runs, but apt's {engine.package} is "
                f"{engine.installed}: the running dockerd is not the packaged one")
    return None


def check_docker_packages(apt: AptFacts | None, docker: Mapping | None,
                          docker_root: str | None, weave_version: str | None,
                          override: str | None) -> Check:
    """Would the package manager bring Docker past the API version this node's Weave speaks,
    and is Docker held against it? (issue 22, "Prevent")"""
    if docker is None or weave_version is None:
        return Check(CHECK, WARN, "cannot tell: Docker or weave unavailable")
    running = str(docker.get("Version") or "?")
    speaks = vs.weave_api(weave_version, override)
    if apt is None or apt.error:
        return Check(CHECK, WARN, "cannot ask the package manager whether it would upgrade "
                     f"Docker {running}: {apt.error if apt else 'not asked'}",
                     f"keep Docker below 25 while weave {weave_version} runs (it speaks API "
                     f"{speaks}): hold or pin it with your package manager, or move to the "
                     f"fork: {vs.UPGRADE_COMMAND}")
    problem = source_problem(apt, running, docker_root)
    if problem:
        return Check(CHECK, WARN, problem,
                     "pin Docker where it comes from while weave speaks API "
                     f"{speaks}, or move to the fork: {vs.UPGRADE_COMMAND}")
    engine = apt.engine
    targets = hold_targets(apt)
    held = [p for p in targets if p in apt.held]
    loose = [p for p in targets if p not in apt.held]
    candidate = engine.candidate or engine.installed
    where = f"{engine.package} {engine.installed}"
    if vs.version_tuple(candidate) <= vs.version_tuple(engine.installed):
        hold = f"; held: {' '.join(held)}" if held else ""
        return Check(CHECK, PASS, f"{where} is the newest apt offers{hold}")
    floor = vs.docker_floor(upstream(candidate))
    if vs.version_tuple(speaks) >= vs.version_tuple(floor):
        return Check(CHECK, PASS, f"apt would upgrade {where} to {candidate}, which still "
                     f"accepts the API {speaks} weave {weave_version} speaks")
    refuses = (f"apt offers {engine.package} {candidate} (installed {engine.installed}), which "
               f"refuses the API {speaks} weave {weave_version} speaks (it wants {floor} or "
               "later)")
    if engine.package in apt.held and not loose:
        return Check(CHECK, PASS, f"{refuses}, but {' '.join(held)} are held")
    fix = (f"hold it: {vs.HOLD_COMMAND} ({hold_command(loose)}), or move to the fork first: "
           f"{vs.UPGRADE_COMMAND}")
    if engine.package in apt.held:
        return Check(CHECK, WARN, f"{refuses}; {engine.package} is held, but {' '.join(loose)} "
                     "are not: a full upgrade moves them under it", fix)
    return Check(CHECK, WARN, f"{refuses}: an 'apt upgrade' would stop Weave here, and "
                 "Nomad's Docker tasks with it", fix)
