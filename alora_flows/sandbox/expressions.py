"""Safe ``when`` expressions: a checked subset of Python evaluated with simpleeval.

Conditions come from YAML files that may be shared, so they are treated as untrusted. Two layers
keep them harmless:

1. :func:`check_expression` walks the ``ast`` *before anything runs* (at flow validation): only a
   whitelist of node types, no names or attributes starting with ``_``, calls only to a few pure
   builtins (``len``, ``min``, ...), and constant sub-expressions (``9**9**9``, ``'a'*10**9``) are
   folded under size limits. It also reports which state names an expression reads, so the
   validator can reject conditions over unknown fields.
2. :func:`evaluate` runs the expression with a simpleeval evaluator whose operators are bounded
   (exponent size, string/list repetition) and whose attribute access refuses Python internals
   (frames, globals, code objects) even when reached through a non-underscore name.
"""

from __future__ import annotations

import ast
import functools
import math
import operator as op
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import simpleeval
from jinja2.sandbox import is_internal_attribute

from alora_flows.errors import UnsafeExpressionError

#: Largest integer result of ``**`` (in bits) and largest repeated sequence (in items/characters).
MAX_POWER_BITS = 4096
MAX_SEQUENCE_LENGTH = 100_000
MAX_EXPRESSION_LENGTH = 2_000
MAX_FORMAT_WIDTH = 1_000
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_BRACE_SPEC = re.compile(r"\{[^{}]*:([^{}]*)\}")
_NESTED_SPEC = re.compile(r"\{[^{}]*:[^{}]*\{")

#: The only functions an expression may call. All are pure and bounded by their inputs.
SAFE_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": len,
    "min": min,
    "max": max,
    "abs": abs,
    "round": round,
    "any": any,
    "all": all,
    "sum": lambda values, start=0: safe_sum(values, start),
}
CONSTANT_NAMES = {"True": True, "False": False, "None": None}

_ALLOWED_NODES: tuple[type[ast.AST], ...] = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.BinOp,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.FloorDiv,
    ast.Mod,
    ast.Pow,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.UAdd,
    ast.Compare,
    ast.Eq,
    ast.NotEq,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.In,
    ast.NotIn,
    ast.Is,
    ast.IsNot,
    ast.IfExp,
    ast.Name,
    ast.Load,
    ast.Attribute,
    ast.Subscript,
    ast.Slice,
    ast.Constant,
    ast.List,
    ast.Tuple,
    ast.Call,
)


def safe_pow(a: Any, b: Any) -> Any:
    """``a ** b`` refusing integer results larger than :data:`MAX_POWER_BITS` bits."""
    if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1:
        if b * math.log2(abs(a)) > MAX_POWER_BITS:
            raise simpleeval.NumberTooHigh(f"{a}**{b} is too large (limit {MAX_POWER_BITS} bits)")
    try:
        return op.pow(a, b)
    except OverflowError as exc:
        raise simpleeval.NumberTooHigh(f"{a!r}**{b!r} overflows") from exc


def safe_mult(a: Any, b: Any) -> Any:
    """``a * b`` refusing sequence repetition beyond :data:`MAX_SEQUENCE_LENGTH` items."""
    for seq, times in ((a, b), (b, a)):
        if isinstance(seq, (str, bytes, list, tuple)) and isinstance(times, int):
            if times * len(seq) > MAX_SEQUENCE_LENGTH:
                raise simpleeval.IterableTooLong(
                    f"repetition to {times * len(seq)} items is too long (limit {MAX_SEQUENCE_LENGTH})"
                )
    return op.mul(a, b)


def safe_add(a: Any, b: Any) -> Any:
    """``a + b`` refusing concatenations beyond :data:`MAX_SEQUENCE_LENGTH` items."""
    if hasattr(a, "__len__") and hasattr(b, "__len__") and len(a) + len(b) > MAX_SEQUENCE_LENGTH:
        raise simpleeval.IterableTooLong("concatenation is too long")
    return op.add(a, b)


