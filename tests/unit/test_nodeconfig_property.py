"""Property tests of the Nomad config editor: whatever HCL it is given, it either refuses with a
ValidationError or returns text that parses, gives the new endpoint and keeps every other
setting."""

from __future__ import annotations

import functools

from hcl.parser import HclParser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weavenomad.errors import ValidationError
from weavenomad.nodeconfig.edit import ConfigFile, docker_setting, plan_endpoint

WEAVE = "unix:///var/run/weave/weave.sock"

names = st.sampled_from(["enabled", "servers", "data_dir", "rack", "volumes", "args", "x-y",
                         "a.b", "count"])
# strings full of what could fool a brace counter
string_bodies = st.sampled_from(["plain", "{", "}", "a } b", "{ c {", "\\\" }", "# not {",
                                 "// nor }", "/* no */", "${var.x} {", "", "unix:///x.sock"])
comments = st.sampled_from(["# a { comment\n", "// } closing\n", "/* multi\n { line } */\n",
                            "#\n", "/* plugin \"docker\" { config { endpoint = \"z\" } } */\n"])
spaces = st.sampled_from(["", " ", "  ", "\t", "\n", "\n\n"])


@st.composite
def scalar(draw):
    kind = draw(st.sampled_from(["string", "number", "bool", "list", "heredoc"]))
    if kind == "string":
        return '"' + draw(string_bodies) + '"'
    if kind == "number":
        return str(draw(st.integers(-5, 500)))
    if kind == "bool":
        return draw(st.sampled_from(["true", "false"]))
    if kind == "list":
        items = draw(st.lists(string_bodies, max_size=3))
        return "[" + ", ".join(f'"{i}"' for i in items) + "]"
    return "<<EOF\n" + draw(string_bodies) + " }\nEOF"


@st.composite
def body(draw, depth: int):
    items = []
    for _ in range(draw(st.integers(0, 3))):
        choice = draw(st.sampled_from(["attr", "comment", "block"] if depth else
                                      ["attr", "comment"]))
        if choice == "attr":
            items.append(f"{draw(names)} = {draw(scalar())}")
        elif choice == "comment":
            items.append(draw(comments).rstrip("\n"))
        else:
            items.append(draw(block(depth - 1)))
    return items


@st.composite
def block(draw, depth: int):
    key = draw(st.sampled_from(["meta", "options", "config", "volumes", "client",
                                'plugin "docker"', 'plugin "raw_exec"', "consul"]))
    inner = draw(body(depth))
    if key == "options" and draw(st.booleans()):
        inner.append(f'"docker.{draw(names)}" = {draw(scalar())}')
    if key == "config" and draw(st.booleans()):
        inner.append(f'endpoint = "{draw(string_bodies)}"')
    opener = f"{key} = {{" if draw(st.booleans()) and " " not in key else f"{key} {{"
    sep = draw(st.sampled_from(["\n", "\n  ", "\n\t"]))
    if not inner:
        return opener + draw(st.sampled_from(["}", " }", "\n}"]))
    return opener + sep + sep.join(inner) + "\n}"


@st.composite
def documents(draw):
    parts = draw(body(3))
    if draw(st.booleans()):
        parts.append('plugin "docker" {\n  config {\n    endpoint = "unix:///a.sock"\n  }\n}')
    if draw(st.booleans()):
        parts.append('client {\n  options {\n    "docker.endpoint" = "unix:///b.sock"\n  }\n}')
    return draw(spaces) + "\n".join(parts) + draw(st.sampled_from(["", "\n", "\n\n"]))


@functools.cache
def _parser() -> HclParser:
    return HclParser()


def parse(text: str):
    return _parser().parse(text)


def _strip(data, path=()):
    if isinstance(data, list):
        return [x for x in (_strip(i, path) for i in data) if x not in ({}, [])]
    if not isinstance(data, dict):
        return data
    out = {}
    for key, value in data.items():
        here = path + (key,)
        if here in (("plugin", "docker", "config", "endpoint"),
                    ("client", "options", "docker.endpoint")):
            continue
        value = _strip(value, here)
        if value not in ({}, []) or not isinstance(data[key], dict | list):
            out[key] = value
    return out


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_edit_keeps_every_other_setting_or_refuses(text):
    try:
        change = plan_endpoint([ConfigFile("/etc/nomad.d/n.hcl", text)], WEAVE)
    except ValidationError:
        return
    if change is None:
        assert docker_setting([ConfigFile("/etc/nomad.d/n.hcl", text)]).endpoint == WEAVE
        return
    assert change.old == text
    new_data = parse(change.new)
    assert docker_setting([ConfigFile("/etc/nomad.d/n.hcl", change.new)]).endpoint == WEAVE
    assert _strip(new_data) == _strip(parse(text))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('{}[]="#/*\\\n $<-EOFab.,')), max_size=80))
def test_arbitrary_text_never_raises_anything_but_validation_error(text):
    try:
        plan_endpoint([ConfigFile("/etc/nomad.d/n.hcl", text)], WEAVE)
    except ValidationError:
        pass
