"""The lab's secured mode (``lab up --acl --tls --require-client-cert``) answers like the real
agents: Nomad 1.0's 403s, Consul 1.4's 403 for a key read without a token, HTTPS only with the
lab's CA, client certificates required, Go's answer to plain HTTP on a TLS port. Its tokens
and keys are private files and are never printed by ``lab env``."""

from __future__ import annotations

import json
import socket
import stat
import threading
from pathlib import Path

import pytest
import requests
from test_consul_sim_support import running_sim
from test_nomad_sim_support import Cluster
from weavenomad_lab import core, security
from weavenomad_lab.layout import LabLayout, LabSecurity
from weavenomad_lab.nomad import agentconfig, agentself
from weavenomad_lab.nomad.component import agent_security
from weavenomad_lab.nomad.http import NomadAPI, Request

from weavenomad.errors import ConfigError, ConflictError

MANAGEMENT = "0b9c5d02-4a51-4f5e-8a3c-6f1d5b0e7a11"
SECURED = LabSecurity(acl=True, tls=True, verify_client=True)


# -- Nomad's ACLs ------------------------------------------------------------------------------


@pytest.fixture
def nomad() -> NomadAPI:
    cluster = Cluster(1)
    return NomadAPI(cluster.state, cluster.api.agent_self, cluster.api.parse_job, MANAGEMENT)


def _call(api: NomadAPI, method: str, target: str, token: str | None = None,
          header: str = "X-Nomad-Token"):
    headers = {header: token} if token is not None else {}
    response = api.handle(Request(method, target, b"", headers))
    return response.status, response.body.decode()


@pytest.mark.parametrize("method, target", [
    ("GET", "/v1/jobs"), ("GET", "/v1/nodes"), ("GET", "/v1/agent/self"),
    ("POST", "/v1/jobs/parse"), ("GET", "/v1/job/httpbackend/allocations"),
    ("GET", "/v1/event/stream"), ("DELETE", "/v1/job/httpbackend"),
])
def test_nomad_wants_the_token_everywhere_but_status_and_health(nomad, method, target):
    assert _call(nomad, method, target) == (403, "Permission denied")
    assert _call(nomad, method, target, "a-token-nomad-never-made") == (
        403, "ACL token not found")


def test_nomad_answers_with_the_token_and_without_one_where_nomad_does(nomad):
    assert _call(nomad, "GET", "/v1/jobs", MANAGEMENT)[0] == 200
    assert _call(nomad, "GET", "/v1/nodes", MANAGEMENT, header="x-nomad-token")[0] == 200
    for target in ("/v1/status/leader", "/v1/status/peers", "/v1/agent/health", "/v1/regions"):
        assert _call(nomad, "GET", target)[0] == 200, target
    assert _call(nomad, "GET", "/v1/no-such-thing")[0] == 404  # the mux answers first
    # Nomad 1.0 reads the token from the header only
    assert _call(nomad, "GET", f"/v1/jobs?token={MANAGEMENT}")[0] == 403


# -- Consul's ACLs ------------------------------------------------------------------------------


def test_consul_refuses_a_key_read_without_token_but_filters_listings():
    with running_sim(token=None, acl_token=MANAGEMENT) as sim:
        client = sim["u1"]
        client.ok("PUT", "/v1/kv/weavenomad/cluster", "{}",
                  headers={"X-Consul-Token": MANAGEMENT})
        denied = client.get("/v1/kv/weavenomad/cluster")
        assert (denied.status_code, denied.text) == (403, "Permission denied")
        assert client.get("/v1/kv/weavenomad/?recurse").status_code == 404  # filtered: empty
        allowed = client.get("/v1/kv/weavenomad/cluster", headers={"X-Consul-Token": MANAGEMENT})
        assert allowed.status_code == 200


# -- the lab's material -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secured_lab(tmp_path_factory) -> LabLayout:
    lab = LabLayout.plan("ts", tmp_path_factory.mktemp("lab") / "s", 2, SECURED)
    lab = lab.with_ports({n.name: {"nomad": 4000 + n.index, "consul": 5000 + n.index,
                                   "weave_api": 6000 + n.index} for n in lab.nodes})
    security.prepare(lab)
    return lab


