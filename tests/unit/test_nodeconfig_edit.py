"""The Nomad agent config editor: which file and form it edits, that it keeps the user's text,
and that it refuses what it cannot do safely."""

import json

import hcl
import pytest

from weavenomad.errors import ValidationError
from weavenomad.nodeconfig import hclscan
from weavenomad.nodeconfig.edit import (
    DEFAULT_DOCKER_ENDPOINT,
    ConfigFile,
    check_change,
    docker_setting,
    plan_endpoint,
)

WEAVE = "unix:///var/run/weave/weave.sock"

SEED_STYLE = """\
# Nomad client of u1 (seed layout)
datacenter = "dc1"   # trailing comment
data_dir   = "/opt/nomad/data"

/* the client {
     is here } with braces in a comment */
client {
  enabled = true
  servers = ["192.168.56.3:4647"]
  meta {
    "rack" = "r1 { not a block }"
  }
}

plugin "docker" {
  config {
    // keep this comment
    endpoint = "unix:///var/run/docker.sock"
    volumes {
      enabled = true
    }
  }
}

plugin "raw_exec" {
  config {
    enabled = true
  }
}
"""


def edit(text: str, path: str = "/etc/nomad.d/client.hcl", endpoint: str = WEAVE):
    return plan_endpoint([ConfigFile(path, text)], endpoint)


def test_sets_the_endpoint_in_the_plugin_block_and_keeps_every_other_byte():
    change = edit(SEED_STYLE)
    assert change.form == "plugin"
    assert change.new == SEED_STYLE.replace('endpoint = "unix:///var/run/docker.sock"',
                                            f'endpoint = "{WEAVE}"')
    assert "-    endpoint = \"unix:///var/run/docker.sock\"" in change.diff()
    assert f"+    endpoint = \"{WEAVE}\"" in change.diff()


def test_already_pointing_at_the_socket_or_an_accepted_spelling_is_no_change():
    text = SEED_STYLE.replace("unix:///var/run/docker.sock", WEAVE)
    assert edit(text) is None
    other = SEED_STYLE.replace("unix:///var/run/docker.sock", "unix:///lab/n1/weave.sock")
    assert plan_endpoint([ConfigFile("/x.hcl", other)], WEAVE,
                         accepted=["unix:///lab/n1/weave.sock"]) is None


def test_adds_config_inside_a_plugin_block_without_one():
    text = 'plugin "docker" {\n  args = ["-v"]\n}\n'
    change = edit(text)
    assert change.new == ('plugin "docker" {\n  args = ["-v"]\n  config {\n'
                          f'    endpoint = "{WEAVE}"\n  }}\n}}\n')


def test_legacy_client_options_are_edited_in_place():
    text = ('client {\n  enabled = true\n  options {\n'
            '    "docker.endpoint" = "unix:///var/run/docker.sock"  # old style\n'
            '    "docker.privileged.enabled" = "true"\n  }\n}\n')
    change = edit(text)
    assert change.form == "options"
    assert f'"docker.endpoint" = "{WEAVE}"  # old style' in change.new
    assert hcl.loads(change.new)["client"]["options"]["docker.privileged.enabled"] == "true"


def test_docker_options_without_endpoint_get_one_rather_than_a_plugin_block():
    # a plugin "docker" block would replace these options, not merge with them
    text = 'client {\n\toptions = {\n\t\t"docker.volumes.enabled" = "true"\n\t}\n}\n'
    change = edit(text)
    assert change.form == "options"
    assert change.new == ('client {\n\toptions = {\n\t\t"docker.volumes.enabled" = "true"\n'
                          f'\t\t"docker.endpoint" = "{WEAVE}"\n\t}}\n}}\n')
    assert "plugin" not in change.new


def test_a_config_without_docker_settings_gets_a_plugin_block_appended():
    text = "client {\n  enabled = true\n}"
    change = edit(text)
    assert change.form == "append"
    assert change.new.startswith(text + "\n\nplugin \"docker\" {\n")
    assert docker_setting([ConfigFile("/x.hcl", change.new)]).endpoint == WEAVE


def test_single_line_blocks_are_opened_up():
    text = 'plugin "docker" { config { volumes { enabled = true } } }\n'
    change = edit(text)
    data = hcl.loads(change.new)
    assert data["plugin"]["docker"]["config"] == {"volumes": {"enabled": True},
                                                  "endpoint": WEAVE}


