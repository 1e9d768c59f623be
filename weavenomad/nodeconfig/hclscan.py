"""A text-level reader of HCL1 (Nomad's agent config syntax) that keeps byte offsets, so an edit
can splice one value into the file and leave every comment, blank line and indentation alone.

It is not a validating parser: callers parse the text with pyhcl first (which rejects what Nomad
would reject) and parse the edited text again afterwards; this module only finds *where* things
are. Its lexer follows HCL1's own rules where they matter for finding braces:

* comments ``# …`` and ``// …`` to the end of the line, ``/* … */`` (not nested);
* strings ``"…"`` with backslash escapes; inside ``${ … }`` quotes do not end the string and
  braces are counted (``"${lookup(var.m, "k")}"`` is one string), as HCL1's scanner does;
* heredocs ``<<EOF`` / ``<<-EOF`` up to a line that is the marker (indented for ``<<-``);
* brackets ``[ … ]`` are skipped as one value: blocks inside lists are never edited.

Pure: text in, :class:`Node` trees out. Malformed input raises :class:`ScanError`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

_WORD = re.compile(r"[A-Za-z0-9_.\-+:]+")
_HEREDOC = re.compile(r"<<(-?)([A-Za-z_][A-Za-z0-9_\-]*)[ \t]*\r?\n")
_PUNCT = "{}[]=,"
#: nesting the recursive reader follows; real agent configs stay under ten levels
MAX_DEPTH = 100


class ScanError(ValueError):
    """The text is not HCL1 this scanner understands (offset in ``offset``)."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True)
class Token:
    kind: str  # "word", "string", "heredoc", or one of "{}[]=,"
    start: int
    end: int
    text: str

    def unquoted(self) -> str:
        """The value of a key or literal: strings decoded, words as written."""
        if self.kind == "string":
            return _decode_string(self.text)
        return self.text


@dataclass(frozen=True)
class Node:
    """One item of a body: an attribute ``key = value`` or a block/object ``key… { body }``.

    ``start`` is the first key's offset; for blocks ``open``/``close`` are the offsets of the
    braces, for attributes ``value`` is the value's token (a list's span is one token)."""

    keys: tuple[str, ...]
    start: int
    end: int
    open: int | None = None
    close: int | None = None
    children: tuple[Node, ...] = ()
    value: Token | None = None

    @property
    def is_block(self) -> bool:
        return self.open is not None


@dataclass
class _Lexer:
    text: str
    pos: int = 0
    tokens: list[Token] = field(default_factory=list)

    def run(self) -> list[Token]:
        text, n = self.text, len(self.text)
        while self.pos < n:
            ch = text[self.pos]
            if ch in " \t\r\n":
                self.pos += 1
            elif ch == "#" or text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                self.pos = n if end < 0 else end + 1
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    raise ScanError("unterminated /* comment", self.pos)
                self.pos = end + 2
            elif ch == '"':
                self._string()
            elif text.startswith("<<", self.pos):
                self._heredoc()
            elif ch in _PUNCT:
                self.tokens.append(Token(ch, self.pos, self.pos + 1, ch))
                self.pos += 1
            else:
                match = _WORD.match(text, self.pos)
                if not match:
                    raise ScanError(f"unexpected character {ch!r}", self.pos)
                self.tokens.append(Token("word", self.pos, match.end(), match.group()))
                self.pos = match.end()
        return self.tokens

    def _string(self) -> None:
        text, start, braces = self.text, self.pos, 0
        i = start + 1
        while True:
            if i >= len(text) or (text[i] == "\n" and braces == 0):
                raise ScanError("unterminated string", start)
            ch = text[i]
            if ch == '"' and braces == 0:
                break
            if braces == 0 and ch == "$" and text.startswith("${", i):
                braces, i = 1, i + 2
                continue
            if braces and ch == "{":
                braces += 1
            elif braces and ch == "}":
                braces -= 1
            elif ch == "\\":
                i += 1  # the escaped character never ends the string
            i += 1
        self.tokens.append(Token("string", start, i + 1, text[start:i + 1]))
        self.pos = i + 1

    def _heredoc(self) -> None:
        match = _HEREDOC.match(self.text, self.pos)
        if not match:
            raise ScanError("malformed heredoc", self.pos)
        indented, marker = match.group(1) == "-", match.group(2)
        i = match.end()
        while i <= len(self.text):
            line_end = self.text.find("\n", i)
            line_end = len(self.text) if line_end < 0 else line_end
            line = self.text[i:line_end].rstrip("\r")
            if (line.strip() if indented else line) == marker:
                self.tokens.append(Token("heredoc", self.pos, line_end,
                                         self.text[self.pos:line_end]))
                self.pos = line_end
                return
            if line_end >= len(self.text):
                break
            i = line_end + 1
        raise ScanError(f"heredoc <<{marker} is not closed", self.pos)


