"""The lab's ``weave`` command: flags as the real script takes them, outputs as it prints
them, exit codes as its ``exit 1``. The daemon's answers are given; the shim's parsing and
formatting are what is tested."""

import pytest
from weavenomad_lab.errors import LabError
from weavenomad_lab.weave import shim


def test_launch_flags_of_the_real_script():
    options = shim.parse_launch(
        ["--no-dns", "--no-default-ipalloc", "--ipalloc-range", "10.32.0.0/16",
         "--ipalloc-default-subnet=10.32.0.0/24", "--proxy=true", "--plugin=false",
         "--log-level=info", "--trusted-subnets", "10.0.0.0/8,192.168.0.0/16",
         "192.168.56.4", "192.168.56.5:6783"],
        environ={"WEAVE_PASSWORD": "s3cret"},
    )
    assert options == {
        "ipalloc_range": "10.32.0.0/16", "default_subnet": "10.32.0.0/24",
        "no_default_ipalloc": True, "proxy": True, "peers": ["192.168.56.4", "192.168.56.5:6783"],
        "nickname": None, "name": None, "password": True,
        "trusted_subnets": ["10.0.0.0/8", "192.168.0.0/16"],
    }
    assert shim.parse_launch(["--proxy=false"], {})["proxy"] is False
    assert shim.parse_launch([], {})["password"] is False


@pytest.mark.parametrize("args", [["--bogus"], ["--ipalloc-range"]])
def test_launch_refuses_unknown_flags_and_missing_values(args):
    with pytest.raises(shim.UsageError):
        shim.parse_launch(args, {})


def test_expose_fqdn_is_accepted_after_the_addresses():
    assert shim.split_expose_args(["net:default", "-h", "host.weave.local"]) == ["net:default"]
    with pytest.raises(shim.UsageError):
        shim.split_expose_args(["-h"])


class Answering(shim.Shim):
    """A shim whose daemon answers from a table (op -> answer or LabError)."""

    def __init__(self, answers, environ=None):
        self.stdout, self.stderr, self.calls = [], [], []
        super().__init__(None, "n1", environ or {}, self.stdout.append, self.stderr.append)
        self.answers = answers

    def call(self, op, **fields):
        self.calls.append((op, fields))
        answer = self.answers[op]
        if isinstance(answer, Exception):
            raise answer
        return answer


def run(answers, *argv, environ=None):
    s = Answering(answers, environ)
    code = s.run(list(argv))
    return code, "".join(s.stdout), "".join(s.stderr), s.calls


def test_expose_prints_host_addresses_on_one_line():
    code, out, _, calls = run({"expose": {"addresses": ["10.32.0.2/24", "10.32.1.3/24"]}},
                              "expose", "net:default", "net:10.32.1.0/24")
    assert (code, out) == (0, "10.32.0.2 10.32.1.3\n")
    assert calls == [("expose", {"args": ["net:default", "net:10.32.1.0/24"]})]


def test_ps_rows_and_status_framing():
    rows = [["weave:expose", "7a:c4:8b:a1:e6:ad", "10.32.0.2/24"],
            ["5245643870f1", "ce:15:34:a9:b5:6d", "10.32.1.1/24", "10.32.2.1/24"]]
    assert run({"ps": {"rows": rows}}, "ps")[1] == (
        "weave:expose 7a:c4:8b:a1:e6:ad 10.32.0.2/24\n"
        "5245643870f1 ce:15:34:a9:b5:6d 10.32.1.1/24 10.32.2.1/24\n"
    )
    text = "        Version: x\n"
    assert run({"status": {"text": text}}, "status")[1] == "\n" + text + "\n"
    assert run({"status": {"text": "a(b)\n"}}, "status", "peers")[1] == "a(b)\n"


def test_env_config_and_restore():
    answers = {"env": {"proxy": ["unix:///s/nodes/n1/weave.sock"]}}
    out = run(answers, "env", environ={"DOCKER_HOST": "unix:///s/nodes/n1/docker.sock"})[1]
    assert out == ("export DOCKER_HOST=unix:///s/nodes/n1/weave.sock "
                   "ORIG_DOCKER_HOST=unix:///s/nodes/n1/docker.sock\n")
    assert run(answers, "env")[1].endswith(" ORIG_DOCKER_HOST=\n")  # as the script's echo
    assert run(answers, "config")[1] == "-H=unix:///s/nodes/n1/weave.sock\n"
    restored = run(answers, "env", "--restore", environ={"ORIG_DOCKER_HOST": "unix:///d"})
    assert restored[1] == "export DOCKER_HOST=unix:///d\n"
    code, _, err, _ = run(answers, "env", "--restore")
    assert code == 1 and err.startswith("Nothing to restore.")


