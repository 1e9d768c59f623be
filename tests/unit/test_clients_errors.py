import logging
import threading
import time

import pytest
import requests
from test_clients_support import free_port

from weavenomad.clients.errors import (
    Backend,
    blocking_timeout,
    closed_on_stop,
    error_for_exception,
    error_for_status,
    retrying,
)
from weavenomad.errors import (
    BackendAuthError,
    BackendNotFound,
    BackendRequestError,
    BackendServerError,
    BackendUnavailable,
    ConfigError,
)
from weavenomad.runtime.backoff import backoff_delay
from weavenomad.runtime.durations import go_duration

NOMAD = Backend("nomad", "Nomad", "http://127.0.0.1:4646", "set --nomad-addr or NOMAD_ADDR",
                token_hint="set NOMAD_TOKEN", tls_hint="set NOMAD_CACERT",
                secrets=("s3cr3t-token",))


@pytest.mark.parametrize(
    "status, cls, temporary",
    [(400, BackendRequestError, False), (401, BackendAuthError, False),
     (403, BackendAuthError, False), (404, BackendNotFound, False),
     (409, BackendRequestError, False), (500, BackendServerError, True),
     (503, BackendServerError, True)],
)
def test_status_maps_to_one_exception_class(status, cls, temporary):
    error = error_for_status(NOMAD, status, "GET", "/v1/job/x", "some\n\tbody")
    assert type(error) is cls
    assert error.temporary is temporary
    assert error.status == status and error.backend == "nomad"
    assert "\n" not in error.one_line()


def test_denied_names_request_and_token_fix_but_never_the_token():
    error = error_for_status(NOMAD, 403, "GET", "/v1/jobs", "token s3cr3t-token: ACL not found")
    assert error.one_line() == (
        "Nomad denied GET /v1/jobs: token <redacted>: ACL not found (set NOMAD_TOKEN)"
    )
    assert "s3cr3t-token" not in error.body


def test_long_bodies_are_cut_but_kept_whole():
    error = error_for_status(NOMAD, 500, "POST", "/v1/jobs", "x" * 5000)
    assert len(error.one_line()) < 400
    assert len(error.body) == 5000


def test_connection_refused_names_backend_address_and_fix():
    try:
        requests.get(f"http://127.0.0.1:{free_port()}/v1/agent/self", timeout=2)
    except requests.RequestException as exc:
        error = error_for_exception(NOMAD, exc, "GET", "/v1/agent/self")
    assert isinstance(error, BackendUnavailable) and error.temporary
    assert error.one_line() == (
        "cannot reach Nomad at http://127.0.0.1:4646: connection refused "
        "(set --nomad-addr or NOMAD_ADDR)"
    )


def test_tls_failure_is_permanent_and_points_at_the_ca():
    error = error_for_exception(NOMAD, requests.exceptions.SSLError("certificate verify failed"))
    assert isinstance(error, BackendUnavailable)
    assert error.temporary is False
    assert "set NOMAD_CACERT" in error.one_line()


def test_read_timeout_is_temporary():
    error = error_for_exception(NOMAD, requests.exceptions.ReadTimeout("read timed out"),
                                "GET", "/v1/jobs")
    assert error.temporary and "did not answer GET /v1/jobs in time" in error.one_line()


def test_blocking_timeout_always_exceeds_wait_and_jitter():
    for wait in (0.5, 30, 300):
        assert blocking_timeout(10, wait) > wait + wait / 16
    assert go_duration(30) == "30000ms" and go_duration(0.0001) == "1ms"
    with pytest.raises(ValueError):
        go_duration(0)


def test_backoff_is_exponential_capped_and_jittered():
    assert backoff_delay(1, 1.0, 30, jitter=0.0) == 0.5
    assert backoff_delay(1, 1.0, 30, jitter=0.999) < 1.0
    assert backoff_delay(3, 1.0, 30, jitter=0.0) == 2.0
    assert backoff_delay(20, 1.0, 30, jitter=0.999) < 30


class RecordingEvent(threading.Event):
    """A stop event whose waits return at once and are recorded."""

    def __init__(self):
        super().__init__()
        self.waits = []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        return self.is_set()


def failing(errors, result="done"):
    calls = []

    def call():
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result

    return call, calls


def unavailable():
    return BackendUnavailable("cannot reach Nomad", backend="nomad")


def test_retries_temporary_errors_then_succeeds(caplog):
    call, calls = failing([unavailable(), unavailable()])
    stop = RecordingEvent()
    with caplog.at_level(logging.WARNING):
        assert retrying(call, attempts=5, base_delay=1, max_delay=8, stop_event=stop,
                        jitter=lambda: 0.0) == "done"
    assert len(calls) == 3
    assert stop.waits == [0.5, 1.0]
    assert [r.getMessage() for r in caplog.records] == [
        "cannot reach Nomad; retry 1 of 4 in 0.5s",
        "cannot reach Nomad; retry 2 of 4 in 1.0s",
    ]


def test_permanent_errors_are_not_retried():
    call, calls = failing([ConfigError("bad")])
    with pytest.raises(ConfigError):
        retrying(call, attempts=5, stop_event=RecordingEvent())
    assert len(calls) == 1


def test_attempts_are_bounded_and_the_last_error_raised():
    errors = [unavailable() for _ in range(10)]
    call, calls = failing(errors)
    stop = RecordingEvent()
    with pytest.raises(BackendUnavailable) as caught:
        retrying(call, attempts=3, base_delay=0.1, max_delay=0.2, stop_event=stop)
    assert len(calls) == 3 and caught.value is errors[2]
    assert len(stop.waits) == 2 and max(stop.waits) <= 0.2


def test_a_stop_request_ends_the_wait_at_once():
    call, calls = failing([unavailable() for _ in range(10)])
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    with pytest.raises(BackendUnavailable):
        retrying(call, attempts=10, base_delay=30, max_delay=30, stop_event=stop)
    assert time.monotonic() - started < 5
    assert len(calls) == 1


def test_non_library_exceptions_pass_through():
    call, calls = failing([KeyError("bug")])
    with pytest.raises(KeyError):
        retrying(call, attempts=3, stop_event=RecordingEvent())
    assert len(calls) == 1


def test_closed_on_stop_closes_only_while_the_block_runs():
    closed = threading.Event()
    stop = threading.Event()
    with closed_on_stop(stop, closed.set, poll=0.01):
        stop.set()
        assert closed.wait(2)

    closed.clear()
    stop = threading.Event()
    with closed_on_stop(stop, closed.set, poll=0.01):
        pass
    stop.set()
    assert not closed.wait(0.1)