class _Parser:
    def __init__(self, tokens: list[Token], length: int):
        self.tokens = tokens
        self.i = 0
        self.length = length
        self.depth = 0

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise ScanError("unexpected end of file", self.length)
        self.i += 1
        return token

    def body(self, closing: str | None) -> list[Node]:
        nodes = []
        while True:
            token = self.peek()
            if token is None:
                if closing is not None:
                    raise ScanError("missing '}'", self.length)
                return nodes
            if token.kind == closing:
                return nodes
            if token.kind == ",":
                self.i += 1
                continue
            nodes.append(self.item())

    def item(self) -> Node:
        keys: list[Token] = []
        while (token := self.peek()) is not None and token.kind in ("word", "string"):
            keys.append(self.take())
        if not keys:
            token = self.take()
            raise ScanError(f"expected a key, found {token.text!r}", token.start)
        names = tuple(k.unquoted() for k in keys)
        token = self.take()
        if token.kind == "{":
            return self.block(names, keys[0].start, token)
        if token.kind != "=":
            raise ScanError(f"expected '=' or '{{' after {names[-1]!r}", token.start)
        value = self.take()
        if value.kind == "{":
            return self.block(names, keys[0].start, value)
        if value.kind == "[":
            value = self.skip_list(value)
        elif value.kind not in ("word", "string", "heredoc"):
            raise ScanError(f"unexpected {value.text!r} as a value", value.start)
        return Node(names, keys[0].start, value.end, value=value)

    def block(self, names: tuple[str, ...], start: int, opening: Token) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ScanError(f"blocks nested deeper than {MAX_DEPTH} levels", opening.start)
        children = self.body("}")
        self.depth -= 1
        closing = self.take()
        return Node(names, start, closing.end, opening.start, closing.start, tuple(children))

    def skip_list(self, opening: Token) -> Token:
        depth = 1
        while depth:
            token = self.take()
            if token.kind in ("[", "{"):
                depth += 1
            elif token.kind in ("]", "}"):
                depth -= 1
        end = self.tokens[self.i - 1].end
        return Token("list", opening.start, end, "")


def scan(text: str) -> tuple[Node, ...]:
    """The top-level items of an HCL1 document."""
    parser = _Parser(_Lexer(text).run(), len(text))
    return tuple(parser.body(None))


def walk(nodes: tuple[Node, ...], prefix: tuple[str, ...] = ()):
    """Every node with its full key path (parents' keys, then its own), in document order."""
    for node in nodes:
        path = prefix + node.keys
        yield path, node
        if node.is_block:
            yield from walk(node.children, path)


def _decode_string(literal: str) -> str:
    try:
        return json.loads(literal)
    except ValueError:  # HCL escapes JSON does not know (\$, …): keep the raw text
        return literal[1:-1]


def quote(value: str) -> str:
    """An HCL1 string literal for ``value`` (``${`` escaped so it stays literal)."""
    return json.dumps(value).replace("${", "$${")


def line_start(text: str, offset: int) -> int:
    return text.rfind("\n", 0, offset) + 1


def indent_of(text: str, offset: int) -> str:
    """The leading whitespace of the line holding ``offset``."""
    start = line_start(text, offset)
    end = start
    while end < len(text) and text[end] in " \t":
        end += 1
    return text[start:end]


def starts_line(text: str, offset: int) -> bool:
    return text[line_start(text, offset):offset].strip() == ""
