"""Job files (HCL2, as Nomad 1.0's jobspec2 reads them) -> Nomad's JSON job, with no server.

python-hcl2 (lark) parses the text; this module walks lark's tree itself, because the dict
python-hcl2 builds keeps quotes, loses positions and flattens expressions into strings. What
can be evaluated offline is evaluated the way Nomad does it:

* literals, lists, objects, string templates and heredocs, arithmetic, comparisons and
  conditionals;
* ``variable`` / ``variables`` blocks and ``var.x`` with values from defaults, ``NOMAD_VAR_*``,
  var files and ``--var k=v`` (later ones win), and ``locals`` built from those;
* any other name (``${NOMAD_ALLOC_ID}``, ``${attr.kernel.name}``, ``${meta.rack}``) stays the
  literal ``"${...}"`` text, exactly as Nomad keeps runtime interpolations.

What cannot be evaluated offline raises :class:`JobspecError` naming the construct and its
``FILE:LINE:COL``: function calls, ``for`` expressions, splats, template directives
(``%{ if }``), ``dynamic`` blocks, and Nomad blocks outside the supported set (``template``,
``artifact``, ``vault``, ``volume``, ``connect``, ``periodic`` ...).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from lark import Token, Tree
from lark.exceptions import LarkError, UnexpectedInput

from weavenomad.jobspec import canonical as schema
from weavenomad.jobspec.canonical import Attr, Block, Body, JobspecError, Pos, convert

_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", re.S)
_SIMPLE = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}
_UNSUPPORTED_EXPR = {
    "for_tuple_expr": "for expressions", "for_object_expr": "for expressions",
    "attr_splat_expr_term": "splat expressions", "full_splat_expr_term": "splat expressions",
    "template_string": "template directives (%{ ... })",
}


def _parse_tree(text: str, filename: str) -> Tree:
    from hcl2.api import parses_to_tree  # lark grammar load is slow: only when needed

    try:
        return parses_to_tree(text)
    except UnexpectedInput as err:
        token = getattr(err, "token", None)
        pos = Pos(filename, err.line if err.line > 0 else 1, max(err.column, 1))
        if token is not None and token.type == "$END" and "DBLQUOTE" in err.expected:
            raise JobspecError(pos, "Unterminated string",
                               "A quoted string is still open at the end of the file") from None
        if token is not None and token.type == "$END":
            raise JobspecError(pos, "Unclosed block",
                               "There is no closing brace before the end of the file") from None
        if token is None:
            found = repr(getattr(err, "char", "?"))
        else:
            found = "a newline" if str(token).startswith("\n") else repr(str(token).split("\n")[0])
        if _EXPRESSION_STARTS & set(getattr(err, "expected", None) or ()):
            raise JobspecError(pos, "Invalid expression",
                               f"Expected the start of an expression, but found {found}") from None
        raise JobspecError(pos, "Invalid syntax", f"Did not expect {found} here") from None
    except LarkError as err:
        raise JobspecError(Pos(filename, 1, 1), "Invalid syntax", str(err).split("\n")[0]) from None


_EXPRESSION_STARTS = {"INT_LITERAL", "FLOAT_LITERAL", "DBLQUOTE", "LSQB", "HEREDOC_TEMPLATE"}


def _kids(tree: Tree) -> list:
    """Children that carry meaning (no newlines/comments, no punctuation)."""
    return [c for c in tree.children
            if not (isinstance(c, Tree) and c.data == "new_line_or_comment")
            and not (isinstance(c, Token) and c.type in _PUNCTUATION)]


_PUNCTUATION = {"LPAR", "RPAR", "LSQB", "RSQB", "LBRACE", "RBRACE", "COMMA", "DOT", "EQ",
                "COLON", "QMARK", "DBLQUOTE", "INTERP_START", "ELLIPSIS", "COLONS"}


def _unescape(raw: str, pos: Pos) -> str:
    def one(match: re.Match) -> str:
        code = match.group(1)
        if code in _SIMPLE:
            return _SIMPLE[code]
        if code[0] in "uU" and len(code) > 1:
            return chr(int(code[1:], 16))
        raise JobspecError(pos, "Invalid escape sequence", f'"\\{code}" is not a valid escape')

    return _ESCAPE.sub(one, raw)


def _heredoc_text(raw: str) -> str:
    lines = raw.split("\n")
    body = lines[1:-2]  # drop "<<EOT", the closing marker line and the empty tail
    if raw.startswith("<<-"):
        indents = [len(ln) - len(ln.lstrip(" \t")) for ln in body if ln.strip()]
        cut = min(indents, default=0)
        body = [ln[cut:] for ln in body]
    return "".join(ln + "\n" for ln in body)


class Evaluator:
    """Evaluates lark expression trees to plain Python values (str, int, float, bool, None,
    list, dict) with ``var`` and ``local`` in scope."""

    def __init__(self, filename: str, variables: dict | None, local_attrs: dict | None = None):
        self.filename = filename
        self.variables = variables  # None: no references allowed (values of --var, var files)
        self.local_attrs = local_attrs or {}
        self.locals: dict[str, Any] = {}
        self.resolving: set[str] = set()
        self.pos_override: Pos | None = None

    def pos(self, node: Any) -> Pos:
        if self.pos_override is not None:
            return self.pos_override
        if isinstance(node, Token):
            return Pos(self.filename, node.line or 1, node.column or 1)
        meta = getattr(node, "meta", None)
        if meta is None or getattr(meta, "empty", True):
            return Pos(self.filename, 1, 1)
        return Pos(self.filename, meta.line, meta.column)

    def fail(self, node: Any, summary: str, detail: str = ""):
        raise JobspecError(self.pos(node), summary, detail)

    def unsupported(self, node: Any, what: str):
        self.fail(node, "Unsupported construct",
                  f"{what} cannot be evaluated offline; submit the job through a reachable "
                  "Nomad (--nomad-addr) or write the value out")

    def value(self, node: Tree) -> Any:
        kind = node.data
        if kind in _UNSUPPORTED_EXPR:
            self.unsupported(node, _UNSUPPORTED_EXPR[kind])
        handler = getattr(self, f"_{kind}", None)
        if handler is None:
            self.unsupported(node, f"the expression {kind!r}")
        return handler(node)

    # -- terms --
    def _expr_term(self, node):
        return self.value(_kids(node)[0])

    def _int_lit(self, node):
        return int(str(node.children[0]))

    def _float_lit(self, node):
        number = float(str(node.children[0]))
        if not math.isfinite(number):
            self.fail(node, "Invalid number", f"{node.children[0]} is out of range")
        return int(number) if number.is_integer() and abs(number) < 2**53 else number

    def _literal_value(self, node):
        return {"true": True, "false": False, "null": None}[str(node.children[0])]

    def _tuple(self, node):
        return [self.value(c) for c in _kids(node)]

    def _object(self, node):
        out = {}
        for elem in _kids(node):
            key_node, value_node = _kids(elem)
            key = self._object_key(_kids(key_node)[0])
            if key in out:
                self.fail(elem, "Duplicate object key", f'"{key}" is set twice')
            out[key] = self.value(value_node)
        return out

    def _object_key(self, node):
        if node.data == "expr_term" and _kids(node)[0].data == "identifier":
            return str(_kids(node)[0].children[0])  # a bare name is the key itself
        if node.data == "keyword":
            return str(node.children[0])
        key = self.value(node)
        if isinstance(key, (dict, list)) or key is None:
            self.fail(node, "Incorrect key type", "Object keys must be strings")
        return convert(schema.STR, key, "key", self.pos(node))

    def _function_call(self, node):
        name = str(_kids(node)[0].children[0])
        self.unsupported(node, f"The function call {name}()")

    def _conditional(self, node):
        condition, yes, no = _kids(node)
        chosen = self.value(condition)
        if not isinstance(chosen, bool) and chosen not in ("true", "false"):
            self.fail(condition, "Incorrect condition type", "The condition must be a bool")
        return self.value(yes if chosen in (True, "true") else no)

    def _unary_op(self, node):
        operator, operand = node.children[0], _kids(node)[-1]
        value = self.value(operand)
        if str(operator) == "!":
            return not self._bool(operand, value)
        return -self._number(operand, value)

    def _binary_op(self, node):
        left_node, term = _kids(node)[:2]
        operator_node, right_node = _kids(term)
        operator = str(operator_node.children[0]).strip()
        left, right = self.value(left_node), self.value(right_node)
        if operator in ("==", "!="):
            numbers = [schema.number_or_none(v) for v in (left, right) if not isinstance(v, str)]
            same = numbers[0] == numbers[1] if len(numbers) == 2 and None not in numbers else (
                type(left) is type(right) and left == right)
            return same == (operator == "==")
        if operator in ("&&", "||"):
            a, b = self._bool(left_node, left), self._bool(right_node, right)
            return (a and b) if operator == "&&" else (a or b)
        a, b = self._number(left_node, left), self._number(right_node, right)
        if operator in ("/", "%") and b == 0:
            self.fail(right_node, "Division by zero", "the right operand is zero")
        results = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                   "/": lambda: a // b if a % b == 0 else a / b, "%": lambda: a % b,
                   "<": lambda: a < b, ">": lambda: a > b, "<=": lambda: a <= b,
                   ">=": lambda: a >= b}
        try:
            result = results[operator]()
        except (OverflowError, ValueError):
            result = math.inf
        if isinstance(result, float) and not math.isfinite(result):
            self.fail(node, "Invalid number", "the result is out of range")
        return result

    def _number(self, node, value):
        number = schema.number_or_none(value)
        if number is None:
            self.fail(node, "Invalid operand", "a number is required")
        return number

    def _bool(self, node, value):
        return convert(schema.BOOL, value, "operand", self.pos(node))

    # -- strings and templates --
    def _string(self, node):
        parts = [c.children[0] for c in _kids(node)]
        if len(parts) == 1 and isinstance(parts[0], Tree) and parts[0].data == "interpolation":
            return self.value(_kids(parts[0])[0])  # "${x}" keeps x's type, as in HCL
        pieces = []
        for part in parts:
            if isinstance(part, Tree):
                if part.data != "interpolation":
                    self.unsupported(part, "Template directives (%{ ... })")
                pieces.append(self._in_template(part, self.value(_kids(part)[0])))
            elif part.type in ("ESCAPED_INTERPOLATION", "ESCAPED_DIRECTIVE"):
                pieces.append(str(part)[1:])
            else:
                pieces.append(_unescape(str(part), self.pos(part)))
        return "".join(pieces)

    def _in_template(self, node, value) -> str:
        if value is None:
            self.fail(node, "Invalid template interpolation value", "The value is null")
        if isinstance(value, (list, dict)):
            self.fail(node, "Invalid template interpolation value", "A string is required")
        return convert(schema.STR, value, "template", self.pos(node))

    def _heredoc_template(self, node):
        token = node.children[0]
        text, pieces, at = _heredoc_text(str(token)), [], 0
        for match in re.finditer(r"\$\$\{|%%\{|\$\{|%\{", text):
            if match.start() < at:
                continue
            pieces.append(text[at:match.start()])
            marker = match.group()
            if marker in ("$${", "%%{"):
                pieces.append(marker[1:])
                at = match.end()
                continue
            if marker == "%{":
                self.fail(token, "Unsupported construct",
                          "Template directives (%{ ... }) cannot be evaluated offline")
            end = _closing_brace(text, match.end())
            if end < 0:
                self.fail(token, "Unterminated template string", "missing '}' in heredoc")
            pieces.append(self._in_template(token, self._fragment(text[match.end():end], token)))
            at = end + 1
        pieces.append(text[at:])
        return "".join(pieces)

    _heredoc_template_trim = _heredoc_template

    def _fragment(self, source: str, token: Token) -> Any:
        """An interpolation inside a heredoc: parsed on its own, errors point at the heredoc."""
        saved, self.pos_override = self.pos_override, self.pos(token)
        try:
            return self.value(parse_expression(source, self.filename, self.pos_override))
        finally:
            self.pos_override = saved

    # -- references --
    def _identifier(self, node):
        return self._reference(node)

    def _get_attr_expr_term(self, node):
        return self._reference(node)

    def _index_expr_term(self, node):
        return self._reference(node)

    def _reference(self, node):
        steps, root = _traversal(node)
        if root is None or root.data != "identifier":
            base, rest = self.value(root), steps
        else:
            name = str(root.children[0])
            if self.variables is None:
                self.fail(node, "Variables not allowed",
                          f'"{name}" cannot be referenced in a variable value')
            if name not in ("var", "local"):
                text = _traversal_text(name, steps)
                if text is None:
                    self.fail(node, "Unknown variable", f'"{name}" is not defined')
                return "${" + text + "}"  # a runtime interpolation Nomad keeps verbatim
            if not steps or steps[0].data != "get_attr":
                self.fail(node, "Invalid reference", f'"{name}" must be followed by .name')
            key = str(_kids(steps[0])[0].children[0])
            base, rest = self._lookup(name, key, steps[0]), steps[1:]
        for step in rest:
            base = self._step(base, step)
        return base

    def _lookup(self, scope: str, key: str, node) -> Any:
        if scope == "var":
            if key not in self.variables:
                self.fail(node, "Unsupported attribute", f'No variable named "{key}" is declared')
            return self.variables[key]
        if key not in self.locals:
            if key not in self.local_attrs:
                self.fail(node, "Unsupported attribute", f'No local named "{key}" is defined')
            if key in self.resolving:
                self.fail(node, "Circular local", f"local.{key} depends on itself")
            self.resolving.add(key)
            try:
                self.locals[key] = self.value(self.local_attrs[key])
            finally:
                self.resolving.discard(key)
        return self.locals[key]

    def _step(self, base, step):
        if step.data == "get_attr":
            key = str(_kids(step)[0].children[0])
        elif step.data == "short_index":
            key = int(str(step.children[-1]))
        else:
            key = self.value(_kids(step)[0])
        if isinstance(base, dict):
            key = convert(schema.STR, key, "key", self.pos(step))
            if key not in base:
                self.fail(step, "Invalid index", f'The given key "{key}" does not exist')
            return base[key]
        if isinstance(base, list):
            number = schema.number_or_none(key)
            if number is None or number != int(number) or not 0 <= int(number) < len(base):
                self.fail(step, "Invalid index", f"The index {key!r} is out of range")
            return base[int(number)]
        self.fail(step, "Unsupported attribute", "This value has no attributes or elements")


def _closing_brace(text: str, start: int) -> int:
    depth, quoted, i = 0, False, start
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    return -1


def _traversal(node: Tree) -> tuple[list[Tree], Tree | None]:
    """Split ``a.b[0].c`` into its root term and its steps (get_attr / index trees)."""
    steps = []
    while isinstance(node, Tree):
        if node.data in ("get_attr_expr_term", "index_expr_term"):
            inner, step = _kids(node)
            steps.insert(0, step)
            node = inner
        elif node.data == "expr_term" and isinstance(_kids(node)[0], Tree) and _kids(node)[
                0].data in ("identifier", "get_attr_expr_term", "index_expr_term"):
            node = _kids(node)[0]
        else:
            break
    return steps, node


def _traversal_text(root: str, steps: list[Tree]) -> str | None:
    text = root
    for step in steps:
        if step.data == "get_attr":
            text += "." + str(_kids(step)[0].children[0])
        elif step.data == "short_index":
            text += "." + str(step.children[-1])
        else:
            inner = _kids(step)[0]
            literal = _kids(inner)[0] if inner.data == "expr_term" else inner
            if literal.data == "int_lit":
                text += f"[{literal.children[0]}]"
            elif literal.data == "string" and all(
                    isinstance(p.children[0], Token) for p in _kids(literal)):
                text += "[" + json.dumps("".join(str(p.children[0]) for p in _kids(literal))) + "]"
            else:
                return None
    return text


def parse_expression(source: str, filename: str, pos: Pos) -> Tree:
    """One expression (a ``--var`` value, a heredoc interpolation) as a lark tree."""
    try:
        tree = _parse_tree(f"__value = {source}\n", filename)
    except JobspecError as err:
        raise JobspecError(pos, "Invalid expression",
                           f"{source!r} is not an HCL expression ({err.summary})") from None
    body = _kids(tree)[0]
    attrs = [c for c in _kids(body) if c.data == "attribute"]
    if len(attrs) != 1 or len(_kids(body)) != 1:
        raise JobspecError(pos, "Invalid expression", f"{source!r} is not one expression")
    return _kids(attrs[0])[1]


# -- bodies -------------------------------------------------------------------------------------


def build_body(tree: Tree, ev: Evaluator) -> Body:
    """An HCL body with attributes evaluated lazily (so an unsupported block is reported
    before anything inside it is evaluated)."""
    attrs: dict[str, Attr] = {}
    blocks: list[Block] = []
    for item in _kids(tree):
        parts = _kids(item)
        name_node = parts[0]
        name = str(name_node.children[0])
        if item.data == "attribute":
            if name in attrs:
                ev.fail(name_node, "Attribute redefined",
                        f'The argument "{name}" was already set at {attrs[name].pos}')
            expr = parts[1]
            literal = _unwrap_parens(expr).data == "object"
            attrs[name] = Attr(name, ev.pos(name_node), lambda e=expr: ev.value(e), literal, expr)
            continue
        labels = [_label(p, ev) for p in parts[1:-1]]
        if name == "dynamic":
            ev.unsupported(name_node, "A dynamic block")
        blocks.append(Block(name, labels, build_body(parts[-1], ev), ev.pos(name_node)))
    return Body(attrs, blocks, ev.pos(tree))


def _unwrap_parens(node: Tree) -> Tree:
    while node.data == "expr_term" and isinstance(_kids(node)[0], Tree):
        node = _kids(node)[0]
    return node


def _label(node: Tree, ev: Evaluator) -> str:
    if node.data != "string":
        return str(node.children[0])
    chars = [p.children[0] for p in _kids(node)]
    if any(isinstance(c, Tree) for c in chars):
        ev.fail(node, "Invalid block label", "Labels cannot contain interpolations")
    return "".join(str(c)[1:] if c.type.startswith("ESCAPED_") else _unescape(str(c), ev.pos(c))
                   for c in chars)


def _variables_from(body: Body, filename: str) -> tuple[dict[str, dict], dict[str, Any]]:
    """Declared variables (name -> {"type", "values", "pos"}) and local expressions."""
    declared: dict[str, dict] = {}
    local_attrs: dict[str, Tree] = {}
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
    kids = _kids(tree) if tree.data == "expr_term" else [tree]
    node = kids[0]
    if node.data == "identifier" and str(node.children[0]) in ("string", "number", "bool",
                                                               "any"):
        return str(node.children[0])
    if node.data == "function_call":
        parts = _kids(node)
        name = str(parts[0].children[0])
        args = _kids(parts[1]) if len(parts) > 1 else []
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
    body = build_body(_kids(_parse_tree(text, filename))[0], ev)
    for block in body.blocks:
        raise JobspecError(block.pos, "Variable declaration in a var file" if block.type ==
                           "variable" else "Unexpected block",
                           "A var file only assigns values: write name = value")
    return [(name, attr.evaluate(), attr.pos) for name, attr in body.attrs.items()]


# -- the entry point ----------------------------------------------------------------------------


def parse_job(
    text: str,
    filename: str = "input.hcl",
    *,
    variables: Mapping[str, str] | None = None,
    var_files: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    canonical: bool = True,
) -> dict[str, Any]:
    """Turn a job file's text into the JSON job Nomad's ``/v1/jobs/parse`` answers.

    ``variables`` are ``--var`` values, ``var_files`` maps a var file's name to its text (HCL,
    or JSON when the name ends in ``.json``), ``env`` is scanned for ``NOMAD_VAR_<name>``.
    ``canonical`` fills Nomad's defaults (``Canonicalize: true``). Raises
    :class:`JobspecError` (a ValidationError) with ``FILE:LINE:COL`` for anything wrong.
    """
    if not isinstance(text, str):
        raise JobspecError(Pos(filename, 1, 1), "Invalid job", "the job file must be text")
    try:
        return _parse_job(text.replace("\r\n", "\n"), filename, variables or {},
                          var_files or {}, env or {}, canonical)
    except RecursionError:
        raise JobspecError(Pos(filename, 1, 1), "Nested too deeply",
                           "the job nests blocks or expressions too deeply") from None


def _parse_job(text, filename, variables, var_files, env, canonical) -> dict[str, Any]:
    if text.lstrip(" ").startswith("{"):
        raise JobspecError(Pos(filename, 1, 1), "Unsupported construct",
                           "JSON job files cannot be read offline; use HCL")
    ev = Evaluator(filename, {})  # variables and locals are filled in once known
    body = build_body(_kids(_parse_tree(text, filename))[0], ev)
    for name, attr in body.attrs.items():
        raise JobspecError(attr.pos, "Unsupported argument",
                           f'An argument named "{name}" is not expected here')
    for block in body.blocks:
        if block.type not in ("variable", "variables", "locals", "job"):
            raise JobspecError(block.pos, "Unsupported block type",
                               f'Blocks of type "{block.type}" are not expected here')
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
    ev.variables, ev.local_attrs = values, {k: a.expr for k, a in local_attrs.items()}
    for name in local_attrs:
        ev._lookup("local", name, None)
    jobs = [b for b in body.blocks if b.type == "job"]
    if not jobs:
        raise JobspecError(Pos(filename, 1, 1), "Missing job block", "A job block is required")
    if len(jobs) > 1:
        raise JobspecError(jobs[1].pos, "Duplicate job block",
                           f"Only one job block is allowed; the first is at {jobs[0].pos}")
    if len(jobs[0].labels) != 1:
        raise JobspecError(jobs[0].pos, "Missing name for job",
                           "A job block needs exactly one label")
    job = schema.decode(schema.JOB, jobs[0].body)
    job.setdefault("ID", jobs[0].labels[0])
    job.setdefault("Name", jobs[0].labels[0])
    return schema.complete(schema.JOB, schema.canonicalize(job) if canonical else job)


__all__ = ["Evaluator", "build_body", "parse_expression", "parse_job"]
