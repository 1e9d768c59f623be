"""Docker and Weave versions: the Docker API versions a Docker Engine accepts, the one a Weave
release speaks, and, for the versions found on a node, whether they meet and exactly what fixes
it when they do not. Pure.

The facts (docs/design.md, "Weave facts", "Newer versions", "Docker 26"):

- weaveworks' Weave 2.8.1, its last release, pins Docker API 1.18 in its proxy and tools
  (``proxy/proxy.go``); ``DOCKER_API_VERSION`` does not change that.
- The maintained fork rajch/weave (2.8.3 to 2.9.0, images ``rajchaudhuri/weave*``) pins 1.24;
  ``DOCKER_API_VERSION`` overrides it.
- Docker Engine up to 24 accepts API 1.12 and later. Docker 25 refuses anything below 1.24
  unless dockerd runs with ``DOCKER_MIN_API_VERSION`` (source, not verified). Docker 26 refuses
  it whatever dockerd is given: with ``DOCKER_MIN_API_VERSION`` below 1.24 it does not start at
  all (verified: tests/fixtures/recorded/docker26/B00). Docker 29 refuses anything below 1.44
  (source).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WEAVEWORKS = "weaveworks"
#: the maintained fork: its GitHub project, its images' owner on Docker Hub, its latest release
FORK = "rajch/weave"
FORK_OWNER = "rajchaudhuri"
FORK_VERSION = "2.9.0"
#: weaveworks' last release; later versions are the fork's
LAST_WEAVEWORKS = (2, 8, 1)
WEAVEWORKS_API = "1.18"
FORK_API = "1.24"
#: the commands that fix a mismatch (see :mod:`weavenomad.bootstrap.migrate`)
UPGRADE_COMMAND = "weavenomad weave-upgrade"
HOLD_COMMAND = "weavenomad docker-hold"

#: (first Docker Engine major version, the lowest API version it accepts by default)
API_FLOORS = ((0, "1.12"), (25, "1.24"), (29, "1.44"))


def version_tuple(text: str | None) -> tuple[int, ...]:
    """``"2.8.1+lab"`` -> (2, 8, 1); ``"1.41"`` -> (1, 41); ``"5:24.0.7-1~deb"`` -> (24, 0, 7);
    unknown -> ()."""
    text = (text or "").strip()
    text = text.split(":", 1)[1] if re.match(r"^\d+:", text) else text
    match = re.match(r"v?(\d+(?:\.\d+)*)", text)
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def is_fork(weave_version: str) -> bool:
    return version_tuple(weave_version)[:3] > LAST_WEAVEWORKS


def weave_api(weave_version: str, override: str | None) -> str:
    """The Docker API version Weave ``weave_version`` speaks (``override``: its
    DOCKER_API_VERSION, which only the fork reads)."""
    if is_fork(weave_version):
        return override or FORK_API
    return WEAVEWORKS_API


def docker_floor(engine_version: str) -> str:
    """The lowest API version a Docker Engine release accepts by default."""
    major = (version_tuple(engine_version) or (0,))[0]
    return [floor for first, floor in API_FLOORS if major >= first][-1]


def engine_major(engine_version: str) -> int:
    return (version_tuple(engine_version) or (0,))[0]


def image_version(image: str | None) -> str | None:
    """The release of a Weave image name (``rajchaudhuri/weave:2.9.0`` -> ``2.9.0``); None for
    an untagged or ``latest`` one."""
    tag = (image or "").rpartition(":")[2] if ":" in (image or "") else ""
    return tag if version_tuple(tag) else None


def running_weave(report_version: str | None, router_image: str | None) -> str | None:
    """The Weave that runs (or crashes) here: its report's version, else its router
    container's image."""
    return report_version if version_tuple(report_version) else image_version(router_image)


def launching_weave(configured: str | None, command_versions: dict | None) -> str | None:
    """The Weave a launch would run: the configured release (WEAVE_VERSION), else the weave
    script's own (a script runs the images of its version; its ``weave`` line names the router
    that exists, which a launch replaces)."""
    if configured and version_tuple(configured):
        return configured
    found = command_versions or {}
    return found.get("weave script") or found.get("weave")


@dataclass(frozen=True)
class Verdict:
    """Whether a Weave and a Docker meet; if not, why, and what fixes it on this node."""

    ok: bool
    speaks: str
    detail: str
    fix: str | None = None


def fork_settings(api: str | None = None) -> str:
    """How to run the fork: the weave command's own variables, or the config file's keys."""
    env = f"WEAVE_VERSION={FORK_VERSION} DOCKERHUB_USER={FORK_OWNER}"
    keys = f'[weave] version = "{FORK_VERSION}", image_owner = "{FORK_OWNER}"'
    if api:
        env += f" DOCKER_API_VERSION={api}"
        keys += f', docker_api_version = "{api}"'
    return f"{env} (or {keys} in /etc/weavenomad/config.toml)"


def judge(engine: str, low: str | None, high: str | None, weave_version: str,
          override: str | None, launched: bool = True) -> Verdict:
    """Docker ``engine`` accepting API ``low``-``high`` against Weave ``weave_version``.
    ``launched``: Weave runs (or crashes) here already, so the fix moves it; else the fix is how
    to bootstrap with a Weave that fits."""
    speaks = weave_api(weave_version, override)
    detail = (f"Docker {engine} accepts API {low or '?'}-{high or '?'}; weave {weave_version} "
              f"speaks {speaks}")
    major = engine_major(engine)
    if low and version_tuple(speaks) < version_tuple(low):
        return Verdict(False, speaks, detail, _too_old_fix(major, low, weave_version, launched))
    if high and version_tuple(speaks) > version_tuple(high):
        return Verdict(False, speaks, detail,
                       f"set DOCKER_API_VERSION={high} for weave (" + (
                           f"{UPGRADE_COMMAND} --docker-api-version {high}" if launched else
                           f'[weave] docker_api_version = "{high}"') + "), or upgrade Docker")
    return Verdict(True, speaks, detail)


def _too_old_fix(major: int, low: str, weave_version: str, launched: bool) -> str:
    api = low if version_tuple(low) > version_tuple(FORK_API) else None
    if is_fork(weave_version):
        how = (f"{UPGRADE_COMMAND} --docker-api-version {low}" if launched
               else f'[weave] docker_api_version = "{low}" in the config file')
        return f"run weave with DOCKER_API_VERSION={low}: {how}"
    move = (f"{UPGRADE_COMMAND}" + (f" --docker-api-version {api}" if api else "")
            if launched else f"weavenomad bootstrap with {fork_settings(api)}")
    fork = (f"the maintained fork {FORK} {FORK_VERSION} (API {api or FORK_API}"
            + (f" with DOCKER_API_VERSION={api}" if api else "") + f"): {move}")
    pin = f"weave {'.'.join(map(str, version_tuple(weave_version)[:2]))} pins Docker API " \
          f"{WEAVEWORKS_API}, which Docker >= 25 rejects"
    if major == 25:
        return (f"{pin}: on Docker 25 dockerd accepts it again with DOCKER_MIN_API_VERSION="
                f"{WEAVEWORKS_API} in its environment (systemctl edit docker: [Service] "
                f"Environment=DOCKER_MIN_API_VERSION={WEAVEWORKS_API}; from Docker's release "
                f"notes, not verified here), or move to {fork}")
    back = (f"; or go back to Docker <= 24 and hold it: {HOLD_COMMAND} --downgrade"
            if launched else "")
    setting = "" if major >= 29 else (" and no dockerd setting brings it back on Docker 26 "
                                      "and later")
    return f"{pin}{setting}: move to {fork}{back}"
