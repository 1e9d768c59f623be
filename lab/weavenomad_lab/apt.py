"""The package manager of a lab node, for its Docker packages only: ``apt-cache policy``,
``apt-mark hold|unhold|showhold`` and ``apt-get upgrade|dist-upgrade|full-upgrade|install`` as
Debian's apt answers them (the formats recorded in ``tests/fixtures/recorded/apt-docker/``).

A lab node shares the host's filesystem, so its ``apt-*`` commands must not be the host's:
``S/nodes/nX/bin`` (first on the node's PATH) holds these in their place, and nothing here ever
touches the host's apt or dpkg. The node's package state is ``S/nodes/nX/apt.json``: the Debian
suites its sources offer (bookworm; ``weavenomad lab apt-source NODE trixie`` adds Debian 13, as
editing sources.list and ``apt update`` do), what is installed (the versions of the node's Docker
Engine, :mod:`weavenomad_lab.engines`) and what is held. Upgrading or installing ``docker.io``
replaces the node's Docker Engine (:func:`weavenomad_lab.dockerd.switch_engine`) as apt's
maintainer scripts restart docker.service, and holds are honoured as apt honours them.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from weavenomad_lab.errors import LabError
from weavenomad_lab.layout import LabLayout, NodeLayout

MIRROR = "http://deb.debian.org/debian"
#: what each suite's engine is (see :mod:`weavenomad_lab.engines`), oldest first
SUITE_ENGINES = {"bookworm": "20.10", "trixie": "26"}
#: names apt knows on Debian 12 without offering a version (recorded: apt-docker/a1)
KNOWN_WITHOUT_VERSIONS = ("docker-ce", "docker-ce-cli")
COMMANDS = ("apt-cache", "apt-mark", "apt-get")
UPGRADES = ("upgrade", "dist-upgrade", "full-upgrade")


def state_file(node: NodeLayout) -> Path:
    return node.dir / "apt.json"


@dataclass
class PackageState:
    """A node's sources, installed versions and holds (the Docker packages only)."""

    suites: list[str] = field(default_factory=lambda: ["bookworm"])
    #: package -> installed version
    installed: dict[str, str] = field(default_factory=dict)
    held: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"suites": self.suites, "installed": self.installed, "held": sorted(self.held)}

    @classmethod
    def from_json(cls, data: Mapping) -> PackageState:
        return cls(list(data.get("suites") or ["bookworm"]), dict(data.get("installed") or {}),
                   list(data.get("held") or []))


