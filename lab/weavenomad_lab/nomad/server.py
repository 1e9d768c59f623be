"""The simulated Nomad process of a lab: shared server state, one agent per lab node, and the
HTTP listeners: per node ``127.0.0.1:4646`` inside the node's namespace and
``127.0.0.1:<ports["nomad"]>`` on the host loopback (same API, that node's ``agent/self``),
plus a control socket (HTTP over ``S/nomad/control.sock``) for what only the lab does:
restarting a node's agent and tuning the Consul sync timing in tests.

With the lab's security (``lab up --acl --tls``) the HTTP listeners want the token
(:mod:`weavenomad_lab.nomad.http`) and serve HTTPS only, answering a plain HTTP request as
Go's server does; the control socket stays plain (mode 0600, root only).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from weavenomad.errors import ValidationError
from weavenomad_lab.layout import NOMAD_PORT, LabLayout
from weavenomad_lab.netns import listen_tcp
from weavenomad_lab.nomad import versions
from weavenomad_lab.nomad.agent import NodeAgent, remove_labelled_containers
from weavenomad_lab.nomad.http import MAX_BODY, NomadAPI, Request, Response
from weavenomad_lab.nomad.state import NomadError, NomadState

log = logging.getLogger(__name__)


def control_socket_path(lab: LabLayout) -> Path:
    return lab.component_dir("nomad") / "control.sock"


def parse_job_text(text: str, variables: Any, canonical: bool) -> dict:
    """``/v1/jobs/parse``: the lab's jobspec (HCL -> canonical JSON), errors as Nomad's 400.

    ``variables`` is ignored on purpose: Nomad 1.0's JobsParseRequest has no Variables field, so
    a job whose variables have no default fails to parse there, as it does here."""
    from weavenomad_lab.nomad.jobspec import JobspecError, parse_job

    del variables
    values: dict[str, str] = {}
    try:
        return parse_job(text, "input.hcl", variables=values, canonical=canonical)
    except JobspecError as exc:
        raise NomadError(400, exc.nomad_style("input.hcl")) from None
    except ValidationError as exc:
        raise NomadError(400, exc.message) from None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Listener

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(Response(413, {"Content-Type": "text/plain; charset=utf-8"},
                                b"http: request body too large"), close=True)  # fmt: skip
            return
        body = self.rfile.read(length) if length else b""
        request = Request(self.command, self.path, body, dict(self.headers.items()))
        try:
            response = self.server.handle(request)
        except Exception:  # a bug must not kill the listener: answer like Go's recover does
            log.exception("%s %s failed", self.command, self.path)
            response = Response(500, {"Content-Type": "text/plain; charset=utf-8"},
                                b"internal error")  # fmt: skip
        self._send(response)

    def _send(self, response: Response, close: bool = False) -> None:
        self.send_response_only(response.status)
        self.send_header("Date", self.date_time_string())
        for key, value in response.headers.items():
            self.send_header(key, value)
        if response.stream is not None:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for chunk in response.stream:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                    if self.server.stopping.is_set():
                        break
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass  # the client went away: the normal end of an event stream
            self.close_connection = True
            return
        self.send_header("Content-Length", str(len(response.body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(response.body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        log.debug("%s %s", self.address_string(), format % args)


class _Listener(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, sock: socket.socket, api: Any, stopping: threading.Event,
                 tls: ssl.SSLContext | None = None):
        super().__init__(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.server_address = sock.getsockname()
        self.api = api
        self.stopping = stopping
        self.tls = tls

    def handle(self, request: Request) -> Response:
        return self.api.handle(request)

    def finish_request(self, request, client_address) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        from weavenomad_lab.security import GO_PLAIN_HTTP_ANSWER, accept_tls

        wrapped = accept_tls(self.tls, request, GO_PLAIN_HTTP_ANSWER)
        if wrapped is None:
            return
        try:
            super().finish_request(wrapped, client_address)
        finally:
            wrapped.close()


class _UnixListener(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, api: Any, stopping: threading.Event):
        path.unlink(missing_ok=True)
        super().__init__(str(path), _Handler)
        os.chmod(path, 0o600)
        self.api = api
        self.stopping = stopping

    def handle(self, request: Request) -> Response:
        return self.api.handle(request)

    def get_request(self):  # AF_UNIX peers have no address; BaseHTTPRequestHandler wants one
        conn, _ = self.socket.accept()
        return conn, ("control", 0)


class ControlAPI:
    """``POST /restart/<node>``, ``POST /crash/<node>`` and ``POST /boot/<node>`` (a node's
    reboot), ``PUT /sync`` ``{"interval": s, "probation": s}``, ``PUT /version``
    ``{"version": "1.7.7"}`` (:mod:`.versions`), ``GET /status``: the lab's own levers, never
    part of Nomad's API."""

    def __init__(self, daemon: NomadDaemon):
        self.daemon = daemon

    def handle(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]
        try:
            if request.method == "POST" and len(parts) == 2 and parts[0] == "restart":
                agent = self.daemon.agent(parts[1])
                error = agent.restart()
                return _json({"node": agent.node.name, "error": error}, 500 if error else 200)
            if request.method == "POST" and len(parts) == 2 and parts[0] in ("crash", "boot"):
                name = self.daemon.agent(parts[1]).node.name
                (self.daemon.crash if parts[0] == "crash" else self.daemon.boot)(name)
                return _json({"node": name})
            if request.method == "PUT" and parts == ["version"]:
                body = json.loads(request.body or b"{}")
                semantics = self.daemon.set_version(str(body.get("version") or ""))
                return _json({"version": semantics.version, "modern": semantics.modern})
            if request.method == "PUT" and parts == ["sync"]:
                body = json.loads(request.body or b"{}")
                self.daemon.set_sync_timing(body.get("interval"), body.get("probation"))
                return _json({"ok": True})
            if request.method == "GET" and parts == ["status"]:
                return _json(self.daemon.status())
        except KeyError as exc:
            return _json({"error": f"no node {exc}"}, 404)
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
        return Response(404)


