"""The Vagrantfile and the node provisioning scripts, checked without a VM: Ruby's syntax check
and a run of the Vagrantfile against a recording stand-in for Vagrant, shellcheck on every
script under scripts/, and the scripts' helpers and argument handling run for real.

ruby, shellcheck and gpg must be installed (Debian packages ruby, shellcheck, gpg;
scripts/install-deps): a missing tool fails these tests, it never skips them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
VAGRANTFILE = ROOT / "Vagrantfile"
LIB = SCRIPTS / "provision-lib.sh"
STEPS = ["base", "hashicorp", "consul", "nomad", "weave", "weavenomad-install"]
SEED_NODES = {"u1": "192.168.56.3", "u2": "192.168.56.4", "u3": "192.168.56.5"}

#: Vagrant as far as the Vagrantfile uses it: every setting, call and block is recorded, and the
#: whole configuration is printed as JSON.
VAGRANT_STAND_IN = r"""
require "json"

class Recorder
  def initialize
    @settings = {}
    @children = {}
    @calls = []
  end

  def method_missing(name, *args, **options, &block)
    key = name.to_s
    return @settings[key.chomp("=")] = args.first if key.end_with?("=")
    return (@children[key] ||= Recorder.new) if args.empty? && options.empty? && block.nil?

    inner = block ? Recorder.new : nil
    block&.call(inner)
    @calls << { "method" => key, "args" => args, "options" => options.transform_keys(&:to_s),
                "block" => inner&.to_h }
    nil
  end

  def respond_to_missing?(*)
    true
  end

  def to_h
    { "settings" => @settings, "children" => @children.transform_values(&:to_h),
      "calls" => @calls }
  end
end

module Vagrant
  def self.configure(version)
    raise "unexpected configuration version #{version}" unless version == "2"

    $configuration = Recorder.new
    yield $configuration
  end
end

