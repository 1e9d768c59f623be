"""The Docker Engines a lab node can run: Debian 12's own ``docker.io`` 20.10 (the host's, on
PATH) and Debian 13 "trixie"'s ``docker.io`` 26.1.5, fetched once from deb.debian.org, checked
and unpacked with ``dpkg -x`` (never installed), as the recordings in
``tests/fixtures/recorded/docker26/`` ran it.

Fetching: ``apt-get download`` through a private apt configuration (its own sources list with
only trixie, its own lists and cache under the cache directory; the host's apt state is not
touched). apt checks the chain itself: the suite's ``InRelease`` against the Debian archive
keyring, each ``.deb`` against the SHA-256 in the signed ``Packages`` index. The SHA-256s are
compared once more here (``apt-cache show``) and kept in the cache's stamp. Trixie's ``runc``
is not fetched: it needs a newer glibc than Debian 12 has, so the unpacked containerd runs
bookworm's ``runc`` from PATH (verified: Docker 26 reports runc 1.1.5+ds1-1+deb12u1).

The cache lives in ``/var/cache/weavenomad/docker-trixie`` (``WEAVENOMAD_LAB_DOCKER_CACHE``
moves it) and is shared by every lab on the machine, under a lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from weavenomad_lab.errors import LabError

CACHE_VARIABLE = "WEAVENOMAD_LAB_DOCKER_CACHE"
DEFAULT_CACHE = Path("/var/cache/weavenomad/docker-trixie")
MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
FETCH_TIMEOUT = 600.0
#: the packages that make up Docker Engine in trixie (the CLI was split out of docker.io there)
TRIXIE_PACKAGES = ("docker.io", "docker-cli", "containerd")
#: what a node runs when nothing else is asked for: the host's Debian 12 docker.io
DEFAULT_ENGINE = "20.10"


@dataclass(frozen=True)
class Engine:
    """One Docker Engine release a node can run."""

    name: str
    #: Debian's suite and the versions of its packages (what the lab's apt reports)
    suite: str
    packages: Mapping[str, str]
    #: where its ``dockerd``, ``containerd`` and shims are (None: the host's PATH)
    root: Path | None = None

    def binary(self, name: str) -> str:
        if self.root is None:
            return name
        for folder in ("usr/sbin", "usr/bin"):
            candidate = self.root / folder / name
            if candidate.exists():
                return str(candidate)
        raise LabError(f"the unpacked Docker Engine {self.name} has no {name} in {self.root}")

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """PATH for dockerd: its own containerd and shims first, then the host's (runc)."""
        path = base.get("PATH", os.defpath)
        if self.root is not None:
            path = f"{self.root / 'usr/bin'}:{self.root / 'usr/sbin'}:{path}"
        return {"PATH": path}

    def to_json(self) -> dict:
        return {"name": self.name, "suite": self.suite, "packages": dict(self.packages),
                "root": str(self.root) if self.root else None}


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    return Path(environ.get(CACHE_VARIABLE) or DEFAULT_CACHE)


def known_engines() -> tuple[str, ...]:
    return ("20.10", "26")


def host_engine() -> Engine:
    """Debian 12's docker.io, as installed on the host (its versions from dpkg)."""
    versions = {}
    for package in ("docker.io", "containerd"):
        done = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                              capture_output=True, text=True, timeout=30)
        if done.returncode != 0 or not done.stdout.strip():
            raise LabError(f"{package} is not installed on this host",
                           hint="apt-get install docker.io")
        versions[package] = done.stdout.strip()
    return Engine("20.10", "bookworm", versions)


def engine(name: str) -> Engine:
    """The engine called ``name``; the trixie one is fetched and unpacked on first use."""
    if name == "20.10":
        return host_engine()
    if name == "26":
        return trixie_engine()
    raise LabError(f"unknown Docker Engine {name!r} for a lab node",
                   hint=f"one of: {', '.join(known_engines())}")


# -- trixie's packages ---------------------------------------------------------------------------


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def apt_options(apt_dir: Path) -> list[str]:
    """A private apt configuration: its own sources (trixie only), lists and cache, no host
    preferences; nothing of the host's apt state is read or written but dpkg's status."""
    return ["-o", f"Dir::Etc::SourceList={apt_dir / 'sources.list'}",
            "-o", f"Dir::Etc::SourceParts={apt_dir / 'sources.list.d'}",
            "-o", f"Dir::Etc::Preferences={apt_dir / 'preferences'}",
            "-o", f"Dir::Etc::PreferencesParts={apt_dir / 'preferences.d'}",
            "-o", f"Dir::State::Lists={apt_dir / 'lists'}",
            "-o", f"Dir::Cache={apt_dir / 'cache'}",
            "-o", "Dir::State::status=/dev/null",
            "-o", "APT::Architecture=amd64", "-o", "Acquire::Languages=none"]