def _json(value: Any, status: int = 200) -> Response:
    return Response(status, {"Content-Type": "application/json"}, json.dumps(value).encode())


class NomadDaemon:
    def __init__(self, lab: LabLayout, *, sync_interval: float, probation: float,
                 in_netns: bool = True, acl_token: str | None = None,
                 tls: ssl.SSLContext | None = None):  # fmt: skip
        self.lab = lab
        self.acl_token = acl_token
        self.tls = tls
        self.state = NomadState()
        self.stopping = threading.Event()
        self.in_netns = in_netns
        self.sync_interval, self.probation = sync_interval, probation
        self.semantics = versions.read_settings(lab.component_dir("nomad"))
        self.agents: dict[str, NodeAgent] = {node.name: self._new_agent(node)
                                             for node in lab.nodes}
        self.listeners: list[socketserver.BaseServer] = []
        #: each node's own HTTP listeners, closed while its agent is down (a reboot)
        self.node_listeners: dict[str, list[socketserver.BaseServer]] = {}

    def _new_agent(self, node) -> NodeAgent:
        agent = NodeAgent(self.lab, node, self.state, sync_interval=self.sync_interval,
                          probation=self.probation, netns="node" if self.in_netns else None,
                          stop=threading.Event())
        agent.set_semantics(self.semantics)
        return agent

    def set_version(self, version: str) -> versions.NomadSemantics:
        """Play another Nomad version from now on (and at the next start); raises ValueError
        for an unknown one."""
        semantics = versions.write_settings(self.lab.component_dir("nomad"), version)
        self.semantics = semantics
        for agent in self.agents.values():
            agent.set_semantics(semantics)
        return semantics

    def set_sync_timing(self, interval: float | None, probation: float | None) -> None:
        self.sync_interval = interval if interval is not None else self.sync_interval
        self.probation = probation if probation is not None else self.probation
        for agent in self.agents.values():
            agent.syncer.set_timing(interval, probation)

    def agent(self, name: str) -> NodeAgent:
        for agent in self.agents.values():
            if name in (agent.node.name, agent.node_id, str(agent.node.index)):
                return agent
        raise KeyError(name)

    def status(self) -> list[dict]:
        return [{"node": a.node.name, "node_id": a.node_id, "docker": a.config.docker_endpoint,
                 "healthy": bool(self.state.nodes.get(a.node_id, {}).get("Drivers", {})
                                 .get("docker", {}).get("Healthy")),
                 "config_error": a.config_error, "consul_error": a.syncer.last_sync_error}
                for a in self.agents.values()]  # fmt: skip

    def start(self) -> None:
        for agent in self.agents.values():
            remove_labelled_containers(agent.node)  # leftovers of an earlier run: state was lost
            agent.start()
        for agent in self.agents.values():
            self._listen(agent.node.name)
        self._serve(_UnixListener(control_socket_path(self.lab), ControlAPI(self),
                                  self.stopping))  # fmt: skip

    def _listen(self, name: str) -> None:
        agent = self.agents[name]
        api = NomadAPI(self.state, agent.agent_self, parse_job_text, self.acl_token)
        sockets = [listen_tcp("127.0.0.1", agent.node.ports["nomad"])]
        if self.in_netns:
            sockets.append(listen_tcp("127.0.0.1", NOMAD_PORT, netns=agent.node.netns))
        self.node_listeners[name] = [_Listener(sock, api, self.stopping, self.tls)
                                     for sock in sockets]
        for listener in self.node_listeners[name]:
            self._serve(listener)

    def crash(self, name: str) -> None:
        """A node's agent dies with its node (a reboot): its API goes, its runners stop
        without stopping or deregistering anything; the servers keep its allocations."""
        for listener in self.node_listeners.pop(name, []):
            listener.shutdown()
            listener.server_close()
            self.listeners.remove(listener)
        self.agents[name].crash()

    def boot(self, name: str) -> None:
        """The node's agent starts again: same node ID (its data dir), its allocations taken
        up again; tasks whose containers died with the node start anew, running ones are
        taken over."""
        if name in self.node_listeners:
            return
        agent = self._new_agent(self.agents[name].node)
        self.agents[name] = agent
        agent.start()
        self._listen(name)

    def _serve(self, listener: socketserver.BaseServer) -> None:
        self.listeners.append(listener)
        threading.Thread(target=listener.serve_forever, kwargs={"poll_interval": 0.2},
                         name="http", daemon=True).start()  # fmt: skip

    def shutdown(self, remove_containers: bool = False) -> None:
        self.stopping.set()
        for listener in self.listeners:
            listener.shutdown()
            listener.server_close()
        for agent in self.agents.values():
            agent.shutdown(remove_containers)
        control_socket_path(self.lab).unlink(missing_ok=True)

