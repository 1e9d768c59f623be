"""The lab's ``weave`` command: the real script's commands, flags, outputs and exit codes, run
against the lab's weave emulator instead of Weave's containers.

``weavenomad lab env`` puts ``S/nodes/nX/bin`` first on PATH; the ``weave`` file there runs
``python -m weavenomad_lab.weave.shim --lab-state-dir S --node nX "$@"``. Supported (Weave 2.8.1
syntax): ``launch [flags] [peer ...]``, ``expose [addr ...] [-h fqdn]``, ``hide [addr ...]``,
``status [targets|connections|peers|dns|ipam]``, ``report [-f format]``, ``ps [container ...]``,
``env [--restore]``, ``config``, ``stop``, ``rmpeer <peer> ...``, ``reset [--force]``,
``version``, ``help``. Outputs as the script prints them: ``launch`` the router's (here: a
stable fake) container ID,
``expose``/``hide`` the host addresses on one line, ``ps`` ``<id> <mac> <ip/len> ...`` rows, ``env``
``export DOCKER_HOST=unix://<proxy socket> ORIG_DOCKER_HOST=<previous>``. Errors go to stderr
with exit code 1, as the script's ``exit 1``. Flags the emulation cannot act on (DNS, plugin,
restart policy, logging) are accepted and ignored.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from weavenomad_lab.errors import LabError
from weavenomad_lab.weave import COMPONENT_NAME, CONTROL_TIMEOUT, cidr, control_call, flavours

SCRIPT_VERSION = f"{flavours.DEFAULT_SCRIPT_VERSION}{flavours.LAB_SUFFIX}"
ADDR_FORMS = "[ip:]<cidr> | net:<cidr> | net:default"

USAGE = """Usage:

weave --help | help
      setup
      version

weave launch        [--password <pass>] [--trusted-subnets <cidr>,...]
                    [--host <ip_address>]
                    [--name <mac>] [--nickname <nickname>]
                    [--no-restart] [--resume] [--no-discovery] [--no-dns]
                    [--ipalloc-init <mode>]
                    [--ipalloc-range <cidr> [--ipalloc-default-subnet <cidr>]]
                    [--plugin=false] [--proxy=false]
                    [-H <endpoint>] [--without-dns] [--no-multicast-route]
                    [--no-rewrite-hosts] [--no-default-ipalloc]
                    [--hostname-from-label <labelkey>]
                    [--hostname-match <regexp>]
                    [--hostname-replacement <replacement>]
                    [--rewrite-inspect]
                    [--log-level=debug|info|warning|error]
                    <peer> ...

weave env           [--restore]
      config

weave expose        [<addr> ...] [-h <fqdn>]
      hide          [<addr> ...]

weave status        [targets | connections | peers | dns | ipam]
      report        [-f <format>]
      ps            [<container_id> ...]

weave stop

weave rmpeer        <peer_id> ...

weave reset         [--force]

