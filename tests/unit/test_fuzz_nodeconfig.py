"""Hostile Nomad agent configs for the Docker-endpoint edit: comments everywhere, heredocs,
duplicate blocks, unicode, CRLF, tabs, empty files, odd plugin nesting, JSON with the docker
plugin as a list or an object, and plain garbage. The edit either refuses in one line or yields
a file that pyhcl (and python-hcl2, when it read the original) reads back with the endpoint set,
every other setting unchanged and the file's own line endings kept.

Examples are derandomized, so a failure reproduces on every run and in CI."""

import functools
import json

import hcl2
import pytest
from hcl.parser import HclParser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weavenomad.errors import ValidationError
from weavenomad.nodeconfig.edit import ConfigFile, docker_setting, plan_endpoint

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
WEAVE = "unix:///var/run/weave/weave.sock"
ENDPOINT_PATHS = {("plugin", "docker", "config", "endpoint"),
                  ("client", "options", "docker.endpoint")}

# -- HCL ---------------------------------------------------------------------------------------

comments = st.sampled_from(["", "", "", " # c {", " // } c", " /* { */", " /* a\n } */",
                            " # plugin \"docker\" { config { endpoint = \"z\" } }"])
words = st.sampled_from(["enabled", "servers", "data_dir", "x-y", "a.b", "count", "ключ",
                         "endpoint", "docker", "config"])
string_bodies = st.sampled_from(["plain", "{", "}", "a } b", "\\\" }", "# no {", "ünïcödé ✓",
                                 "${var.x} {", "", "unix:///x.sock", "tab\there", "$${y}"])


@st.composite
def values(draw, indent: str) -> str:
    kind = draw(st.sampled_from(["string", "number", "bool", "list", "heredoc", "heredoc-"]))
    if kind == "string":
        return json.dumps(draw(string_bodies), ensure_ascii=draw(st.booleans())).replace(
            "${", "$${")
    if kind == "number":
        return str(draw(st.integers(-5, 10**6)))
    if kind == "bool":
        return draw(st.sampled_from(["true", "false"]))
    if kind == "list":
        items = draw(st.lists(string_bodies, max_size=3))
        return "[" + ", ".join(json.dumps(i).replace("${", "$${") for i in items) + "]"
    marker = draw(st.sampled_from(["EOF", "END_X"]))
    body = draw(st.sampled_from(["} {", "endpoint = \"y\"", "plugin \"docker\" {", "ü"]))
    if kind == "heredoc":
        return f"<<{marker}\n{body}\n{marker}"
    return f"<<-{marker}\n{indent}  {body}\n{indent}  {marker}"


@st.composite
def bodies(draw, depth: int, indent: str, unit: str) -> list[str]:
    items = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["attr", "comment", "block"] if depth else
                                    ["attr", "comment"]))
        if kind == "attr":
            key = draw(words)
            key = json.dumps(key, ensure_ascii=False) if not key.isascii() else key
            value = draw(values(indent))
            tail = "" if value.startswith("<<") else draw(comments)  # a marker stands alone
            items.append(f"{indent}{key} = {value}{tail}")
        elif kind == "comment":
            items.append(indent + draw(st.sampled_from(["# lone {", "// lone }",
                                                         "/* } { */"])))
        else:
            items.append(draw(blocks(depth - 1, indent, unit)))
    return items


@st.composite
def blocks(draw, depth: int, indent: str, unit: str) -> str:
    header = draw(st.sampled_from(["meta", "options", "config", "client", "server",
                                   'plugin "docker"', 'plugin "raw_exec"', "plugin docker",
                                   'plugin "docker" /* odd */', "consul", "volumes"]))
    inner = draw(bodies(depth, indent + unit, unit))
    if header == "options" and draw(st.booleans()):
        inner.append(f'{indent}{unit}"docker.{draw(words)}" = {draw(values(indent))}')
    if header == "config" and draw(st.booleans()):
        inner.append(f'{indent}{unit}endpoint = "{draw(string_bodies)}"{draw(comments)}')
    opener = f"{header} = {{" if " " not in header and draw(st.booleans()) else f"{header} {{"
    if not inner:
        return indent + opener + draw(st.sampled_from(["}", " }", "\n" + indent + "}"]))
    return indent + opener + draw(comments) + "\n" + "\n".join(inner) + "\n" + indent + "}"