load ARGV.fetch(0)
puts JSON.generate($configuration.to_h)
"""


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: apt-get install {package} (scripts/install-deps)",
                    pytrace=False)
    return path


def bash(script: str, *args: str, env: dict | None = None, timeout: float = 30):
    """Run ``script`` in bash with provision-lib.sh sourced."""
    return subprocess.run(
        ["bash", "-c", f'source "{LIB}"\n{script}', "test", *args],
        capture_output=True, text=True, timeout=timeout, env=env)


def shell_scripts() -> list[Path]:
    found = []
    for path in sorted(SCRIPTS.iterdir()):
        if not path.is_file():
            continue
        head = path.read_text(errors="replace").splitlines()[:1]
        shebang = head[0] if head else ""
        if path.suffix == ".sh" or (shebang.startswith("#!") and shebang.rstrip().endswith(
                ("bash", "/sh", " sh"))):
            found.append(path)
    return found


# -- the Vagrantfile --------------------------------------------------------------------------


def test_vagrantfile_is_valid_ruby():
    done = subprocess.run([tool("ruby", "ruby"), "-wc", str(VAGRANTFILE)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Syntax OK" in done.stdout
    assert done.stderr == "", f"ruby warnings: {done.stderr}"


@pytest.fixture(scope="module")
def vagrant_config(tmp_path_factory) -> dict:
    stand_in = tmp_path_factory.mktemp("vagrant") / "vagrant.rb"
    stand_in.write_text(VAGRANT_STAND_IN)
    done = subprocess.run([tool("ruby", "ruby"), str(stand_in), str(VAGRANTFILE)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def machines(config: dict) -> dict[str, dict]:
    return {call["args"][0]: call["block"]["children"]["vm"]
            for call in config["children"]["vm"]["calls"] if call["method"] == "define"}


def test_vagrantfile_defines_the_seeds_three_nodes(vagrant_config):
    vm = vagrant_config["children"]["vm"]
    assert vm["settings"]["box"] == "debian/bookworm64"  # Docker 20.10, see the comments
    synced = [c for c in vm["calls"] if c["method"] == "synced_folder"]
    assert [c["args"] for c in synced] == [[".", "/vagrant"]]
    nodes = machines(vagrant_config)
    assert list(nodes) == list(SEED_NODES)
    for name, node in nodes.items():
        assert node["settings"]["hostname"] == name
        networks = [c for c in node["calls"] if c["method"] == "network"]
        assert [(c["args"], c["options"]) for c in networks] == [
            (["private_network"], {"ip": SEED_NODES[name]})]


def test_every_node_runs_the_steps_in_order_with_the_other_nodes_as_peers(vagrant_config):
    for name, node in machines(vagrant_config).items():
        steps = [c for c in node["calls"] if c["method"] == "provision"]
        assert [c["args"][0] for c in steps] == STEPS
        others = [ip for other, ip in SEED_NODES.items() if other != name]
        arguments = {c["args"][0]: c["options"]["args"] for c in steps}
        for step in ("consul", "nomad"):
            assert arguments[step] == ["--node-ip", SEED_NODES[name], "--join", others[0],
                                       "--join", others[1]]
        wait = ["--wait-for-bootstrap"] if name == "u3" else []  # only the last node blocks
        assert arguments["weavenomad-install"] == ["--source", "/vagrant", "--peer", others[0],
                                                   "--peer", others[1], *wait]
        for call in steps:
            assert call["options"]["type"] == "shell"
            script = f"/vagrant/scripts/provision-{call['args'][0]}.sh"
            assert script in call["options"]["inline"]
            assert (ROOT / script.removeprefix("/vagrant/")).is_file()


# -- the scripts as files ---------------------------------------------------------------------


def test_shellcheck_passes_on_every_script():
    scripts = shell_scripts()
    assert LIB in scripts and len(scripts) >= 8, scripts
    done = subprocess.run(
        [tool("shellcheck", "shellcheck"), "--external-sources", "--source-path=SCRIPTDIR",
         *map(str, scripts)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("step", [*STEPS, "weavenomad"])
def test_provisioning_scripts_are_strict_executables_with_help(step):
    script = SCRIPTS / f"provision-{step}.sh"
    lines = script.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert os.access(script, os.X_OK)
    commands = [line for line in lines[1:] if line.strip() and not line.startswith("#")]
    assert commands[0] == "set -euo pipefail", "strict mode must come before any command"
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout and "set -euo" not in done.stdout


# -- the helpers ------------------------------------------------------------------------------


def owner() -> str:
    import grp
    import pwd

    return f"{pwd.getpwuid(os.getuid()).pw_name}:{grp.getgrgid(os.getgid()).gr_name}"


def test_update_file_writes_only_what_differs(tmp_path):
    target = tmp_path / "etc" / "app.conf"
    script = 'update_file "$1" 640 "$2" "$3"; echo "changed=$CHANGED"'
    first = bash(script, str(target), owner(), "a = 1")
    assert first.stdout.splitlines()[-1] == "changed=1", first.stderr
    assert target.read_text() == "a = 1\n" and oct(target.stat().st_mode & 0o777) == "0o640"
    written = target.stat().st_mtime_ns
    time.sleep(0.01)
    again = bash(script, str(target), owner(), "a = 1")
    assert again.stdout.splitlines()[-1] == "changed=0"
    assert target.stat().st_mtime_ns == written  # untouched, not rewritten with the same text
    target.chmod(0o600)
    mode = bash(script, str(target), owner(), "a = 1")
    assert mode.stdout.splitlines()[-1] == "changed=1"
    assert oct(target.stat().st_mode & 0o777) == "0o640"
    other = bash(script, str(target), owner(), "a = 2")
    assert other.stdout.splitlines()[-1] == "changed=1" and target.read_text() == "a = 2\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["app.conf"]  # no temporaries


def test_create_file_once_never_overwrites(tmp_path):
    target = tmp_path / "docker.hcl"
    script = 'create_file_once "$1" 644 "$2" "$3"; echo "changed=$CHANGED"'
    assert bash(script, str(target), owner(), "first").stdout.strip().endswith("changed=1")
    target.write_text("edited by weavenomad bootstrap\n")
    assert bash(script, str(target), owner(), "first").stdout.strip().endswith("changed=0")
    assert target.read_text() == "edited by weavenomad bootstrap\n"


def test_a_failing_step_inside_a_helper_stops_the_script(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")
    done = bash('update_file "$1/x.conf" 644 "$2" "text"; echo "went on"',
                str(blocked), owner())
    assert done.returncode != 0 and "went on" not in done.stdout


def test_listed_sha256_matches(tmp_path):
    payload = tmp_path / "nomad_1.0.18_linux_amd64.zip"
    payload.write_bytes(b"zip bytes")
    digest = subprocess.run(["sha256sum", str(payload)], capture_output=True, text=True,
                            check=True).stdout.split()[0]
    sums = tmp_path / "SUMS"
    sums.write_text(f"{'0' * 64}  nomad_1.0.18_linux_arm64.zip\n{digest}  {payload.name}\n")
    check = 'listed_sha256_matches "$1" "$2" "$3"'
    assert bash(check, str(sums), str(payload), payload.name).returncode == 0
    payload.write_bytes(b"tampered")
    wrong = bash(check, str(sums), str(payload), payload.name)
    assert wrong.returncode != 0 and "SHA-256" in wrong.stdout
    assert bash(check, str(sums), str(payload), "consul.zip").returncode != 0


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory):
    """A throwaway signing key: (home, fingerprint, armored public key file)."""
    gpg = tool("gpg", "gpg")
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    subprocess.run([gpg, "--batch", "--homedir", str(home), "--passphrase", "",
                    "--quick-gen-key", "tv release <tv@example.invalid>", "ed25519", "sign",
                    "never"], check=True, capture_output=True, timeout=60)
    listing = subprocess.run([gpg, "--batch", "--homedir", str(home), "--with-colons",
                              "--list-keys"], check=True, capture_output=True, text=True).stdout
    fingerprint = next(line.split(":")[9] for line in listing.splitlines()
                       if line.startswith("fpr:"))
    public = home / "public.asc"
    public.write_text(subprocess.run([gpg, "--batch", "--homedir", str(home), "--armor",
                                      "--export", fingerprint], check=True,
                                     capture_output=True, text=True).stdout)
    return home, fingerprint, public


def sign(home: Path, data: Path) -> Path:
    signature = data.with_name(data.name + ".sig")
    subprocess.run(["gpg", "--batch", "--homedir", str(home), "--yes", "--output",
                    str(signature), "--detach-sign", str(data)], check=True,
                   capture_output=True, timeout=60)
    return signature


def test_signed_by_trusts_only_the_pinned_key(tmp_path, signing_key):
    home, fingerprint, public = signing_key
    sums = tmp_path / "consul_1.4.0_SHA256SUMS"
    sums.write_text(f"{'a' * 64}  consul_1.4.0_linux_amd64.zip\n")
    signature = sign(home, sums)
    check = 'signed_by "$1" "$2" "$3" "$4"'
    assert bash(check, str(public), fingerprint, str(sums), str(signature)).returncode == 0
    assert bash(check, str(public), fingerprint.lower(), str(sums),
                str(signature)).returncode == 0
    other = "C874011F0AB405110D02105534365D9472D7468F"
    assert bash(check, str(public), other, str(sums), str(signature)).returncode != 0
    sums.write_text(f"{'b' * 64}  consul_1.4.0_linux_amd64.zip\n")  # changed after signing
    assert bash(check, str(public), fingerprint, str(sums), str(signature)).returncode != 0
    empty = tmp_path / "empty.asc"
    empty.write_text("")
    assert bash(check, str(empty), fingerprint, str(sums), str(signature)).returncode != 0


# -- provision-weavenomad.sh without a cluster --------------------------------------------------


def run_steps(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPTS / "provision-weavenomad.sh"), *args],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "WEAVENOMAD_COMMAND": "true", **env})


@pytest.mark.parametrize("args, message", [
    ((), "at least one --peer"),
    (("--peer", "192.168.56.4;reboot"), "not a peer address"),
    (("--peer", "192.168.56.4", "--wait", "soon"), "--wait takes whole seconds"),
    (("--peer", "192.168.56.4", "--ipalloc-range", "10.32.0.0"), "not a CIDR"),
    (("--peer", "192.168.56.4", "--bogus"), "unknown argument"),
    (("--peer",), "--peer needs a value"),
])
def test_steps_refuse_bad_arguments(args, message):
    done = run_steps(*args)
    assert done.returncode == 2
    assert message in done.stderr


def test_steps_stop_when_weavenomad_is_missing():
    done = run_steps("--peer", "192.168.56.4", WEAVENOMAD_COMMAND="tv-no-such-command")
    assert done.returncode == 1 and "tv-no-such-command is not installed" in done.stderr


def test_steps_give_up_when_consul_has_no_leader():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    done = run_steps("--peer", "192.168.56.4", "--wait", "1",
                     CONSUL_HTTP_ADDR=f"127.0.0.1:{port}")
    assert done.returncode == 1
    assert f"Consul has no leader after 1s (http://127.0.0.1:{port}/v1/status/leader" \
        in done.stderr
    assert time.monotonic() - started < 20


# -- the fork and a current Docker (issue 16 item 3) ------------------------------------------


def test_vagrantfile_passes_the_weave_release_and_docker_source_to_the_steps(tmp_path):
    stand_in = tmp_path / "vagrant.rb"
    stand_in.write_text(VAGRANT_STAND_IN)
    env = {**os.environ, "WEAVENOMAD_WEAVE_VERSION": "2.9.0", "WEAVENOMAD_DOCKER": "docker-ce",
           "WEAVENOMAD_DOCKER_API_VERSION": "1.44"}
    done = subprocess.run([tool("ruby", "ruby"), str(stand_in), str(VAGRANTFILE)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr
    for name, node in machines(json.loads(done.stdout)).items():
        arguments = {c["args"][0]: c["options"]["args"]
                     for c in node["calls"] if c["method"] == "provision"}
        assert arguments["base"] == ["--docker", "docker-ce", "--weave-version", "2.9.0"]
        assert arguments["weave"] == ["--version", "2.9.0"]
        others = [ip for other, ip in SEED_NODES.items() if other != name]
        wait = ["--wait-for-bootstrap"] if name == "u3" else []
        assert arguments["weavenomad-install"] == [
            "--source", "/vagrant", "--peer", others[0], "--peer", others[1],
            "--weave-version", "2.9.0", "--docker-api-version", "1.44", *wait]


@pytest.mark.parametrize("script, args, message", [
    ("base", ("--docker", "docker-ce"), "--docker docker-ce needs the fork"),
    ("base", ("--docker", "docker-ce", "--weave-version", "2.8.1"), "speaks Docker API 1.18"),
    ("base", ("--docker", "snap"), "--docker takes debian or docker-ce"),
    ("base", ("--weave-version", "latest"), "not a version"),
    ("weavenomad-install", ("--source", str(ROOT), "--peer", "192.168.56.4",
                            "--weave-version", "2.9"), "not a Weave version"),
    ("weavenomad-install", ("--source", str(ROOT), "--peer", "192.168.56.4",
                            "--docker-api-version", "1.44;x"), "not a Docker API version"),
])
def test_weave_and_docker_settings_refuse_bad_values(script, args, message):
    done = subprocess.run([str(SCRIPTS / f"provision-{script}.sh"), *args],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and message in done.stderr, done.stderr
