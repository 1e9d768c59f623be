"""HCL2 input variables: ``variable`` / ``variables`` blocks, ``locals``, and their values.

Values come from defaults, ``NOMAD_VAR_<name>`` environment variables, var files (HCL, or JSON
when the file name ends in ``.json``) and ``--var name=value``; later ones win, as in Nomad 1.0.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from weavenomad_lab.nomad.jobspec import schema
from weavenomad_lab.nomad.jobspec.expressions import Evaluator
from weavenomad_lab.nomad.jobspec.schema import JobspecError, Pos, convert
from weavenomad_lab.nomad.jobspec.syntax import (
    Attr,
    Block,
    Body,
    build_body,
    kids,
    parse_expression,
    parse_tree,
)


def resolve_variables(
    body: Body,
    filename: str,
    variables: Mapping[str, str],
    var_files: Mapping[str, str],
    env: Mapping[str, str],
) -> tuple[dict[str, Any], dict[str, Attr]]:
    """The value of every variable the job file declares, and its ``locals`` (unevaluated)."""
    declared, local_attrs = _variables_from(body, filename)
    for key, value in env.items():
        if key.startswith("NOMAD_VAR_") and key[10:] in declared:
            _assign(declared, key[10:], value, Pos(f"<env {key}>", 1, 1), "env", True)
    for var_filename, var_text in var_files.items():
        for name, value, pos in _var_file_values(var_filename, var_text):
            _assign(declared, name, value, pos, var_filename, False)
    for name, value in variables.items():
        _assign(declared, name, value, Pos(f"<--var {name}>", 1, 1), "--var", True)
    values = {}
    for name, var in declared.items():
        if not var["values"]:
            raise JobspecError(var["pos"], f'Unset variable "{name}"',
                               f"A used variable must be set or have a default value; pass "
                               f"--var {name}=VALUE")
        values[name] = var["values"][-1]
    return values, local_attrs


def _variables_from(body: Body, filename: str) -> tuple[dict[str, dict], dict[str, Any]]:
    """Declared variables (name -> {"type", "values", "pos"}) and local expressions."""
    declared: dict[str, dict] = {}
    local_attrs: dict[str, Attr] = {}
    plain = Evaluator(filename, None)  # defaults cannot refer to anything
    for block in body.blocks:
        if block.type == "variable":
            if len(block.labels) != 1:
                raise JobspecError(block.pos, "Missing name for variable",
                                   "A variable block needs exactly one label")
            _declare(declared, block, plain)
        elif block.type == "variables":
            for name, attr in block.body.attrs.items():
                _add_variable(declared, name, attr.pos, None, [plain.value(attr.expr)])
        elif block.type == "locals":
            for name, attr in block.body.attrs.items():
                if name in local_attrs:
                    raise JobspecError(attr.pos, "Duplicate value in locals",
                                       f"Duplicate {name} definition found")
                local_attrs[name] = attr
    return declared, local_attrs


def _declare(declared: dict, block: Block, ev: Evaluator) -> None:
    for inner in block.body.blocks:
        raise JobspecError(inner.pos, "Unsupported construct",
                           f'"{inner.type}" in a variable block cannot be evaluated offline')
    unknown = set(block.body.attrs) - {"type", "default", "description"}
    if unknown:
        name = sorted(unknown)[0]
        raise JobspecError(block.body.attrs[name].pos, "Unsupported argument",
                           f'An argument named "{name}" is not expected here')
    type_attr = block.body.attrs.get("type")
    var_type = _type_of(type_attr) if type_attr else None
    values = []
    if "default" in block.body.attrs:
        attr = block.body.attrs["default"]
        values.append(_to_type(ev.value(attr.expr), var_type, block.labels[0], attr.pos))
    _add_variable(declared, block.labels[0], block.pos, var_type, values)


def _add_variable(declared, name, pos, var_type, values) -> None:
    if name in declared:
        raise JobspecError(pos, "Duplicate variable", f"Duplicate {name} variable definition")
    declared[name] = {"type": var_type, "values": values, "pos": pos}


def _type_of(attr: Attr) -> Any:
    tree = attr.expr
    terms = kids(tree) if tree.data == "expr_term" else [tree]
    node = terms[0]
    if node.data == "identifier" and str(node.children[0]) in ("string", "number", "bool",
                                                               "any"):
        return str(node.children[0])
    if node.data == "function_call":
        parts = kids(node)
        name = str(parts[0].children[0])
        args = kids(parts[1]) if len(parts) > 1 else []
        if name in ("list", "set", "map") and len(args) == 1:
            return (name, _type_of(Attr("", attr.pos, lambda: None, expr=args[0])))
    raise JobspecError(attr.pos, "Unsupported construct",
                       "Only string, number, bool, any, list(T), set(T) and map(T) variable "
                       "types can be evaluated offline")


def _to_type(value: Any, var_type: Any, name: str, pos: Pos) -> Any:
    if var_type in (None, "any"):
        return value
    if var_type == "number":
        number = schema.number_or_none(value)
        if number is None:
            raise JobspecError(pos, "Invalid value for variable", f"{name}: a number is required")
        return number
    if var_type in ("string", "bool"):
        return convert(schema.STR if var_type == "string" else schema.BOOL, value, name, pos)
    outer, inner = var_type
    if outer == "map":
        if not isinstance(value, dict):
            raise JobspecError(pos, "Invalid value for variable", f"{name}: a map is required")
        return {k: _to_type(v, inner, name, pos) for k, v in value.items()}
    if not isinstance(value, list):
        raise JobspecError(pos, "Invalid value for variable", f"{name}: a list is required")
    return [_to_type(v, inner, name, pos) for v in value]


def _assign(declared, name, raw: Any, pos: Pos, origin: str, from_text: bool) -> None:
    if name not in declared:
        raise JobspecError(pos, "Undefined variable",
                           f'A "{name}" variable was set ({origin}) but is not declared in '
                           f'the job file; add a variable "{name}" block')
    var_type = declared[name]["type"]
    if from_text and var_type not in (None, "string", "number"):
        raw = Evaluator(pos.filename, None).value(parse_expression(raw, pos.filename, pos))
    declared[name]["values"].append(_to_type(raw, var_type, name, pos))


def _var_file_values(filename: str, text: str) -> Iterable[tuple[str, Any, Pos]]:
    if filename.endswith(".json"):
        try:
            data = json.loads(text)
        except ValueError as err:
            raise JobspecError(Pos(filename, 1, 1), "Invalid JSON", str(err)) from None
        if not isinstance(data, dict):
            raise JobspecError(Pos(filename, 1, 1), "Invalid var file", "an object is required")
        return [(k, v, Pos(filename, 1, 1)) for k, v in data.items()]
    ev = Evaluator(filename, None)
    body = build_body(kids(parse_tree(text, filename))[0], ev)
    for block in body.blocks:
        raise JobspecError(block.pos, "Variable declaration in a var file" if block.type ==
                           "variable" else "Unexpected block",
                           "A var file only assigns values: write name = value")
    return [(name, attr.evaluate(), attr.pos) for name, attr in body.attrs.items()]
