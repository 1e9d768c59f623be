"""Nomad agent config text to plain data, refusing what Nomad would read otherwise. Pure.

HCL goes through pyhcl (HCL1, as Nomad's agent config loader); JSON through :mod:`json` with
two extra refusals, because HCL's JSON reader differs from Python's: a key repeated in one
object (HCL keeps both copies, ``json`` only the last, so an edit would drop one) and ``NaN`` /
``Infinity`` (not JSON at all). Nesting is bounded, so hostile files cannot exhaust the stack of
the recursive walks that compare configs.
"""

from __future__ import annotations

import functools
import json
from typing import Any

#: Nomad's agent config nests a few levels; anything far deeper is not a config we should edit
MAX_NESTING = 64


class Unreadable(ValueError):
    """JSON that Python reads but Nomad's HCL reader would not, or not the same way."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    # HCL's JSON reader keeps both copies of a repeated key; ``json`` keeps the last one only,
    # so editing such a file would silently drop the first
    data: dict = {}
    for key, value in pairs:
        if key in data:
            raise Unreadable(f"key {key!r} appears twice in one object; merge them")
        data[key] = value
    return data


def _no_constant(name: str) -> Any:
    raise Unreadable(f"{name} is not a JSON number")


def load_json(text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except RecursionError:  # the decoder recurses once per nesting level
        raise Unreadable(f"nested deeper than {MAX_NESTING} levels") from None


def nesting(data: Any) -> int:
    """How deeply lists and objects nest in ``data`` (iterative: any depth is safe to measure)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else (
            value if isinstance(value, list) else ())
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > MAX_NESTING:
                    return depth + 1
                stack.append((child, depth + 1))
        deepest = max(deepest, depth)
    return deepest


@functools.cache
def _hcl_parser():
    from hcl.parser import HclParser  # pyhcl: HCL1 like Nomad's agent config loader

    # building the parser costs ~35 ms (hcl.loads does it on every call); one is enough
    return HclParser()


def load_hcl(text: str) -> Any:
    """``hcl.loads`` with one shared parser: HCL1, or JSON when the text starts with ``{``."""
    if text.lstrip()[:1] == "{":
        return load_json(text)
    return _hcl_parser().parse(text)