ODD_PLUGINS = [
    'plugin "docker" {\n  config {\n    endpoint = "unix:///a.sock"\n  }\n}',
    'plugin "docker" {\n}',
    'plugin "docker" { config { gc { image = true } } }',
    'plugin {\n  docker {\n    config {\n      endpoint = "unix:///a.sock"\n    }\n  }\n}',
    'plugin "docker" {\n  config = {\n    endpoint = "unix:///a.sock"\n  }\n}',
    'plugin "docker" {\n  config {\n    volumes {\n      enabled = true\n    }\n  }\n}\n'
    'plugin "docker" {\n  config {\n    allow_privileged = false\n  }\n}',
    'plugin "raw_exec" {\n  config {\n    enabled = true\n  }\n}',
    'client {\n  options {\n    "docker.endpoint" = "unix:///b.sock"\n  }\n}',
    'client {\n  options = {\n    "docker.auth.config" = "/etc/auth.json"\n  }\n}',
    'client {\n  enabled = true\n}\nclient {\n  servers = ["a"]\n}',
]


@st.composite
def hcl_documents(draw) -> str:
    unit = draw(st.sampled_from(["  ", "    ", "\t"]))
    parts = draw(bodies(3, "", unit))
    for plugin in draw(st.lists(st.sampled_from(ODD_PLUGINS), max_size=2)):
        parts.insert(draw(st.integers(0, len(parts))), plugin.replace("  ", unit))
    text = draw(st.sampled_from(["", "\n", " \n\t\n"])) + "\n".join(parts) + \
        draw(st.sampled_from(["", "\n", "\n\n", "\n# trailing"]))
    return text.replace("\n", "\r\n") if draw(st.booleans()) else text


# -- JSON --------------------------------------------------------------------------------------


def maybe_list(value, as_list: bool):
    return [value] if as_list else value


@st.composite
def json_documents(draw) -> str:
    data: dict = {}
    if draw(st.booleans()):
        config = {"endpoint": "unix:///a.sock"} if draw(st.booleans()) else {
            "volumes": {"enabled": True}}
        docker = maybe_list({"config": maybe_list(config, draw(st.booleans()))},
                            draw(st.booleans()))
        entry = {"docker": docker}
        if draw(st.booleans()):
            entry["raw_exec"] = {"config": {"enabled": True}}
        data["plugin"] = maybe_list(entry, draw(st.booleans()))
    if draw(st.booleans()):
        options = draw(st.dictionaries(st.sampled_from(
            ["docker.endpoint", "docker.auth.config", "driver.allowlist", "ünï"]),
            st.text(max_size=6), max_size=2))
        data["client"] = maybe_list({"enabled": True, "options": options}, draw(st.booleans()))
    for key in draw(st.lists(st.sampled_from(["data_dir", "bind_addr", "ports", "ÿ"]),
                             max_size=2)):
        data[key] = draw(st.one_of(st.text(max_size=5), st.integers(), st.none(),
                                   st.lists(st.integers(), max_size=2)))
    indent = draw(st.sampled_from([None, 2, 4, "\t"]))
    text = json.dumps(data, indent=indent, ensure_ascii=draw(st.booleans()))
    text += draw(st.sampled_from(["", "\n"]))
    return text.replace("\n", "\r\n") if draw(st.booleans()) else text


# -- checking an edit --------------------------------------------------------------------------


@functools.cache
def pyhcl() -> HclParser:
    return HclParser()


def read(path: str, text: str):
    return json.loads(text) if path.endswith(".json") or text.lstrip()[:1] == "{" else \
        pyhcl().parse(text)


def without_endpoint(data, path=()):
    """The data a Nomad agent reads, minus the Docker endpoint and empty objects."""
    if isinstance(data, list):
        return [x for x in (without_endpoint(i, path) for i in data) if x not in ({}, [])]
    if not isinstance(data, dict):
        return data
    out = {}
    for key, value in data.items():
        if path + (key,) in ENDPOINT_PATHS:
            continue
        pruned = without_endpoint(value, path + (key,))
        if pruned not in ({}, []) or not isinstance(value, dict | list):
            out[key] = pruned
    return out


def check_edit(files: list[ConfigFile]) -> str:
    """Plan the edit and check it the way an operator would; returns what happened."""
    try:
        change = plan_endpoint(files, WEAVE)
    except ValidationError as exc:
        assert "\n" not in str(exc) and str(exc).strip()
        return "refused"
    if change is None:
        assert docker_setting(files).endpoint == WEAVE
        return "unchanged"
    old = next(f for f in files if f.path == change.path)
    assert change.old == old.text
    edited = [ConfigFile(f.path, change.new) if f.path == change.path else f for f in files]
    assert docker_setting(edited).endpoint == WEAVE
    assert without_endpoint(read(change.path, change.new)) == without_endpoint(
        read(change.path, old.text))
    if "\r\n" in old.text and "\n" not in old.text.replace("\r\n", ""):
        assert "\n" not in change.new.replace("\r\n", ""), "a CRLF file must stay CRLF"
    if "\r" not in old.text:
        assert "\r" not in change.new, "an LF file must stay LF"
    if not change.path.endswith(".json"):
        try:
            hcl2.loads(old.text)
        except Exception:  # noqa: BLE001 - HCL1 that python-hcl2 cannot read at all
            return "edited"
        # HCL2 merges repeated names unlike HCL1, so only "it still reads" carries over
        hcl2.loads(change.new)
    return "edited"


