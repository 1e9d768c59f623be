"""Request decoding the way Consul 1.4 does it, with the error texts it prints.

Consul reads a body with Go's ``encoding/json`` into ``interface{}`` (only the first JSON value;
trailing bytes are ignored), then maps it onto its structs with ``mapstructure``: field names
match case-insensitively, unknown fields are dropped, numbers become ints by truncation, and a
wrong type is an error listed as ``* 'Port' expected type 'int', got unconvertible type
'string'``. Its check fix-up accepts durations as Go duration strings ("10s", "1m30s") or as
nanoseconds, and snake_case keys (``tls_skip_verify``). Every failure here is a 400 whose
body is ``Request decode failed: <message>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

NANOSECOND = 1e-9


class DecodeError(Exception):
    """The body cannot be decoded; ``str(exc)`` is Go's message (without Consul's prefix)."""


# -- JSON -----------------------------------------------------------------------------------


def _reject_constant(name: str) -> float:
    raise ValueError(name)


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def decode_json(body: bytes) -> Any:
    """The first JSON value of ``body``, as Go's ``json.Decoder.Decode`` reads it."""
    text = body.decode("utf-8", errors="replace").lstrip(" \t\r\n")
    if not text:
        raise DecodeError("EOF")
    try:
        value, _end = _DECODER.raw_decode(text)
    except json.JSONDecodeError as exc:
        raise DecodeError(_go_syntax_error(text, exc)) from None
    except ValueError as exc:  # NaN / Infinity, which Go rejects
        raise DecodeError(f"invalid character {_go_char(str(exc)[0])} looking for beginning of "
                          "value") from None
    return value


def _go_syntax_error(text: str, exc: json.JSONDecodeError) -> str:
    if exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
        return "unexpected EOF"
    char = _go_char(text[exc.pos])
    if exc.msg.startswith("Expecting property name"):
        return f"invalid character {char} looking for beginning of object key string"
    if exc.msg.startswith("Expecting ':'"):
        return f"invalid character {char} after object key"
    if exc.msg.startswith("Expecting ','"):
        inside = "object key:value pair" if _innermost_bracket(text, exc.pos) == "{" else (
            "array element")
        return f"invalid character {char} after {inside}"
    if exc.msg.startswith("Invalid control character"):
        return f"invalid character {char} in string literal"
    if exc.msg.startswith("Invalid \\escape"):
        return f"invalid character {char} in string escape code"
    return f"invalid character {char} looking for beginning of value"


def _go_char(char: str) -> str:
    if char == "'":
        return "'\\''"
    if char == '"':
        return "'\"'"
    return "'" + json.dumps(char)[1:-1] + "'"


def _innermost_bracket(text: str, end: int) -> str:
    stack: list[str] = []
    in_string = escaped = False
    for char in text[:end]:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            stack.append(char)
        elif char in "}]" and stack:
            stack.pop()
    return stack[-1] if stack else ""


# -- Go durations ---------------------------------------------------------------------------

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
          "h": 3600.0}
_PART = re.compile(r"(\d+\.?\d*|\.\d+)([a-zµμ]*)")


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration string ("1m30s", "250ms", "0"); ValueError with Go's text."""
    quoted = json.dumps(text)
    body = text
    sign = 1.0
    if body[:1] in "+-" and body:
        sign = -1.0 if body[0] == "-" else 1.0
        body = body[1:]
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f"time: invalid duration {quoted}")
    total = 0.0
    pos = 0
    while pos < len(body):
        match = _PART.match(body, pos)
        if not match:
            raise ValueError(f"time: invalid duration {quoted}")
        number, unit = match.groups()
        if not unit:
            raise ValueError(f"time: missing unit in duration {quoted}")
        if unit not in _UNITS:
            raise ValueError(f"time: unknown unit {json.dumps(unit)} in duration {quoted}")
        total += float(number) * _UNITS[unit]
        pos = match.end()
    return sign * total


