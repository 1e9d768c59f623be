"""Redaction where text is made: log records (any handler, any formatter, tracebacks), config
text that quotes an agent's own tokens, and the Consul adapter's query strings."""

from __future__ import annotations

import io
import json
import logging

import pytest
import requests

from weavenomad.cli import redaction
from weavenomad.clients.consul import ConsulAPI, _without_token

SENTINEL = "sentinel-4f7d1c9a-token"


@pytest.fixture
def secret_logger():
    redaction.forget_all()
    redaction.install_log_redaction()
    redaction.remember([SENTINEL])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("weavenomad.test.secrets")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, handler, stream
    logger.removeHandler(handler)
    redaction.forget_all()


def test_a_log_message_with_a_token_is_redacted_by_any_handler(secret_logger):
    logger, _, stream = secret_logger
    logger.warning("calling with header X-Nomad-Token: %s", SENTINEL)
    logger.debug(f"pre-formatted {SENTINEL} too")
    text = stream.getvalue()
    assert SENTINEL not in text
    assert text.count("<redacted>") == 2


def test_a_traceback_that_shows_a_token_is_redacted(secret_logger):
    logger, _, stream = secret_logger
    try:
        raise ValueError(f"Invalid header value {SENTINEL!r}")
    except ValueError:
        logger.exception("request failed")
    text = stream.getvalue()
    assert SENTINEL not in text
    assert "Traceback" in text and "ValueError: Invalid header value '<redacted>'" in text


def test_the_reconcilers_json_log_lines_are_redacted(secret_logger):
    from weavenomad.runtime.logs import JSONFormatter, TextFormatter

    logger, handler, stream = secret_logger
    for formatter in (JSONFormatter(), TextFormatter()):
        handler.setFormatter(formatter)
        logger.error("denied: %s", SENTINEL)
    lines = stream.getvalue().splitlines()
    assert json.loads(lines[0])["message"] == "denied: <redacted>"
    assert lines[1].endswith("denied: <redacted>")
    assert SENTINEL not in stream.getvalue()


def test_longer_secrets_are_replaced_before_the_ones_they_contain():
    redaction.forget_all()
    redaction.remember(["abcd", "abcd-efgh"])
    assert redaction.hide("x abcd-efgh y abcd") == "x <redacted> y <redacted>"
    redaction.forget_all()


@pytest.mark.parametrize("text, expected", [
    ('  token = "agent-token"', '  token = "<redacted>"'),
    ('+  token="t"', '+  token="<redacted>"'),
    ('"token": "t"', '"token": "<redacted>"'),
    ('encrypt = "gossip-key=="', 'encrypt = "<redacted>"'),
    ('replication_token = "r"', 'replication_token = "<redacted>"'),
    (json.dumps({"diff": ' consul {\n  token = "t"\n }'}),
     json.dumps({"diff": ' consul {\n  token = "<redacted>"\n }'})),
    ('key_file = "/etc/nomad.d/key.pem"', 'key_file = "/etc/nomad.d/key.pem"'),
    ('address = "127.0.0.1:8500"', 'address = "127.0.0.1:8500"'),
])
def test_config_text_hides_secret_named_values(text, expected):
    assert redaction.hide_config_secrets(text) == expected


def test_the_consul_token_never_travels_in_a_query_string():
    assert _without_token([("dc", "dc1"), ("token", SENTINEL)]) == ([("dc", "dc1")], SENTINEL)
    assert _without_token({"token": SENTINEL, "x": "1"}) == ({"x": "1"}, SENTINEL)
    assert _without_token(None) == (None, None)

    sent = []

    class Recorder(requests.adapters.BaseAdapter):
        def send(self, request, **kwargs):
            sent.append(request)
            response = requests.Response()
            response.status_code, response._content = 200, b"true"
            response.request, response.url = request, request.url
            return response

        def close(self):
            pass

    session = requests.Session()
    session.mount("http://", Recorder())
    consul = ConsulAPI("http://127.0.0.1:8500", token="other-token-1234", session=session)
    # py-consul's catalog.register puts the token in the query string
    consul.client.catalog.register("n1", "10.0.0.1", token=SENTINEL)
    assert SENTINEL not in sent[0].url and "token=" not in sent[0].url
    assert sent[0].headers["X-Consul-Token"] == SENTINEL


def test_debug_never_turns_on_the_http_header_dump(monkeypatch, tmp_path):
    import http.client

    from weavenomad.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["--debug", "config", "show"], {"NOMAD_TOKEN": SENTINEL})
    assert http.client.HTTPConnection.debuglevel == 0
