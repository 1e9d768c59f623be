"""The lab's Docker-version behaviour, pure parts: which Weave images a ``weave`` command runs
and which Docker API version they speak (docs/design.md "Weave facts", "Docker 26"), the lab
node's apt answering as Debian's apt does (tests/fixtures/recorded/apt-docker/), and the
script's words for a refused API version (tests/fixtures/recorded/docker26/)."""

from __future__ import annotations

from pathlib import Path

import pytest
from weavenomad_lab import apt
from weavenomad_lab.weave import flavours

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"
BOOKWORM = {"docker.io": "20.10.24+dfsg1-1+deb12u1+b6", "containerd": "1.6.20~ds1-1+deb12u3"}
TRIXIE = {"docker.io": "26.1.5+dfsg1-9+deb13u1+b1", "docker-cli": "26.1.5+dfsg1-9+deb13u1+b1",
          "containerd": "1.7.24~ds1-6+deb13u1"}
TABLES = {"bookworm": BOOKWORM, "trixie": TRIXIE}
REFUSED = ("client version 1.18 is too old. Minimum supported API version is 1.24, please "
           "upgrade your client to a newer version")


@pytest.mark.parametrize(("script", "environ", "owner", "expected"), [
    ("2.8.1+lab", {}, None, ("weaveworks", "2.8.1", "1.18")),
    # weaveworks' proxy pins 1.18 whatever DOCKER_API_VERSION says
    ("2.8.1+lab", {"DOCKER_API_VERSION": "1.44"}, None, ("weaveworks", "2.8.1", "1.18")),
    # the 2.8.1 script run with the fork's images (WEAVE_VERSION, DOCKERHUB_USER)
    ("2.8.1+lab", {"WEAVE_VERSION": "2.9.0", "DOCKERHUB_USER": "rajchaudhuri"}, None,
     ("rajchaudhuri", "2.9.0", "1.24")),
    ("2.9.0+lab", {}, "rajchaudhuri", ("rajchaudhuri", "2.9.0", "1.24")),
    ("2.8.3", {"DOCKER_API_VERSION": "1.44"}, None, ("rajchaudhuri", "2.8.3", "1.44")),
])
def test_the_images_and_api_version_a_weave_command_runs(script, environ, owner, expected):
    flavour = flavours.flavour_for(script, environ, owner)
    assert (flavour.owner, flavour.version, flavour.api_version) == expected
    assert flavour.router_image == f"{expected[0]}/weave:{expected[1]}"
    assert flavour.volumes_container == f"weavevolumes-{expected[1]}"
    assert flavours.Flavour.from_json(flavour.to_json()) == flavour


def test_the_refusal_reads_as_the_recorded_launch_and_router_death():
    launch = (RECORDED / "docker26" / "A03-manual-weave-launch.txt").read_text()
    assert flavours.launch_refused(REFUSED).strip() in launch
    logs = (RECORDED / "docker26" / "V00-weave-logs-after-upgrade.txt").read_text()
    assert flavours.proxy_refused(REFUSED) in logs
    down = (RECORDED / "docker26" / "B01-doctor-minapi-1.18-dockerd-down.txt").read_text()
    said = " ".join(flavours.docker_down("unix:///var/run/docker.sock").split())
    assert said in " ".join(down.split())


def test_the_lab_apt_policy_is_apts_own_text():
    """Recorded on Debian 12 with a trixie source added (apt-docker/a1, a2)."""
    recorded = (RECORDED / "apt-docker" / "a2-policy-bookworm-and-trixie.txt").read_text()
    state = apt.PackageState(["bookworm", "trixie"], dict(BOOKWORM))
    asked = ["docker.io", "docker-cli", "containerd", "docker-ce", "docker-ce-cli",
             "containerd.io"]
    assert apt.policy_text(asked, state, TABLES) == recorded
    # a hold does not change the candidate apt-cache shows (a8)
    held = apt.PackageState(["bookworm", "trixie"], dict(BOOKWORM), ["docker.io", "containerd"])
    held_text = (RECORDED / "apt-docker" / "a8-policy-held.txt").read_text().replace(
        "/tmp/i22-apt/status-held", "/var/lib/dpkg/status")  # recorded with a status copy
    assert apt.policy_text(asked, held, TABLES) == held_text
    only = apt.PackageState(["bookworm"], dict(BOOKWORM))
    host = (RECORDED / "apt-docker" / "a1-policy-bookworm.txt").read_text()
    # the lab's sources have no bookworm-security, which offers an older containerd
    security = ("     1.6.20~ds1-1+deb12u2 500\n        500 http://deb.debian.org/debian-security "
                "bookworm-security/main amd64 Packages\n")
    assert security in host
    assert apt.policy_text(asked, only, TABLES) == host.replace(security, "")


def test_holds_keep_docker_back_and_unknown_packages_are_refused():
    state = apt.PackageState(["bookworm", "trixie"], dict(BOOKWORM))
    known = {p for table in TABLES.values() for p in table}
    lines, code = apt.mark(state, "hold", ["docker.io", "containerd"], known)
    assert (lines, code) == (["docker.io set on hold.", "containerd set on hold."], 0)
    assert apt.mark(state, "hold", ["docker.io"], known)[0] == ["docker.io was already set on "
                                                                 "hold."]
    recorded = (RECORDED / "apt-docker" / "a7-hold-unknown.txt").read_text().splitlines()
    assert apt.mark(state, "hold", ["no-such-package"], known) == (recorded[:2], 100)
    assert apt.upgrade_plan(state, TABLES) == ({}, ["containerd", "docker.io"])
    apt.mark(state, "unhold", ["containerd"], known)
    assert apt.upgrade_plan(state, TABLES) == ({"containerd": TRIXIE["containerd"]},
                                               ["docker.io"])
    assert apt.engine_for(TRIXIE["docker.io"], TABLES) == "26"
    assert apt.engine_for(BOOKWORM["docker.io"], TABLES) == "20.10"
