"""Docker and Weave versions (issue 16 item 3, issue 22): the API floors and pins, the fix each
mismatch gets, the package manager's view (recorded: tests/fixtures/recorded/apt-docker/) and
the diagnosis of a node whose Docker was upgraded under its Weave (recorded: docker26/)."""

from pathlib import Path

import pytest

from weavenomad.bootstrap import checks as ck
from weavenomad.bootstrap import diagnose, packages
from weavenomad.bootstrap import versions as vs
from weavenomad.bootstrap.leftovers import WeaveContainer

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"
DOCKER_20 = {"Version": "20.10.24+dfsg1", "ApiVersion": "1.41", "MinAPIVersion": "1.12"}
DOCKER_25 = {"Version": "25.0.3", "ApiVersion": "1.44", "MinAPIVersion": "1.24"}
DOCKER_26 = {"Version": "26.1.5+dfsg1", "ApiVersion": "1.45", "MinAPIVersion": "1.24"}
DOCKER_29 = {"Version": "29.0.0", "ApiVersion": "1.52", "MinAPIVersion": "1.44"}
FATA = ("FATA: 2026/12/07 19:25:09.204325 Could not start proxy: API error (400): client version "
        "1.18 is too old. Minimum supported API version is 1.24, please upgrade your client to "
        "a newer version")


@pytest.mark.parametrize(("engine", "floor"), [("20.10.24+dfsg1", "1.12"), ("24.0.9", "1.12"),
                                               ("25.0.3", "1.24"), ("26.1.5+dfsg1", "1.24"),
                                               ("28.5.1", "1.24"), ("29.0.0", "1.44"),
                                               ("5:24.0.7-1~debian.12~bookworm", "1.12")])
def test_docker_api_floors(engine, floor):
    assert vs.docker_floor(engine) == floor


@pytest.mark.parametrize(("weave", "override", "speaks"), [
    ("2.8.1", None, "1.18"), ("2.8.1", "1.44", "1.18"), ("2.8.1+lab", None, "1.18"),
    ("2.8.3", None, "1.24"), ("2.9.0", None, "1.24"), ("2.9.0", "1.44", "1.44")])
def test_weave_pins(weave, override, speaks):
    assert vs.weave_api(weave, override) == speaks
    assert vs.is_fork(weave) == (speaks != "1.18")


def verdict(docker, weave, override=None, launched=True):
    return vs.judge(docker["Version"], docker["MinAPIVersion"], docker["ApiVersion"], weave,
                    override, launched)


def test_each_mismatch_names_the_setting_that_fixes_it_for_these_versions():
    assert verdict(DOCKER_20, "2.8.1").ok
    # Docker 25: dockerd may accept 1.18 again (not verified), or the fork
    fix = verdict(DOCKER_25, "2.8.1").fix
    assert "DOCKER_MIN_API_VERSION=1.18" in fix and "rajch/weave 2.9.0" in fix
    # Docker 26: no dockerd setting helps (recorded B00): the fork, or Docker held back
    fix = verdict(DOCKER_26, "2.8.1").fix
    assert "DOCKER_MIN_API_VERSION" not in fix and "no dockerd setting" in fix
    assert "weavenomad weave-upgrade" in fix and "weavenomad docker-hold --downgrade" in fix
    # not launched yet: bootstrap with the fork's images, naming the variables and keys
    fresh = verdict(DOCKER_26, "2.8.1", launched=False).fix
    assert "weavenomad bootstrap with WEAVE_VERSION=2.9.0 DOCKERHUB_USER=rajchaudhuri" in fresh
    assert '[weave] version = "2.9.0", image_owner = "rajchaudhuri"' in fresh
    # Docker 29: the fork with DOCKER_API_VERSION=1.44
    assert "weave-upgrade --docker-api-version 1.44" in verdict(DOCKER_29, "2.8.1").fix
    fork = verdict(DOCKER_29, "2.9.0")
    assert not fork.ok and "DOCKER_API_VERSION=1.44" in fork.fix
    assert verdict(DOCKER_29, "2.9.0", "1.44").ok and verdict(DOCKER_26, "2.9.0").ok
    assert "set DOCKER_API_VERSION=1.41" in verdict(DOCKER_20, "2.9.0", "1.44").fix


