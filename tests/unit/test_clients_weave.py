import os
import time
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest
from test_clients_support import FakeAdapter, fake_session

from weavenomad.clients.weave import WeaveAPI, WeaveCommand, parse_host_addresses, parse_version
from weavenomad.config import build_settings
from weavenomad.errors import BackendError, BackendRequestError, BackendUnavailable

CONTAINER = "e6542df8b707b9d42fdd440e1f4b2eca1b928f64bcb1bd4314fe1b8694036f09"


def api():
    adapter = FakeAdapter()
    settings = build_settings({}, {"WEAVE_HTTP_ADDR": "127.0.0.1:6784"})
    return WeaveAPI.from_settings(settings, session=fake_session(adapter)), adapter


def test_owned_lists_every_address_by_container():
    weave, fake = api()
    fake.add_recorded("weave-ip-all.json")
    owned = weave.owned()
    assert owned["weave:expose"] == [IPv4Interface("10.32.1.3/24"), IPv4Interface("10.32.0.2/24")]
    assert owned[CONTAINER] == [IPv4Interface("10.32.1.1/24")]
    fake.routes.clear()
    fake.add("GET", "/ip", body={"owned": None})
    assert weave.owned() == {}


def test_report_asks_for_json():
    weave, fake = api()
    fake.add_recorded("weave-report.json")
    assert weave.report()["IPAM"]["Range"] == "10.32.0.0/16"
    assert fake.sent[0].headers["Accept"] == "application/json"


def test_report_without_json_accept_is_a_request_error():
    weave, fake = api()
    fake.add("GET", "/report", status=400, body="Unsupported Accept header")
    with pytest.raises(BackendRequestError, match="Weave rejected GET /report"):
        weave.report()


def test_default_subnet_and_proxy_addresses():
    weave, fake = api()
    for name in ("weave-ipinfo-defaultsubnet.json", "weave-proxyaddrs.json"):
        fake.add_recorded(name)
    assert weave.default_subnet() == IPv4Network("10.32.0.0/24")
    assert weave.proxy_addrs() == ["unix:///var/run/weave/weave.sock"]


def test_expose_posts_the_address():
    weave, fake = api()
    fake.add("POST", "/expose/10.32.1.3/24", status=204)
    weave.expose(IPv4Interface("10.32.1.3/24"))
    assert [s.method + " " + s.path for s in fake.sent] == ["POST /expose/10.32.1.3/24"]


def test_expose_subnet_allocates_for_the_host_then_exposes_that_address():
    weave, fake = api()
    fake.add("POST", "/ip/weave:expose/10.32.2.0/24", body="10.32.2.3/24")
    fake.add("POST", "/expose/10.32.2.3/24", status=204)
    assert weave.expose_subnet(IPv4Network("10.32.2.0/24")) == IPv4Interface("10.32.2.3/24")
    assert [s.method + " " + s.path for s in fake.sent] == [
        "POST /ip/weave:expose/10.32.2.0/24", "POST /expose/10.32.2.3/24"]


def test_parsers():
    assert parse_host_addresses("10.32.0.2\n10.32.1.3/24\n") == [IPv4Address("10.32.0.2"),
                                                                 IPv4Address("10.32.1.3")]
    assert parse_version("weave script 2.8.1\nweave 2.8.1\n") == {"weave script": "2.8.1",
                                                                  "weave": "2.8.1"}


FAKE_WEAVE = """#!/bin/sh
printf '%s\\n' "$*" >> "{log}"
case "$1" in
  expose) echo 10.32.0.2; echo 10.32.1.3 ;;
  version) echo "weave script 2.8.1"; echo "weave 2.8.1" ;;
  launch) echo 1a2b3c ;;
  hang) sleep 30 & exec sleep 30 ;;
  stop) echo "weave container is not present; have you launched it?" >&2; exit 1 ;;
esac
"""


@pytest.fixture
def weave_command(tmp_path):
    log = tmp_path / "calls.log"
    script = tmp_path / "weave"
    script.write_text(FAKE_WEAVE.format(log=log))
    script.chmod(0o755)
    command = WeaveCommand(str(script), timeout=5, launch_timeout=5)
    command.log = log
    return command


def calls(command):
    return command.log.read_text().splitlines()


def test_launch_builds_the_documented_command_line(weave_command):
    weave_command.launch("10.32.0.0/16", IPv4Network("10.32.0.0/24"), ["192.168.56.4"])
    assert calls(weave_command) == [
        "launch --no-dns --no-default-ipalloc --ipalloc-range 10.32.0.0/16 "
        "--ipalloc-default-subnet 10.32.0.0/24 192.168.56.4"
    ]


def test_expose_returns_one_host_address_per_subnet(weave_command):
    assert weave_command.expose(["net:default", IPv4Network("10.32.1.0/24")]) == [
        IPv4Address("10.32.0.2"), IPv4Address("10.32.1.3")]
    assert calls(weave_command) == ["expose net:default net:10.32.1.0/24"]


def test_version(weave_command):
    assert weave_command.version()["weave"] == "2.8.1"


def test_failure_is_one_line_with_stderr(weave_command):
    with pytest.raises(BackendError) as caught:
        weave_command.run("stop")
    assert caught.value.one_line() == (
        "weave stop failed (exit 1): weave container is not present; have you launched it?"
    )


def test_timeout_kills_the_command_and_its_children(weave_command):
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="weave hang did not finish within 0.3s"):
        weave_command.run("hang", timeout=0.3)
    assert time.monotonic() - started < 5


def test_missing_command_is_a_permanent_error(tmp_path):
    with pytest.raises(BackendUnavailable) as caught:
        WeaveCommand(str(tmp_path / "no-weave")).version()
    assert caught.value.temporary is False
    assert "was not found" in caught.value.one_line()


def test_env_replaces_the_environment(tmp_path):
    script = tmp_path / "weave"
    script.write_text(f'#!/bin/sh\necho "$DOCKER_API_VERSION" > "{tmp_path}/env"\n')
    script.chmod(0o755)
    WeaveCommand(str(script), env={"PATH": os.environ["PATH"],
                                   "DOCKER_API_VERSION": "1.24"}).reset()
    assert (tmp_path / "env").read_text().strip() == "1.24"


@pytest.mark.parametrize("body, field", [
    ({"owned": "x"}, "owned is str"),
    ({"owned": [{"addrs": ["10.32.1.1/24"]}]}, "owned[0] has no containerid"),
    ({"owned": [{"containerid": "weave:expose", "addrs": ["10.32.1.300/24"]}]},
     "owned[0].addrs[0] = '10.32.1.300/24'"),
    ({"owned": [{"containerid": "c", "addrs": ["10.32.1.1"]}]}, "owned[0].addrs[0]"),
    ({"owned": [{"containerid": "c", "addrs": {"a": 1}}]}, "owned[0].addrs is dict"),
    ([1, 2], "expected an object"),
])
def test_a_corrupt_ipam_answer_is_one_backend_error_naming_the_field(body, field):
    weave, fake = api()
    fake.add("GET", "/ip", body=body)
    with pytest.raises(BackendError) as caught:
        weave.owned()
    assert field in caught.value.one_line() and "\n" not in caught.value.one_line()
