"""The fault tier: crashes, restarts and misbehaving backends on a lab of its own.

A package, so that its ``conftest`` does not take the module name ``conftest`` from
``tests/conftest.py`` (the lab tests import ``lab_name`` from it)."""
