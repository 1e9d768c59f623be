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


#: the variable (and config-file key) of each TLS file, per backend
_TLS_VARIABLES = {
    "nomad": {"ca_cert": "NOMAD_CACERT", "client_cert": "NOMAD_CLIENT_CERT",
              "client_key": "NOMAD_CLIENT_KEY"},
    "consul": {"ca_cert": "CONSUL_CACERT", "client_cert": "CONSUL_CLIENT_CERT",
               "client_key": "CONSUL_CLIENT_KEY"},
}
_TLS_FILE_KEYS = {"ca_cert": "cacert", "client_cert": "client_cert", "client_key": "client_key"}


def check_tls_files(tls, backend: str) -> None:
    """Fail early, naming the variable, when a TLS file is missing or unreadable, or a key comes
    without its certificate (requests would fail later, with a raw OSError or a vague handshake
    error). ``tls`` is a :class:`~weavenomad.config.TLSSettings`, ``backend`` "nomad"/"consul"."""
    import os

    from weavenomad.errors import ConfigError

    names = _TLS_VARIABLES[backend]
    if tls.client_key and not tls.client_cert:
        raise ConfigError(f"{names['client_key']} is set but {names['client_cert']} is not",
                          hint=f"set {names['client_cert']} to the client certificate")
    for attribute in ("ca_cert", "client_cert", "client_key"):
        path = getattr(tls, attribute)
        if not path:
            continue
        variable = names[attribute]
        if not os.path.isfile(path):
            raise ConfigError(f"{variable} names {path}, which is not a file",
                              hint=f"set {variable} (or [{backend}] {_TLS_FILE_KEYS[attribute]}) "
                                   "to a PEM file")
        if not os.access(path, os.R_OK):
            raise ConfigError(f"{variable} names {path}, which this user cannot read",
                              hint="run as a user that may read it, or fix its mode")


def nomad_client(settings: Settings) -> NomadAPI:
    """The Nomad adapter; a missing or unreadable TLS file fails here, naming its variable."""
    from weavenomad.clients.nomad import NomadAPI

    check_tls_files(settings.nomad.tls, "nomad")
    return NomadAPI.from_settings(settings)


def consul_client(settings: Settings) -> ConsulAPI:
    """The Consul adapter; a missing or unreadable TLS file fails here, naming its variable."""
    from weavenomad.clients.consul import ConsulAPI

    check_tls_files(settings.consul.tls, "consul")
    return ConsulAPI.from_settings(settings)


def docker_client(settings: Settings) -> DockerAPI:
    """The Docker adapter; ``.sdk`` is the ``docker.DockerClient`` itself (built on first use)."""
    from weavenomad.clients.docker import DockerAPI

    return DockerAPI.from_settings(settings)


def weave_client(settings: Settings) -> WeaveAPI:
    from weavenomad.clients.weave import WeaveAPI

    return WeaveAPI.from_settings(settings)


def weave_command(settings: Settings, env: Mapping[str, str] | None = None) -> WeaveCommand:
    """The weave command, with the Weave release the settings choose (``WEAVE_VERSION``,
    ``DOCKERHUB_USER``, ``DOCKER_API_VERSION``) added to ``env`` (default: ours)."""
    import os

    from weavenomad.clients.weave import WeaveCommand

    chosen = settings.weave.command_environment()
    if chosen:
        env = {**(os.environ if env is None else env), **chosen}
    return WeaveCommand.from_settings(settings, env=env)
