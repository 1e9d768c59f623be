"""Thin adapters over the backends: Nomad (python-nomad), Consul (py-consul), Docker (the
docker SDK) and Weave (its HTTP API and the ``weave`` command).

Every adapter sets a timeout on every call (a blocking query's ``wait`` stays below it),
verifies TLS unless told otherwise, maps failures to :mod:`weavenomad.errors` in one place per
backend (see :mod:`weavenomad.clients.errors`) and returns ``(index, data)`` for blocking
queries. The factories below build them from :class:`~weavenomad.config.Settings`; the
libraries are imported inside them, so importing this package stays cheap for the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from weavenomad.clients.consul import ConsulAPI
    from weavenomad.clients.docker import DockerAPI
    from weavenomad.clients.nomad import NomadAPI
    from weavenomad.clients.weave import WeaveAPI, WeaveCommand
    from weavenomad.config import Settings


def nomad_client(settings: Settings) -> NomadAPI:
    from weavenomad.clients.nomad import NomadAPI

    return NomadAPI.from_settings(settings)


def consul_client(settings: Settings) -> ConsulAPI:
    from weavenomad.clients.consul import ConsulAPI

    return ConsulAPI.from_settings(settings)


def docker_client(settings: Settings) -> DockerAPI:
    """The Docker adapter; ``.sdk`` is the ``docker.DockerClient`` itself (built on first use)."""
    from weavenomad.clients.docker import DockerAPI

    return DockerAPI.from_settings(settings)


def weave_client(settings: Settings) -> WeaveAPI:
    from weavenomad.clients.weave import WeaveAPI

    return WeaveAPI.from_settings(settings)


def weave_command(settings: Settings, env: Mapping[str, str] | None = None) -> WeaveCommand:
    from weavenomad.clients.weave import WeaveCommand

    return WeaveCommand.from_settings(settings, env=env)
