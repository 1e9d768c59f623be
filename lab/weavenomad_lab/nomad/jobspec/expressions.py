"""HCL expressions -> plain Python values, evaluated offline the way Nomad's jobspec2 does.

Literals, lists, objects, string templates and heredocs, arithmetic, comparisons and
conditionals are evaluated; ``var.x`` and ``local.x`` resolve to the job's variables and locals;
any other name (``${NOMAD_ALLOC_ID}``, ``${attr.kernel.name}``) stays the literal ``"${...}"``
text, as Nomad keeps runtime interpolations. Function calls, ``for`` expressions, splats and
template directives raise :class:`JobspecError` naming the construct.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from lark import Token, Tree

from weavenomad_lab.nomad.jobspec import schema
from weavenomad_lab.nomad.jobspec.schema import JobspecError, Pos, convert
from weavenomad_lab.nomad.jobspec.syntax import heredoc_text, kids, parse_expression, unescape

_UNSUPPORTED_EXPR = {
    "for_tuple_expr": "for expressions", "for_object_expr": "for expressions",
    "attr_splat_expr_term": "splat expressions", "full_splat_expr_term": "splat expressions",
    "template_string": "template directives (%{ ... })",
}


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
        return self.value(kids(node)[0])

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
        return [self.value(c) for c in kids(node)]

    def _object(self, node):
        out = {}
        for elem in kids(node):
            key_node, value_node = kids(elem)
            key = self._object_key(kids(key_node)[0])
            if key in out:
                self.fail(elem, "Duplicate object key", f'"{key}" is set twice')
            out[key] = self.value(value_node)
        return out

    def _object_key(self, node):
        if node.data == "expr_term" and kids(node)[0].data == "identifier":
            return str(kids(node)[0].children[0])  # a bare name is the key itself
        if node.data == "keyword":
            return str(node.children[0])
        key = self.value(node)
        if isinstance(key, (dict, list)) or key is None:
            self.fail(node, "Incorrect key type", "Object keys must be strings")
        return convert(schema.STR, key, "key", self.pos(node))

    def _function_call(self, node):
        name = str(kids(node)[0].children[0])
        self.unsupported(node, f"The function call {name}()")

    def _conditional(self, node):
        condition, yes, no = kids(node)
        chosen = self.value(condition)
        if not isinstance(chosen, bool) and chosen not in ("true", "false"):
            self.fail(condition, "Incorrect condition type", "The condition must be a bool")
        return self.value(yes if chosen in (True, "true") else no)

    def _unary_op(self, node):
        operator, operand = node.children[0], kids(node)[-1]
        value = self.value(operand)
        if str(operator) == "!":
            return not self._bool(operand, value)
        return -self._number(operand, value)

    def _binary_op(self, node):
        left_node, term = kids(node)[:2]
        operator_node, right_node = kids(term)
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
        parts = [c.children[0] for c in kids(node)]
        if len(parts) == 1 and isinstance(parts[0], Tree) and parts[0].data == "interpolation":
            return self.value(kids(parts[0])[0])  # "${x}" keeps x's type, as in HCL
        pieces = []
        for part in parts:
            if isinstance(part, Tree):
                if part.data != "interpolation":
                    self.unsupported(part, "Template directives (%{ ... })")
                pieces.append(self._in_template(part, self.value(kids(part)[0])))
            elif part.type in ("ESCAPED_INTERPOLATION", "ESCAPED_DIRECTIVE"):
                pieces.append(str(part)[1:])
            else:
                pieces.append(unescape(str(part), self.pos(part)))
        return "".join(pieces)

    def _in_template(self, node, value) -> str:
        if value is None:
            self.fail(node, "Invalid template interpolation value", "The value is null")
        if isinstance(value, (list, dict)):
            self.fail(node, "Invalid template interpolation value", "A string is required")
        return convert(schema.STR, value, "template", self.pos(node))

    def _heredoc_template(self, node):
        token = node.children[0]
        text, pieces, at = heredoc_text(str(token)), [], 0
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
            key = str(kids(steps[0])[0].children[0])
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
            key = str(kids(step)[0].children[0])
        elif step.data == "short_index":
            key = int(str(step.children[-1]))
        else:
            key = self.value(kids(step)[0])
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
            inner, step = kids(node)
            steps.insert(0, step)
            node = inner
        elif node.data == "expr_term" and isinstance(kids(node)[0], Tree) and kids(node)[
                0].data in ("identifier", "get_attr_expr_term", "index_expr_term"):
            node = kids(node)[0]
        else:
            break
    return steps, node


def _traversal_text(root: str, steps: list[Tree]) -> str | None:
    text = root
    for step in steps:
        if step.data == "get_attr":
            text += "." + str(kids(step)[0].children[0])
        elif step.data == "short_index":
            text += "." + str(step.children[-1])
        else:
            inner = kids(step)[0]
            literal = kids(inner)[0] if inner.data == "expr_term" else inner
            if literal.data == "int_lit":
                text += f"[{literal.children[0]}]"
            elif literal.data == "string" and all(
                    isinstance(p.children[0], Token) for p in kids(literal)):
                text += "[" + json.dumps("".join(str(p.children[0]) for p in kids(literal))) + "]"
            else:
                return None
    return text
