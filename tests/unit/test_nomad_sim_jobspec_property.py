"""Property tests: whatever job-ish text comes in, the parser answers with a job or a
ValidationError (never another exception), and every job it returns renders to HCL that parses
back to the same job."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from weavenomad_lab.nomad.jobspec import parse_job, render_hcl, schema

from weavenomad.errors import ValidationError

SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=list(HealthCheck))

#: expressions of every sort, good and bad, as text
ODD_VALUES = st.sampled_from([
    "true", "null", "var.x", "local.y", "NOMAD_ALLOC_ID", "attr.kernel.name", '"${var.x}"',
    '"${NOMAD_ALLOC_ID}-a"', '"$${x}"', '"%{ if true }a%{ endif }"', 'upper("a")', "1 + 2",
    '"a" == "b" ? 1 : 2', "[for x in [1]: x]", "<<EOT\nhi ${var.x}\nEOT\n", "-1", "!true",
    "{a = 1}", '[1, "a", {b = 2}]', '"\\u00e9\\n"', '"\\q"', "var.x[0]", "local.y.z", "1 / 0",
    '"5s"', '"1h30m"', "1.5", "[]", '{"k" = [1]}', "var.x[*]", "(1)", "1e999", '"NaN"',
    '"Infinity"', "1e308 * 10", '"1e99999"', "1 / 3"])
TEXT = st.text(max_size=8).map(json.dumps)


def good_value(kind: str):
    return {
        schema.STR: st.one_of(TEXT, st.sampled_from(['"${NOMAD_ALLOC_ID}"', "var.x",
                                                     '"a${var.x}b"', '"$${x}"'])),
        schema.INT: st.integers(-5, 10**6).map(str),
        schema.BOOL: st.sampled_from(["true", "false", '"true"']),
        schema.DUR: st.sampled_from(['"5s"', '"1h30m"', '"1.5s"', '"0"', "100", '"10ms"']),
        schema.STRS: st.lists(TEXT, max_size=3).map(lambda v: "[" + ", ".join(v) + "]"),
    }[kind]


CONFIG_VALUE = st.recursive(
    st.one_of(st.integers(-100, 100).map(str), TEXT, st.sampled_from(["true", "null", "1.5"])),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda v: "[" + ", ".join(v) + "]"),
        st.dictionaries(st.sampled_from(["a", "b", "c_d"]), inner, max_size=3).map(
            lambda d: "{" + ", ".join(f"{k} = {v}" for k, v in d.items()) + "}")),
    max_leaves=6)


def config_body(depth: int):
    attr = st.tuples(st.sampled_from(["image", "args", "port_map", "labels", "x-y"]),
                     CONFIG_VALUE).map(lambda t: f"{t[0]} = {t[1]}\n")
    if depth == 0:
        return st.lists(attr, max_size=3, unique_by=first_word).map("".join)
    block = st.tuples(st.sampled_from(["logging", "mount", "port_map"]),
                      st.lists(st.sampled_from(['"l"', "m"]), max_size=1),
                      config_body(depth - 1)).map(
        lambda t: f"{t[0]} {' '.join(t[1])} {{\n{t[2]}}}\n")
    return st.tuples(st.lists(attr, max_size=3, unique_by=first_word),
                     st.lists(block, max_size=2)).map(
        lambda t: "".join(a for a in t[0] if first_word(a) not in {first_word(b) for b in t[1]})
        + "".join(t[1]))  # a name is either an argument or blocks, as in HCL


def first_word(line: str) -> str:
    return line.split()[0]


def struct_body(struct, depth: int):
    """A body for ``struct`` built from its own schema: mostly valid, sometimes not."""
    parts = []
    for f in struct.fields:
        if f.hcl is None:
            continue
        if f.kind in (schema.BLOCK, schema.BLOCKS) and depth > 0:
            header = f.hcl + (' "p{}"' if f.struct.label else "")
            parts.append(st.lists(struct_body(f.struct, depth - 1),
                                  max_size=1 if f.kind == schema.BLOCK else 2).map(
                lambda bodies, h=header: "".join(
                    f"{h.format(i)} {{\n{b}}}\n" for i, b in enumerate(bodies))))
        elif f.kind == schema.ANY:
            parts.append(st.one_of(st.just(""), config_body(2).map(
                lambda b, f=f: f"{f.hcl} {{\n{b}}}\n")))
        elif f.kind in (schema.SMAP, schema.LMAP):
            values = good_value(schema.STR if f.kind == schema.SMAP else schema.STRS)
            parts.append(st.one_of(st.just(""), st.dictionaries(
                st.sampled_from(["A", "b_c", "d-e"]), values, max_size=3).map(
                lambda d, f=f: f"{f.hcl} {{\n" + "".join(f"{k} = {v}\n" for k, v in d.items())
                + "}\n")))
        elif f.kind not in (schema.BLOCK, schema.BLOCKS):
            value = st.integers(0, 49).flatmap(  # now and then a value that may not fit
                lambda n, kind=f.kind: ODD_VALUES if n == 37 else good_value(kind))
            parts.append(st.one_of(st.just(""), st.just(""), st.just(""),
                                   value.map(lambda v, f=f: f"{f.hcl} = {v}\n")))
    return st.tuples(*parts).map("".join) if parts else st.just("")


PRELUDE = 'variable "x" {\n  default = "v"\n}\nlocals {\n  y = 2\n}\n'
SCHEMA_JOBS = struct_body(schema.JOB, 4).map(lambda b: f'{PRELUDE}job "j" {{\n{b}}}\n')

NAMES = ["job", "group", "task", "config", "env", "meta", "service", "check", "resources",
         "network", "port", "update", "restart", "count", "driver", "image", "name", "tags",
         "type", "interval", "variable", "locals", "default", "dynamic", "template", "x"]


def free_body(depth: int):
    attr = st.tuples(st.sampled_from(NAMES), st.one_of(ODD_VALUES, TEXT)).map(
        lambda t: f"{t[0]} = {t[1]}\n")
    if depth == 0:
        return st.lists(attr, max_size=4).map("".join)
    block = st.tuples(st.sampled_from(NAMES),
                      st.lists(st.sampled_from(['"a"', '"g"', "b", '"${x}"']), max_size=2),
                      free_body(depth - 1)).map(
        lambda t: f"{t[0]} {' '.join(t[1])} {{\n{t[2]}}}\n")
    return st.lists(st.one_of(attr, block), max_size=5).map("".join)


FREE_JOBS = free_body(3).map(lambda b: f'{PRELUDE}job "j" {{\n{b}}}\n')


def mutated(text: str, data) -> str:
    if not text:
        return text
    at = data.draw(st.integers(0, len(text) - 1))
    insert = data.draw(st.sampled_from(["", "{", "}", '"', "\n", "=", "$", "${", "[", "#"]))
    return text[:at] + insert + text[at + 1:]


def check_round_trip(text: str) -> bool:
    """Parse; on success the rendered HCL must give the same job. True when it parsed."""
    try:
        job = parse_job(text, "prop.hcl")
    except ValidationError:
        return False
    try:
        rendered = render_hcl(job)
    except ValidationError:
        return True  # e.g. a config map HCL cannot express: refused by name, never wrong
    assert parse_job(rendered, "rendered.hcl") == job, rendered
    return True


@SETTINGS
@given(SCHEMA_JOBS)
def test_schema_shaped_jobs_parse_or_fail_cleanly_and_round_trip(text):
    check_round_trip(text)


@SETTINGS
@given(st.one_of(FREE_JOBS, free_body(2), st.text(max_size=80)), st.data())
def test_arbitrary_text_only_ever_raises_validation_error(text, data):
    check_round_trip(text)
    check_round_trip(mutated(text, data))


def test_the_schema_generator_produces_valid_jobs_too():
    """Guard the property test itself: enough generated jobs must parse for the round-trip
    property to mean something."""
    parsed = []

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck),
              database=None)
    @given(SCHEMA_JOBS)
    def collect(text):
        parsed.append(check_round_trip(text))

    collect()
    assert sum(parsed) >= 5, f"only {sum(parsed)} of {len(parsed)} generated jobs parsed"


JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**10), st.floats(),
                         st.text(max_size=6))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=8)


def json_struct(struct, depth: int):
    """A JSON object for ``struct``: its own field names with values of any type, and now
    and then a nested object of the right shape."""
    options = {}
    for f in struct.fields:
        values = [JSON_VALUES]
        if f.struct is not None and depth > 0:
            inner = json_struct(f.struct, depth - 1)
            values.append(st.lists(inner, max_size=2) if f.kind == schema.BLOCKS else inner)
        options[f.api] = st.one_of(*values)
    keys = st.lists(st.sampled_from(sorted(options)), max_size=6, unique=True)
    return keys.flatmap(lambda ks: st.fixed_dictionaries({k: options[k] for k in ks}))


@SETTINGS
@given(json_struct(schema.JOB, 3).map(lambda job: {"ID": "j", **job}))
def test_rendering_any_json_job_gives_hcl_or_a_validation_error(job):
    try:
        text = render_hcl(job)
    except ValidationError:
        return
    assert render_hcl(parse_job(text, "rendered.hcl")) == text