def test_which_weave_is_in_play():
    router = WeaveContainer("weave", "restarting", 1, (), "weaveworks/weave:2.8.1", 7)
    script = {"weave script": "2.8.1", "weave": "2.8.1"}
    # doctor: the crash-looping router's image, whatever is configured
    assert diagnose.weave_in_play(None, router, "2.9.0", script, for_launch=False) == "2.8.1"
    # bootstrap: what the launch would run
    assert diagnose.weave_in_play(None, router, "2.9.0", script, for_launch=True) == "2.9.0"
    assert diagnose.weave_in_play(None, router, None, script, for_launch=True) == "2.8.1"
    running = {"Version": "2.9.0+lab"}
    assert diagnose.weave_in_play(running, None, None, script, for_launch=True) == "2.9.0+lab"
    assert vs.image_version("weaveworks/weave:latest") is None


def test_the_packages_a_recorded_apt_offers():
    policy = packages.parse_policy((RECORDED / "apt-docker" /
                                    "a2-policy-bookworm-and-trixie.txt").read_text())
    engine = policy["docker.io"]
    assert (engine.installed, engine.candidate) == ("20.10.24+dfsg1-1+deb12u1+b6",
                                                    "26.1.5+dfsg1-9+deb13u1+b1")
    assert engine.table[0].origins == ("http://deb.debian.org/debian trixie/main amd64 Packages",)
    assert engine.table[1].origins[-1] == "/var/lib/dpkg/status"
    assert policy["docker-cli"].installed is None
    assert policy["docker-ce"].candidate is None and "containerd.io" not in policy
    held = packages.parse_showhold((RECORDED / "apt-docker" / "a3-showhold-held.txt").read_text())
    assert held == {"docker.io", "containerd"}
    assert packages.upstream("5:24.0.7-1~debian.12~bookworm") == "24.0.7"
    assert packages.upstream(engine.installed) == "20.10.24+dfsg1"


def apt_facts(name="a2-policy-bookworm-and-trixie.txt", held=()):
    text = (RECORDED / "apt-docker" / name).read_text()
    return packages.AptFacts(packages.parse_policy(text), frozenset(held))


def test_prevent_warns_until_docker_is_held_wholly():
    upgrade = packages.check_docker_packages(apt_facts(), DOCKER_20, "/var/lib/docker", "2.8.1",
                                             None)
    assert upgrade.status == ck.WARN
    assert "apt offers docker.io 26.1.5+dfsg1-9+deb13u1+b1 (installed 20.10.24" in upgrade.detail
    assert "refuses the API 1.18 weave 2.8.1 speaks (it wants 1.24" in upgrade.detail
    assert "weavenomad docker-hold (apt-mark hold docker.io containerd)" in upgrade.fix
    assert "weavenomad weave-upgrade" in upgrade.fix
    # only docker.io held: containerd moves under it in a full upgrade (recorded a9)
    partial = packages.check_docker_packages(apt_facts(held={"docker.io"}), DOCKER_20, None,
                                             "2.8.1", None)
    assert partial.status == ck.WARN and "containerd are not" in partial.detail
    assert "apt-mark hold containerd" in partial.fix
    whole = packages.check_docker_packages(apt_facts(held={"docker.io", "containerd"}),
                                           DOCKER_20, None, "2.8.1", None)
    assert whole.status == ck.PASS and "docker.io containerd are held" in whole.detail
    # the fork speaks 1.24: Docker 26 is no threat to it
    assert packages.check_docker_packages(apt_facts(), DOCKER_20, None, "2.9.0",
                                          None).status == ck.PASS
    nothing_new = packages.check_docker_packages(apt_facts("a1-policy-bookworm.txt"), DOCKER_20,
                                                 None, "2.8.1", None)
    assert nothing_new.status == ck.PASS and "newest apt offers" in nothing_new.detail
    assert packages.hold_targets(apt_facts()) == ["docker.io", "containerd"]


def test_prevent_names_what_apt_cannot_hold():
    failed = packages.AptFacts(error="apt-cache is not installed: this node's package manager "
                               "is not apt")
    check = packages.check_docker_packages(failed, DOCKER_20, None, "2.8.1", None)
    assert check.status == ck.WARN and "apt-cache is not installed" in check.detail
    snap = packages.check_docker_packages(apt_facts(), DOCKER_20,
                                          "/var/snap/docker/common/var-lib-docker", "2.8.1", None)
    assert snap.status == ck.WARN and "snap refresh --hold docker" in snap.detail
    static = packages.check_docker_packages(apt_facts(), DOCKER_26, None, "2.8.1", None)
    assert static.status == ck.WARN and "not the packaged one" in static.detail
    none = packages.AptFacts(packages.parse_policy("docker-ce:\n  Installed: (none)\n  "
                                                   "Candidate: (none)\n  Version table:\n"))
    check = packages.check_docker_packages(none, DOCKER_20, None, "2.8.1", None)
    assert check.status == ck.WARN and "static binaries or another source" in check.detail