def check_format_widths(fmt: str) -> None:
    """Refuse ``%``- and ``{}``-format strings whose widths/precisions could allocate a lot
    (``'%0200000d' % 1``, ``'%*d' % (10**9, 1)``, ``'{:>200000}'.format(1)``)."""
    for width, precision in _PERCENT_SPEC.findall(fmt):
        for part in (width, precision):
            if part == "*" or (part and int(part) > MAX_FORMAT_WIDTH):
                raise simpleeval.IterableTooLong(
                    f"format width {part!r} is not allowed (at most {MAX_FORMAT_WIDTH}, no '*')"
                )
    if _NESTED_SPEC.search(fmt):
        raise simpleeval.IterableTooLong("nested fields in a format spec ('{0:{1}}') are not allowed")
    for spec in _BRACE_SPEC.findall(fmt):
        if any(int(n) > MAX_FORMAT_WIDTH for n in re.findall(r"\d+", spec)):
            raise simpleeval.IterableTooLong(
                f"format width in {{:{spec}}} is too large (at most {MAX_FORMAT_WIDTH})"
            )


def safe_mod(a: Any, b: Any) -> Any:
    """``a % b``: string formatting with bounded widths; numbers as usual."""
    if isinstance(a, (str, bytes)):
        check_format_widths(a if isinstance(a, str) else a.decode("latin-1"))
    return op.mod(a, b)


def safe_sum(values: Any, start: Any = 0) -> Any:
    """``sum`` of numbers only: summing lists or strings is quadratic and unbounded."""
    items = list(values)
    if len(items) > MAX_SEQUENCE_LENGTH:
        raise simpleeval.IterableTooLong(f"sum() of more than {MAX_SEQUENCE_LENGTH} items")
    if not all(isinstance(x, (int, float)) for x in [start, *items]):
        raise TypeError("sum() adds numbers only")
    return sum(items, start)


_OPERATORS = dict(simpleeval.DEFAULT_OPERATORS)
_OPERATORS.update({ast.Pow: safe_pow, ast.Mult: safe_mult, ast.Add: safe_add, ast.Mod: safe_mod})
for _bitwise in (ast.RShift, ast.LShift, ast.BitXor, ast.BitOr, ast.BitAnd, ast.Invert):
    _OPERATORS.pop(_bitwise, None)


class _Evaluator(simpleeval.EvalWithCompoundTypes):
    """simpleeval with bounded operators and attribute access that refuses Python internals."""

    def __init__(self, names: Mapping[str, Any]) -> None:
        super().__init__(
            operators=_OPERATORS, functions=dict(SAFE_FUNCTIONS), names={**CONSTANT_NAMES, **names}
        )

    def _eval_attribute(self, node: ast.Attribute) -> Any:
        if node.attr.startswith("_"):
            raise simpleeval.FeatureNotAvailable(f"access to '{node.attr}' is not allowed")
        obj = self._eval(node.value)
        if is_internal_attribute(obj, node.attr) or node.attr in simpleeval.DISALLOW_METHODS:
            raise simpleeval.FeatureNotAvailable(f"access to '{node.attr}' is not allowed")
        try:
            return getattr(obj, node.attr)
        except (AttributeError, TypeError):
            if isinstance(obj, Mapping) and node.attr in obj:
                return obj[node.attr]
        raise simpleeval.AttributeDoesNotExist(node.attr, self.expr)


@dataclass(frozen=True)
class ExpressionInfo:
    """What static analysis learned about an expression."""

    source: str
    names: frozenset[str]  # state names read
    attributes: frozenset[tuple[str, str]] = field(default_factory=frozenset)  # (name, first attr)


def _is_constant(node: ast.AST) -> bool:
    return not any(isinstance(n, (ast.Name, ast.Call, ast.Attribute, ast.Subscript)) for n in ast.walk(node))


