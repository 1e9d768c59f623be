"""The CLI frame: help everywhere, one-line errors, exit codes from ExitCode, no token leaks."""

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from weavenomad.cli import cli, main
from weavenomad.errors import ConfigError, ExitCode


def _walk(command: click.Command, ctx: click.Context, path: tuple[str, ...]):
    yield path, command
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            yield from _walk(sub, click.Context(sub, parent=ctx, info_name=name), path + (name,))


def _all_commands():
    root = click.Context(cli, info_name="weavenomad")
    return list(_walk(cli, root, ()))


@pytest.mark.parametrize("path", [p for p, _ in _all_commands()], ids=lambda p: " ".join(p) or "-")
def test_every_command_has_help(path):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    command = dict(_all_commands())[path]
    assert (command.help or "").strip(), f"'{' '.join(path)}' has no help text"


def _run_main(argv, environ=None, monkeypatch=None):
    with pytest.raises(SystemExit) as exit_info:
        main(argv, environ or {})
    return exit_info.value.code


def test_version_and_help_exit_zero(capsys):
    assert _run_main(["--version"]) == 0
    assert "weavenomad, version" in capsys.readouterr().out
    assert _run_main(["--help"]) == 0


def test_usage_error_exits_with_usage_code(capsys):
    assert _run_main(["no-such-command"]) == ExitCode.USAGE
    assert "No such command" in capsys.readouterr().err


def test_config_error_is_one_line_naming_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[nomad]\nadress = 1\n")
    assert _run_main(["--config", str(bad), "config", "show"]) == ExitCode.ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"weavenomad: error: {bad}: unknown setting 'nomad.adress'"]


def test_tokens_are_masked_in_output(capsys):
    env = {"NOMAD_TOKEN": "s3cr3t-nomad-token"}
    assert _run_main(["config", "show", "--consul-token", "s3cr3t-consul-token"], env) == 0
    out = capsys.readouterr().out
    assert "s3cr3t" not in out
    assert "token = <set>" in out


def test_errors_redact_tokens(monkeypatch, capsys):
    def boom(self):
        raise ConfigError("denied with token s3cr3t-consul-token")

    monkeypatch.setattr("weavenomad.cli.options.AppContext.settings", property(boom))
    code = _run_main(["config", "show", "--consul-token", "s3cr3t-consul-token"])
    assert code == ExitCode.ERROR
    err = capsys.readouterr().err
    assert "s3cr3t" not in err and "<redacted>" in err


def test_flag_after_command_equals_flag_before(capsys):
    _run_main(["--nomad-addr", "http://a:1", "config", "show", "--json"])
    before = capsys.readouterr().out
    _run_main(["config", "show", "--json", "--nomad-addr", "http://a:1"])
    assert before == capsys.readouterr().out
    assert '"addr": "http://a:1"' in before


def test_ctrl_c_exits_130(monkeypatch, capsys):
    def interrupt(self):
        raise KeyboardInterrupt

    monkeypatch.setattr("weavenomad.cli.options.AppContext.settings", property(interrupt))
    assert _run_main(["config", "show"]) == ExitCode.INTERRUPTED


def test_help_does_not_import_heavy_libraries():
    code = (
        "import sys; from weavenomad.cli import main\n"
        "try:\n    main(['--help'], {})\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('docker', 'requests', 'hcl2', 'consul', 'nomad', 'lark') "
        "if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "HEAVY=", out.stdout


def test_ctx_exit_code_is_passed_through(monkeypatch):
    @click.command()
    @click.pass_context
    def failing(ctx):
        """Exit with 3."""
        ctx.exit(3)

    monkeypatch.setitem(cli.commands, "failing", failing)
    assert _run_main(["failing"]) == 3


def test_key_value_options_are_parsed_once_for_every_command(capsys):
    assert _run_main(["tenant", "create", "x", "--label", "nokey"]) == ExitCode.USAGE
    assert "'nokey': expected KEY=VALUE" in capsys.readouterr().err
    assert _run_main(["render", "jobs/httpbackend.nomad", "--tenant", "net:default",
                      "--var", "=v"]) == ExitCode.USAGE