def _apt(argv: list[str], what: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=FETCH_TIMEOUT,
                              cwd=cwd)
    except FileNotFoundError:
        raise LabError(f"{what}: {argv[0]} is not installed", hint="apt-get install apt") \
            from None
    except subprocess.TimeoutExpired:
        raise LabError(f"{what} did not finish within {FETCH_TIMEOUT:.0f}s") from None
    errors = [line for line in (done.stderr or "").splitlines()
              if line.startswith(("E:", "W:", "Err:"))]
    if done.returncode != 0 or any(line.startswith(("E:", "Err:")) for line in errors):
        detail = "; ".join(errors[-3:]) or (done.stderr or done.stdout).strip()[-300:]
        raise LabError(f"{what} failed (exit {done.returncode}): {detail}",
                       hint=f"the lab fetches Debian trixie's Docker from {MIRROR}")
    return done.stdout


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_show(text: str) -> dict[str, str]:
    """The first record of ``apt-cache show``: its fields (``Version``, ``SHA256`` …)."""
    fields: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        if line[:1].isspace() or ":" not in line:
            continue
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def fetch_trixie(target: Path) -> dict:
    """Download, check and unpack trixie's Docker packages into ``target`` (made fresh)."""
    apt_dir = target / "apt"
    for sub in ("lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d",
                "debs"):
        (apt_dir / sub).mkdir(parents=True, exist_ok=True)
    (apt_dir / "sources.list").write_text(f"deb [signed-by={KEYRING}] {MIRROR} trixie main\n")
    options = apt_options(apt_dir)
    _apt(["apt-get", *options, "update"], "apt-get update (trixie)")
    debs = apt_dir / "debs"
    if _has_user("_apt"):  # apt downloads as its own unprivileged user
        shutil.chown(debs, "_apt")
    _apt(["apt-get", *options, "download", *TRIXIE_PACKAGES], "apt-get download", cwd=debs)
    versions, digests = {}, {}
    for package in TRIXIE_PACKAGES:
        show = parse_show(_apt(["apt-cache", *options, "show", package], "apt-cache show"))
        version, expected = show.get("Version"), show.get("SHA256")
        found = sorted(debs.glob(f"{package}_*.deb"))
        if not version or not expected or len(found) != 1:
            raise LabError(f"apt-get download of {package} left {len(found)} file(s) and no "
                           "checksum to compare", hint=f"look into {debs}")
        actual = _sha256(found[0])
        if actual != expected:
            raise LabError(f"{found[0].name} has SHA-256 {actual}, not {expected} as trixie's "
                           "signed Packages index says: not used")
        versions[package], digests[found[0].name] = version, actual
    if not versions["docker.io"].startswith("26."):
        raise LabError(f"trixie's docker.io is {versions['docker.io']} now, not 26.x, which the "
                       "lab's recordings were made with")
    root = target / "root"
    for deb in sorted(debs.glob("*.deb")):
        _apt(["dpkg-deb", "-x", str(deb), str(root)], f"dpkg -x {deb.name}")
    return {"packages": versions, "sha256": digests}


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def trixie_engine(environ: Mapping[str, str] | None = None) -> Engine:
    """Docker 26 from trixie, unpacked in the cache (fetched when missing or incomplete)."""
    base = cache_dir(environ)
    stamp, ready = base / "ok.json", base / "current"
    with _locked(base / "lock"):
        try:
            facts = json.loads(stamp.read_text())
        except (OSError, ValueError):
            facts = None
        if facts is None or not (ready / "usr/sbin/dockerd").exists():
            partial = base / "partial"
            shutil.rmtree(partial, ignore_errors=True)
            shutil.rmtree(ready, ignore_errors=True)
            stamp.unlink(missing_ok=True)
            facts = fetch_trixie(partial)
            os.rename(partial / "root", ready)
            shutil.rmtree(partial, ignore_errors=True)
            stamp.write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
    return Engine("26", "trixie", facts["packages"], ready)
