import json
import threading
import time

import docker
import pytest
from test_clients_support import (
    FakeAdapter,
    StreamServer,
    chunk,
    free_port,
    recorded,
)

from weavenomad.clients.docker import DockerAPI, docker_client_kwargs
from weavenomad.config import build_settings
from weavenomad.errors import BackendNotFound, BackendUnavailable, ConfigError

CONTAINER = "e6542df8b707b9d42fdd440e1f4b2eca1b928f64bcb1bd4314fe1b8694036f09"


def api():
    client = docker.DockerClient(base_url="tcp://127.0.0.1:2375", version="1.41", timeout=7)
    adapter = FakeAdapter()
    client.api.mount("http://", adapter)
    return DockerAPI(client=client), adapter


def test_kwargs_follow_the_docker_cli_variables(tmp_path):
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    plain = docker_client_kwargs(build_settings({}, {"DOCKER_HOST": "unix:///run/d.sock"}))
    assert plain == {"base_url": "unix:///run/d.sock", "timeout": 10.0}

    settings = build_settings({}, {"DOCKER_HOST": "tcp://10.0.0.1:2376", "DOCKER_TLS_VERIFY": "1",
                                   "DOCKER_CERT_PATH": str(tmp_path)})
    kwargs = docker_client_kwargs(settings)
    tls = kwargs["tls"]
    assert kwargs["base_url"] == "tcp://10.0.0.1:2376"
    assert tls.verify is True and tls.ca_cert == str(tmp_path / "ca.pem")
    assert tls.cert == (str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))

    # a certificate directory alone also means TLS, and TLS is always verified
    (tmp_path / "key.pem").unlink()
    settings = build_settings({}, {"DOCKER_HOST": "tcp://10.0.0.1:2376",
                                   "DOCKER_CERT_PATH": str(tmp_path)})
    tls = docker_client_kwargs(settings)["tls"]
    assert tls.verify is True and tls.cert is None


def test_tls_settings_reach_the_sdk_session(tmp_path):
    (tmp_path / "ca.pem").write_text("x")
    settings = build_settings({}, {"DOCKER_HOST": "tcp://10.0.0.1:2376",
                                   "DOCKER_CERT_PATH": str(tmp_path)})
    client = DockerAPI(docker_client_kwargs(settings) | {"version": "1.41"}).sdk
    assert client.api.verify == str(tmp_path / "ca.pem")
    assert client.api.base_url == "https://10.0.0.1:2376"


def test_missing_tls_files_are_a_config_error(tmp_path):
    settings = build_settings({}, {"DOCKER_HOST": "tcp://h:2376", "DOCKER_TLS_VERIFY": "1",
                                   "DOCKER_CERT_PATH": str(tmp_path / "nowhere")})
    with pytest.raises(ConfigError, match="no CA certificate"):
        docker_client_kwargs(settings)


def test_inspect_returns_the_engines_answer_with_the_timeout_set():
    docker_api, fake = api()
    record = recorded("docker-container-inspect-nomad-task-via-weave-proxy.json")
    fake.add_recorded("docker-container-inspect-nomad-task-via-weave-proxy.json",
                      path=f"/v1.41/containers/{CONTAINER}/json")
    assert docker_api.inspect(CONTAINER) == record["body"]
    assert fake.sent[0].timeout == 7


def test_nomad_containers_filter_on_the_alloc_label():
    docker_api, fake = api()
    fake.add("GET", "/v1.41/containers/json", body=[{"Id": CONTAINER}])
    assert docker_api.nomad_containers() == [{"Id": CONTAINER}]
    filters = [json.loads(sent.query["filters"][0]) for sent in fake.sent]
    assert filters == [{"label": ["com.hashicorp.nomad.alloc_id"]}]
    assert fake.sent[0].query["all"] == ["1"]


def test_the_containers_of_one_allocation_filter_on_the_labels_value():
    docker_api, fake = api()
    fake.add("GET", "/v1.41/containers/json", body=[{"Id": CONTAINER}])
    assert docker_api.nomad_containers(alloc_id="a1b2") == [{"Id": CONTAINER}]
    filters = [json.loads(sent.query["filters"][0]) for sent in fake.sent]
    assert filters == [{"label": ["com.hashicorp.nomad.alloc_id=a1b2"]}]


def test_version_is_unversioned_for_the_compatibility_preflight():
    docker_api, fake = api()
    fake.add("GET", "/version", body={"Version": "20.10.24", "ApiVersion": "1.41",
                                      "MinAPIVersion": "1.12"})
    assert docker_api.version()["MinAPIVersion"] == "1.12"


def test_missing_container_is_not_found():
    docker_api, fake = api()
    fake.add("GET", "/v1.41/containers/nope/json", status=404,
             body={"message": "No such container: nope"})
    with pytest.raises(BackendNotFound) as caught:
        docker_api.inspect("nope")
    assert "No such container: nope" in caught.value.one_line()


def test_unreachable_daemon_is_unavailable_even_during_version_negotiation():
    docker_api = DockerAPI({"base_url": f"tcp://127.0.0.1:{free_port()}", "timeout": 2})
    with pytest.raises(BackendUnavailable) as caught:
        docker_api.version()
    assert "cannot reach Docker at tcp://127.0.0.1:" in caught.value.one_line()
    assert "connection refused" in caught.value.one_line()


def events_server(keep_open: bool):
    closing = threading.Event()

    def handle(handler):
        if handler.path.startswith("/version"):
            body = json.dumps({"ApiVersion": "1.41", "Version": "20.10"}).encode()
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for n in (1, 2):
            chunk(handler, json.dumps({"status": "start", "id": f"c{n}", "time": n}).encode())
        if keep_open:
            while not closing.wait(0.05):
                pass
        else:
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()

    server = StreamServer(handle)
    return server, closing


def test_events_stop_promptly_on_the_stop_event():
    server, closing = events_server(keep_open=True)
    try:
        docker_api = DockerAPI({"base_url": server.url.replace("http://", "tcp://"),
                                "timeout": 5})
        stop = threading.Event()
        seen = []
        started = time.monotonic()
        for event in docker_api.events(filters={"label": "x"}, stop_event=stop):
            seen.append(event["id"])
            if len(seen) == 2:
                stop.set()
        assert seen == ["c1", "c2"]
        assert time.monotonic() - started < 3
        assert any(path.startswith("/v1.41/events?") and "filters" in path
                   for path in server.paths)
    finally:
        closing.set()
        server.close()


def test_a_broken_event_stream_is_unavailable():
    server, closing = events_server(keep_open=False)
    try:
        docker_api = DockerAPI({"base_url": server.url.replace("http://", "tcp://"),
                                "timeout": 5})
        with pytest.raises(BackendUnavailable, match="closed the event stream"):
            list(docker_api.events())
    finally:
        closing.set()
        server.close()
