"""Fixtures of the systemd tier: a one-node lab (its simulated Nomad and Consul, emulated Weave
and private dockerd) and a Debian container booted with systemd inside that node's network
namespace, with the product installed from this checkout. Whatever keeps either from coming up
fails the tests with the reason; nothing here skips."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from .systemdbox import BoxError, boot, build_wheel, install_product, prepare_venv, rootfs


def lab_name() -> str:
    """This run's lab (namespace names are host-wide)."""
    return f"s{os.getpid() % 10_000_000}"


def lab_state_dir() -> Path:
    return Path(f"/tmp/wnlab-s{os.getpid()}")


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.systemd)


def _fail(what: str, exc: BaseException) -> None:
    reason = exc.one_line() if hasattr(exc, "one_line") else str(exc)
    pytest.fail(f"{what}: {reason}", pytrace=False)


@pytest.fixture(scope="session")
def node_lab():
    from weavenomad_lab import core

    state_dir = lab_state_dir()
    try:
        layout = core.up(state_dir, lab_name(), 1)
    except Exception as exc:  # noqa: BLE001 - any reason must fail the tests, visibly
        _fail("the lab did not come up", exc)
    try:
        yield layout
    finally:
        core.down(state_dir)


@pytest.fixture(scope="session")
def box(node_lab, tmp_path_factory):
    """The booted container (a :class:`systemdbox.Box`), the product installed."""
    work = tmp_path_factory.mktemp("systemd-tier")
    node = node_lab.nodes[0]
    started = time.monotonic()
    try:
        root = rootfs(work / "debootstrap.log")
        wheel = build_wheel(work)
        prepare_venv(root, wheel, work / "venv.log")
        booted = boot(root, f"wn{lab_name()}", node.netns,
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