def offered(suite_packages: Mapping[str, Mapping[str, str]],
            suites: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """package -> [(version, suite)] newest suite first. Pure."""
    found: dict[str, list[tuple[str, str]]] = {}
    for suite in sorted(suites, key=list(SUITE_ENGINES).index, reverse=True):
        for package, version in suite_packages.get(suite, {}).items():
            found.setdefault(package, []).append((version, suite))
    return found


def policy_text(packages: Sequence[str], state: PackageState,
                suite_packages: Mapping[str, Mapping[str, str]]) -> str:
    """``apt-cache policy PACKAGES`` as apt prints it. Pure."""
    table = offered(suite_packages, state.suites)
    lines = []
    for package in packages:
        versions = table.get(package, [])
        installed = state.installed.get(package)
        if not versions and not installed:
            if package in KNOWN_WITHOUT_VERSIONS:
                lines += [f"{package}:", "  Installed: (none)", "  Candidate: (none)",
                          "  Version table:"]
            continue
        candidate = versions[0][0] if versions else installed  # holds do not change it (a8)
        lines += [f"{package}:", f"  Installed: {installed or '(none)'}",
                  f"  Candidate: {candidate}", "  Version table:"]
        shown = set()
        for version, suite in versions:
            if version in shown:
                continue
            shown.add(version)
            mark = " ***" if version == installed else "    "
            lines.append(f"{mark} {version} 500")
            lines.append(f"        500 {MIRROR} {suite}/main amd64 Packages")
            if version == installed:
                lines.append("        100 /var/lib/dpkg/status")
        if installed and installed not in shown:
            lines += [f" *** {installed} 100", "        100 /var/lib/dpkg/status"]
    return "".join(line + "\n" for line in lines)


def mark(state: PackageState, action: str, packages: Sequence[str],
         known: set[str]) -> tuple[list[str], int]:
    """``apt-mark hold|unhold``: the lines apt prints and its exit code; ``state`` changes."""
    unknown = [p for p in packages if p not in known]
    if unknown:
        return [f"E: Unable to locate package {unknown[0]}", "E: No packages found"], 100
    out = []
    for package in packages:
        if action == "hold":
            if package in state.held:
                out.append(f"{package} was already set on hold.")
            else:
                state.held.append(package)
                out.append(f"{package} set on hold.")
        elif package in state.held:
            state.held.remove(package)
            out.append(f"Canceled hold on {package}.")
        else:
            out.append(f"{package} was already not on hold.")
    return out, 0


def upgrade_plan(state: PackageState, suite_packages: Mapping[str, Mapping[str, str]]
                 ) -> tuple[dict[str, str], list[str]]:
    """What ``apt-get upgrade`` does to the installed Docker packages: {package: new version}
    and the held packages it keeps back. Pure."""
    table = offered(suite_packages, state.suites)
    changes, kept = {}, []
    for package, installed in sorted(state.installed.items()):
        versions = table.get(package) or []
        if not versions or versions[0][0] == installed:
            continue
        if package in state.held:
            kept.append(package)
        else:
            changes[package] = versions[0][0]
    return changes, kept


def engine_for(version: str, suite_packages: Mapping[str, Mapping[str, str]]) -> str | None:
    """The engine whose docker.io has this version."""
    for suite, packages in suite_packages.items():
        if packages.get("docker.io") == version:
            return SUITE_ENGINES[suite]
    return None


# -- I/O: the node's state and its Docker Engine --------------------------------------------------


def suite_packages(suites: Sequence[str]) -> dict[str, dict[str, str]]:
    """The Docker packages' versions in each suite (trixie's are fetched on first use)."""
    from weavenomad_lab import engines

    return {suite: dict(engines.engine(SUITE_ENGINES[suite]).packages) for suite in suites}


def load(node: NodeLayout) -> PackageState:
    from weavenomad_lab import dockerd, engines

    try:
        return PackageState.from_json(json.loads(state_file(node).read_text()))
    except (OSError, ValueError):
        engine = engines.engine(dockerd.engine_name(node))
        return PackageState(suites=["bookworm"] if engine.suite == "bookworm"
                            else ["bookworm", engine.suite], installed=dict(engine.packages))


def save(node: NodeLayout, state: PackageState) -> None:
    path = state_file(node)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=1) + "\n")
    os.replace(tmp, path)


def add_source(lab: LabLayout, node: NodeLayout, suite: str) -> PackageState:
    if suite not in SUITE_ENGINES:
        raise LabError(f"the lab's apt knows the suites {', '.join(SUITE_ENGINES)}, not {suite}")
    state = load(node)
    suite_packages([suite])  # fetched now, as 'apt update' would
    if suite not in state.suites:
        state.suites.append(suite)
    save(node, state)
    return state


def _install(lab: LabLayout, node: NodeLayout, state: PackageState,
             changes: Mapping[str, str], tables: Mapping[str, Mapping[str, str]],
             say: Callable[[str], None]) -> None:
    from weavenomad_lab import dockerd

    target = changes.get("docker.io")
    engine = engine_for(target, tables) if target else None
    for package, version in sorted(changes.items()):
        say(f"Setting up {package} ({version}) ...\n")
        state.installed[package] = version
    save(node, state)
    if engine is not None and engine != dockerd.engine_name(node):
        dockerd.switch_engine(lab, node, engine)


def _words(args: Sequence[str]) -> list[str]:
    """The arguments that are no option nor an option's value (``-o X``, ``-t X``, ``-c X``)."""
    words, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("-o", "-t", "-c"):
            skip = True
        elif not arg.startswith("-"):
            words.append(arg)
    return words


