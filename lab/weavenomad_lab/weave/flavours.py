"""Which Weave a lab node's ``weave`` command runs, and whether it can talk to the node's Docker.

As the real script (``weave`` 2.8.1: ``IMAGE_VERSION=${WEAVE_VERSION:-$SCRIPT_VERSION}``,
``DOCKERHUB_USER=${DOCKERHUB_USER:-weaveworks}``, images ``$DOCKERHUB_USER/weave:$IMAGE_VERSION``,
``…/weaveexec:…``, ``…/weavedb:latest``), the images follow the script's version and owner unless
``WEAVE_VERSION`` and ``DOCKERHUB_USER`` say otherwise; the Docker API version is the images'
own: weaveworks' 2.8.x pins 1.18 (``proxy/proxy.go``; ``DOCKER_API_VERSION`` is not read), the
maintained fork rajch/weave (2.8.3 to 2.9.0, images ``rajchaudhuri/*``) pins 1.24 and honours
``DOCKER_API_VERSION`` (docs/design.md).

What a Weave that speaks too old an API meets is the node's real dockerd: :func:`refusal` asks
``GET /v<api>/version`` and hands back Docker's own 400 message (Docker 26: "client version 1.18
is too old. Minimum supported API version is 1.24, please upgrade your client to a newer
version"). Docker's version check answers every versioned path the same way before routing, so
the version endpoint stands for the container create the real ``weave launch`` fails on
(recorded: docker26/A03) and for the proxy start the real router dies of (docker26/V00).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from urllib.parse import quote

from weavenomad_lab.errors import LabError
from weavenomad_lab.weave import wire

WEAVEWORKS = "weaveworks"
FORK_OWNER = "rajchaudhuri"
#: the shim's version carries this suffix: what prints it is the lab's, not Weave's script
LAB_SUFFIX = "+lab"
#: what the lab's ``weave`` command is unless told otherwise
DEFAULT_SCRIPT_VERSION = "2.8.1"
#: the last release of weaveworks/weave; later versions are the fork's
LAST_WEAVEWORKS = (2, 8, 1)


def version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split("+")[0].split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


def pinned_api(version: str, override: str | None) -> str:
    """The Docker API version Weave ``version``'s images speak."""
    if version_tuple(version) <= LAST_WEAVEWORKS:
        return "1.18"
    return override or "1.24"


@dataclass(frozen=True)
class Flavour:
    """The Weave images one launch runs."""

    owner: str = WEAVEWORKS
    version: str = DEFAULT_SCRIPT_VERSION
    api_version: str = "1.18"

    @property
    def router_image(self) -> str:
        return f"{self.owner}/weave:{self.version}"

    @property
    def exec_image(self) -> str:
        return f"{self.owner}/weaveexec:{self.version}"

    @property
    def db_image(self) -> str:
        return f"{self.owner}/weavedb:latest"

    @property
    def images(self) -> tuple[str, ...]:
        return (self.router_image, self.exec_image, self.db_image)

    @property
    def volumes_container(self) -> str:
        return f"weavevolumes-{self.version}"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping | None) -> Flavour:
        known = {k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)


def script_owner(script_version: str) -> str:
    """Whose images a script of this version runs by default: the fork's script names its own
    owner (its releases start after weaveworks' last, 2.8.1)."""
    return WEAVEWORKS if version_tuple(script_version) <= LAST_WEAVEWORKS else FORK_OWNER


def flavour_for(script_version: str, environ: Mapping[str, str],
                owner: str | None = None) -> Flavour:
    """What a script of ``script_version`` (its images' default ``owner``) runs with
    ``environ``."""
    base = script_version.removesuffix(LAB_SUFFIX)
    version = environ.get("WEAVE_VERSION") or base
    chosen = environ.get("DOCKERHUB_USER") or owner or script_owner(base)
    return Flavour(chosen, version, pinned_api(version, environ.get("DOCKER_API_VERSION")))


# -- the node's dockerd ---------------------------------------------------------------------------


async def _call(socket: str, method: str, path: str) -> wire.Reply:
    try:
        return await wire.docker_call(socket, method, path)
    except (OSError, asyncio.TimeoutError, wire.WireError) as exc:
        raise LabError(f"the node's dockerd does not answer ({method} {path}): {exc}",
                       hint="run 'weavenomad lab up'") from None


async def refusal(socket: str, api_version: str) -> str | None:
    """Docker's own message when it refuses ``api_version``, None when it accepts it."""
    reply = await _call(socket, "GET", f"/v{api_version}/version")
    if reply.status == 200:
        return None
    if reply.status == 400:
        return reply.message()
    raise LabError(f"the node's dockerd answered GET /v{api_version}/version with "
                   f"{reply.status}: {reply.message()}")


async def image_present(socket: str, image: str) -> bool:
    reply = await _call(socket, "GET", f"/images/{quote(image, safe='')}/json")
    return reply.status == 200


async def docker_answers(socket: str) -> bool:
    try:
        reply = await wire.docker_call(socket, "GET", "/_ping", timeout=5.0)
    except (OSError, asyncio.TimeoutError, wire.WireError):
        return False
    return reply.status == 200


# -- what the script and the router say -----------------------------------------------------------


def launch_refused(message: str) -> str:
    """``weave launch``'s stderr when Docker refuses its API version (docker26/A03)."""
    return f"unable to create container: API error (400): {message}\n"


def proxy_refused(message: str) -> str:
    """The router's fatal error at start when Docker refuses its API version (docker26/V00)."""
    return f"Could not start proxy: API error (400): {message}"


def docker_down(docker_host: str) -> str:
    """What the script's ``docker run`` says when dockerd does not answer (docker26/B01)."""
    return (f"docker: Cannot connect to the Docker daemon at {docker_host}. Is the docker "
            "daemon running?.\nSee 'docker run --help'.\n")


def image_missing(image: str, node: str) -> str:
    """What ``docker run`` of a missing image says on a lab node. The lab has no registry to
    pull from: this names the lab's way to put it there (a real node pulls it)."""
    owner, _, rest = image.partition("/")
    version = rest.partition(":")[2]
    return (f"Unable to find image '{image}' locally\n"
            f"docker: Error response from daemon: pull access denied for {image}: the lab has "
            f"no registry ('weavenomad lab weave-images {node} {owner} {version}' puts the "
            "images there).\nSee 'docker run --help'.\n")