def test_tokens_and_keys_are_private_files(secured_lab):
    files = secured_lab.security_files
    assert stat.S_IMODE(files.dir.stat().st_mode) == 0o700
    for path in (files.token("nomad"), files.token("consul"), files.ca_key, files.server_key,
                 files.client_key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    tokens = {security.token(secured_lab, s) for s in ("nomad", "consul")}
    assert len(tokens) == 2 and all(len(t) == 36 for t in tokens)
    before = files.token("nomad").read_text()
    security.prepare(secured_lab)  # a second lab up keeps them
    assert files.token("nomad").read_text() == before


def test_lab_env_reads_tokens_from_their_files_and_never_prints_them(secured_lab):
    lines = core.env_lines(secured_lab, "n1")
    text = "\n".join(lines)
    for service in ("nomad", "consul"):
        assert security.token(secured_lab, service) not in text
    files = secured_lab.security_files
    assert f'export NOMAD_TOKEN="$(cat {files.token("nomad")})"' in lines
    assert f"export NOMAD_ADDR=https://127.0.0.1:{secured_lab.nodes[0].ports['nomad']}" in lines
    assert f"export CONSUL_CACERT={files.ca_cert}" in lines
    assert f"export NOMAD_CLIENT_KEY={files.client_key}" in lines
    inside = core.exec_env(secured_lab, "n2", {"PATH": "/bin"})
    assert inside["NOMAD_ADDR"] == "https://127.0.0.1:4646"
    assert inside["CONSUL_HTTP_ADDR"] == "https://127.0.0.1:8500"
    assert inside["CONSUL_HTTP_TOKEN"] == security.token(secured_lab, "consul")


def test_security_is_kept_in_lab_json_and_cannot_change_under_a_running_lab(secured_lab):
    secured_lab.save()
    again = LabLayout.load(secured_lab.state_dir)
    assert again.security == SECURED and all(n.https for n in again.nodes)
    assert json.loads(secured_lab.lab_file.read_text())["security"]["verify_client"] is True
    with pytest.raises(ConflictError, match="runs with ACLs on, TLS on"):
        core.decide_layout(again.state_dir, None, None, again, LabSecurity())
    assert core.decide_layout(again.state_dir, None, None, again, None) is again
    with pytest.raises(ConfigError, match="needs TLS"):
        LabSecurity(verify_client=True)


def test_a_secured_nomad_agent_config_names_the_consul_token_and_tls(secured_lab):
    node = secured_lab.nodes[0]
    text = agentconfig.default_text(node, agent_security(secured_lab))
    config = agentconfig.merge([("agent.hcl", agentconfig.parse_text(text, "agent.hcl"))])
    files = secured_lab.security_files
    assert config.consul_token == security.token(secured_lab, "consul")
    assert config.consul_ssl and config.consul_ca_file == str(files.ca_cert)
    assert config.consul_cert_file == str(files.client_cert)
    assert config.acl_enabled and config.tls["verify_https_client"] is True
    shown = agentself.agent_self(node_name="n1", node_ip=node.host_ip, node_id="x",
                                 config=config, data_dir="/d", allocations=0, server=True)
    assert shown["config"]["Consul"]["Token"] == "<redacted>"
    assert config.consul_token not in json.dumps(shown)
    assert shown["config"]["ACL"]["Enabled"] and shown["config"]["TLSConfig"]["EnableHTTP"]
    plain = agentconfig.default_text(node)
    assert "token" not in plain and 'address = "127.0.0.1:8500"' in plain


# -- TLS on the wire ----------------------------------------------------------------------------


def _requests_tls(lab: LabLayout) -> dict:
    return security.requests_options(lab)


def test_consul_serves_https_only_and_wants_the_client_certificate(secured_lab):
    with running_sim(tls=security.server_context(secured_lab)) as sim:
        url = sim["u1"].base.replace("http://", "https://")
        files = secured_lab.security_files
        ok = requests.get(url + "/v1/status/leader", timeout=5, **_requests_tls(secured_lab))
        assert ok.status_code == 200
        with pytest.raises(requests.exceptions.SSLError, match="certificate"):
            requests.get(url + "/v1/status/leader", timeout=5)  # the system CAs
        with pytest.raises(requests.exceptions.RequestException):
            requests.get(url + "/v1/status/leader", timeout=5, verify=str(files.ca_cert))
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(url.replace("https://", "http://") + "/v1/status/leader", timeout=5)


def test_nomad_answers_plain_http_on_its_tls_port_as_go_does(secured_lab):
    from weavenomad_lab.nomad.server import _Listener

    cluster = Cluster(1)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    listener = _Listener(sock, cluster.api, threading.Event(), security.server_context(
        secured_lab))
    threading.Thread(target=listener.serve_forever, kwargs={"poll_interval": 0.1},
                     daemon=True).start()
    try:
        port = sock.getsockname()[1]
        plain = requests.get(f"http://127.0.0.1:{port}/v1/nodes", timeout=5)
        assert plain.status_code == 400
        assert plain.text == "Client sent an HTTP request to an HTTPS server.\n"
        secure = requests.get(f"https://127.0.0.1:{port}/v1/nodes", timeout=5,
                              **_requests_tls(secured_lab))
        assert secure.status_code == 200 and len(secure.json()) == 1
        # a client that connects and says nothing does not stall the others
        idle = socket.create_connection(("127.0.0.1", port))
        again = requests.get(f"https://127.0.0.1:{port}/v1/nodes", timeout=5,
                             **_requests_tls(secured_lab))
        assert again.status_code == 200
        idle.close()
    finally:
        listener.shutdown()
        listener.server_close()


def test_the_server_certificate_names_every_node_and_the_agents(secured_lab):
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(Path(secured_lab.security_files.server_cert)
                                          .read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    assert ips == {"127.0.0.1", *(n.host_ip for n in secured_lab.nodes)}
    assert "server.global.nomad" in names.get_values_for_type(x509.DNSName)