@lru_cache(maxsize=1024)
def check_expression(source: str) -> ExpressionInfo:
    """Statically check ``source`` and return the state names it reads.

    Raises :class:`UnsafeExpressionError` for anything outside the safe subset; nothing from the
    expression is executed except folding of constant sub-expressions with bounded operators.
    """
    if not isinstance(source, str) or not source.strip():
        raise UnsafeExpressionError("a condition must be a non-empty expression string")
    if len(source) > MAX_EXPRESSION_LENGTH:
        raise UnsafeExpressionError(f"condition is longer than {MAX_EXPRESSION_LENGTH} characters")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise UnsafeExpressionError(f"invalid condition {source!r}: {exc.msg}") from None
    names: set[str] = set()
    attributes: set[tuple[str, str]] = set()
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise UnsafeExpressionError(
                f"condition {source!r} uses {type(node).__name__}, which is not allowed "
                "(allowed: comparisons, and/or/not, arithmetic, attribute/index access, "
                f"calls to {', '.join(SAFE_FUNCTIONS)})"
            )
        if isinstance(node, ast.Name) and node.id.startswith("_"):
            raise UnsafeExpressionError(f"condition {source!r} uses the private name {node.id!r}")
        if isinstance(node, ast.Attribute):
            if node.attr.startswith("_") or node.attr in simpleeval.DISALLOW_METHODS:
                raise UnsafeExpressionError(
                    f"condition {source!r} accesses the attribute {node.attr!r}, which is not allowed"
                )
            if isinstance(node.value, ast.Name):
                attributes.add((node.value.id, node.attr))
        if isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id in SAFE_FUNCTIONS):
                raise UnsafeExpressionError(
                    f"condition {source!r} calls something other than {', '.join(SAFE_FUNCTIONS)}"
                )
            if node.keywords:
                raise UnsafeExpressionError(f"condition {source!r}: keyword arguments not allowed")
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
            if len(node.value) > MAX_SEQUENCE_LENGTH:
                raise UnsafeExpressionError(f"condition {source!r} has a too long literal")
    for node in ast.walk(tree.body):
        if isinstance(node, ast.Name) and node.id not in CONSTANT_NAMES:
            if not _is_call_target(tree, node):
                names.add(node.id)
    _fold_constants(tree.body, source)
    return ExpressionInfo(source, frozenset(names), frozenset(attributes))


def _is_call_target(tree: ast.AST, name: ast.Name) -> bool:
    return any(isinstance(n, ast.Call) and n.func is name for n in ast.walk(tree))


def _fold_constants(node: ast.AST, source: str) -> None:
    """Evaluate constant sub-trees with the bounded evaluator so ``9**9**9`` fails at validation."""
    if isinstance(node, (ast.BinOp, ast.UnaryOp)) and _is_constant(node):
        try:
            _Evaluator({})._eval(node)
        except (simpleeval.NumberTooHigh, simpleeval.IterableTooLong) as exc:
            raise UnsafeExpressionError(f"condition {source!r} is too expensive: {exc}") from None
        except Exception as exc:
            raise UnsafeExpressionError(f"condition {source!r} cannot be evaluated: {exc}") from None
        return
    for child in ast.iter_child_nodes(node):
        _fold_constants(child, source)


class ExpressionError(Exception):
    """Evaluating a (statically safe) expression failed on this state; the runner wraps it."""


@functools.lru_cache(maxsize=1024)
def _checked_tree(source: str) -> Any:
    """Static check + parse, once per distinct expression (conditions run on every loop turn)."""
    check_expression(source)
    return _Evaluator({}).parse(source.strip())


def evaluate(source: str, names: Mapping[str, Any]) -> Any:
    """Evaluate ``source`` over ``names`` (the state values). Checks it statically first."""
    tree = _checked_tree(source)
    evaluator = _Evaluator(names)
    try:
        return evaluator.eval(source.strip(), previously_parsed=tree)
    except simpleeval.NameNotDefined as exc:
        raise ExpressionError(
            f"{exc.name!r} has no value yet (no node has written it on this path)"
        ) from None
    except (
        simpleeval.InvalidExpression,
        ArithmeticError,
        TypeError,
        ValueError,
        KeyError,
        IndexError,
        AttributeError,
    ) as exc:
        raise ExpressionError(f"{type(exc).__name__}: {exc}") from None