where <peer>     = <ip_address_or_fqdn>[:<port>]
      <cidr>     = <ip_address>/<routing_prefix_length>
      <addr>     = [ip:]<cidr> | net:<cidr> | net:default
      <endpoint> = [tcp://][<ip_address>]:<port> | [unix://]/path/to/socket
"""

VALUE_FLAGS = {
    "password", "trusted-subnets", "host", "name", "nickname", "ipalloc-init", "ipalloc-range",
    "ipalloc-default-subnet", "dns-listen-address", "dns-domain", "H", "hostname-from-label",
    "hostname-match", "hostname-replacement", "log-level", "conn-limit", "metrics-addr",
    "status-addr", "mtu", "port", "plugin", "proxy",
}
BOOL_FLAGS = {
    "no-restart", "resume", "no-discovery", "no-dns", "without-dns", "no-multicast-route",
    "no-rewrite-hosts", "no-default-ipalloc", "rewrite-inspect", "no-fastdp",
}


class UsageError(Exception):
    pass


class ScriptExit(Exception):
    """The emulator's answer is the script's own exit: this code, this stdout and stderr."""

    def __init__(self, code: int, stdout: str, stderr: str):
        super().__init__(stderr)
        self.code, self.stdout, self.stderr = code, stdout, stderr


#: the lab's lever for a router that dies at start (see runtime.LaunchOptions.fatal)
FATAL_VARIABLE = "WEAVENOMAD_LAB_WEAVE_FATAL"


def parse_launch(args: list[str], environ: dict[str, str]) -> dict:
    """``weave launch`` arguments -> LaunchOptions JSON (see runtime.LaunchOptions)."""
    values: dict[str, str] = {}
    flags: set[str] = set()
    peers: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-") or arg == "-":
            peers.append(arg)
            i += 1
            continue
        name, has_value, value = arg.lstrip("-").partition("=")
        if name in BOOL_FLAGS and not has_value:
            flags.add(name)
        elif name in BOOL_FLAGS:
            if value.lower() in ("true", "1"):
                flags.add(name)
        elif name in VALUE_FLAGS:
            if not has_value:
                if name in ("plugin", "proxy"):  # --plugin / --proxy alone mean true
                    value = "true"
                elif i + 1 >= len(args):
                    raise UsageError(f"flag needs an argument: {arg}")
                else:
                    i += 1
                    value = args[i]
            values[name] = value
        else:
            raise UsageError(f"flag provided but not defined: {arg}")
        i += 1
    trusted = [s for s in values.get("trusted-subnets", "").split(",") if s]
    return {
        "ipalloc_range": values.get("ipalloc-range"),
        "default_subnet": values.get("ipalloc-default-subnet"),
        "no_default_ipalloc": "no-default-ipalloc" in flags,
        "proxy": values.get("proxy", "true").lower() not in ("false", "0"),
        "peers": peers,
        "nickname": values.get("nickname"),
        "name": values.get("name"),
        "password": bool(values.get("password") or environ.get("WEAVE_PASSWORD")),
        "trusted_subnets": trusted,
        **({"ipalloc_init": values["ipalloc-init"]} if "ipalloc-init" in values else {}),
    }


def split_expose_args(args: list[str]) -> list[str]:
    """``expose [<addr> ...] [-h <fqdn>]``: the addresses as the script collects them (the
    fqdn is for weaveDNS, which the lab does not have)."""
    addresses, rest = cidr.collect_cidr_args(args)
    if rest and (len(rest) != 2 or rest[0] != "-h"):
        raise UsageError(f"expose takes addresses ({ADDR_FORMS}), then -h <fqdn>: {rest[0]}")
    return addresses


def split_hide_args(args: list[str]) -> list[str]:
    """``hide [<addr> ...]``: the addresses as the script collects them; like the script, the
    arguments after them are ignored."""
    return cidr.collect_cidr_args(args)[0]


class Shim:
    def __init__(self, component_dir: Path, node: str, environ: dict[str, str],
                 out: Callable[[str], object], err: Callable[[str], object], *,
                 script_version: str = SCRIPT_VERSION, image_owner: str | None = None):
        """``out``/``err`` write text exactly as given (newlines included). ``script_version``
        and ``image_owner``: the release this command is (the fork's script names its own
        images), see :mod:`.flavours`."""
        self.component_dir = component_dir
        self.node = node
        self.environ = environ
        self.out = out
        self.err = err
        self.script_version = script_version
        self.image_owner = image_owner

    def flavour(self) -> flavours.Flavour:
        """The images this command runs: its release's, or WEAVE_VERSION's and
        DOCKERHUB_USER's."""
        return flavours.flavour_for(self.script_version, self.environ, self.image_owner)

    def call(self, op: str, **fields) -> dict:
        # as the script's, expose waits as long as Weave's IPAM does (for consensus: no timeout)
        timeout = None if op == "expose" else CONTROL_TIMEOUT
        answer = control_call(self.component_dir, {"op": op, "node": self.node, **fields},
                              timeout)
        if not answer.get("ok") and "stderr" in answer:
            raise ScriptExit(int(answer.get("exit") or 1), answer.get("stdout") or "",
                             answer["stderr"])
        if not answer.get("ok"):
            raise LabError(answer.get("error", "the weave emulator refused the request"))
        return answer

    def run(self, argv: list[str]) -> int:
        if argv[:1] == ["--local"]:
            argv = argv[1:]
        if not argv:
            self.err(USAGE)
            return 1
        command, args = argv[0], argv[1:]
        handler = getattr(self, "cmd_" + command.replace("-", "_"), None)
        if handler is None:
            self.err(USAGE)
            return 1
        try:
            return handler(args) or 0
        except UsageError as exc:
            self.err(f"{exc}\n{USAGE}")
            return 1
        except ScriptExit as exc:
            self.out(exc.stdout)
            self.err(exc.stderr)
            return exc.code
        except LabError as exc:
            self.err(exc.one_line() + "\n")
            return 1

    def cmd_help(self, args):
        self.out(USAGE)

    cmd___help = cmd_help

    def cmd_version(self, args):
        """``weave script X``, then the router's version: the running router's image, else
        the one this command would run; it needs Docker, as the script's ``docker run``."""
        router = self.call("version", flavour=self.flavour().to_json())["router"]
        self.out(f"weave script {self.script_version}\nweave {router}\n")

    def cmd_launch(self, args):
        options = parse_launch(args, self.environ)
        options["fatal"] = self.environ.get(FATAL_VARIABLE) or None
        options["flavour"] = self.flavour().to_json()
        self.out(self.call("launch", options=options)["id"] + "\n")

    def cmd_reset(self, args):
        if args not in ([], ["--force"]):
            raise UsageError("reset takes only --force")
        self._warn_if_stopping_proxy_in_env()
        answer = self.call("reset", **({"force": True} if args else {}))
        self.err(answer.get("stderr") or "")

    def cmd_rmpeer(self, args):
        if not args:
            raise UsageError("rmpeer needs at least one peer name or nickname")
        self.out(self.call("rmpeer", args=args)["stdout"])

    def cmd_stop(self, args):
        if args:
            raise UsageError("stop takes no arguments")
        self._warn_if_stopping_proxy_in_env()
        self.call("stop")

    def _warn_if_stopping_proxy_in_env(self) -> None:
        try:
            proxy = self.call("env")["proxy"]
        except LabError:
            return
        if proxy and self.environ.get("DOCKER_HOST") == proxy[0]:
            self.out("WARNING: It appears that your environment is configured to use the Weave "
                     "Docker API proxy. Stopping it will break this and subsequent docker "
                     "invocations. To restore your environment, run "
                     "'eval $(weave env --restore)'.\n")

    def cmd_expose(self, args):
        addresses = self.call("expose", args=split_expose_args(args))["addresses"]
        self.out(" ".join(a.split("/")[0] for a in addresses) + "\n")

    def cmd_hide(self, args):
        addresses = self.call("hide", args=split_hide_args(args))["addresses"]
        self.out(" ".join(a.split("/")[0] for a in addresses) + "\n")

    def cmd_status(self, args):
        text = self.call("status", view="/".join(args))["text"]
        # the script frames the full status with empty lines
        self.out(text if args else "\n" + text + "\n")

    def cmd_report(self, args):
        report = self.call("report")["report"]
        if not args:
            self.out(json.dumps(report, indent=4) + "\n")
            return
        if args[0] != "-f" or len(args) != 2:
            raise UsageError("report takes only -f <format>")
        from weavenomad_lab.weave.status import render_format

        try:
            self.out(render_format(args[1], report) + "\n")
        except ValueError as exc:
            raise LabError(str(exc)) from None

    def cmd_ps(self, args):
        for row in self.call("ps", args=args)["rows"]:
            self.out(" ".join(row) + "\n")

    def cmd_env(self, args):
        if args == ["--restore"]:
            if "ORIG_DOCKER_HOST" not in self.environ:
                raise LabError("Nothing to restore. This is most likely because there was no "
                               "preceding invocation of 'eval $(weave env)' in this shell.")
            self.out(f"export DOCKER_HOST={self.environ['ORIG_DOCKER_HOST']}\n")
            return
        if args:
            raise UsageError("env takes only --restore")
        proxy = self.call("env")["proxy"]
        if not proxy:
            raise LabError("weave proxy is not running (launched with --proxy=false)")
        current = self.environ.get("DOCKER_HOST", "")
        restore = "" if proxy[0] == current else f" ORIG_DOCKER_HOST={current}"
        self.out(f"export DOCKER_HOST={proxy[0]}{restore}\n")

    def cmd_config(self, args):
        proxy = self.call("env")["proxy"]
        if not proxy:
            raise LabError("weave proxy is not running (launched with --proxy=false)")
        self.out(f"-H={proxy[0]}\n")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    given: dict[str, str] = {}
    while argv[:1] and argv[0] in ("--lab-state-dir", "--node", "--script-version",
                                   "--image-owner"):
        if len(argv) < 2:
            break
        given[argv[0]] = argv[1]
        argv = argv[2:]
    state_dir, node = given.get("--lab-state-dir"), given.get("--node")
    if not state_dir or not node:
        print("weave (lab shim): --lab-state-dir and --node are required", file=sys.stderr)
        return 1
    shim = Shim(Path(state_dir) / COMPONENT_NAME, node, dict(os.environ),
                out=sys.stdout.write, err=sys.stderr.write,
                script_version=given.get("--script-version", SCRIPT_VERSION),
                image_owner=given.get("--image-owner"))
    return shim.run(argv)


if __name__ == "__main__":
    sys.exit(main())
