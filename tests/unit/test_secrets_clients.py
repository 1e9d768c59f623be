"""Access failures reach the user as one line naming the variable that fixes them: a missing or
unknown token, a CA that does not verify, a missing or refused client certificate, http:// for
an HTTPS agent, TLS files that do not exist. Tokens stay out of child processes' environment."""

from __future__ import annotations

import stat

import pytest

from weavenomad.clients import consul_client, nomad_client
from weavenomad.clients.consul import consul_backend
from weavenomad.clients.errors import error_for_status, tls_failure_hint
from weavenomad.clients.nomad import nomad_backend
from weavenomad.clients.weave import WeaveCommand, without_secrets
from weavenomad.config import build_settings
from weavenomad.errors import BackendAuthError, BackendRequestError, ConfigError


def _settings(**env):
    return build_settings({}, env)


def test_a_missing_token_names_the_variable_and_an_unknown_one_says_so():
    anonymous = nomad_backend(_settings())
    error = error_for_status(anonymous, 403, "GET", "/v1/jobs", "Permission denied")
    assert isinstance(error, BackendAuthError)
    assert error.one_line() == ("Nomad denied GET /v1/jobs: Permission denied "
                                "(set NOMAD_TOKEN or --nomad-token)")
    wrong = nomad_backend(_settings(NOMAD_TOKEN="not-a-real-token"))
    error = error_for_status(wrong, 403, "GET", "/v1/jobs", "ACL token not found")
    assert "Nomad does not know the token in NOMAD_TOKEN" in error.one_line()
    weak = error_for_status(wrong, 403, "GET", "/v1/jobs", "Permission denied")
    assert "the token in NOMAD_TOKEN lacks this permission" in weak.one_line()
    consul = consul_backend(_settings(CONSUL_HTTP_TOKEN="not-a-real-token"))
    error = error_for_status(consul, 403, "PUT", "/v1/kv/x", "ACL not found")
    assert "Consul does not know the token in CONSUL_HTTP_TOKEN" in error.one_line()
    assert "not-a-real-token" not in error.one_line()


@pytest.mark.parametrize("reason, expected", [
    ("certificate verify failed: self-signed certificate in certificate chain",
     "set NOMAD_CACERT"),
    ("certificate verify failed: unable to get local issuer certificate", "set NOMAD_CACERT"),
    ("certificate verify failed: Hostname mismatch, certificate is not valid for 'nomad'",
     "does not name the host"),
    ("wrong version number", "does not speak TLS: use http://"),
    ("tlsv13 alert certificate required",
     "Nomad wants a client certificate: set NOMAD_CLIENT_CERT and NOMAD_CLIENT_KEY"),
    ("EOF occurred in violation of protocol", "set NOMAD_CLIENT_CERT"),
    ("key values mismatch", "NOMAD_CLIENT_CERT and NOMAD_CLIENT_KEY must be a PEM"),
])
def test_tls_failures_point_at_the_variable_that_fixes_them(reason, expected):
    backend = nomad_backend(_settings(NOMAD_ADDR="https://127.0.0.1:4646",
                                      NOMAD_CACERT="/ca.pem"))
    assert expected in tls_failure_hint(backend, reason)


def test_a_refused_client_certificate_is_told_apart_from_a_missing_one():
    given = consul_backend(_settings(CONSUL_HTTP_ADDR="https://c:8501",
                                     CONSUL_CLIENT_CERT="/c.pem", CONSUL_CLIENT_KEY="/k.pem"))
    assert "refused the client certificate in CONSUL_CLIENT_CERT" in tls_failure_hint(
        given, "sslv3 alert bad certificate")


def test_http_to_an_https_agent_says_use_https():
    backend = nomad_backend(_settings(NOMAD_ADDR="http://127.0.0.1:4646",
                                      NOMAD_CACERT="/ca.pem"))
    body = "Client sent an HTTP request to an HTTPS server.\n"
    error = error_for_status(backend, 400, "GET", "/v1/nodes", body)
    assert isinstance(error, BackendRequestError)
    assert error.one_line() == (
        "Nomad at http://127.0.0.1:4646 speaks HTTPS, not HTTP (NOMAD_CACERT/NOMAD_CLIENT_CERT "
        "are set but NOMAD_ADDR is http://: use https://)")
    plain = nomad_backend(_settings())
    assert "use https://" in error_for_status(plain, 400, "GET", "/", body).one_line()
    consul = consul_backend(_settings(CONSUL_HTTP_ADDR="127.0.0.1:8501", CONSUL_CACERT="/ca"))
    assert "CONSUL_HTTP_SSL=true" in consul.https_hint


def test_tls_files_that_do_not_exist_fail_before_any_request(tmp_path):
    with pytest.raises(ConfigError) as caught:
        nomad_client(_settings(NOMAD_CACERT=str(tmp_path / "missing.pem")))
    assert caught.value.one_line().startswith(f"NOMAD_CACERT names {tmp_path}/missing.pem")
    key = tmp_path / "key.pem"
    key.write_text("x")
    with pytest.raises(ConfigError, match="CONSUL_CLIENT_KEY is set but CONSUL_CLIENT_CERT"):
        consul_client(_settings(CONSUL_CLIENT_KEY=str(key)))
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert nomad_client(_settings(NOMAD_CACERT=str(ca))).addr == "http://127.0.0.1:4646"


def test_tokens_are_trimmed_and_never_echoed_when_refused():
    assert _settings(NOMAD_TOKEN="  abc-token\n").nomad.token == "abc-token"
    with pytest.raises(ConfigError) as caught:
        _settings(CONSUL_HTTP_TOKEN="abc\x00secret-part")
    assert "secret-part" not in caught.value.one_line()
    assert "CONSUL_HTTP_TOKEN" in caught.value.one_line()


def test_the_weave_command_gets_no_token_and_no_secret_argument(tmp_path, monkeypatch):
    script = tmp_path / "weave"
    script.write_text("#!/bin/sh\necho \"$@\"\nenv\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("NOMAD_TOKEN", "sentinel-nomad-token")
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "sentinel-consul-token")
    monkeypatch.setenv("WEAVENOMAD_KEEP_ME", "kept")
    out = WeaveCommand(str(script)).run("status")
    assert "sentinel" not in out and "WEAVENOMAD_KEEP_ME=kept" in out
    given = WeaveCommand(str(script), env={"NOMAD_TOKEN": "sentinel-x", "PATH": "/bin"})
    assert "sentinel" not in given.run("ps")
    assert without_secrets({"NOMAD_TOKEN": "a", "HOME": "/root"}) == {"HOME": "/root"}
