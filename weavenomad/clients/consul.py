"""The Consul adapter: agent services and checks, health reads, KV reads and check-and-set
writes, over py-consul.

py-consul does the endpoint work (paths, parameters, decoding, ``(index, data)`` for blocking
queries, a timeout that grows with the query's ``wait``). We give it our own transport, a
subclass of its ``HTTPClient`` that sends every request through an injectable
``requests.Session``, always carries the token, and maps every failure to our exceptions in one
place (:meth:`_Transport._send`). Three py-consul habits are corrected: ``Consul()`` lets
``CONSUL_HTTP_TOKEN`` from the environment override the token it is given, a few of its calls
(``agent.self``) send no token at all, and one (catalog register) puts it in the query string,
where logs would show it: it always travels in the ``X-Consul-Token`` header.

Addresses: ``http://host:port`` and ``https://host:port`` (a bare ``host:port`` means http).
py-consul cannot talk to a unix socket, so ``unix://`` addresses are refused with a clear error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import consul
import consul.std
import requests
from consul.callback import CB

from weavenomad.clients.errors import (
    Backend,
    error_for_exception,
    error_for_status,
)
from weavenomad.errors import BackendError, BackendNotFound, ConfigError
from weavenomad.runtime.durations import go_duration

DEFAULT_WAIT = 30.0
#: paths where Consul's 404 is an answer ("no such key"), not a failure
_ABSENCE_IS_AN_ANSWER = ("/v1/kv/", "/v1/agent/service/deregister/", "/v1/agent/check/deregister/")
#: paths whose HTTP status is part of the answer: the local service's aggregated health (200
#: passing, 429 warning, 503 critical or maintenance, 404 no such service)
_STATUS_IS_AN_ANSWER = {"/v1/agent/health/service/id/": (404, 429, 503)}
#: Consul (1.4) answers these with 500 although they mean "no such check/service"
_UNKNOWN_MARKERS = ("does not have associated TTL", "Unknown check", "Unknown service")
def _placement_params(namespace: str, partition: str) -> list[tuple[str, str]]:
    """Consul Enterprise's ``?ns=`` and ``?partition=``, where set (CE refuses ``?ns=``)."""
    return [(key, value) for key, value in (("ns", namespace), ("partition", partition))
            if value]


_TTL_STATES = {"pass": "pass", "passing": "pass", "warn": "warn", "warning": "warn",
               "fail": "fail", "critical": "fail"}


def consul_backend(settings) -> Backend:
    c = settings.consul
    token_set = bool(c.token)
    tls_given = bool(c.tls.ca_cert or c.tls.client_cert)
    return Backend(
        key="consul",
        title="Consul",
        addr=c.addr,
        addr_hint="set --consul-addr or CONSUL_HTTP_ADDR",
        token_hint=(
            "the token in CONSUL_HTTP_TOKEN lacks this permission"
            if token_set
            else "set CONSUL_HTTP_TOKEN or --consul-token"
        ),
        tls_hint="set CONSUL_CACERT to the CA that signed Consul's certificate",
        secrets=tuple(settings.secrets()),
        token_unknown_hint=("Consul does not know the token in CONSUL_HTTP_TOKEN: set "
                            "CONSUL_HTTP_TOKEN to a token's SecretID" if token_set else None),
        client_cert_hint=(
            "Consul refused the client certificate in CONSUL_CLIENT_CERT: use one signed by "
            "the CA Consul verifies clients with" if c.tls.client_cert
            else "Consul wants a client certificate: set CONSUL_CLIENT_CERT and "
                 "CONSUL_CLIENT_KEY"),
        client_files_hint="CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY must be a PEM certificate "
                          "and its private key",
        https_hint=("CONSUL_CACERT/CONSUL_CLIENT_CERT are set but Consul's address is http://: "
                    "use CONSUL_HTTP_ADDR=https://HOST:PORT or CONSUL_HTTP_SSL=true"
                    if tls_given and c.addr.startswith("http://") else None),
    )