# -- mapstructure-like struct decoding ------------------------------------------------------


def _go_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    return "map[string]interface {}"


class _Errors:
    def __init__(self) -> None:
        self.items: list[str] = []

    def wrong(self, name: str, expected: str, value: Any) -> None:
        self.items.append(
            f"'{name}' expected type '{expected}', got unconvertible type '{_go_type(value)}'"
        )

    def raise_if_any(self) -> None:
        if self.items:
            lines = "\n".join(f"* {item}" for item in self.items)
            raise DecodeError(f"{len(self.items)} error(s) decoding:\n\n{lines}")


def _go_kind(value: Any) -> str:
    """reflect.Kind of a decoded JSON value, as mapstructure names it."""
    if isinstance(value, list):
        return "slice"
    return _go_type(value)


def as_str(value: Any, name: str, errors: _Errors) -> str:
    if isinstance(value, str):
        return value
    errors.wrong(name, "string", value)
    return ""


def as_int(value: Any, name: str, errors: _Errors) -> int:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    errors.wrong(name, "int", value)
    return 0


def as_bool(value: Any, name: str, errors: _Errors) -> bool:
    if isinstance(value, bool):
        return value
    errors.wrong(name, "bool", value)
    return False


def as_str_list(value: Any, name: str, errors: _Errors) -> tuple[str, ...]:
    if not isinstance(value, list):
        errors.wrong(name, "[]string", value)
        return ()
    return tuple(as_str(item, f"{name}[{i}]", errors) for i, item in enumerate(value))


def as_list(value: Any, name: str, errors: _Errors) -> list[Any]:
    if isinstance(value, list):
        return value
    errors.wrong(name, "slice", value)
    return []


def as_str_map(value: Any, name: str, errors: _Errors) -> dict[str, str]:
    if not isinstance(value, dict):
        errors.wrong(name, "map[string]string", value)
        return {}
    return {str(k): as_str(v, f"{name}[{k}]", errors) for k, v in value.items()}


def as_header(value: Any, name: str, errors: _Errors) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        errors.wrong(name, "map[string][]string", value)
        return {}
    return {str(k): as_str_list(v, f"{name}[{k}]", errors) for k, v in value.items()}


def as_duration(value: Any, name: str, errors: _Errors) -> float:
    """Seconds; strings are Go durations, numbers are nanoseconds (as Consul's fix-up)."""
    if isinstance(value, str):
        try:
            return parse_go_duration(value)
        except ValueError as exc:
            raise DecodeError(str(exc)) from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value * NANOSECOND
    errors.wrong(name, "time.Duration", value)
    return 0.0


def as_object(value: Any, name: str, errors: _Errors) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    errors.wrong(name, "struct", value)
    return {}


Converter = Callable[[Any, str, _Errors], Any]


def _normalize(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def decode_fields(raw: Any, fields: dict[str, Converter], errors: _Errors | None = None,
                  where: str = "") -> dict[str, Any]:
    """Pick ``fields`` (canonical name -> converter) out of the JSON object ``raw``.

    Keys match case- and underscore-insensitively; absent and null fields are left out, so the
    caller applies Consul's defaults. Raises :class:`DecodeError` listing every wrong type.
    """
    own = errors is None
    errors = errors or _Errors()
    if not isinstance(raw, dict):
        raise DecodeError(f"'{where}' expected a map, got '{_go_kind(raw)}'")
    lookup = {_normalize(name): name for name in fields}
    decoded: dict[str, Any] = {}
    for key, value in raw.items():
        name = lookup.get(_normalize(str(key)))
        if name is None or value is None:
            continue
        decoded[name] = fields[name](value, f"{where}{name}" if not where else
                                     f"{where}.{name}", errors)
    if own:
        errors.raise_if_any()
    return decoded


def new_errors() -> _Errors:
    return _Errors()
