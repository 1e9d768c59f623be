"""Handlers of the agent, catalog, health and status endpoints (KV is in kv_api)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from weavenomad_lab.consul import agent_self as self_view
from weavenomad_lab.consul.http import ConsulAPI, Failure, Request, Response, Route, json_body, text
from weavenomad_lab.consul.kv_api import KV_ROUTES
from weavenomad_lab.consul.records import CRITICAL, PASSING, WARNING
from weavenomad_lab.consul.registration import parse_check, parse_check_update, parse_service
from weavenomad_lab.consul.state import StateError

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def _node_meta(req: Request) -> dict[str, str]:
    pairs = (value.split(":", 1) for value in req.query.get("node-meta", []))
    return {p[0]: (p[1] if len(p) > 1 else "") for p in pairs}


def _tag(req: Request) -> str | None:
    return req.param("tag") if req.has("tag") else None


def _required(req: Request, prefix: str, what: str) -> str:
    name = req.suffix(prefix)
    if not name:
        raise Failure(text(400, f"Missing {what} name"))
    return name


# -- status and agent -------------------------------------------------------------------------


def status_leader(api: ConsulAPI, req: Request) -> Response:
    return json_body(f"{api.leader().address}:8300", req)


def status_peers(api: ConsulAPI, req: Request) -> Response:
    return json_body([f"{n.address}:8300" for n in api.state.nodes() if n.server], req)


def agent_self(api: ConsulAPI, req: Request) -> Response:
    node, leader = api.state.node(req.node), api.leader()
    return json_body(self_view.agent_self(
        name=node.name, node_id=node.node_id, address=node.address,
        datacenter=node.datacenter, server=node.server, leader=node is leader,
        leader_address=leader.address, acl_enabled=api.acl_token is not None,
        index=api.state.index, counts=api.state.agent_counts(node.name),
        version=api.flavour.version), req)


def agent_members(api: ConsulAPI, req: Request) -> Response:
    members = [] if req.filtered else [
        self_view.member(name=n.name, node_id=n.node_id, address=n.address,
                         datacenter=n.datacenter, server=n.server,
                         acl_enabled=api.acl_token is not None)
        for n in api.state.nodes()]
    return json_body(members, req)


def agent_services(api: ConsulAPI, req: Request) -> Response:
    namespace = api.read_namespace(req)
    return json_body({} if req.filtered else api.state.agent_services(req.node, namespace), req)


def agent_checks(api: ConsulAPI, req: Request) -> Response:
    namespace = api.read_namespace(req)
    return json_body({} if req.filtered else api.state.agent_checks(req.node, namespace), req)


#: the HTTP status of ``agent/health/service/id`` per aggregated status (Consul's
#: ``agentHealthService``; maintenance, like critical, is 503)
_HEALTH_CODES = {PASSING: 200, WARNING: 429}


def agent_service_health(api: ConsulAPI, req: Request) -> Response:
    """One local service with its checks and their aggregated status, the HTTP status saying
    it (200 passing, 429 warning, 503 otherwise); 404 with an empty answer when the agent has
    no such service. ``?format=text`` (or ``Accept: text/plain``) answers the status alone.
    Under ACLs an anonymous read is refused (403), as Consul's ``ServiceRead`` check does."""
    service_id = req.suffix("/v1/agent/health/service/id/")
    if not service_id:
        raise Failure(text(400, "Missing serviceID"))
    found = api.state.agent_service_health(req.node, service_id, api.read_namespace(req))
    as_text = (req.headers.get("Accept") or "").startswith("text/plain") or \
        req.param("format") == "text"
    if found is None:
        reason = f"ServiceId {service_id} not found"
        if as_text:
            return text(404, reason)
        return json_body({"AggregatedStatus": CRITICAL, "Service": None, "Checks": None}, req,
                         status=404)
    status, body = found
    code = _HEALTH_CODES.get(status, 503)
    return text(code, status) if as_text else json_body(body, req, status=code)


def service_register(api: ConsulAPI, req: Request) -> Response:
    spec = parse_service(req.body)
    namespace, partition = api.tenancy(req, spec.namespace, spec.partition)
    api.check_write(namespace)
    spec = replace(spec, namespace=namespace, partition=partition)
    # Consul 1.4.0 ignores the parameter (recorded); from 1.6.1 on it drops the checks the
    # request leaves out, whoever registered them (see versions)
    replacing = req.has("replace-existing-checks") and req.param(
        "replace-existing-checks") in ("", "true") and api.flavour.replaces_existing_checks
    api.state.register_service(req.node, spec, replacing)
    return Response(200)


def service_deregister(api: ConsulAPI, req: Request) -> Response:
    service_id = req.suffix("/v1/agent/service/deregister/")
    if not service_id:
        raise StateError("ServiceID missing")
    api.state.deregister_service(req.node, service_id)
    return Response(200)


def check_register(api: ConsulAPI, req: Request) -> Response:
    spec = parse_check(req.body)
    namespace, partition = api.tenancy(req, spec.namespace, spec.partition)
    api.check_write(namespace)
    api.state.register_check(req.node, replace(spec, namespace=namespace, partition=partition))
    return Response(200)


