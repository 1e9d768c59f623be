"""The Docker adapter: a ``docker.DockerClient`` built from our settings, plus the few calls
later code needs (version for the Weave compatibility preflight, Nomad's task containers,
inspect, events), with every failure mapped to our exceptions in :meth:`DockerAPI.mapped`.

The SDK client is built on first use, not in the constructor: with ``version="auto"`` building
it already asks the daemon for its API version, and a factory must not do I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import docker
import docker.errors
import requests
from docker.tls import TLSConfig

from weavenomad.clients.errors import (
    Backend,
    closed_on_stop,
    error_for_exception,
    error_for_status,
)
from weavenomad.errors import BackendError, BackendNotFound, BackendUnavailable, ConfigError

#: the label Nomad (>= 0.10.2) puts on every task container
NOMAD_ALLOC_LABEL = "com.hashicorp.nomad.alloc_id"


def docker_backend(settings) -> Backend:
    return Backend(
        key="docker",
        title="Docker",
        addr=settings.docker.host,
        addr_hint="set --docker-host or DOCKER_HOST",
        tls_hint="set DOCKER_CERT_PATH to a directory with ca.pem, cert.pem and key.pem",
    )


def docker_client_kwargs(settings) -> dict[str, Any]:
    """``DockerClient`` arguments from our settings. Pure but for checking the TLS files.

    TLS is used when DOCKER_TLS_VERIFY or DOCKER_CERT_PATH is set, and then always verified
    against ``ca.pem`` in the certificate directory (``~/.docker`` by default, as for the docker
    CLI); ``cert.pem``/``key.pem`` there are sent as the client certificate when present.
    """
    kwargs: dict[str, Any] = {"base_url": settings.docker.host, "timeout": settings.http_timeout}
    if not (settings.docker.tls_verify or settings.docker.cert_path):
        return kwargs
    cert_dir = Path(settings.docker.cert_path or Path.home() / ".docker")
    ca, cert, key = (cert_dir / name for name in ("ca.pem", "cert.pem", "key.pem"))
    if not ca.is_file():
        raise ConfigError(f"Docker TLS: no CA certificate at {ca}",
                          hint="set DOCKER_CERT_PATH to a directory with ca.pem")
    client_cert = (str(cert), str(key)) if cert.is_file() and key.is_file() else None
    try:
        kwargs["tls"] = TLSConfig(client_cert=client_cert, ca_cert=str(ca), verify=True)
    except docker.errors.TLSParameterError as exc:
        raise ConfigError(f"Docker TLS: {exc}", hint="DOCKER_CERT_PATH") from None
    return kwargs


class DockerAPI:
    """The Docker Engine API. ``client`` is injectable: pass a ready ``docker.DockerClient``
    (tests mount a fake transport adapter on ``client.api``)."""

    def __init__(
        self,
        client_kwargs: Mapping[str, Any] | None = None,
        *,
        backend: Backend | None = None,
        client: docker.DockerClient | None = None,
    ):
        self._kwargs = dict(client_kwargs or {})
        self._kwargs.setdefault("version", "auto")
        host = self._kwargs.get("base_url") or "unix:///var/run/docker.sock"
        self.backend = backend or Backend("docker", "Docker", host,
                                          "set --docker-host or DOCKER_HOST")
        self._client = client
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings) -> DockerAPI:
        return cls(docker_client_kwargs(settings), backend=docker_backend(settings))

    @property
    def sdk(self) -> docker.DockerClient:
        """The docker SDK client, for calls this adapter does not wrap (wrap them in
        :meth:`mapped`)."""
        with self._lock:
            if self._client is None:
                with self.mapped():
                    self._client = docker.DockerClient(**self._kwargs)
            return self._client

    @contextmanager
    def mapped(self) -> Iterator[None]:
        """Turn the SDK's and requests' exceptions raised in the block into ours."""
        try:
            yield
        except BackendError:
            raise
        except Exception as exc:
            error = self.error_for(exc)
            if error is None:
                raise
            raise error from None

    def error_for(self, exc: BaseException) -> BackendError | None:
        """Our exception for one raised by the SDK or requests; None if it is neither."""
        current: BaseException | None = exc
        while current is not None:
            if isinstance(current, docker.errors.APIError) and current.response is not None:
                request = current.response.request
                method = getattr(request, "method", None) or "GET"
                path = urlsplit(getattr(request, "url", "") or "").path
                body = current.explanation or current.response.text or ""
                return error_for_status(self.backend, current.response.status_code, method,
                                        path, str(body))
            if isinstance(current, requests.RequestException):
                return error_for_exception(self.backend, current)
            if not isinstance(current, docker.errors.DockerException):
                break
            current = current.__cause__ or current.__context__
        if isinstance(exc, docker.errors.DockerException):
            return BackendError(f"Docker at {self.backend.addr}: {exc}", backend="docker",
                                hint=self.backend.addr_hint)
        return None

    # ---------------------------------------------------------------------------- calls

    def version(self) -> dict:
        """``GET /version`` unversioned: ``Version``, ``ApiVersion``, ``MinAPIVersion`` …"""
        with self.mapped():
            return self.sdk.api.version(api_version=False)

    def info(self) -> dict:
        """``GET /info``: ``DockerRootDir`` (a snap's is under /var/snap), ``ServerVersion`` …"""
        with self.mapped():
            return self.sdk.api.info()

    def image_present(self, name: str) -> bool:
        """Whether the image ``name`` is on this Docker host."""
        try:
            with self.mapped():
                self.sdk.api.inspect_image(name)
        except BackendNotFound:
            return False
        return True

    def pull(self, name: str) -> None:
        """``docker pull NAME`` (``repository:tag``); a failure names the image."""
        repository, _, tag = name.rpartition(":") if ":" in name.split("/")[-1] else (name, "",
                                                                                       "")
        with self.mapped():
            self.sdk.api.pull(repository, tag=tag or "latest")

    def remove_container(self, name: str) -> bool:
        """``docker rm -f NAME``; False when there was no such container."""
        try:
            with self.mapped():
                self.sdk.api.remove_container(name, force=True)
        except BackendNotFound:
            return False
        return True

    def file_from_image(self, image: str, path: str, limit: int = 4 << 20) -> bytes:
        """The file at ``path`` inside ``image`` (a container is created, never started, and
        removed again): what ``docker cp`` of a created container reads."""
        import io
        import tarfile

        with self.mapped():
            created = self.sdk.api.create_container(image, command=["true"])
            try:
                stream, _ = self.sdk.api.get_archive(created["Id"], path)
                data = b"".join(stream)
            finally:
                self.sdk.api.remove_container(created["Id"], force=True)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = next((m for m in tar.getmembers() if m.isfile()), None)
            if member is None or member.size > limit:
                raise BackendError(f"{image} holds no file {path} (or one too large to be it)",
                                   backend="docker")
            return tar.extractfile(member).read()

    def nomad_containers(self, all: bool = True, alloc_id: str | None = None) -> list[dict]:
        """Summaries (``/containers/json``) of the containers Nomad started, or of those of
        allocation ``alloc_id`` (Docker filters by the label's value); ``all`` includes
        stopped ones."""
        label = NOMAD_ALLOC_LABEL if alloc_id is None else f"{NOMAD_ALLOC_LABEL}={alloc_id}"
        with self.mapped():
            return self.sdk.api.containers(all=all, filters={"label": label})

    def inspect(self, container_id: str) -> dict:
        with self.mapped():
            return self.sdk.api.inspect_container(container_id)

    def events(
        self,
        filters: Mapping[str, Any] | None = None,
        since: int | float | None = None,
        stop_event: threading.Event | None = None,
    ) -> Iterator[dict]:
        """Yield decoded events until ``stop_event`` is set; a stream the daemon breaks off
        raises :class:`BackendUnavailable` (resume with ``since`` = the last event's
        ``time``)."""
        with self.mapped():
            stream = self.sdk.api.events(since=since, filters=dict(filters) if filters else None,
                                         decode=True)
        with closed_on_stop(stop_event, stream.close):
            try:
                for event in stream:
                    if stop_event is not None and stop_event.is_set():
                        return
                    yield event
            except Exception as exc:  # noqa: BLE001 - mapped below or re-raised
                if stop_event is not None and stop_event.is_set():
                    return
                error = self.error_for(exc)
                if error is None:
                    raise
                raise error from None
            finally:
                _close_quietly(stream)
        if stop_event is not None and stop_event.is_set():
            return
        raise BackendUnavailable(f"Docker at {self.backend.addr} closed the event stream",
                                 backend="docker", hint="resume with since = the last event time")


def _close_quietly(stream) -> None:
    try:
        stream.close()
    except Exception:  # noqa: BLE001 - the stream may already be gone
        pass