def test_a_crash_looping_router_shows_its_last_line_and_the_real_cause():
    """Recorded: docker26/V00 (restarts=7 status=restarting exit=1 and that FATA line)."""
    assert FATA in (RECORDED / "docker26" / "V00-weave-logs-after-upgrade.txt").read_text()
    router = WeaveContainer("weave", "restarting", 1, (), "weaveworks/weave:2.8.1", 7)
    fix = verdict(DOCKER_26, "2.8.1").fix
    check = diagnose.check_weave_container(router, FATA, fix)
    assert check.status == ck.FAIL and "is restarting (7 restart(s), last exit 1)" in check.detail
    assert FATA in check.detail
    assert "cause: Docker refuses the API 1.18 this Weave speaks (it accepts 1.24" in check.detail
    assert check.fix == fix
    other = diagnose.check_weave_container(
        WeaveContainer("weave", "exited", 1), "FATA: invalid CIDR address: 10.32.0.0/33", None)
    assert "docker logs weave" in other.fix
    assert diagnose.check_weave_container(None, None, None) is None


def test_a_crash_looping_router_caught_running_between_restarts_still_fails():
    """A doctor run in the moment Docker shows the looping router 'running' said PASS."""
    fix = verdict(DOCKER_26, "2.8.1").fix
    looping = WeaveContainer("weave", "running", 0, (), "weaveworks/weave:2.8.1", 3)
    check = diagnose.check_weave_container(looping, FATA, fix)
    assert check.status == ck.FAIL and "crash-looping" in check.detail and FATA in check.detail
    assert check.fix == fix
    # an old crash of a router that Docker no longer refuses is history, not a loop
    recovered = diagnose.check_weave_container(looping, FATA, None)
    assert recovered.status == ck.PASS
    fresh = WeaveContainer("weave", "running", 0, (), "weaveworks/weave:2.8.1", 0)
    assert diagnose.check_weave_container(fresh, None, fix).status == ck.PASS


def test_every_fix_points_at_something_that_works_here():
    """The recorded doctor of an upgraded node (docker26/V08) said 'fix: weavenomad bootstrap'
    on every Weave check, while bootstrap refused (V09)."""
    api = ck.Check("docker-weave-api", ck.FAIL, "...", verdict(DOCKER_26, "2.8.1").fix)
    checks = [ck.Check("docker", ck.PASS, "Docker 26"), api,
              ck.Check("weave-router", ck.FAIL, "Weave is not running", "weavenomad bootstrap"),
              ck.Check("tenant-isolation", ck.FAIL, "shadowed",
                       "weavenomad bootstrap (puts the guards back at the top), or by hand: x"),
              ck.Check("nomad-docker-endpoint", ck.FAIL, "unhealthy",
                       "check that Weave runs (weave status) and restart Nomad"),
              ck.Check("registry", ck.PASS, "range")]
    fixed = {c.name: c for c in diagnose.redirect_fixes(checks, ["docker", "docker-weave-api"],
                                                        weave_bridge=True)}
    assert fixed["weave-router"].fix == api.fix
    assert fixed["nomad-docker-endpoint"].fix == api.fix
    assert fixed["tenant-isolation"].fix.startswith("weavenomad guard ensure (puts the guards")
    assert fixed["docker-weave-api"] == api and fixed["registry"].fix is None
    # Docker down: the Weave checks say to start it (recorded B01 said 'install Weave Net')
    down = [ck.Check("docker", ck.FAIL, "Docker does not answer", "start dockerd"),
            ck.check_weave_command(None, "exit 125", docker_answers=False),
            ck.Check("weave-router", ck.FAIL, "Weave is not running", "weavenomad bootstrap")]
    fixed = {c.name: c for c in diagnose.redirect_fixes(down, ["docker", "weave-command"],
                                                        weave_bridge=False)}
    assert "install Weave" not in fixed["weave-command"].fix
    assert fixed["weave-command"].fix.startswith("start dockerd")
    assert fixed["weave-router"].fix == "start dockerd"