def test_errors_and_usage_exit_1_on_stderr():
    not_launched = LabError("weave container is not present. Have you launched it?")
    code, out, err, _ = run({"status": not_launched}, "status")
    assert (code, out) == (1, "")
    assert err == "weave container is not present. Have you launched it?\n"
    code, _, err, _ = run({}, "frobnicate")
    assert code == 1 and err.startswith("Usage:")
    code, _, err, _ = run({}, "launch", "--bogus")
    assert code == 1 and "flag provided but not defined: --bogus" in err


def test_reset_warns_when_the_environment_uses_the_proxy():
    answers = {"env": {"proxy": ["unix:///p"]}, "reset": {}}
    code, out, _, calls = run(answers, "reset", environ={"DOCKER_HOST": "unix:///p"})
    assert code == 0 and out.startswith("WARNING: It appears that your environment")
    assert calls[-1] == ("reset", {})
    assert run(answers, "reset", "--force")[1] == ""


def test_reset_of_a_stopped_weave_is_the_scripts_refusal_and_force_says_so():
    refused = shim.ScriptExit(1, "", "ERROR: weave is not running; unable to remove from "
                              "cluster.\nRe-launch weave before reset or use --force to "
                              "override.\n")
    code, out, err, _ = run({"env": LabError("x"), "reset": refused}, "reset")
    assert (code, out) == (1, "")  # recorded: day-two/1b-04
    assert err == ("ERROR: weave is not running; unable to remove from cluster.\n"
                   "Re-launch weave before reset or use --force to override.\n")
    forced = {"env": LabError("x"),
              "reset": {"stderr": "Weave is not running (ignore on Kubernetes).\n"}}
    code, out, err, calls = run(forced, "reset", "--force")
    assert (code, out, err) == (0, "", "Weave is not running (ignore on Kubernetes).\n")
    assert calls[-1] == ("reset", {"force": True})


def test_a_router_that_dies_at_launch_exits_1_with_the_scripts_words():
    died = shim.ScriptExit(1, "", "invalid CIDR address: 10.32.0.0/33\nThe weave container "
                           "has died. Consult the container logs for further details.\n")
    code, out, err, calls = run({"launch": died}, "launch", "--ipalloc-range", "10.32.0.0/33",
                                environ={shim.FATAL_VARIABLE: ""})
    assert (code, out) == (1, "") and err.endswith("Consult the container logs for further "
                                                   "details.\n")
    assert calls[0][1]["options"]["fatal"] is None
    _, _, _, calls = run({"launch": died}, "launch", environ={shim.FATAL_VARIABLE: "boom"})
    assert calls[0][1]["options"]["fatal"] == "boom"


def test_the_router_stand_in_carries_the_real_routers_flags_and_socket():
    """What 'docker inspect weave' shows on a real node (day-two/1d-04): the launch flags in
    Args, -H naming the proxy socket, restart policy always."""
    from weavenomad_lab.weave import containers
    from weavenomad_lab.weave.runtime import LaunchOptions

    options = LaunchOptions.from_json(shim.parse_launch(
        ["--no-dns", "--no-default-ipalloc", "--ipalloc-range", "10.32.0.0/16",
         "--ipalloc-default-subnet", "10.32.0.0/24", "192.168.56.4"], {}))
    args = containers.router_args(options.flags(), "/lab/nodes/n1/weave.sock")
    assert args[0] == containers.WEAVER
    assert args[args.index("-H") + 1] == "unix:///lab/nodes/n1/weave.sock"
    assert "--no-default-ipalloc" in args and args[-1] == "192.168.56.4"
    assert args[args.index("--ipalloc-range") + 1] == "10.32.0.0/16"
    spec = containers.router_spec(args, None)
    assert spec["HostConfig"]["RestartPolicy"] == {"Name": "always"} and spec["Env"] == []
    assert containers.router_spec(args, "boom")["Env"] == ["WEAVE_LAB_FATAL=boom"]