@FUZZ
@given(hcl_documents())
def test_odd_hcl_is_edited_faithfully_or_refused(text):
    check_edit([ConfigFile("/etc/nomad.d/agent.hcl", text)])


@FUZZ
@given(json_documents())
def test_json_configs_are_edited_faithfully_or_refused(text):
    check_edit([ConfigFile("/etc/nomad.d/agent.json", text)])


@settings(FUZZ, max_examples=30)
@given(hcl_documents(), json_documents())
def test_a_config_directory_is_edited_in_one_file(hcl_text, json_text):
    files = [ConfigFile("/etc/nomad.d/10-base.hcl", hcl_text),
             ConfigFile("/etc/nomad.d/20-plugins.json", json_text)]
    check_edit(files)


@FUZZ
@given(st.one_of(
    st.text(max_size=60),
    st.text(alphabet=st.sampled_from(list('{}[]="#/*\\\n\r\t $<-EOFab.,ü')), max_size=80),
    hcl_documents().flatmap(lambda t: st.integers(0, max(len(t) - 1, 0)).map(
        lambda i: t[:i] + t[i + 1:])),  # one character dropped anywhere
))
def test_garbage_is_refused_in_one_line_never_a_traceback(text):
    for path in ("/etc/nomad.d/n.hcl", "/etc/nomad.d/n.json"):
        check_edit([ConfigFile(path, text)])


@pytest.mark.parametrize("text, path, message", [
    ("a {" * 3000 + "}" * 3000, "n.hcl", "nested deeper than 64 levels"),
    ("[" * 100_000, "n.json", "nested deeper than 64 levels"),
    ('{"client": {"enabled": true}, "client": {"servers": ["a"]}}', "n.json",
     "key 'client' appears twice"),
    ('{"data_dir": NaN}', "n.json", "NaN is not a JSON number"),
    ("\ufeffclient {}", "n.hcl", "invalid Nomad agent config n.hcl:1"),
])
def test_configs_no_edit_can_keep_intact_are_refused_by_name(text, path, message):
    with pytest.raises(ValidationError, match=message):
        plan_endpoint([ConfigFile(path, text)], WEAVE)


@pytest.mark.parametrize("text, expected", [
    ("client {\r\n  enabled = true\r\n}\r\n",
     'client {\r\n  enabled = true\r\n}\r\n\r\nplugin "docker" {\r\n  config {\r\n'
     f'    endpoint = "{WEAVE}"\r\n  }}\r\n}}\r\n'),
    ('plugin "docker" {\r\n\tgc = 1\r\n}\r\n',
     f'plugin "docker" {{\r\n\tgc = 1\r\n\tconfig {{\r\n\t  endpoint = "{WEAVE}"\r\n'
     '\t}\r\n}\r\n'),
])
def test_crlf_files_get_crlf_lines(text, expected):
    assert plan_endpoint([ConfigFile("n.hcl", text)], WEAVE).new == expected


def test_a_crlf_heredoc_is_read_as_nomad_reads_it():
    text = "client {\r\n  meta {\r\n    motd = <<EOF\r\nhello }\r\nEOF\r\n  }\r\n}\r\n"
    change = plan_endpoint([ConfigFile("n.hcl", text)], WEAVE)
    assert change.new.startswith(text) and change.form == "append"


def test_the_endpoint_goes_into_the_plugin_block_nomad_uses():
    """Of several plugin "docker" blocks the last with a non-empty config wins (Nomad's
    PluginConfig.Merge); an edit of an earlier block would change nothing."""
    text = ('plugin "docker" {\n  config = {\n    endpoint = "unix:///a.sock"\n  }\n}\n'
            'plugin "docker" {\n  config {\n    gc {\n      image = true\n    }\n  }\n}\n'
            'plugin "docker" {\n}\n')
    change = plan_endpoint([ConfigFile("n.hcl", text)], WEAVE)
    assert change.new == text.replace(
        "      image = true\n    }\n", f'      image = true\n    }}\n    endpoint = "{WEAVE}"\n')