def parse_consul_addr(addr: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of a Consul address, as py-consul wants them. Pure."""
    parts = urlsplit(addr if "://" in addr else "http://" + addr)
    hint = "set CONSUL_HTTP_ADDR to http://HOST:PORT or https://HOST:PORT"
    if parts.scheme not in ("http", "https"):
        raise ConfigError(
            f"unsupported Consul address {addr}: only http and https are supported", hint=hint
        )
    if parts.path not in ("", "/") or parts.query or not parts.hostname:
        raise ConfigError(f"invalid Consul address {addr}", hint=hint)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ConfigError(f"invalid port in Consul address {addr}", hint=hint) from None
    host = parts.hostname
    return parts.scheme, f"[{host}]" if ":" in host else host, port


def consul_error_for_status(
    backend: Backend, status: int, method: str, path: str, body: str
) -> BackendError:
    """Consul's error answers, with its 500-for-unknown-check told apart. Pure."""
    text = backend.hide(body or "").strip()
    if status == 500 and any(marker in text for marker in _UNKNOWN_MARKERS):
        return BackendNotFound(
            f"Consul has no such check or service for {method} {path}: {text}",
            backend=backend.key, status=status, body=text,
        )
    return error_for_status(backend, status, method, path, text)


def _without_token(params) -> tuple[Any, str | None]:
    """``params`` without a ``token`` entry, and that token. Some py-consul calls (catalog
    register) put the token in the query string, where access logs and urllib3's debug log
    would show it; it travels in the X-Consul-Token header instead. Pure."""
    if isinstance(params, Mapping):
        rest = {k: v for k, v in params.items() if k != "token"}
        return rest, params.get("token") or None
    if isinstance(params, list | tuple):
        found = [v for k, v in params if k == "token"]
        return [(k, v) for k, v in params if k != "token"], (found[-1] if found else None)
    return params, None


class _Transport(consul.std.HTTPClient):
    """py-consul's requests transport with our session, token and error mapping."""

    def __init__(self, host, port, scheme, verify, cert, *, timeout, session, backend, token):
        super().__init__(host, port, scheme, verify, cert, connections_timeout=timeout)
        self.session = session
        self.backend = backend
        self.token = token

    def _send(self, method: str, callback, path: str, params, headers, **kwargs):
        headers = dict(headers or {})
        params, in_query = _without_token(params)
        token = in_query or self.token
        if token:
            headers.setdefault("X-Consul-Token", token)
        send = getattr(consul.std.HTTPClient, method.lower())
        try:
            return send(self, self._checked(callback, method, path), path, params=params,
                        headers=headers, **kwargs)
        except requests.RequestException as exc:
            raise error_for_exception(self.backend, exc, method, path) from None

    def _checked(self, callback, method: str, path: str):
        def check(response):
            absent_ok = response.code == 404 and path.startswith(_ABSENCE_IS_AN_ANSWER)
            answered = any(path.startswith(prefix) and response.code in codes
                           for prefix, codes in _STATUS_IS_AN_ANSWER.items())
            if response.code >= 400 and not (absent_ok or answered):
                body = response.body
                if isinstance(body, bytes):
                    body = body.decode("utf-8", "replace")
                raise consul_error_for_status(self.backend, response.code, method, path, body)
            try:
                return callback(response)
            except consul.ConsulException as exc:
                raise BackendError(
                    f"Consul answered {method} {path} unexpectedly: {self.backend.hide(str(exc))}",
                    backend="consul", status=response.code,
                ) from None

        return check

    def get(self, callback, path, params=None, headers=None, raw=False):
        return self._send("GET", callback, path, params, headers, raw=raw)

    def put(self, callback, path, params=None, data="", headers=None):
        return self._send("PUT", callback, path, params, headers, data=data)

    def delete(self, callback, path, params=None, data="", headers=None):
        return self._send("DELETE", callback, path, params, headers, data=data)

    def post(self, callback, path, params=None, data="", headers=None):
        return self._send("POST", callback, path, params, headers, data=data)


class _Consul(consul.Consul):
    def __init__(self, transport: _Transport, **kwargs):
        self._transport = transport
        super().__init__(**kwargs)
        # py-consul prefers CONSUL_HTTP_TOKEN from os.environ over the token it is given
        self.token = transport.token

    def http_connect(self, host, port, scheme, verify=True, cert=None):
        return self._transport


class ConsulAPI:
    """Consul's HTTP API. ``session`` is injectable (tests mount a fake transport adapter)."""

    def __init__(
        self,
        addr: str,
        *,
        token: str | None = None,
        datacenter: str | None = None,
        verify: bool | str = True,
        cert: tuple[str, str] | str | None = None,
        timeout: float = 10.0,
        default_wait: float = DEFAULT_WAIT,
        backend: Backend | None = None,
        session: requests.Session | None = None,
    ):
        scheme, host, port = parse_consul_addr(addr)
        self.addr = addr
        self.default_wait = default_wait
        self.backend = backend or Backend(
            "consul", "Consul", addr, "set --consul-addr or CONSUL_HTTP_ADDR",
            secrets=(token,) if token else (),
        )
        transport = _Transport(
            host, port, scheme, verify, cert, timeout=timeout,
            session=session or requests.Session(), backend=self.backend, token=token,
        )
        self.client = _Consul(transport, host=host, port=port, scheme=scheme, token=token,
                              dc=datacenter, verify=verify, cert=cert)
        self.http = transport

    @classmethod
    def from_settings(cls, settings, session: requests.Session | None = None) -> ConsulAPI:
        c = settings.consul
        return cls(
            c.addr, token=c.token, datacenter=c.datacenter, verify=c.tls.verify,
            cert=c.tls.cert, timeout=settings.http_timeout, backend=consul_backend(settings),
            session=session,
        )

    def _blocking_args(self, index: int | None, wait: float | None) -> dict[str, Any]:
        if not index:
            return {}
        return {"index": index, "wait": go_duration(self.default_wait if wait is None else wait)}

    # ---------------------------------------------------------------------------- agent

    def agent_self(self) -> dict:
        return self.http.get(CB.json(), "/v1/agent/self")

    def agent_services(self) -> dict[str, dict]:
        return self.client.agent.services()

    def agent_checks(self) -> dict[str, dict]:
        return self.client.agent.checks()

    def agent_service_health(self, service_id: str, namespace: str = "",
                             partition: str = "") -> dict | None:
        """``/v1/agent/health/service/id/<id>`` (Consul 1.3+): the local agent's service
        (``Service``, as in ``/v1/agent/services``) with its checks (``Checks``) and
        ``AggregatedStatus``; None when the agent has no such service."""

        def answer(response) -> dict | None:
            if response.code == 404:
                return None
            body = json.loads(response.body)
            return body if isinstance(body, dict) and body.get("Service") else None

        return self.http.get(answer, "/v1/agent/health/service/id/" + quote(service_id, safe=""),
                             params=_placement_params(namespace, partition) or None)

    def service_register(
        self, definition: Mapping[str, Any], replace_existing_checks: bool = False
    ) -> None:
        """Register a service from its Consul JSON definition (``ID``, ``Name``, ``Address``,
        ``Port``, ``Tags``, ``Meta``, ``Checks`` …), passed through unchanged."""
        params = [("replace-existing-checks", "true")] if replace_existing_checks else None
        self.http.put(CB.boolean(), "/v1/agent/service/register", params=params,
                      data=json.dumps(definition))

    def service_deregister(self, service_id: str, namespace: str = "",
                           partition: str = "") -> bool:
        """False when the agent did not know the service (Consul >= 1.5; 1.4 always says yes).
        ``namespace``/``partition``: where it lives on Consul Enterprise."""
        if namespace or partition:
            return self.http.put(CB.boolean(), "/v1/agent/service/deregister/"
                                 + quote(service_id, safe=""),
                                 params=_placement_params(namespace, partition))
        return self.client.agent.service.deregister(service_id)

    def check_register(self, definition: Mapping[str, Any]) -> None:
        """Register a check from its Consul JSON definition (``ID``, ``Name``, ``ServiceID``,
        ``TTL`` or ``TCP``/``HTTP`` with ``Interval`` …)."""
        self.http.put(CB.boolean(), "/v1/agent/check/register", data=json.dumps(definition))

    def check_deregister(self, check_id: str, namespace: str = "", partition: str = "") -> bool:
        if namespace or partition:
            return self.http.put(CB.boolean(), "/v1/agent/check/deregister/"
                                 + quote(check_id, safe=""),
                                 params=_placement_params(namespace, partition))
        return self.client.agent.check.deregister(check_id)

    def check_ttl(self, check_id: str, status: str) -> None:
        """Set a TTL check to pass/warn/fail (or passing/warning/critical). A check the agent
        does not know raises :class:`BackendNotFound`."""
        state = _TTL_STATES.get(status)
        if state is None:
            raise ValueError(f"unknown TTL check status {status!r}")
        update = getattr(self.client.agent.check, f"ttl_{state}")
        update(check_id)

    # ---------------------------------------------------------------------------- health

    def health_service(
        self, name: str, passing: bool = False, index: int | None = None,
        wait: float | None = None,
    ) -> tuple[int, list[dict]]:
        found, data = self.client.health.service(
            name, passing=passing, **self._blocking_args(index, wait)
        )
        return int(found), data or []

    # ---------------------------------------------------------------------------- KV

    def kv_get(
        self, key: str, index: int | None = None, wait: float | None = None
    ) -> tuple[int, Any]:
        """``(index, entry)``, entry being Consul's dict (``Value`` decoded to bytes,
        ``ModifyIndex`` for check-and-set) or None when the key is missing."""
        found, data = self.client.kv.get(key, **self._blocking_args(index, wait))
        return int(found), data

    def kv_put(self, key: str, value: str | bytes, cas: int | None = None) -> bool:
        """Write ``key``; with ``cas`` only if its ModifyIndex still equals it (0: only if it
        does not exist). False means the check-and-set lost: Consul answers 200 ``false``."""
        return bool(self.client.kv.put(key, value, cas=cas))
