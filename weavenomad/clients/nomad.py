"""The Nomad adapter: the calls the product makes, over python-nomad's transport.

Requests go through python-nomad's endpoint objects (``nomad.api.Job`` …), which build the URL,
add ``namespace``/``region`` and send the token as ``X-Nomad-Token``. We construct them directly,
not through ``nomad.Nomad``, because that class fills unset values from ``os.environ`` and
defaults to ``verify=False``; our settings are already resolved and verify TLS by default. We use
their raw ``request()`` rather than the convenience methods, because those drop the
``X-Nomad-Index`` header that blocking queries need.

Blocking queries return ``(index, data)``; their ``wait`` is sent as a Go duration and the HTTP
timeout is ``wait`` plus Nomad's jitter plus the normal timeout, so the client never gives up on
an answer the server is still allowed to hold back.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import requests
from nomad import api as nomad_api
from nomad.api import exceptions as nomad_errors

from weavenomad.clients.errors import (
    Backend,
    blocking_timeout,
    error_for_exception,
    error_for_status,
    parse_index,
    summarize,
)
from weavenomad.errors import (
    BackendError,
    BackendRequestError,
    CasConflict,
    ValidationError,
)
from weavenomad.runtime.durations import go_duration

log = logging.getLogger(__name__)

#: blocking queries without an explicit wait hold at most this long (Nomad's own default is 5m)
DEFAULT_WAIT = 30.0
#: Nomad caps a blocking query's wait at 10 minutes
MAX_WAIT = 600.0
#: Nomad's prefix for a lost check-and-set on register (api/jobs.go RegisterEnforceIndexErrPrefix)
ENFORCE_INDEX_PREFIX = "Enforcing job modify index"
#: job validation failures come back as 500 with a hashicorp/go-multierror text
_MULTIERROR = re.compile(r"^\d+ errors? occurred:")
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_NAMESPACED = {"job", "jobs", "evaluations"}
#: a job that parses only when ``Variables`` reach the evaluation (see parse_evaluates_variables)
VARIABLES_PROBE_NAME = "weavenomad_probe"
VARIABLES_PROBE = (f'variable "{VARIABLES_PROBE_NAME}" {{\n  type = string\n}}\n\n'
                   f'job "weavenomad-probe" {{\n  datacenters = [var.{VARIABLES_PROBE_NAME}]\n}}\n')


def nomad_backend(settings) -> Backend:
    nomad = settings.nomad
    token_set = bool(nomad.token)
    tls_given = bool(nomad.tls.ca_cert or nomad.tls.client_cert)
    return Backend(
        key="nomad",
        title="Nomad",
        addr=nomad.addr,
        addr_hint="set --nomad-addr or NOMAD_ADDR",
        token_hint=(
            "the token in NOMAD_TOKEN lacks this permission"
            if token_set
            else "set NOMAD_TOKEN or --nomad-token"
        ),
        tls_hint="set NOMAD_CACERT to the CA that signed Nomad's certificate",
        secrets=tuple(settings.secrets()),
        token_unknown_hint=("Nomad does not know the token in NOMAD_TOKEN: set NOMAD_TOKEN to "
                            "a token's Secret ID" if token_set else None),
        client_cert_hint=(
            "Nomad refused the client certificate in NOMAD_CLIENT_CERT: use one signed by "
            "the CA of Nomad's verify_https_client" if nomad.tls.client_cert
            else "Nomad wants a client certificate: set NOMAD_CLIENT_CERT and NOMAD_CLIENT_KEY"),
        client_files_hint="NOMAD_CLIENT_CERT and NOMAD_CLIENT_KEY must be a PEM certificate "
                          "and its private key",
        https_hint=("NOMAD_CACERT/NOMAD_CLIENT_CERT are set but NOMAD_ADDR is http://: use "
                    "https://" if tls_given and nomad.addr.startswith("http://") else None),
    )


def nomad_error_for_status(
    backend: Backend, status: int, method: str, path: str, body: str
) -> BackendError:
    """Nomad's error answers, with the two 500s that are not server trouble told apart. Pure."""
    text = backend.hide(body or "").strip()
    if ENFORCE_INDEX_PREFIX in text:
        return CasConflict(
            f"Nomad refused {method} {path}: the job changed since it was read ({summarize(text)})",
            backend=backend.key,
            status=status,
            body=text,
            hint="read the job again and resubmit",
        )
    is_job_write = method == "POST" and (path == "/v1/jobs" or path.endswith("/plan"))
    if status == 500 and is_job_write and _MULTIERROR.match(text):
        return BackendRequestError(
            f"Nomad rejected the job: {summarize(text)}",
            backend=backend.key,
            status=status,
            body=text,
        )
    return error_for_status(backend, status, method, path, text)


