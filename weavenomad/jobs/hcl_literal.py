"""What a job file states literally, read from python-hcl2 (8.x)'s document. Pure.

python-hcl2 keeps each value's source form: a string literal is ``'"text"'`` with its escapes,
a heredoc ``'"<<EOT\\n…EOT"'``, any other expression ``'${…}'`` or a bare name, a block a dict
marked ``__is_block__`` (one nesting level per label). This module tells apart what the file
states literally (strings, numbers, booleans, null, lists, objects, and Nomad's runtime
interpolations such as ``${NOMAD_ALLOC_ID}`` or ``${attr.kernel.name}``, which Nomad keeps as
text) from what only Nomad evaluates when the job is submitted (``var.x``, ``local.x``, function
calls, operators, ``for`` expressions, ``%{ }`` directives): those become an
:class:`Expression`. It also writes values back in python-hcl2's form (:func:`hcl_string`).
"""

from __future__ import annotations

import re
from typing import Any

from hcl2.const import COMMENTS_KEY, INLINE_COMMENTS_KEY, IS_BLOCK
from hcl2.utils import HEREDOC_PATTERN, HEREDOC_TRIM_PATTERN, process_escape_sequences

from weavenomad.errors import ValidationError

#: document keys that carry python-hcl2's markers, not attributes
RESERVED = frozenset({IS_BLOCK, COMMENTS_KEY, INLINE_COMMENTS_KEY})
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"
#: ``root.attr["key"][0]``: a traversal, which Nomad keeps as ``${…}`` text unless it is a
#: variable or local
_TRAVERSAL = re.compile(rf'({_NAME})(?:\.{_NAME}|\[(?:"(?:[^"\\]|\\.)*"|\d+)\])*\Z')
#: roots that Nomad's parser evaluates; every other root is a runtime interpolation
_EVALUATED_ROOTS = frozenset({"var", "local", "true", "false", "null"})
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\Z")


class Expression(str):
    """A value only Nomad can evaluate. It reads as the ``${…}`` text Nomad would evaluate,
    so a check that refuses interpolation refuses it too; :attr:`source` is what the file
    says."""

    source: str

    def __new__(cls, source: str) -> Expression:
        made = super().__new__(cls, "${" + source + "}")
        made.source = source
        return made


def parse_document(text: str, path: str) -> dict:
    """The python-hcl2 document of a job file, or one line naming the file and position."""
    import hcl2

    try:
        return hcl2.loads(text)
    except RecursionError:
        raise ValidationError(f"{path}: invalid HCL: nested too deeply") from None
    except Exception as exc:  # python-hcl2 raises its parser's errors, RuntimeError, ValueError
        raise ValidationError(_syntax_error(exc, path)) from None


def _syntax_error(exc: Exception, path: str) -> str:
    line, column = getattr(exc, "line", None), getattr(exc, "column", None)
    where = f"{path}:{line}:{column}" if isinstance(line, int) and line > 0 else path
    token = getattr(exc, "token", None)
    if token is not None:
        kind = getattr(token, "type", "")
        what = "end of file" if kind == "$END" else repr(str(token)[:30])
        return f"{where}: invalid HCL: unexpected {what}"
    char = getattr(exc, "char", None)
    if isinstance(char, str):
        return f"{where}: invalid HCL: unexpected character {char!r}"
    first = str(exc).strip().splitlines()
    return f"{where}: invalid HCL: {first[0] if first else type(exc).__name__}"


# -- blocks ------------------------------------------------------------------------------------


def block_body(item: Any) -> tuple[tuple[str, ...], dict] | None:
    """``(labels, body)`` of one entry of a block list, None when it is not a block."""
    labels: list[str] = []
    while isinstance(item, dict) and not item.get(IS_BLOCK):
        if len(item) != 1:
            return None
        ((label, item),) = item.items()
        labels.append(key_text(label))
    return (tuple(labels), item) if isinstance(item, dict) else None


def is_block_list(value: Any) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(block_body(item) is not None for item in value))


def blocks(body: dict, block_type: str) -> list[tuple[tuple[str, ...], dict]]:
    """The blocks of one type in a body, in file order (empty when it is an attribute)."""
    found = body.get(block_type)
    if not is_block_list(found):
        return []
    return [block_body(item) for item in found]  # type: ignore[misc]


# -- values ------------------------------------------------------------------------------------


def value(raw: Any) -> Any:
    """The literal value of a document value; :class:`Expression` where Nomad must evaluate.
    Nested blocks (a Docker ``logging { }``) become lists of objects, as in Nomad's JSON."""
    if raw is None or isinstance(raw, bool | int | float):
        return raw
    if isinstance(raw, str):
        return _scalar(raw)
    if is_block_list(raw):
        return [_object(block_body(item)[1]) for item in raw]  # type: ignore[index]
    if isinstance(raw, list):
        return [value(item) for item in raw]
    if isinstance(raw, dict):
        return _object(raw)
    return Expression(repr(raw))


def _object(raw: dict) -> Any:
    result = {}
    for key, item in raw.items():
        if key in RESERVED:
            continue
        name = key_text(key)
        if isinstance(name, Expression):
            return Expression(name.source)
        result[name] = value(item)
    return result


