"""The reconciler's Prometheus metrics, in a registry of its own (tests run several daemons in
one process), served on ``--metrics-addr`` by prometheus_client's threaded HTTP server."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from weavenomad.errors import ConfigError

#: from container start to its Weave address in Consul; the target is under 1 s at p99
LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.passes = Counter("weavenomad_reconciler_passes", "Reconcile passes run, by trigger "
                              "and result.", ["trigger", "result"], registry=r)
        self.pass_seconds = Histogram("weavenomad_reconciler_pass_seconds",
                                      "Duration of a reconcile pass.", registry=r,
                                      buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0))
        self.drift = Counter("weavenomad_reconciler_drift", "Differences found between Consul "
                             "and the wanted state, by action.", ["action"], registry=r)
        self.registrations = Counter("weavenomad_reconciler_registrations",
                                     "Twins, masks and subnet exposures made.", ["kind"],
                                     registry=r)
        self.removals = Counter("weavenomad_reconciler_removals",
                                "Twins and masks removed.", ["kind"], registry=r)
        self.errors = Counter("weavenomad_reconciler_errors", "Failed calls, by backend.",
                              ["backend"], registry=r)
        self.problems = Counter("weavenomad_reconciler_problems", "Services that cannot be "
                                "advertised as they are, by reason (counted once each).",
                                ["reason"], registry=r)
        self.violations = Counter("weavenomad_reconciler_tenant_violations", "Tasks whose Weave "
                                  "address lies outside their tenant's subnet, or in a subnet "
                                  "that is not their job's (another tenant's, a quarantined "
                                  "one), by the job's tenant (empty: none).", ["tenant"],
                                  registry=r)
        self.latency = Histogram("weavenomad_reconciler_advertise_seconds", "Seconds from a "
                                 "container's start to its Weave address registered in Consul.",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.twins = Gauge("weavenomad_reconciler_twins", "Twins wanted after the last pass.",
                           registry=r)
        self.masks = Gauge("weavenomad_reconciler_masks", "Masks wanted after the last pass.",
                           registry=r)
        self.converged = Gauge("weavenomad_reconciler_converged", "1 when the last pass left "
                               "nothing to do.", registry=r)
        self.last_success = Gauge("weavenomad_reconciler_last_success_timestamp_seconds",
                                  "When a pass last completed.", registry=r)


def parse_listen_addr(text: str) -> tuple[str, int]:
    """``host:port`` or ``:port`` (all interfaces) for ``--metrics-addr``. Pure."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"invalid metrics address {text!r}: expected HOST:PORT",
                          hint="--metrics-addr 127.0.0.1:9810")
    return host.strip("[]") or "0.0.0.0", int(port)


def serve(metrics: Metrics, addr: str):
    """Serve ``/metrics`` on ``addr`` from a daemon thread; returns the server (``shutdown()``)."""
    host, port = parse_listen_addr(addr)
    try:
        server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {addr}: {exc.strerror or exc}",
                          hint="choose another --metrics-addr") from None
    return server
