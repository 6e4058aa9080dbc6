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
import difflib
import functools
import math
import operator as op
import re
import types
import typing
from collections import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import simpleeval
from jinja2.sandbox import is_internal_attribute
from pydantic import BaseModel

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


# ---------------------------------------------------------------------- static types
# Conditions are checked against the state's field types before any model loads: an operation
# whose operand types can never work (``certainty < 0.5`` on an UncertaintyOutput, ``answer > 3``
# on a str, ``len(score)`` on a float) is a validation error, not a TypeError at step 40 of a run.
# Types are followed through the AST (attributes of pydantic outputs, list elements, dict values,
# arithmetic results); whatever cannot be known (Any, unannotated tools, other classes) passes.

_Types = tuple[Any, ...] | None  # the alternatives a value may have; None: unknown
_ORDER = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
_EQUALITY = {ast.Eq: "==", ast.NotEq: "!=", ast.Is: "is", ast.IsNot: "is not"}
_ARITH = {
    ast.Add: ("+", "add"),
    ast.Sub: ("-", "sub"),
    ast.Mult: ("*", "mul"),
    ast.Div: ("/", "truediv"),
    ast.FloorDiv: ("//", "floordiv"),
    ast.Mod: ("%", "mod"),
    ast.Pow: ("**", "pow"),
}
_SEQUENCES = {"str", "list", "tuple", "dict", "set"}