def test_braces_and_quotes_in_strings_comments_and_heredocs_do_not_confuse_the_scanner():
    text = ('x = "${var.m} { \\" }"\n'
            "banner = <<EOF\nclient {\n}\nEOF\n"
            "# plugin \"docker\" { config { endpoint = \"nope\" } }\n"
            'plugin "docker" {\n  config {\n    endpoint = "a"\n  }\n}\n')
    change = edit(text)
    assert change.new == text.replace('endpoint = "a"', f'endpoint = "{WEAVE}"')


def test_directory_edits_the_file_whose_plugin_config_wins():
    first = ConfigFile("/d/10-base.hcl",
                       'plugin "docker" {\n  config {\n    endpoint = "unix:///a.sock"\n  }\n}\n')
    # a later non-empty config replaces the earlier one entirely (PluginConfig.Merge)
    second = ConfigFile("/d/20-docker.hcl",
                        'plugin "docker" {\n  config {\n    allow_privileged = true\n  }\n}\n')
    assert docker_setting([first, second]).endpoint == DEFAULT_DOCKER_ENDPOINT
    change = plan_endpoint([first, second], WEAVE)
    assert change.path == "/d/20-docker.hcl"
    assert docker_setting([first, ConfigFile(change.path, change.new)]).endpoint == WEAVE


def test_directory_without_docker_settings_appends_to_the_client_file():
    server = ConfigFile("/d/server.hcl", "server {\n  enabled = true\n}\n")
    client = ConfigFile("/d/client.hcl", "client {\n  enabled = true\n}\n")
    tail = ConfigFile("/d/zz.hcl", 'log_level = "INFO"\n')
    assert plan_endpoint([client, server, tail], WEAVE).path == "/d/client.hcl"


def test_json_configs_are_edited_as_json():
    text = json.dumps({"client": {"enabled": True},
                       "plugin": [{"docker": [{"config": [{"endpoint": "unix:///a"}]}]}]},
                      indent=4) + "\n"
    change = plan_endpoint([ConfigFile("/d/agent.json", text)], WEAVE)
    data = json.loads(change.new)
    assert data["plugin"][0]["docker"][0]["config"][0]["endpoint"] == WEAVE
    assert change.new.endswith("}\n") and '\n    "client"' in change.new
    bare = plan_endpoint([ConfigFile("/d/a.json", '{"client": {"enabled": true}}')], WEAVE)
    assert json.loads(bare.new)["plugin"] == {"docker": {"config": {"endpoint": WEAVE}}}


@pytest.mark.parametrize("text, line", [
    ('client {\n  enabled = true\n  servers = = ["x"]\n}\n', 3),
    ('datacenter = "dc1"\nname = \n', 2),
])
def test_invalid_hcl_is_refused_with_file_and_line(text, line):
    with pytest.raises(ValidationError) as info:
        edit(text, path="/etc/nomad.d/broken.hcl")
    assert f"/etc/nomad.d/broken.hcl:{line}:" in info.value.one_line()


def test_invalid_json_is_refused_with_file_and_line():
    with pytest.raises(ValidationError, match=r"/d/a.json:2: "):
        plan_endpoint([ConfigFile("/d/a.json", '{\n  "client": }\n')], WEAVE)


def test_a_change_that_touches_other_settings_is_refused():
    change = edit(SEED_STYLE)
    bad = type(change)(change.path, change.old, change.new.replace('"dc1"', '"dc2"'),
                       change.form)
    with pytest.raises(ValidationError, match="other settings"):
        check_change([ConfigFile(change.path, change.old)], bad, WEAVE)


def test_endpoint_in_a_list_of_blocks_is_left_to_the_user():
    text = 'plugin = [{ docker = { config = { endpoint = "unix:///a" } } }]\n'
    try:
        change = edit(text)
    except ValidationError as exc:
        assert "by hand" in exc.one_line()
    else:  # whatever the scanner managed must still be a correct, verified edit
        assert docker_setting([ConfigFile("/x.hcl", change.new)]).endpoint == WEAVE


def test_scanner_reports_offsets_of_blocks_and_values():
    text = 'a "b" {\n  c = "d"\n}\n'
    (node,) = hclscan.scan(text)
    assert node.keys == ("a", "b") and text[node.open] == "{" and text[node.close] == "}"
    (child,) = node.children
    assert text[child.value.start:child.value.end] == '"d"'