def key_text(key: str) -> str:
    """An object key or block label: a bare name, a quoted string or an expression."""
    if key.startswith('"') and key.endswith('"') and len(key) >= 2:
        return _scalar(key)
    if IDENTIFIER.match(key):
        return key
    return Expression(_unwrap(key))


def _scalar(raw: str) -> Any:
    if len(raw) >= 2 and raw.startswith('"') and raw.endswith('"'):
        inner = raw[1:-1]
        content = _heredoc_content(inner)
        text = (_template_text(inner, escapes=True) if content is None
                else _template_text(content, escapes=False))
        return Expression(raw) if text is None else text
    body = _unwrap(raw)
    if _NUMBER.match(body):
        return float(body) if {".", "e", "E"} & set(body) else int(body)
    if _is_runtime(body):
        return "${" + body + "}"
    return Expression(body)


def _unwrap(raw: str) -> str:
    return raw[2:-1].strip() if raw.startswith("${") and raw.endswith("}") else raw


def _heredoc_content(inner: str) -> str | None:
    """The template text of a heredoc (``<<EOT`` or the indented ``<<-EOT``), each line with
    its newline; None when ``inner`` is not a heredoc."""
    if not inner.startswith("<<"):
        return None
    trimmed = HEREDOC_TRIM_PATTERN.match(inner)
    match = trimmed or HEREDOC_PATTERN.match(inner)
    if match is None:
        return None
    content = match.group(2)
    content = content[: content.rfind("\n") + 1]  # the closing marker's indentation is not text
    if not trimmed:
        return content
    lines = content.splitlines(keepends=True)
    cut = min((len(line) - len(line.lstrip(" \t")) for line in lines if line.strip()), default=0)
    return "".join(line[cut:] if line.strip() else line.lstrip(" \t") for line in lines)


def _template_text(raw: str, *, escapes: bool) -> str | None:
    """A template's text when it holds only literal text and runtime interpolations (kept as
    ``${…}``); None when Nomad must evaluate part of it. ``$${`` and ``%%{`` stand for ``${``
    and ``%{``; quoted strings also decode backslash escapes, heredocs do not."""
    out: list[str] = []
    literal: list[str] = []

    def flush() -> None:
        text = "".join(literal)
        out.append(process_escape_sequences(text) if escapes else text)
        literal.clear()

    index, length = 0, len(raw)
    while index < length:
        if raw.startswith(("$${", "%%{"), index):
            literal.append(raw[index + 1:index + 3])
            index += 3
        elif raw.startswith("%{", index):
            return None
        elif raw.startswith("${", index):
            end = _closing_brace(raw, index + 2)
            if end is None:
                return None
            body = raw[index + 2:end].strip()
            if not _is_runtime(body):
                return None
            flush()
            out.append("${" + body + "}")
            index = end + 1
        else:
            literal.append(raw[index])
            index += 1
    flush()
    return "".join(out)


def _closing_brace(text: str, start: int) -> int | None:
    """The index of the ``}`` closing a ``${`` whose body starts at ``start``."""
    depth, index, quoted = 1, start, False
    while index < len(text):
        char = text[index]
        if quoted:
            if char == "\\":
                index += 1
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    return None


def _is_runtime(body: str) -> bool:
    """Whether Nomad keeps ``${body}`` verbatim for the client to fill in at run time."""
    match = _TRAVERSAL.match(body)
    return match is not None and match.group(1) not in _EVALUATED_ROOTS


def expressions_in(found: Any) -> list[Expression]:
    """Every :class:`Expression` inside a decoded value."""
    if isinstance(found, Expression):
        return [found]
    if isinstance(found, dict):
        return [e for item in found.values() for e in expressions_in(item)]
    if isinstance(found, list):
        return [e for item in found for e in expressions_in(item)]
    return []


# -- writing -----------------------------------------------------------------------------------


def hcl_string(text: str) -> str:
    """``text`` as a python-hcl2 string literal that Nomad reads back as exactly ``text``."""
    escaped = (text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("\t", "\\t")
               .replace("${", "$${").replace("%{", "%%{"))
    return '"' + escaped + '"'


_HEREDOC_START = re.compile(r"<<-?([A-Za-z][A-Za-z0-9._-]*)\s*$")


def tidy(text: str) -> str:
    """python-hcl2's output without trailing blanks and runs of empty lines, heredoc text
    left exactly as it is."""
    lines: list[str] = []
    closing = None
    for line in text.splitlines():
        if closing is not None:
            lines.append(line)
            closing = None if line.strip() == closing else closing
            continue
        line = line.rstrip()
        opening = _HEREDOC_START.search(line)
        closing = opening.group(1) if opening else None
        if line or (lines and lines[-1]):
            lines.append(line)
    return "\n".join(lines).strip("\n") + "\n"


def hcl_key(name: str) -> str:
    """An object key: bare when HCL allows it, quoted otherwise (``"weavenomad.tenant"``)."""
    return name if IDENTIFIER.match(name) else hcl_string(name)