def check_deregister(api: ConsulAPI, req: Request) -> Response:
    check_id = req.suffix("/v1/agent/check/deregister/")
    if not check_id:
        raise StateError("CheckID missing")
    api.state.deregister_check(req.node, check_id)
    return Response(200)


def _ttl_handler(prefix: str, status: str) -> Callable[[ConsulAPI, Request], Response]:
    def handler(api: ConsulAPI, req: Request) -> Response:
        api.state.update_ttl(req.node, req.suffix(prefix), status, req.param("note"))
        return Response(200)

    return handler


def check_update(api: ConsulAPI, req: Request) -> Response:
    status, output = parse_check_update(req.body)
    api.state.update_ttl(req.node, req.suffix("/v1/agent/check/update/"), status, output)
    return Response(200)


# -- catalog and health -----------------------------------------------------------------------


def catalog_datacenters(api: ConsulAPI, req: Request) -> Response:
    return json_body([api.state.datacenter], req)


def catalog_nodes(api: ConsulAPI, req: Request) -> Response:
    return api.read(req, lambda: api.state.catalog_nodes(_node_meta(req)), [])


def catalog_services(api: ConsulAPI, req: Request) -> Response:
    return api.read(req, lambda: api.state.catalog_services(_node_meta(req)), {})


def catalog_service(api: ConsulAPI, req: Request) -> Response:
    name = _required(req, "/v1/catalog/service/", "service")
    namespace = api.read_namespace(req)
    return api.read(req, lambda: api.state.catalog_service(name, _tag(req), _node_meta(req),
                                                           namespace), [])


def catalog_node(api: ConsulAPI, req: Request) -> Response:
    name = _required(req, "/v1/catalog/node/", "node")
    return api.read(req, lambda: api.state.catalog_node(name), None)


def health_service(api: ConsulAPI, req: Request) -> Response:
    name = _required(req, "/v1/health/service/", "service")
    passing = False
    if req.has("passing"):
        value = req.param("passing")
        if value not in _TRUE | _FALSE | {""}:
            raise Failure(text(400, "Invalid value for ?passing"))
        passing = value not in _FALSE
    namespace = api.read_namespace(req)
    return api.read(req, lambda: api.state.health_service(
        name, _tag(req), _node_meta(req), passing, namespace), [])


_STATES = ("any", PASSING, WARNING, CRITICAL)


def health_state(api: ConsulAPI, req: Request) -> Response:
    state = _required(req, "/v1/health/state/", "check state")
    if state not in _STATES:
        raise Failure(text(400, "Bad check state"))
    namespace = api.read_namespace(req)
    return api.read(req, lambda: api.state.health_state(state, _node_meta(req), namespace), [])


def health_checks(api: ConsulAPI, req: Request) -> Response:
    name = _required(req, "/v1/health/checks/", "service")
    return api.read(req, lambda: api.state.health_checks(name, _node_meta(req)), [])


def health_node(api: ConsulAPI, req: Request) -> Response:
    name = _required(req, "/v1/health/node/", "node")
    return api.read(req, lambda: api.state.health_node(name), [])


_GET, _PUT = ("GET",), ("PUT",)
ROUTES = (
    Route("/v1/status/leader", _GET, status_leader, acl=False),
    Route("/v1/status/peers", _GET, status_peers, acl=False),
    Route("/v1/agent/self", _GET, agent_self),
    Route("/v1/agent/members", _GET, agent_members, acl="filter"),
    Route("/v1/agent/services", _GET, agent_services, acl="filter"),
    Route("/v1/agent/checks", _GET, agent_checks, acl="filter"),
    Route("/v1/agent/health/service/id/", _GET, agent_service_health),
    Route("/v1/agent/service/register", _PUT, service_register),
    Route("/v1/agent/service/deregister/", _PUT, service_deregister),
    Route("/v1/agent/check/register", _PUT, check_register),
    Route("/v1/agent/check/deregister/", _PUT, check_deregister),
    Route("/v1/agent/check/pass/", _PUT, _ttl_handler("/v1/agent/check/pass/", PASSING)),
    Route("/v1/agent/check/warn/", _PUT, _ttl_handler("/v1/agent/check/warn/", WARNING)),
    Route("/v1/agent/check/fail/", _PUT, _ttl_handler("/v1/agent/check/fail/", CRITICAL)),
    Route("/v1/agent/check/update/", _PUT, check_update),
    Route("/v1/catalog/datacenters", _GET, catalog_datacenters, acl=False),
    Route("/v1/catalog/nodes", _GET, catalog_nodes, acl="filter"),
    Route("/v1/catalog/services", _GET, catalog_services, acl="filter"),
    Route("/v1/catalog/service/", _GET, catalog_service, acl="filter"),
    Route("/v1/catalog/node/", _GET, catalog_node, acl="filter"),
    Route("/v1/health/service/", _GET, health_service, acl="filter"),
    Route("/v1/health/checks/", _GET, health_checks, acl="filter"),
    Route("/v1/health/node/", _GET, health_node, acl="filter"),
    Route("/v1/health/state/", _GET, health_state, acl="filter"),
    *KV_ROUTES,
)