def hcl_variables(values: Mapping[str, Any]) -> str:
    """HCL2 variable-file text for ``/v1/jobs/parse``'s ``Variables`` field. Pure.

    Strings are escaped for HCL templates too, so a value containing ``${`` stays literal.
    """
    lines = []
    for name, value in values.items():
        if not _VARIABLE_NAME.match(name):
            raise ValidationError(f"invalid job variable name {name!r}", hint="-var NAME=VALUE")
        lines.append(f"{name} = {_hcl_literal(value)}")
    return "".join(line + "\n" for line in lines)


def _hcl_literal(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value).replace("${", "$${").replace("%{", "%%{")
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    if isinstance(value, Mapping):
        items = ", ".join(f"{json.dumps(str(k))} = {_hcl_literal(v)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_hcl_literal(v) for v in value) + "]"
    raise ValidationError(f"job variable value of type {type(value).__name__} is not supported")


class NomadAPI:
    """Nomad's HTTP API. ``session`` is injectable (tests mount a fake transport adapter)."""

    def __init__(
        self,
        addr: str,
        *,
        token: str | None = None,
        region: str | None = None,
        namespace: str | None = None,
        verify: bool | str = True,
        cert: tuple[str, str] | str | None = None,
        timeout: float = 10.0,
        default_wait: float = DEFAULT_WAIT,
        backend: Backend | None = None,
        session: requests.Session | None = None,
    ):
        self.addr = addr.rstrip("/")
        self.timeout = timeout
        self.default_wait = default_wait
        self.namespace = namespace
        self.backend = backend or Backend(
            "nomad", "Nomad", self.addr, "set --nomad-addr or NOMAD_ADDR",
            secrets=(token,) if token else (),
        )
        self.session = session or requests.Session()
        common = dict(
            address=self.addr, token=token, region=region, namespace=namespace, verify=verify,
            cert=cert or (), timeout=timeout, session=self.session,
        )
        endpoints = (nomad_api.Agent, nomad_api.Nodes, nomad_api.Node, nomad_api.Job,
                     nomad_api.Jobs, nomad_api.Evaluations)
        self._requesters = {cls.ENDPOINT: cls(**common) for cls in endpoints}

    @classmethod
    def from_settings(cls, settings, session: requests.Session | None = None) -> NomadAPI:
        nomad = settings.nomad
        return cls(
            nomad.addr, token=nomad.token, region=nomad.region, namespace=nomad.namespace,
            verify=nomad.tls.verify, cert=nomad.tls.cert, timeout=settings.http_timeout,
            backend=nomad_backend(settings), session=session,
        )

    # ---------------------------------------------------------------------------- transport

    def _request(
        self,
        endpoint: str,
        *parts: str,
        method: str = "GET",
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        timeout: float | None = None,
    ):
        quoted = [quote(str(part), safe="") for part in parts]
        path = "/v1/" + "/".join([endpoint, *quoted])
        query = {k: v for k, v in (params or {}).items() if v is not None}
        if self.namespace and endpoint in _NAMESPACED:
            query.setdefault("namespace", self.namespace)
        try:
            return self._requesters[endpoint].request(
                *quoted, method=method.lower(), params=query, json=body, headers={},
                timeout=timeout or self.timeout,
            )
        except nomad_errors.BaseNomadException as exc:
            answer = exc.nomad_resp
            if isinstance(answer, requests.Response):
                raise nomad_error_for_status(
                    self.backend, answer.status_code, method, path, answer.text
                ) from None
            if isinstance(answer, BaseException):
                raise error_for_exception(self.backend, answer, method, path) from None
            raise BackendError(f"Nomad call {method} {path} failed: {answer}",
                               backend="nomad") from None
        except requests.RequestException as exc:  # python-nomad's TimeoutNomadException
            cause = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc
            raise error_for_exception(self.backend, cause, method, path) from None

    def _json(self, response) -> Any:
        try:
            return response.json()
        except ValueError:
            method, path = response.request.method, response.request.path_url.split("?")[0]
            raise BackendError(
                f"Nomad answered {method} {path} with something that is not JSON",
                backend="nomad", status=response.status_code, body=response.text[:1000],
                hint=f"check that {self.addr} is a Nomad agent",
            ) from None

    def _get(self, endpoint: str, *parts: str) -> Any:
        return self._json(self._request(endpoint, *parts))

    def _blocking(
        self, endpoint: str, *parts: str, index: int | None, wait: float | None
    ) -> tuple[int, Any]:
        params: dict[str, Any] = {}
        timeout = self.timeout
        if index is not None:
            wait = self.default_wait if wait is None else wait
            if wait > MAX_WAIT:
                raise ValueError(f"Nomad holds a blocking query at most {MAX_WAIT:.0f}s")
            params = {"index": index, "wait": go_duration(wait)}
            timeout = blocking_timeout(self.timeout, wait)
        response = self._request(endpoint, *parts, params=params, timeout=timeout)
        path = "/v1/" + "/".join([endpoint, *parts])
        index_now = parse_index(self.backend, response.headers, "X-Nomad-Index", "GET", path)
        return index_now, self._json(response)

    # ---------------------------------------------------------------------------- reads

    def agent_self(self) -> dict:
        return self._get("agent", "self")

    def nodes(self) -> list[dict]:
        return self._get("nodes")

    def node(self, node_id: str) -> dict:
        return self._get("node", node_id)

    def node_allocations(
        self, node_id: str, index: int | None = None, wait: float | None = None
    ) -> tuple[int, list[dict]]:
        return self._blocking("node", node_id, "allocations", index=index, wait=wait)

    def jobs(self) -> list[dict]:
        return self._get("jobs")

    def job(self, job_id: str) -> dict:
        return self._get("job", job_id)

    def job_allocations(
        self, job_id: str, index: int | None = None, wait: float | None = None
    ) -> tuple[int, list[dict]]:
        return self._blocking("job", job_id, "allocations", index=index, wait=wait)

    def job_evaluations(
        self, job_id: str, index: int | None = None, wait: float | None = None
    ) -> tuple[int, list[dict]]:
        return self._blocking("job", job_id, "evaluations", index=index, wait=wait)

    def job_deployments(
        self, job_id: str, index: int | None = None, wait: float | None = None
    ) -> tuple[int, list[dict]]:
        return self._blocking("job", job_id, "deployments", index=index, wait=wait)

    # ---------------------------------------------------------------------------- jobs

    def parse_job(
        self,
        hcl_text: str,
        variables: Mapping[str, Any] | None = None,
        canonicalize: bool = True,
        filename: str | None = None,
        var_text: str | None = None,
    ) -> dict:
        """The canonical JSON job for a job file, as ``nomad job run`` would submit it.

        Nomad names the input ``input.hcl`` in syntax errors; ``filename`` puts the user's file
        name there instead. ``variables`` go into the ``Variables`` field (HCL2 variable-file
        text, after ``var_text``, the contents of variable files); a Nomad that predates the
        field ignores it (:meth:`parse_evaluates_variables` tells).
        """
        body: dict[str, Any] = {"JobHCL": hcl_text, "Canonicalize": canonicalize}
        if variables or var_text:
            parts = [var_text.rstrip("\n") + "\n"] if var_text else []
            body["Variables"] = "".join(parts) + hcl_variables(variables or {})
        try:
            return self._json(self._request("jobs", "parse", method="POST", body=body))
        except BackendRequestError as exc:
            where = filename or "the job file"
            text = exc.body.replace("input.hcl:", f"{filename}:") if filename else exc.body
            raise BackendRequestError(
                f"Nomad cannot parse {where}: {summarize(text)}",
                backend="nomad", status=exc.status, body=text,
            ) from None

    def parse_evaluates_variables(self) -> bool:
        """Whether ``/v1/jobs/parse`` evaluates ``Variables``. Nomad 1.0's JobsParseRequest has
        no such field: it ignores the values and parses with the variables' defaults, which
        would silently replace the user's values. A job whose one variable has no default
        tells: such a Nomad refuses it as unset."""
        try:
            job = self.parse_job(VARIABLES_PROBE, variables={VARIABLES_PROBE_NAME: "probe"})
        except BackendRequestError:
            return False
        return isinstance(job, dict) and job.get("Datacenters") == ["probe"]

    def evaluations(self) -> list[dict]:
        """Every evaluation (of the namespace), as ``GET /v1/evaluations`` lists them."""
        return self._get("evaluations")

    def evaluate_job(self, job_id: str) -> dict:
        """``nomad job eval``: a new evaluation of the registered job (one blocked on a node
        change is not looked at again when the node's driver turns healthy)."""
        body = {"JobID": job_id, "EvalOptions": {"ForceReschedule": False}}
        return self._json(self._request("job", job_id, "evaluate", method="POST", body=body))

    def register_job(self, job: Mapping[str, Any], check_index: int | None = None) -> dict:
        """Submit ``job``; with ``check_index`` only if the job's JobModifyIndex still equals it
        (0: only if the job does not exist yet). A lost race raises :class:`CasConflict`."""
        body: dict[str, Any] = {"Job": job}
        if check_index is not None:
            body.update(EnforceIndex=True, JobModifyIndex=check_index)
        return self._json(self._request("jobs", method="POST", body=body))

    def plan_job(self, job: Mapping[str, Any]) -> dict:
        """The scheduler's dry run of ``job`` with the diff against the registered version, as
        ``nomad job plan`` asks for it (``Diff: true``): Nomad changes nothing. The answer's
        ``JobModifyIndex`` is what ``register_job(check_index=…)`` expects."""
        job_id = job.get("ID") or job.get("Name") or ""
        return self._json(self._request("job", job_id, "plan", method="POST",
                                        body={"Job": job, "Diff": True}))