def _alternatives(tp: Any) -> _Types:
    """The concrete types a value of annotation ``tp`` may have (unions expanded)."""
    if tp is Any or tp is object or isinstance(tp, typing.TypeVar):
        return None
    if tp is None or tp is type(None):
        return (type(None),)
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _alternatives(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(tp):
            options = _alternatives(arg)
            if options is None:
                return None
            out.extend(options)
        return tuple(dict.fromkeys(out))
    if origin is typing.Literal:
        return tuple(dict.fromkeys(type(v) for v in typing.get_args(tp)))
    return (tp,)


def _category(tp: Any) -> str:
    """number, str, list, tuple, dict, set, none, model, or other (anything may work)."""
    origin = typing.get_origin(tp) or tp
    if origin is type(None):
        return "none"
    if not isinstance(origin, type):
        return "other"
    if issubclass(origin, (bool, int, float)):
        return "number"
    if issubclass(origin, str):
        return "str"
    if issubclass(origin, BaseModel):
        return "model"
    for name, bases in (
        ("tuple", (tuple,)),
        ("list", (list, abc.Sequence)),
        ("dict", (dict, abc.Mapping)),
        ("set", (set, frozenset, abc.Set)),
    ):
        if issubclass(origin, bases):
            return name
    return "other"


def _defines(tp: Any, method: str) -> bool:
    """Whether a pydantic model class defines ``method`` itself (not BaseModel/object's)."""
    own = getattr(tp, method, None)
    return (
        own is not None
        and own is not getattr(BaseModel, method, None)
        and own is not getattr(object, method, None)
    )


def _describe(tp: Any) -> str:
    if tp is type(None):
        return "None"
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return re.sub(r"\btyping\.", "", repr(tp))


def _describe_all(options: tuple[Any, ...]) -> str:
    return " | ".join(_describe(tp) for tp in options)


def _numeric_fields(tp: Any) -> list[str]:
    fields = getattr(tp, "model_fields", {})
    return [
        name
        for name, info in fields.items()
        if (opts := _alternatives(info.annotation)) is not None
        and any(_category(o) == "number" and o is not bool for o in opts)
    ]


class _TypeChecker:
    def __init__(self, source: str, field_types: Mapping[str, Any]) -> None:
        self.source, self.types = source, field_types
        self.problems: list[str] = []

    def text(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.source, node) or ast.unparse(node)

    def fail(self, message: str) -> _Types:
        self.problems.append(message)
        return None

    def hint(self, options: tuple[Any, ...], node: ast.AST) -> str:
        models = [tp for tp in options if _category(tp) == "model"]
        fields = _numeric_fields(models[0]) if models else []
        if fields:
            return f"; use one of its fields, e.g. {self.text(node)}.{fields[0]}"
        return ""

    # ---------------------------------------------------------------- inference
    def infer(self, node: ast.AST) -> _Types:
        method = getattr(self, f"_{type(node).__name__}", None)
        return method(node) if method is not None else None

    def _Constant(self, node: ast.Constant) -> _Types:
        return (type(node.value),)

    def _Name(self, node: ast.Name) -> _Types:
        if node.id in CONSTANT_NAMES:
            return (type(CONSTANT_NAMES[node.id]),)
        return _alternatives(self.types[node.id]) if node.id in self.types else None

    def _List(self, node: ast.List) -> _Types:
        for item in node.elts:
            self.infer(item)
        return (list,)

    def _Tuple(self, node: ast.Tuple) -> _Types:
        for item in node.elts:
            self.infer(item)
        return (tuple,)

    def _BoolOp(self, node: ast.BoolOp) -> _Types:
        return _union([self.infer(v) for v in node.values])

    def _IfExp(self, node: ast.IfExp) -> _Types:
        self.infer(node.test)
        return _union([self.infer(node.body), self.infer(node.orelse)])

    def _UnaryOp(self, node: ast.UnaryOp) -> _Types:
        operand = self.infer(node.operand)
        if isinstance(node.op, ast.Not):
            return (bool,)
        if operand is None:
            return None
        method = "__neg__" if isinstance(node.op, ast.USub) else "__pos__"
        ok = [tp for tp in operand if _category(tp) in ("number", "other") or _defines(tp, method)]
        if not ok:
            sign = "-" if isinstance(node.op, ast.USub) else "+"
            return self.fail(
                f"'{sign}' needs a number, but {self.text(node.operand)} is {_describe_all(operand)}"
            )
        return tuple(int if tp is bool else tp for tp in ok)

    def _Attribute(self, node: ast.Attribute) -> _Types:
        value = self.infer(node.value)
        if value is None:
            return None
        out: list[Any] = []
        for tp in value:
            if _category(tp) != "model":
                return None  # str methods, float.real, ...: not followed
            fields = tp.model_fields
            if node.attr in fields:
                options = _alternatives(fields[node.attr].annotation)
            elif node.attr in tp.model_computed_fields:
                options = _alternatives(tp.model_computed_fields[node.attr].return_type)
            elif hasattr(tp, node.attr):
                options = None  # a property or method: its type is not declared to pydantic
            else:
                close = difflib.get_close_matches(node.attr, list(fields), n=1)
                suggestion = f" (did you mean '{close[0]}'?)" if close else ""
                return self.fail(
                    f"'{self.text(node.value)}' is a {_describe(tp)}, which has no attribute "
                    f"'{node.attr}'{suggestion} (fields: {', '.join(fields)})"
                )
            if options is None:
                return None
            out.extend(options)
        return tuple(dict.fromkeys(out))

    def _Subscript(self, node: ast.Subscript) -> _Types:
        value = self.infer(node.value)
        self.infer(node.slice)
        if value is None:
            return None
        sliced = isinstance(node.slice, ast.Slice)
        results: list[_Types] = []
        for tp in value:
            category, args = _category(tp), typing.get_args(tp)
            if category in ("none", "number", "set") or (
                category == "model" and not _defines(tp, "__getitem__")
            ):
                continue  # cannot be indexed (None only fails when the value is None)
            if category == "str":
                results.append((str,))
            elif sliced:
                results.append((tp,))
            elif category == "list" and args:
                results.append(_alternatives(args[0]))
            elif category == "dict" and len(args) == 2:
                results.append(_alternatives(args[1]))
            else:
                results.append(None)  # a tuple, a bare list/dict, a model with __getitem__, ...
        if results:
            return _union(results)
        if all(_category(tp) == "none" for tp in value):
            return None
        return self.fail(f"{self.text(node.value)} is {_describe_all(value)}, which cannot be indexed")

    def _Call(self, node: ast.Call) -> _Types:
        args = [self.infer(arg) for arg in node.args]
        name = node.func.id if isinstance(node.func, ast.Name) else ""
        if name in ("any", "all"):
            return (bool,)
        if name == "len":
            if args and args[0] is not None:
                sized = [
                    tp for tp in args[0] if _category(tp) in _SEQUENCES | {"other"} or _defines(tp, "__len__")
                ]
                if not sized:
                    return self.fail(
                        f"len() needs a text, list or mapping, but {self.text(node.args[0])} is "
                        f"{_describe_all(args[0])}"
                    )
            return (int,)
        if name in ("abs", "round"):
            if args and args[0] is not None:
                if not any(_category(tp) in ("number", "other") for tp in args[0]):
                    return self.fail(
                        f"{name}() needs a number, but {self.text(node.args[0])} is {_describe_all(args[0])}"
                        f"{self.hint(args[0], node.args[0])}"
                    )
            if name == "round":
                return (int,) if len(args) == 1 else (float,)
            return args[0] if args else None
        if name == "sum":
            return (int, float)
        if name in ("min", "max") and len(args) > 1:
            return _union(args)
        return None

    def _Compare(self, node: ast.Compare) -> _Types:
        left_node, left = node.left, self.infer(node.left)
        for operator, right_node in zip(node.ops, node.comparators):
            right = self.infer(right_node)
            if left is not None and right is not None:
                self.compare(operator, left_node, left, right_node, right)
            left_node, left = right_node, right
        return (bool,)

    def _BinOp(self, node: ast.BinOp) -> _Types:
        left, right = self.infer(node.left), self.infer(node.right)
        if left is None or right is None:
            return None
        symbol, name = _ARITH[type(node.op)]
        results = [
            result
            for lt in left
            for rt in right
            if (result := _arithmetic(type(node.op), lt, rt, name)) is not False
        ]
        if not results:
            return self.fail(
                f"cannot compute {self.text(node.left)} {symbol} {self.text(node.right)}: "
                f"{_describe_all(left)} {symbol} {_describe_all(right)} is not defined"
                f"{self.hint(left, node.left) or self.hint(right, node.right)}"
            )
        if None in results:
            return None
        return tuple(dict.fromkeys(results))

    # ---------------------------------------------------------------- checks
    def compare(
        self,
        op: ast.cmpop,
        left_node: ast.AST,
        left: tuple[Any, ...],
        right_node: ast.AST,
        right: tuple[Any, ...],
    ) -> None:
        a, b = self.text(left_node), self.text(right_node)
        if type(op) in _ORDER:
            if not any(_orderable(lt, rt, type(op)) for lt in left for rt in right):
                self.fail(
                    f"cannot compare {a} ({_describe_all(left)}) with {b} ({_describe_all(right)}) "
                    f"using '{_ORDER[type(op)]}'{self.hint(left, left_node) or self.hint(right, right_node)}"
                )
        elif type(op) in _EQUALITY:
            if not any(_may_equal(lt, rt) for lt in left for rt in right):
                self.fail(
                    f"{a} ({_describe_all(left)}) is never equal to {b} ({_describe_all(right)}), so "
                    f"'{_EQUALITY[type(op)]}' always gives the same answer"
                    f"{self.hint(left, left_node) or self.hint(right, right_node)}"
                )
        elif isinstance(op, (ast.In, ast.NotIn)):
            if not any(_contains(container, item) for container in right for item in left):
                self.fail(
                    f"{a} in {b}: {b} is {_describe_all(right)}, which cannot contain {_describe_all(left)}"
                )


def _union(options: list[_Types]) -> _Types:
    if any(o is None for o in options):
        return None
    return tuple(dict.fromkeys(tp for o in options for tp in o or ()))


def _orderable(left: Any, right: Any, op: type[ast.cmpop]) -> bool:
    lc, rc = _category(left), _category(right)
    if "other" in (lc, rc):
        return True
    if lc == "model" or rc == "model":
        method, reflected = {
            ast.Lt: ("__lt__", "__gt__"),
            ast.LtE: ("__le__", "__ge__"),
            ast.Gt: ("__gt__", "__lt__"),
            ast.GtE: ("__ge__", "__le__"),
        }[op]
        return (lc == "model" and _defines(left, method)) or (rc == "model" and _defines(right, reflected))
    return lc == rc and lc in ("number", "str", "list", "tuple", "set")


def _may_equal(left: Any, right: Any) -> bool:
    lc, rc = _category(left), _category(right)
    if "other" in (lc, rc) or "none" in (lc, rc) or lc == rc:
        return True
    if lc == "model" or rc == "model":
        model = left if lc == "model" else right
        return _defines(model, "__eq__") or {lc, rc} == {"model"}
    return False


def _contains(container: Any, item: Any) -> bool:
    cc, ic = _category(container), _category(item)
    if cc in ("other", "none") or ic == "other":
        return True
    if cc == "str":
        return ic == "str"
    if cc == "model":
        return _defines(container, "__contains__")
    return cc in ("list", "tuple", "dict", "set")


def _arithmetic(op: type[ast.operator], left: Any, right: Any, name: str) -> Any:
    """The result type of ``left op right``; None when unknown, False when it cannot work."""
    lc, rc = _category(left), _category(right)
    if "other" in (lc, rc):
        return None
    if lc == "model" or rc == "model":
        ok = (lc == "model" and _defines(left, f"__{name}__")) or (
            rc == "model" and _defines(right, f"__r{name}__")
        )
        return None if ok else False
    if lc == rc == "number":
        if op is ast.Div or float in (left, right):
            return float
        return int
    if op is ast.Add and lc == rc and lc in ("str", "list", "tuple"):
        return typing.get_origin(left) or left
    if op is ast.Sub and lc == rc == "set":
        return left
    if op is ast.Mult:
        for sequence, times, category in ((left, right, lc), (right, left, rc)):
            if category in ("str", "list", "tuple") and _category(times) == "number" and times is not float:
                return typing.get_origin(sequence) or sequence
        return False
    if op is ast.Mod and lc == "str":
        return str
    return False


def check_types(source: str, field_types: Mapping[str, Any]) -> list[str]:
    """Problems with the operand types of ``source`` given the state's ``field_types``.

    Call after :func:`check_expression` (the expression must be safe). Each problem is one
    sentence naming the sub-expression, its type and what would work instead.
    """
    tree = ast.parse(source.strip(), mode="eval")
    checker = _TypeChecker(source.strip(), field_types)
    checker.infer(tree.body)
    return list(dict.fromkeys(checker.problems))
