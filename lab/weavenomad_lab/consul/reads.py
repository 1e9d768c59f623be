"""The read side of :class:`~weavenomad_lab.consul.state.ConsulState`: catalog, health and KV
queries with the index Consul 1.4 reports for each and the watch keys of what they read.

Indexes as Consul's state store computes them: a service's reads use its ``service.<name>``
index (falling back to the tables' when no instance is left), catalog/services the
``services`` table, a KV key its own ModifyIndex (the table's when it is missing), a KV prefix
the highest index under it including deletes. Never 0: Consul reports at least 1.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from weavenomad_lab.consul.kv import KVStore
from weavenomad_lab.consul.records import (
    CRITICAL,
    PASSING,
    WARNING,
    Check,
    Node,
    RawJSON,
    Service,
    encode,
    json_array,
    json_object,
)


@dataclass
class Answer:
    index: int
    body: Any
    watch: frozenset[str]
    prefixes: tuple[str, ...] = ()
    found: bool = True


def service_key(name: str) -> str:
    return f"service:{name.lower()}"


def node_key(name: str) -> str:
    return f"node:{name.lower()}"


#: a namespace filter that lets everything through (Consul CE, or Enterprise's ``ns=*``)
ALL_NAMESPACES = None


#: the check IDs of Consul's maintenance modes (agent/structs: NodeMaint, ServiceMaintPrefix)
NODE_MAINTENANCE, SERVICE_MAINTENANCE_PREFIX = "_node_maintenance", "_service_maintenance:"
MAINTENANCE = "maintenance"


def aggregated_status(checks: list[Check]) -> str:
    """Consul's ``api.HealthChecks.AggregatedStatus``: maintenance over critical over warning
    over passing; passing for no checks at all."""
    statuses = {c.status for c in checks}
    if any(c.check_id == NODE_MAINTENANCE or c.check_id.startswith(SERVICE_MAINTENANCE_PREFIX)
           for c in checks):
        return MAINTENANCE
    for status in (CRITICAL, WARNING):
        if status in statuses:
            return status
    return PASSING


def in_namespace(item: Service | Check, namespace: str | None) -> bool:
    """Whether a service or check is visible to a read of ``namespace`` (None: all)."""
    return namespace is None or item.namespace in (None, namespace)


class CatalogReads:
    """Queries over the state's tables; the state supplies the attributes below."""

    _lock: threading.RLock
    _tables: dict[str, int]
    _service_index: dict[str, int]
    _nodes: dict[str, Node]
    _services: dict[str, dict[str, Service]]
    _checks: dict[str, dict[str, Check]]
    kv: KVStore

    def _max_index(self, *tables: str) -> int:
        return max(self._tables[t] for t in tables)

    def _service_max_index(self, name: str, checks: bool) -> int:
        index = self._service_index.get(name.lower())
        if index is not None:
            return index
        return self._max_index("nodes", "services", *(["checks"] if checks else []))

    def _node_matches(self, node: Node, node_meta: dict[str, str]) -> bool:
        return all(node.meta.get(k) == v for k, v in node_meta.items())

    def _instances(self, name: str, tag: str | None, node_meta: dict[str, str],
                   namespace: str | None = ALL_NAMESPACES) -> list[tuple[Node, Service]]:
        lname = name.lower()
        found = []
        for node_name in sorted(self._services, key=str.lower):
            node = self._nodes[node_name]
            if not self._node_matches(node, node_meta):
                continue
            for sid in sorted(self._services[node_name], key=str.lower):
                service = self._services[node_name][sid]
                if service.name.lower() != lname or not in_namespace(service, namespace):
                    continue
                if tag is not None and tag.lower() not in (t.lower() for t in service.tags):
                    continue
                found.append((node, service))
        return found

    def agent_services(self, node: str, namespace: str | None = ALL_NAMESPACES) -> RawJSON:
        with self._lock:
            services = self._services[node]
            return json_object((sid, s.agent_json()) for sid, s in sorted(services.items())
                               if s.agent_local and in_namespace(s, namespace))

    def agent_checks(self, node: str, namespace: str | None = ALL_NAMESPACES) -> RawJSON:
        with self._lock:
            services = self._services[node]
            return json_object((cid, c.json(services.get(c.service_id), indexes=False))
                               for cid, c in sorted(self._checks[node].items())
                               if c.agent_local and in_namespace(c, namespace))

    def agent_service_health(self, node: str, service_id: str,
                             namespace: str | None = ALL_NAMESPACES) -> tuple[str, RawJSON] | None:
        """``/v1/agent/health/service/id/<id>``: (the aggregated status, the body) of a service
        of the node's agent, or None when it has none by that ID. As Consul's
        ``agentHealthService``: the service's checks and the node's own local ones (no
        ``ServiceID``), the worst status over them, passing when there are none."""
        with self._lock:
            service = self._services[node].get(service_id)
            if service is None or not service.agent_local or not in_namespace(service, namespace):
                return None
            services = self._services[node]
            checks = [c for _, c in sorted(self._checks[node].items())
                      if c.agent_local and c.service_id in (service_id, "")]
            status = aggregated_status(checks)
            body = json_object((("AggregatedStatus", encode(status)),
                                ("Service", service.agent_json()),
                                ("Checks", json_array(c.json(services.get(c.service_id),
                                                             indexes=False)
                                                      for c in checks))))
            return status, body

    def agent_counts(self, node: str) -> dict[str, int]:
        with self._lock:
            checks = [c for c in self._checks[node].values() if c.agent_local]
            return {
                "services": sum(s.agent_local for s in self._services[node].values()),
                "checks": len(checks),
                "check_ttls": sum(1 for c in checks if c.definition and c.definition.kind == "ttl"),
            }

    def catalog_services(self, node_meta: dict[str, str]) -> Answer:
        with self._lock:
            tags: dict[str, set[str]] = {}
            for node_name, services in self._services.items():
                if not self._node_matches(self._nodes[node_name], node_meta):
                    continue
                for service in services.values():
                    tags.setdefault(service.name, set()).update(service.tags)
            index = self._max_index("services", *(["nodes"] if node_meta else []))
            body = {name: sorted(t) for name, t in sorted(tags.items())}
            return Answer(max(index, 1), body, frozenset({"services", "nodes"}))

    def catalog_service(self, name: str, tag: str | None, node_meta: dict[str, str],
                        namespace: str | None = ALL_NAMESPACES) -> Answer:
        with self._lock:
            body = json_array(s.catalog_json(n)
                              for n, s in self._instances(name, tag, node_meta, namespace))
            index = self._service_max_index(name, checks=False)
            return Answer(max(index, 1), body, frozenset({service_key(name), "nodes"}))

    def _checks_by_service(self, node: str) -> dict[str, list[Check]]:
        """The node's checks by service id ("" for node checks), in Consul's order."""
        grouped: dict[str, list[Check]] = {}
        for check in sorted(self._checks[node].values(), key=lambda c: c.check_id.lower()):
            grouped.setdefault(check.service_id, []).append(check)
        return grouped

    def health_service(self, name: str, tag: str | None, node_meta: dict[str, str],
                       passing_only: bool, namespace: str | None = ALL_NAMESPACES) -> Answer:
        with self._lock:
            entries = []
            grouped: dict[str, dict[str, list[Check]]] = {}
            for node, service in self._instances(name, tag, node_meta, namespace):
                if node.name not in grouped:
                    grouped[node.name] = self._checks_by_service(node.name)
                by_service = grouped[node.name]
                mine = by_service.get("", []) + by_service.get(service.service_id, [])
                if passing_only and any(c.status != PASSING for c in mine):
                    continue
                services = self._services[node.name]
                checks = json_array(c.json(services.get(c.service_id)) for c in mine)
                entries.append(f'{{"Node":{node.json()},"Service":{service.health_json()},'
                               f'"Checks":{checks}}}')
            index = self._service_max_index(name, checks=True)
            return Answer(max(index, 1), json_array(entries),
                          frozenset({service_key(name), "nodes"}))

    def dns_instances(self, name: str, tag: str | None) -> list[tuple[Node, Service]]:
        """What Consul's DNS returns for ``name`` (and ``tag``): the instances of the default
        namespace none of whose checks (the node's included) is critical."""
        with self._lock:
            found = []
            grouped: dict[str, dict[str, list[Check]]] = {}
            for node, service in self._instances(name, tag, {}):
                if service.namespace not in (None, "default"):
                    continue
                if node.name not in grouped:
                    grouped[node.name] = self._checks_by_service(node.name)
                by_service = grouped[node.name]
                mine = by_service.get("", []) + by_service.get(service.service_id, [])
                if all(c.status != CRITICAL for c in mine):
                    found.append((node, service))
            return found

    def health_checks(self, name: str, node_meta: dict[str, str]) -> Answer:
        with self._lock:
            grouped: dict[str, dict[str, list[Check]]] = {}
            items = []
            for node, service in self._instances(name, None, node_meta):
                if node.name not in grouped:
                    grouped[node.name] = self._checks_by_service(node.name)
                items += [c.json(service) for c in grouped[node.name].get(service.service_id, [])]
            body = json_array(items)
            index = (self._service_max_index(name, checks=True) if node_meta
                     else self._max_index("checks"))
            return Answer(max(index, 1), body, frozenset({service_key(name), "checks"}))

    def health_state(self, state: str, node_meta: dict[str, str],
                     namespace: str | None = ALL_NAMESPACES) -> Answer:
        """``/v1/health/state/<state>``: every check in ``state`` ("any": all of them), node
        checks included, as Fabio reads them."""
        with self._lock:
            items = []
            for node_name in sorted(self._checks, key=str.lower):
                if not self._node_matches(self._nodes[node_name], node_meta):
                    continue
                services = self._services[node_name]
                for _, check in sorted(self._checks[node_name].items()):
                    if state != "any" and check.status != state:
                        continue
                    if check.service_id and not in_namespace(check, namespace):
                        continue
                    items.append(check.json(services.get(check.service_id)))
            return Answer(max(self._max_index("checks"), 1), json_array(items),
                          frozenset({"checks", "nodes"}))

    def catalog_nodes(self, node_meta: dict[str, str]) -> Answer:
        with self._lock:
            body = [n.view() for _, n in sorted(self._nodes.items())
                    if self._node_matches(n, node_meta)]
            return Answer(max(self._max_index("nodes"), 1), body, frozenset({"nodes"}))

    def _find_node(self, name: str) -> Node | None:
        return next((n for n in self._nodes.values() if n.name.lower() == name.lower()), None)

    def catalog_node(self, name: str) -> Answer:
        with self._lock:
            node = self._find_node(name)
            index = self._max_index("nodes", "services")
            watch = frozenset({node_key(name), "nodes"})
            if node is None:
                return Answer(max(index, 1), None, watch, found=False)
            services = {}
            for sid, service in sorted(self._services[node.name].items()):
                view = service.health_view()
                services[sid] = view
            return Answer(max(index, 1), {"Node": node.view(), "Services": services}, watch)

    def health_node(self, name: str) -> Answer:
        with self._lock:
            node = self._find_node(name)
            body = []
            if node is not None:
                services = self._services[node.name]
                body = [c.view(services.get(c.service_id))
                        for _, c in sorted(self._checks[node.name].items())]
            return Answer(max(self._max_index("checks"), 1), body,
                          frozenset({node_key(name), "checks"}))

    def kv_get(self, key: str) -> Answer:
        with self._lock:
            entry = self.kv.get(key)
            watch = frozenset({f"kv:{key}"})
            if entry is None:
                return Answer(max(self.kv.table_index, 1), None, watch, found=False)
            return Answer(entry.modify_index, [entry.view()], watch)

    def kv_list(self, prefix: str) -> Answer:
        with self._lock:
            entries = self.kv.under(prefix)
            index = max(self.kv.prefix_index(prefix, entries), 1)
            return Answer(index, [e.view() for e in entries], frozenset(),
                          (f"kv:{prefix}",), found=bool(entries))

    def kv_keys(self, prefix: str, separator: str) -> Answer:
        with self._lock:
            keys, entries = self.kv.keys(prefix, separator)
            index = max(self.kv.prefix_index(prefix, entries), 1)
            return Answer(index, keys, frozenset(), (f"kv:{prefix}",), found=bool(keys))

