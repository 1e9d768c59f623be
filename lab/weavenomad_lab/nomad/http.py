"""Nomad 1.0's HTTP API over the simulated state: routing, blocking queries, headers, and the
error shapes of ``command/agent/http.go`` (plain-text bodies: 400 for undecodable JSON, 404
``job not found``, 405 ``Invalid method``, 500 with the validation text, 404 with an empty
body for unknown paths).

ACLs (the lab's ``--acl``): every endpoint but ``/v1/status/*``, ``/v1/agent/health`` and
``/v1/regions`` wants the management token in ``X-Nomad-Token`` (Nomad 1.0 reads no other
place); without one the anonymous token has no rights and Nomad answers 403 ``Permission
denied``, an unknown one gets 403 ``ACL token not found`` (``command/agent/http.go`` maps
``structs.ErrPermissionDenied``/``ErrTokenNotFound`` to 403 with their text).

:meth:`NomadAPI.handle` is a pure request -> response function over :class:`NomadState`, so
the contract tests call it without sockets; :mod:`weavenomad_lab.nomad.server` puts it behind
real listeners.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from weavenomad_lab.nomad import events, shapes
from weavenomad_lab.nomad.gostyle import parse_duration
from weavenomad_lab.nomad.state import NomadError, NomadState

MAX_BODY = 64 * 1024 * 1024
TEXT = "text/plain; charset=utf-8"
#: endpoints Nomad serves without any ACL check
NO_ACL = {("status", "leader"), ("status", "peers"), ("agent", "health"), ("regions",)}


@dataclass
class Request:
    method: str
    target: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        parts = urlsplit(self.target)
        self.path = parts.path
        self.query = parse_qs(parts.query, keep_blank_values=True)

    def arg(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    #: a streamed body (the event stream): chunks until the client goes away
    stream: Iterator[bytes] | None = None


def go_json_error(body: bytes) -> str | None:
    """Go's encoding/json message for a body that does not decode, or None when it does."""
    text = body.decode("utf-8", errors="replace")
    if not text.strip():
        return "EOF"
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()):
            return "unexpected EOF"
        bad = text[exc.pos]
        return f"invalid character {bad!r} looking for beginning of value"
    return None


