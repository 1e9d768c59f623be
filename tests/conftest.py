"""Shared fixtures. ``lab``: one real lab (2 nodes) for the whole session, brought up through
:func:`weavenomad_lab.core.up` and removed at the end. A lab that cannot start fails the tests
that need it, with the reason; it never skips them."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import pytest

LAB_NODES = 2
#: the image every lab node has; the recorded Nomad job runs it too
LAB_IMAGE = "bb:local"


def lab_name(suffix: str = "") -> str:
    """A lab name unique to this pytest run (namespace names are host-wide)."""
    return (f"t{os.getpid() % 100000}"[:7] + suffix)[:8]


def lab_state_dir(suffix: str = "") -> Path:
    return Path(f"/tmp/wnlab-{os.getpid()}{suffix}")


@contextlib.contextmanager
def running_lab(state_dir: Path, name: str, nodes: int, what: str = "the lab", **options):
    """A lab brought up for a module (or the session) and taken down after it. Lab tests never
    skip: any reason the lab cannot come up fails them, visibly, naming ``what``."""
    from weavenomad_lab import core

    try:
        layout = core.up(state_dir, name, nodes, **options)
    except Exception as exc:  # noqa: BLE001 - any reason must fail the tests, visibly
        reason = exc.one_line() if hasattr(exc, "one_line") else repr(exc)
        pytest.fail(f"{what} did not come up: {reason}", pytrace=False)
    try:
        yield layout
    finally:
        core.down(state_dir)


def pytest_collection_modifyitems(items):
    lab_tests = Path(__file__).parent / "lab"
    for item in items:
        if lab_tests in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.lab)


@pytest.fixture
def root_logger():
    """logs.configure replaces the root logger's handlers: put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="session")
def lab():
    """The session's lab (a :class:`weavenomad_lab.layout.LabLayout`)."""
    with running_lab(lab_state_dir(), lab_name(), LAB_NODES) as layout:
        yield layout


@pytest.fixture
def run_bb():
    """``run_bb(node, *command, detach=False, **docker_run_kwargs)``: run the lab image on a
    node. Without ``detach`` it returns the output (the container is removed); with it, the
    container, which is removed at the end of the test."""
    import docker

    clients: list = []
    started: list = []

    def run(node, *command: str, detach: bool = False, **kwargs):
        client = docker.DockerClient(base_url=node.docker_host, timeout=30)
        clients.append(client)
        if detach:
            container = client.containers.run(LAB_IMAGE, list(command), detach=True, **kwargs)
            started.append(container)
            return container
        output = client.containers.run(LAB_IMAGE, list(command), remove=True, **kwargs)
        return output.decode(errors="replace")

    yield run
    for container in started:
        try:
            container.remove(force=True)
        except docker.errors.APIError:
            pass  # gone with its lab already
    for client in clients:
        client.close()
