"""Plumbing that more than one daemon uses: systemd's notify protocol and unit installation,
log formats, backoff and Go durations.

The reconciler daemon (``weavenomad reconciler run``) and the guard keeper (``weavenomad guard
ensure --every``) both run under systemd and log the same way; the clients send Go durations to
Nomad and Consul and back off the same way. None of it knows tenants, jobs or Consul's services:
modules here import only the standard library and :mod:`weavenomad.errors`.
"""