class NomadAPI:
    """The HTTP API of one agent (one lab node): shared server state plus its own agent view."""

    def __init__(self, state: NomadState, agent_self: Callable[[], dict],
                 parse_job: Callable[[str, dict | None, bool], dict],
                 acl_token: str | None = None):  # fmt: skip
        self.state = state
        self.agent_self = agent_self
        self.parse_job = parse_job
        self.acl_token = acl_token or None

    # -- entry point -------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        if len(request.body) > MAX_BODY:
            return Response(413, {"Content-Type": TEXT}, b"http: request body too large")
        try:
            return self._route(request)
        except NomadError as exc:
            return self._error(exc.status, exc.message)

    def _error(self, status: int, message: str, index: int | None = None) -> Response:
        headers = {"Content-Type": TEXT}
        if index is not None:
            headers.update(self._meta(index))
        return Response(status, headers, message.encode())

    @staticmethod
    def _meta(index: int) -> dict[str, str]:
        return {"X-Nomad-Index": str(index), "X-Nomad-Knownleader": "true",
                "X-Nomad-Lastcontact": "0"}  # fmt: skip

    def _json(self, value: Any, request: Request, index: int | None = None,
              query: bool = True) -> Response:  # fmt: skip
        headers = {"Content-Type": "application/json"}
        if index is not None:
            headers.update(self._meta(index) if query else {"X-Nomad-Index": str(index)})
        pretty = "pretty" in request.query and request.arg("pretty") != "0"
        text = json.dumps(value, indent=4 if pretty else None,
                          separators=None if pretty else (",", ":"))  # fmt: skip
        return Response(200, headers, (text + ("\n" if pretty else "")).encode())

    def _body(self, request: Request) -> Any:
        problem = go_json_error(request.body)
        if problem:
            raise NomadError(400, problem)
        return json.loads(request.body)

    def _blocking(self, request: Request, compute: Callable[[], tuple[int, Any]]) -> Response:
        try:
            wait = parse_duration(request.arg("wait")) / 1e9 if request.arg("wait") else None
        except ValueError:
            return self._error(400, "Invalid wait time")
        try:
            min_index = int(request.arg("index") or 0)
        except ValueError:
            return self._error(400, "Invalid index")
        index, value = self.state.read(compute, min_index, wait)
        return self._json(value, request, index)

    @staticmethod
    def _methods(request: Request, *allowed: str) -> None:
        if request.method not in allowed:
            raise NomadError(405, "Invalid method")

    # -- routing -----------------------------------------------------------------------------

    def _route(self, request: Request) -> Response:
        # Go's router matches the decoded path: a job ID arrives percent-encoded (recorded:
        # plan-dns-catalog-checks, a job named Ünïcødé-作业), %2F inside one segment included
        parts = [unquote(p) for p in request.path.split("/") if p]
        if len(parts) < 2 or parts[0] != "v1":
            return Response(404)
        head, rest = parts[1], parts[2:]
        routes: dict[str, Callable[[Request, list[str]], Response]] = {
            "jobs": self._jobs, "job": self._job, "allocations": self._allocations,
            "allocation": self._allocation, "evaluations": self._evaluations,
            "evaluation": self._evaluation, "deployments": self._deployments,
            "deployment": self._deployment, "nodes": self._nodes, "node": self._node,
            "agent": self._agent, "status": self._status, "regions": self._regions,
            "event": self._event,
        }  # fmt: skip
        handler = routes.get(head)
        if handler is None:
            return Response(404)
        denied = self._acl(request, (head, *rest))
        if denied is not None:
            return denied
        return handler(request, rest)

    def _acl(self, request: Request, route: tuple[str, ...]) -> Response | None:
        if self.acl_token is None or route in NO_ACL:
            return None
        given = next((v for k, v in request.headers.items() if k.lower() == "x-nomad-token"), "")
        if given == self.acl_token:
            return None
        return self._error(403, "ACL token not found" if given else "Permission denied")

    def _namespace(self, request: Request) -> str:
        return request.arg("namespace") or "default"

    # -- jobs --------------------------------------------------------------------------------

    def _jobs(self, request: Request, rest: list[str]) -> Response:
        if rest == ["parse"]:
            return self._parse(request)
        if rest:
            return Response(404)
        if request.method == "GET":
            prefix, namespace = request.arg("prefix"), self._namespace(request)

            def compute() -> tuple[int, Any]:
                jobs = sorted((j for (ns, _), j in self.state.jobs.items()
                               if ns == namespace and j["ID"].startswith(prefix)),
                              key=lambda j: j["ID"])  # fmt: skip
                stubs = [shapes.job_stub(j, self._allocs_of_job(j)) for j in jobs]
                return self.state.table_index["jobs"], stubs

            return self._blocking(request, compute)
        self._methods(request, "PUT", "POST")
        return self._register(request, None)

    def _submitted(self, request: Request, job_id: str | None, no_id: str,
                   other_id: str) -> tuple[dict, dict]:
        """The request body and its job: given, with an ID, the path's (register and plan
        word the last two refusals differently: ``no_id``, ``other_id``)."""
        body = self._body(request)
        job = body.get("Job") if isinstance(body, dict) else None
        if not isinstance(job, dict):
            raise NomadError(400, "Job must be specified")
        if not job.get("ID"):
            raise NomadError(400, no_id)
        if job_id is not None and job["ID"] != job_id:
            raise NomadError(400, other_id)
        if request.arg("namespace") and not job.get("Namespace"):
            job["Namespace"] = request.arg("namespace")
        return body, job

    def _register(self, request: Request, job_id: str | None) -> Response:
        body, job = self._submitted(request, job_id, "Job ID hasn't been provided",
                                    "Job ID does not match name")
        answer = self.state.register_job(job, bool(body.get("EnforceIndex")),
                                         int(body.get("JobModifyIndex") or 0))  # fmt: skip
        return self._json(answer, request, answer["Index"], query=False)

    def _plan(self, request: Request, job_id: str) -> Response:
        """``command/agent/job_endpoint.go`` ``jobPlan``: the job must be given, with its ID,
        and the ID must be the one in the path."""
        self._methods(request, "PUT", "POST")
        body, job = self._submitted(request, job_id, "Job must have a valid ID",
                                    "Job ID does not match")
        answer = self.state.plan_job(job, bool(body.get("Diff")))
        return self._json(answer, request, answer["Index"], query=False)

    def _parse(self, request: Request) -> Response:
        self._methods(request, "PUT", "POST")
        body = self._body(request)
        if not isinstance(body, dict) or not body.get("JobHCL"):
            raise NomadError(400, "Job spec is empty")
        job = self.parse_job(body["JobHCL"], body.get("Variables"), bool(body.get("Canonicalize")))
        return self._json(job, request)

    def _allocs_of_job(self, job: dict) -> list[dict]:
        return self.state.allocs_of(
            lambda a: a["JobID"] == job["ID"] and a["Namespace"] == job["Namespace"]
        )

    def _job(self, request: Request, rest: list[str]) -> Response:
        if not rest:
            return Response(404)
        job_id, sub = rest[0], "/".join(rest[1:])
        key = (self._namespace(request), job_id)
        if sub == "" and request.method in ("PUT", "POST"):
            return self._register(request, job_id)
        if sub == "plan":
            return self._plan(request, job_id)
        if sub == "evaluate" and request.method in ("PUT", "POST"):
            answer = self.state.evaluate_job(key[0], job_id)  # `nomad job eval`
            return self._json(answer, request, answer["Index"], query=False)
        if sub == "" and request.method == "DELETE":
            purge = request.arg("purge").lower() in ("1", "true", "t")
            answer = self.state.deregister_job(key[0], job_id, purge)
            return self._json(answer, request, answer["Index"], query=False)
        self._methods(request, "GET")
        views: dict[str, Callable[[dict], Any]] = {
            "": lambda job: job,
            "allocations": lambda job: [shapes.alloc_stub(a) for a in self._job_allocs(
                job, request.arg("all") in ("true", "1"))],
            "evaluations": lambda job: sorted(
                (e for e in self.state.evals.values() if e["JobID"] == job_id),
                key=lambda e: e["CreateIndex"], reverse=True),
            "deployments": lambda job: sorted(
                (d for d in self.state.deployments.values() if d["JobID"] == job_id),
                key=lambda d: d["CreateIndex"], reverse=True),
            "deployment": lambda job: next(iter(sorted(
                (d for d in self.state.deployments.values() if d["JobID"] == job_id),
                key=lambda d: d["CreateIndex"], reverse=True)), None),
            "summary": lambda job: shapes.job_summary(job, self._allocs_of_job(job)),
            "versions": lambda job: {"Versions": self.state.job_versions.get(key, []),
                                     "Diffs": None},
        }  # fmt: skip
        if sub not in views:
            return Response(404)
        tables = {"": "jobs", "allocations": "allocs", "evaluations": "evals",
                  "deployments": "deployment", "deployment": "deployment",
                  "summary": "jobs", "versions": "jobs"}  # fmt: skip

        def compute() -> tuple[int, Any]:
            job = self.state.jobs.get(key)
            if job is None:
                raise NomadError(404, "job not found")
            index = job["ModifyIndex"] if sub == "" else self.state.table_index[tables[sub]]
            return index, views[sub](job)

        try:
            return self._blocking(request, compute)
        except NomadError as exc:
            return self._error(exc.status, exc.message, self.state.table_index["jobs"])

    def _job_allocs(self, job: dict, include_old: bool) -> list[dict]:
        allocs = self._allocs_of_job(job)
        return sorted(allocs, key=lambda a: a["CreateIndex"], reverse=True)

    # -- allocations, evaluations, deployments -----------------------------------------------

    def _list(self, request: Request, table: str, items: Callable[[], list[dict]],
              view: Callable[[dict], Any]) -> Response:  # fmt: skip
        self._methods(request, "GET")
        prefix = request.arg("prefix")

        def compute() -> tuple[int, Any]:
            chosen = [i for i in items() if i["ID"].startswith(prefix)]
            chosen.sort(key=lambda i: i["ID"])
            return self.state.table_index[table], [view(i) for i in chosen]

        return self._blocking(request, compute)

    def _one(self, request: Request, table: str, lookup: Callable[[], dict | None],
             view: Callable[[dict], Any], missing: str) -> Response:  # fmt: skip
        self._methods(request, "GET")

        def compute() -> tuple[int, Any]:
            item = lookup()
            if item is None:
                raise NomadError(404, missing)
            return item.get("ModifyIndex") or self.state.table_index[table], view(item)

        return self._blocking(request, compute)

    def _allocations(self, request: Request, rest: list[str]) -> Response:
        if rest:
            return Response(404)
        return self._list(request, "allocs", lambda: list(self.state.allocs.values()),
                          shapes.alloc_stub)  # fmt: skip

    def _allocation(self, request: Request, rest: list[str]) -> Response:
        if len(rest) != 1:
            return Response(404)
        return self._one(request, "allocs", lambda: self.state.allocs.get(rest[0]),
                         shapes.alloc_full, "alloc not found")  # fmt: skip

    def _evaluations(self, request: Request, rest: list[str]) -> Response:
        if rest:
            return Response(404)
        return self._list(request, "evals", lambda: list(self.state.evals.values()),
                          lambda e: e)  # fmt: skip

    def _evaluation(self, request: Request, rest: list[str]) -> Response:
        if len(rest) == 2 and rest[1] == "allocations":
            self._methods(request, "GET")
            return self._blocking(request, lambda: (self.state.table_index["allocs"], [
                shapes.alloc_stub(a) for a in self.state.allocs_of(lambda a: a["EvalID"] == rest[0])
            ]))  # fmt: skip
        if len(rest) != 1:
            return Response(404)
        return self._one(request, "evals", lambda: self.state.evals.get(rest[0]),
                         lambda e: e, "eval not found")  # fmt: skip

    def _deployments(self, request: Request, rest: list[str]) -> Response:
        if rest:
            return Response(404)
        return self._list(request, "deployment", lambda: list(self.state.deployments.values()),
                          lambda d: d)  # fmt: skip

    def _deployment(self, request: Request, rest: list[str]) -> Response:
        if len(rest) == 2 and rest[0] == "promote":
            self._methods(request, "POST", "PUT")
            return self._json(self.state.promote_deployment(rest[1]), request)
        if len(rest) == 2 and rest[0] == "allocations":
            self._methods(request, "GET")
            return self._blocking(request, lambda: (self.state.table_index["allocs"], [
                shapes.alloc_stub(a)
                for a in self.state.allocs_of(lambda a: a["DeploymentID"] == rest[1])
            ]))  # fmt: skip
        if len(rest) != 1:
            return Response(404)
        return self._one(request, "deployment", lambda: self.state.deployments.get(rest[0]),
                         lambda d: d, "deployment not found")  # fmt: skip

    # -- nodes -------------------------------------------------------------------------------

    def _nodes(self, request: Request, rest: list[str]) -> Response:
        if rest:
            return Response(404)
        return self._list(request, "nodes", lambda: list(self.state.nodes.values()),
                          shapes.node_stub)  # fmt: skip

    def _node(self, request: Request, rest: list[str]) -> Response:
        if len(rest) == 2 and rest[1] == "allocations":
            self._methods(request, "GET")

            def compute() -> tuple[int, Any]:
                allocs = self.state.allocs_of(lambda a: a["NodeID"] == rest[0])
                index = self.state.max_modify(allocs, "allocs")
                return index, [shapes.alloc_full(a) for a in allocs]

            return self._blocking(request, compute)
        if len(rest) != 1:
            return Response(404)
        return self._one(request, "nodes", lambda: self.state.nodes.get(rest[0]),
                         lambda n: n, "node not found")  # fmt: skip

    # -- agent, status, events ---------------------------------------------------------------

    def _agent(self, request: Request, rest: list[str]) -> Response:
        if rest == ["self"]:
            self._methods(request, "GET")
            return self._json(self.agent_self(), request)
        if rest == ["health"]:
            self._methods(request, "GET")
            ok = {"message": "ok", "ok": True}
            kind = request.arg("type")
            body = {k: ok for k in ("client", "server") if not kind or kind == k}
            return self._json(body, request)
        if rest == ["members"]:
            self._methods(request, "GET")
            return self._json({"ServerName": "", "ServerRegion": "global", "ServerDC": "dc1",
                               "Members": [self.agent_self()["member"]]}, request)  # fmt: skip
        return Response(404)

    def _status(self, request: Request, rest: list[str]) -> Response:
        self._methods(request, "GET")
        if rest == ["leader"]:
            return self._json("127.0.0.1:4647", request)
        if rest == ["peers"]:
            return self._json(["127.0.0.1:4647"], request)
        return Response(404)

    def _regions(self, request: Request, rest: list[str]) -> Response:
        self._methods(request, "GET")
        return self._json(["global"], request) if not rest else Response(404)

    def _event(self, request: Request, rest: list[str]) -> Response:
        if rest != ["stream"]:
            return Response(404)
        self._methods(request, "GET")
        topics = events.parse_topics(request.query.get("topic") or [])
        namespace = self._namespace(request)
        try:
            start = int(request.arg("index") or 0)
        except ValueError:
            return self._error(400, "Invalid index")
        return Response(200, {"Content-Type": "application/json"},
                        stream=events.stream(self.state, topics, namespace, start))  # fmt: skip
