"""Fixtures of the systemd tier: a Debian container booted with systemd inside the network
namespace of a node of the session's lab (its simulated Nomad and Consul, emulated Weave and
private dockerd), with the product installed from this checkout. Whatever keeps either from
coming up fails the tests with the reason; nothing here skips."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from .systemdbox import BoxError, boot, build_wheel, install_product, prepare_venv, rootfs

LAB_TESTS = str(Path(__file__).resolve().parent.parent / "lab")
if LAB_TESTS not in sys.path:  # labtools, shared with the lab tests
    sys.path.insert(0, LAB_TESTS)


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.systemd)


def _fail(what: str, exc: BaseException) -> None:
    reason = exc.one_line() if hasattr(exc, "one_line") else str(exc)
    pytest.fail(f"{what}: {reason}", pytrace=False)


@pytest.fixture(scope="session")
def box(lab, tmp_path_factory):
    """The booted container (a :class:`systemdbox.Box`) in the first node of the session's lab
    (tests/conftest.py), the product installed."""
    work = tmp_path_factory.mktemp("systemd-tier")
    node = lab.nodes[0]
    started = time.monotonic()
    try:
        root = rootfs(work / "debootstrap.log")
        wheel = build_wheel(work)
        prepare_venv(root, wheel, work / "venv.log")
        booted = boot(root, f"wn{os.getpid()}", node.netns,
                      {str(wheel.parent): "/run/weavenomad-wheels",
                       str(node.docker_sock): "/run/docker.sock"}, work / "console.log")
    except BoxError as exc:
        _fail("the systemd container did not boot", exc)
    try:
        try:
            install_product(booted, wheel)
        except AssertionError as exc:
            _fail("the product did not install in the container", exc)
        print(f"\nsystemd tier: container up with the product in "
              f"{time.monotonic() - started:.1f}s")
        yield booted
    finally:
        booted.shutdown()
