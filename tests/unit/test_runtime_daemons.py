"""What the daemons share under systemd: journal-native log lines (a ``<N>`` priority, no
timestamp of their own) when stderr is journald's, the notify socket's failures said aloud, and
the ready/status/watchdog protocol of :class:`Supervised`. (Under a real systemd:
tests/systemd.)"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import threading

import pytest

from weavenomad.cli import _print_error
from weavenomad.runtime import logs
from weavenomad.runtime.notify import Notifier, Supervised


@pytest.fixture
def journal(tmp_path):
    """A stream and the environment that says it is journald's (``$JOURNAL_STREAM``)."""
    stream = open(tmp_path / "stream", "w+")  # noqa: SIM115 - closed below
    found = os.fstat(stream.fileno())
    yield stream, {"JOURNAL_STREAM": f"{found.st_dev}:{found.st_ino}"}
    stream.close()


def test_journald_is_recognised_by_device_and_inode_of_the_stream(journal, tmp_path):
    stream, environ = journal
    assert logs.is_journal(environ, stream)
    with open(tmp_path / "other", "w") as other:
        assert not logs.is_journal(environ, other)  # an inherited variable, another stream
    assert not logs.is_journal({}, stream)
    assert not logs.is_journal({"JOURNAL_STREAM": "x:y"}, stream)
    assert not logs.is_journal(environ, io.StringIO())


def test_priorities_are_syslogs():
    assert [logs.priority(level) for level in (logging.CRITICAL, logging.ERROR,
                                               logging.WARNING, logging.INFO, logging.DEBUG)] \
        == [2, 3, 4, 6, 7]
    assert logs.with_priority("a\nb", logging.ERROR) == "<3>a\n<3>b"


def test_under_journald_each_line_carries_its_priority_and_no_timestamp(root_logger, journal):
    stream, environ = journal
    logs.configure("text", stream=stream, environ=environ)
    log = logging.getLogger("weavenomad.reconciler")
    log.warning("cannot find this node's Nomad client: %s", "refused",
                extra={"fields": {"backend": "nomad"}})
    log.info("serving")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    stream.seek(0)
    lines = stream.read().splitlines()
    assert lines[0] == ("<4>WARNING weavenomad.reconciler: cannot find this node's Nomad client: "
                        "refused backend=nomad")
    assert lines[1] == "<6>INFO weavenomad.reconciler: serving"
    # the traceback keeps its priority on every line, so -p err shows all of it
    assert lines[2] == "<3>ERROR weavenomad.reconciler: failed"
    assert len(lines) > 3 and all(line.startswith("<3>") for line in lines[2:])


def test_on_a_terminal_text_keeps_its_timestamp_and_json_is_unchanged_under_journald(
        root_logger, journal):
    terminal = io.StringIO()
    logs.configure("text", stream=terminal, environ=journal[1])
    logging.getLogger("weavenomad.guards").info("keeping")
    assert terminal.getvalue().split(" ", 2)[2] == "INFO weavenomad.guards: keeping\n"
    assert terminal.getvalue()[:4].isdigit()
    stream, environ = journal
    logs.configure("json", stream=stream, environ=environ)
    logging.getLogger("weavenomad.guards").warning("put back")
    stream.seek(0)
    entry = json.loads(stream.read())
    assert entry["level"] == "warning" and entry["message"] == "put back"


def test_a_fatal_error_of_the_cli_carries_its_priority_under_journald(capsys):
    _print_error("the local Nomad agent runs no client", journal=True)
    _print_error("plain")
    assert capsys.readouterr().err.splitlines() == [
        "<3>weavenomad: error: the local Nomad agent runs no client", "weavenomad: error: plain"]


def test_a_notify_socket_that_does_not_answer_is_said_once_and_its_return_too(tmp_path, caplog):
    path = str(tmp_path / "notify")
    notifier = Notifier(path)
    with caplog.at_level(logging.INFO, logger="weavenomad.systemd"):
        assert not notifier.ready("starting") and not notifier.watchdog()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(path)
        assert notifier.watchdog()
        listener.close()
    said = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert len(said) == 2, said
    assert said[0][0] == logging.ERROR and f"NOTIFY_SOCKET={path}" in said[0][1]
    assert "unset NOTIFY_SOCKET" in said[0][1]
    assert said[1] == (logging.INFO, f"systemd's notify socket {path} answers again")
    assert Notifier(None).ready() is False and not caplog.records[2:]  # outside systemd: quiet


class RecordingNotifier(Notifier):
    def __init__(self, watchdog_usec: int | None = None):
        super().__init__("recording", watchdog_usec)
        self.sent: list[tuple[str, ...]] = []

    def notify(self, *lines: str) -> bool:
        self.sent.append(lines)
        return True


def test_ready_comes_with_the_first_status_and_a_status_only_when_it_changes():
    notifier = RecordingNotifier()
    supervised = Supervised(notifier)
    for status in ("waiting for Nomad at x: refused", "waiting for Nomad at x: refused",
                   "0 twin(s), 0 mask(s); converged"):
        supervised.tell(status)
    supervised.stopping()
    assert notifier.sent == [("READY=1", "STATUS=waiting for Nomad at x: refused"),
                             ("STATUS=0 twin(s), 0 mask(s); converged",), ("STOPPING=1",)]


def test_every_wait_feeds_the_watchdog():
    notifier = RecordingNotifier(watchdog_usec=20_000)  # a ping every 10 ms
    supervised = Supervised(notifier)
    stop = threading.Event()
    assert supervised.wait(stop, 0.2) is False
    pings = notifier.sent.count(("WATCHDOG=1",))
    assert pings >= 10, notifier.sent
    stop.set()
    assert supervised.wait(stop, 10) is True
    assert Supervised(RecordingNotifier()).next_ping() == float("inf")
