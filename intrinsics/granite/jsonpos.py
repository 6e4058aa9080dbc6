"""JSON with positions: where each scalar literal of a JSON text starts and ends.

The ``likelihood`` rule needs the token the model emitted at the start of a value (say the digit
in ``{"score": "8"}``) to read the alternatives it weighed there; that needs each literal's offset
in the output text, which :func:`json.loads` does not give. A small recursive-descent parser over
:mod:`json`'s own scanners (strings, numbers) does, for valid JSON.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_CONSTANTS = {"true": True, "false": False, "null": None}


@dataclass(frozen=True)
class Literal:
    """A scalar JSON value and its span ``[begin, end)`` in the text (quotes included)."""

    value: Any
    begin: int
    end: int


def parse_with_positions(text: str) -> Any:
    """``text`` parsed like :func:`json.loads`, scalars replaced by :class:`Literal`.

    Raises ``ValueError`` on invalid JSON (callers parse with :func:`json.loads` first).
    """
    value, end = _value(text, _skip(text, 0))
    if _skip(text, end) != len(text):
        raise ValueError(f"extra data after JSON value at {end}")
    return value


def _skip(text: str, pos: int) -> int:
    match = _WS.match(text, pos)
    return match.end() if match else pos


def _value(text: str, pos: int) -> tuple[Any, int]:
    if pos >= len(text):
        raise ValueError("unexpected end of JSON")
    char = text[pos]
    if char == "{":
        return _object(text, pos + 1)
    if char == "[":
        return _array(text, pos + 1)
    if char == '"':
        string, end = json.decoder.scanstring(text, pos + 1)  # type: ignore[attr-defined]
        return Literal(string, pos, end), end
    for word, constant in _CONSTANTS.items():
        if text.startswith(word, pos):
            return Literal(constant, pos, pos + len(word)), pos + len(word)
    match = _NUMBER.match(text, pos)
    if match:
        return Literal(json.loads(match.group()), pos, match.end()), match.end()
    raise ValueError(f"unexpected character {char!r} at {pos}")


def _object(text: str, pos: int) -> tuple[dict[str, Any], int]:
    out: dict[str, Any] = {}
    pos = _skip(text, pos)
    if text.startswith("}", pos):
        return out, pos + 1
    while True:
        if not text.startswith('"', pos):
            raise ValueError(f"expected a key at {pos}")
        key, pos = json.decoder.scanstring(text, pos + 1)  # type: ignore[attr-defined]
        pos = _skip(text, pos)
        if not text.startswith(":", pos):
            raise ValueError(f"expected ':' at {pos}")
        value, pos = _value(text, _skip(text, pos + 1))
        out[key] = value
        pos = _skip(text, pos)
        if text.startswith("}", pos):
            return out, pos + 1
        if not text.startswith(",", pos):
            raise ValueError(f"expected ',' or '}}' at {pos}")
        pos = _skip(text, pos + 1)


def _array(text: str, pos: int) -> tuple[list[Any], int]:
    out: list[Any] = []
    pos = _skip(text, pos)
    if text.startswith("]", pos):
        return out, pos + 1
    while True:
        value, pos = _value(text, _skip(text, pos))
        out.append(value)
        pos = _skip(text, pos)
        if text.startswith("]", pos):
            return out, pos + 1
        if not text.startswith(",", pos):
            raise ValueError(f"expected ',' or ']' at {pos}")
        pos += 1