def run(lab: LabLayout, node: NodeLayout, program: str, args: list[str],
        out: Callable[[str], None], err: Callable[[str], None]) -> int:
    """One ``apt-cache``/``apt-mark``/``apt-get`` command on the node; its exit code."""
    words = _words(args)
    state = load(node)
    tables = suite_packages(state.suites)
    known = set(state.installed) | {p for s in tables.values() for p in s}
    if program == "apt-cache" and words[:1] == ["policy"]:
        out(policy_text(words[1:], state, tables))
        return 0
    if program == "apt-mark" and words[:1] == ["showhold"]:
        out("".join(p + "\n" for p in sorted(state.held)))
        return 0
    if program == "apt-mark" and words[:1] in (["hold"], ["unhold"]):
        lines, code = mark(state, words[0], words[1:], known)
        if code == 0:
            save(node, state)
        (out if code == 0 else err)("".join(line + "\n" for line in lines))
        return code
    if program == "apt-get" and words[:1] and words[0] in UPGRADES:
        changes, kept = upgrade_plan(state, tables)
        if kept:
            out("The following packages have been kept back:\n  " + " ".join(kept) + "\n")
        if changes:
            out("The following packages will be upgraded:\n  " + " ".join(sorted(changes))
                + "\n")
        out(f"{len(changes)} upgraded, 0 newly installed, 0 to remove and {len(kept)} not "
            "upgraded.\n")
        _install(lab, node, state, changes, tables, out)
        return 0
    if program == "apt-get" and words[:1] == ["install"]:
        wanted = dict(w.partition("=")[::2] for w in words[1:])
        held = [p for p in wanted if p in state.held]
        if held and "--allow-change-held-packages" not in args:
            err("E: Held packages were changed and -y was used without "
                "--allow-change-held-packages.\n")
            return 100
        versions = {p: v for table in tables.values() for p, v in table.items()}
        for package, version in wanted.items():
            if package not in known or (version and version not in
                                         [t.get(package) for t in tables.values()]):
                err(f"E: Version '{version}' for '{package}' was not found\n" if version
                    else f"E: Unable to locate package {package}\n")
                return 100
        _install(lab, node, state, {p: v or versions[p] for p, v in wanted.items()}, tables,
                 out)
        return 0
    err(f"E: the lab's {program} knows only the Docker packages' policy, holds, upgrade and "
        f"install, not '{' '.join(args)}'\n")
    return 100


def shim_text(lab: LabLayout, node: NodeLayout, program: str) -> str:
    from weavenomad_lab.weave.daemon import shim_script

    text = shim_script(lab, node).replace("weavenomad_lab.weave.shim", "weavenomad_lab.apt")
    return text.replace("# the lab's weave command: see lab/weavenomad_lab/weave/shim.py",
                        f"# the lab node's {program}: see lab/weavenomad_lab/apt.py").replace(
        '"$@"', f'{program} "$@"')


def install_shims(lab: LabLayout, node: NodeLayout) -> None:
    node.bin_dir.mkdir(parents=True, exist_ok=True)
    for program in COMMANDS:
        path = node.bin_dir / program
        path.write_text(shim_text(lab, node, program))
        path.chmod(0o755)


def remove_shims(node: NodeLayout) -> None:
    for program in COMMANDS:
        (node.bin_dir / program).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    given: dict[str, str] = {}
    while argv[:1] and argv[0] in ("--lab-state-dir", "--node") and len(argv) > 1:
        given[argv[0]], argv = argv[1], argv[2:]
    if "--lab-state-dir" not in given or "--node" not in given or not argv:
        print("apt (lab): --lab-state-dir, --node and a program are required", file=sys.stderr)
        return 100
    lab = LabLayout.load(Path(given["--lab-state-dir"]))
    try:
        return run(lab, lab.node(given["--node"]), argv[0], argv[1:], sys.stdout.write,
                   sys.stderr.write)
    except LabError as exc:
        print(f"E: {exc.one_line()}", file=sys.stderr)
        return 100


if __name__ == "__main__":
    sys.exit(main())
