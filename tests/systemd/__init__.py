"""The systemd tier: the node's daemons under a real systemd, in a booted Debian container.

A package, so that its ``conftest`` does not take the module name ``conftest`` from
``tests/conftest.py``."""
