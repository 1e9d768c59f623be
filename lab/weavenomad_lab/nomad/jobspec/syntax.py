"""HCL text -> lark trees -> :class:`Body` (attributes, blocks and their positions).

python-hcl2 (lark) parses the text; this module walks lark's tree itself, because the dict
python-hcl2 builds keeps quotes, loses positions and flattens expressions into strings. Syntax
errors become :class:`JobspecError` at ``FILE:LINE:COL``; attribute values are evaluated lazily
by the :class:`~weavenomad_lab.nomad.jobspec.expressions.Evaluator` given to :func:`build_body`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lark import Token, Tree
from lark.exceptions import LarkError, UnexpectedInput

from weavenomad_lab.nomad.jobspec.schema import JobspecError, Pos

if TYPE_CHECKING:  # build_body only calls the evaluator it is handed: no import at run time
    from weavenomad_lab.nomad.jobspec.expressions import Evaluator

_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", re.S)
_SIMPLE = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


# -- evaluated HCL bodies (built by build_body below) --------------------------------------


@dataclass
class Attr:
    name: str
    pos: Pos
    evaluate: Callable[[], Any]
    #: the expression is a literal ``{ ... }``; Nomad wraps those in a list inside ``config``
    object_literal: bool = False
    #: the unevaluated expression (a lark tree), for the few places that read syntax
    expr: Any = None


@dataclass
class Block:
    type: str
    labels: list[str]
    body: Body
    pos: Pos


@dataclass
class Body:
    attrs: dict[str, Attr]
    blocks: list[Block]
    pos: Pos


# -- lark trees ------------------------------------------------------------------------------


def parse_tree(text: str, filename: str) -> Tree:
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


def kids(tree: Tree) -> list:
    """Children that carry meaning (no newlines/comments, no punctuation)."""
    return [c for c in tree.children
            if not (isinstance(c, Tree) and c.data == "new_line_or_comment")
            and not (isinstance(c, Token) and c.type in _PUNCTUATION)]


_PUNCTUATION = {"LPAR", "RPAR", "LSQB", "RSQB", "LBRACE", "RBRACE", "COMMA", "DOT", "EQ",
                "COLON", "QMARK", "DBLQUOTE", "INTERP_START", "ELLIPSIS", "COLONS"}


def unescape(raw: str, pos: Pos) -> str:
    def one(match: re.Match) -> str:
        code = match.group(1)
        if code in _SIMPLE:
            return _SIMPLE[code]
        if code[0] in "uU" and len(code) > 1:
            return chr(int(code[1:], 16))
        raise JobspecError(pos, "Invalid escape sequence", f'"\\{code}" is not a valid escape')

    return _ESCAPE.sub(one, raw)


def heredoc_text(raw: str) -> str:
    lines = raw.split("\n")
    body = lines[1:-2]  # drop "<<EOT", the closing marker line and the empty tail
    if raw.startswith("<<-"):
        indents = [len(ln) - len(ln.lstrip(" \t")) for ln in body if ln.strip()]
        cut = min(indents, default=0)
        body = [ln[cut:] for ln in body]
    return "".join(ln + "\n" for ln in body)


def parse_expression(source: str, filename: str, pos: Pos) -> Tree:
    """One expression (a ``--var`` value, a heredoc interpolation) as a lark tree."""
    try:
        tree = parse_tree(f"__value = {source}\n", filename)
    except JobspecError as err:
        raise JobspecError(pos, "Invalid expression",
                           f"{source!r} is not an HCL expression ({err.summary})") from None
    body = kids(tree)[0]
    attrs = [c for c in kids(body) if c.data == "attribute"]
    if len(attrs) != 1 or len(kids(body)) != 1:
        raise JobspecError(pos, "Invalid expression", f"{source!r} is not one expression")
    return kids(attrs[0])[1]


# -- bodies -------------------------------------------------------------------------------------


def build_body(tree: Tree, ev: Evaluator) -> Body:
    """An HCL body with attributes evaluated lazily (so an unsupported block is reported
    before anything inside it is evaluated)."""
    attrs: dict[str, Attr] = {}
    blocks: list[Block] = []
    for item in kids(tree):
        parts = kids(item)
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
    while node.data == "expr_term" and isinstance(kids(node)[0], Tree):
        node = kids(node)[0]
    return node


def _label(node: Tree, ev: Evaluator) -> str:
    if node.data != "string":
        return str(node.children[0])
    chars = [p.children[0] for p in kids(node)]
    if any(isinstance(c, Tree) for c in chars):
        ev.fail(node, "Invalid block label", "Labels cannot contain interpolations")
    return "".join(str(c)[1:] if c.type.startswith("ESCAPED_") else unescape(str(c), ev.pos(c))
                   for c in chars)
