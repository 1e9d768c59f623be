"""Wire the daemon to the real world: clients from the settings, logs, metrics server, systemd
notifier and signals. ``weavenomad reconciler run`` is one call to :func:`serve`."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Mapping

from weavenomad.errors import ExitCode
from weavenomad.reconcile.daemon import Reconciler
from weavenomad.reconcile.metrics import Metrics
from weavenomad.reconcile.metrics import serve as serve_metrics
from weavenomad.runtime import logs
from weavenomad.runtime.notify import Notifier

log = logging.getLogger("weavenomad.reconciler")


def build(settings, environ: Mapping[str, str], metrics: Metrics | None = None) -> Reconciler:
    from weavenomad.clients import consul_client, docker_client, nomad_client, weave_client
    from weavenomad.tenancy.registry import TenantRegistry

    consul = consul_client(settings)
    return Reconciler(
        nomad=nomad_client(settings), consul=consul, docker=docker_client(settings),
        weave=weave_client(settings), registry=TenantRegistry(consul, settings.kv_prefix),
        settings=settings.reconciler, metrics=metrics or Metrics(),
        notifier=Notifier.from_environ(environ),
    )


def serve(settings, environ: Mapping[str, str], *, once: bool = False) -> int:
    """Run the reconciler until SIGTERM/SIGINT (or one converging pass with ``once``); the
    exit code."""
    logs.configure(settings.reconciler.log_format, settings.debug, environ=environ)
    metrics = Metrics()
    server = None
    if settings.reconciler.metrics_addr:
        server = serve_metrics(metrics, settings.reconciler.metrics_addr)
        log.info("metrics on http://%s/metrics", settings.reconciler.metrics_addr)
    reconciler = build(settings, environ, metrics)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda *_: reconciler.request_stop())
    try:
        if once:
            converged = reconciler.run_once()
            log.info("one pass: %s", "converged" if converged else "not converged")
            return ExitCode.OK if converged else ExitCode.ATTENTION
        log.info("reconciler starting (resync every %gs)", settings.reconciler.resync)
        reconciler.run()
        log.info("reconciler stopped")
        return ExitCode.OK
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if server is not None:
            server.shutdown()
