"""The one Jinja environment: flow templates (prompts, tool arguments, ``set`` values) and
intrinsic templates (input turns, adapted inputs) render here, under the same limits.

Templates come from flow files that may be shared, and intrinsic templates travel with adapters
from elsewhere, so they run in Jinja's ``SandboxedEnvironment``
with ``StrictUndefined`` (a typo or a field no node has written yet is an error, not an empty
string). On top of the sandbox, :func:`check_template` refuses at *validation* time anything that
touches underscore names (``{{ ''.__class__ }}``, ``{{ cycler.__init__.__globals__ }}``), so an
unsafe template stops the flow before any node runs. The default Jinja globals that only exist to
be escaped from (``cycler``, ``joiner``, ``lipsum``) are removed, and ``*``/``**`` are bounded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2
import simpleeval
from jinja2 import StrictUndefined, meta, nodes
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from alora_flows.errors import FlowDefinitionError, FlowRuntimeError, UnsafeExpressionError
from alora_flows.sandbox.expressions import (
    MAX_FORMAT_WIDTH,
    check_format_widths,
    safe_add,
    safe_mod,
    safe_mult,
    safe_pow,
)
from alora_flows.sandbox.text import numbered, split_sentences

simpleeval_errors = (simpleeval.IterableTooLong, simpleeval.NumberTooHigh)


def join_filter(value: Any, separator: str = "", attribute: str | None = None) -> str:
    """``{{ documents | join('\\n') }}``: join items as text.

    Unlike Jinja's builtin, a plain string is returned unchanged (not split into characters), so a
    tool may return one document or a list of them, and items are rendered with ``str()`` (an
    intrinsic output such as a rewrite renders as its text).
    """
    if isinstance(value, str):
        return value
    if not isinstance(value, Iterable):
        return str(value)
    items = value
    if attribute is not None:
        if attribute.startswith("_"):
            raise SecurityError(f"join(attribute={attribute!r}) is not allowed")
        items = [_env.getattr(item, attribute) for item in value]
    return str(separator).join(str(item) for item in items)


class _Environment(SandboxedEnvironment):
    """Sandbox with bounded arithmetic: ``{{ 'a' * 10**9 }}`` fails instead of eating memory."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    _binops = {"**": safe_pow, "*": safe_mult, "+": safe_add, "%": safe_mod}

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        try:
            return self._binops[operator](left, right)
        except Exception as exc:  # simpleeval's NumberTooHigh / IterableTooLong
            raise SecurityError(str(exc)) from None

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Bound the string methods that take a width (``'a'.center(10**6)``, ``'{:>N}'.format``)."""
        owner, name = getattr(__obj, "__self__", None), getattr(__obj, "__name__", "")
        if isinstance(owner, str):
            try:
                if name in _WIDTH_METHODS and any(isinstance(a, int) and a > MAX_FORMAT_WIDTH for a in args):
                    raise SecurityError(f"str.{name} width above {MAX_FORMAT_WIDTH}")
            except simpleeval_errors as exc:
                raise SecurityError(str(exc)) from None
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        """Check ``'{:>N}'.format`` widths where the sandbox hands out its format wrapper."""
        if isinstance(obj, str) and attribute in ("format", "format_map"):
            try:
                check_format_widths(obj)
            except simpleeval_errors as exc:
                raise SecurityError(str(exc)) from None
        return super().getattr(obj, attribute)


_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


def format_filter(value: Any, *args: Any, **kwargs: Any) -> str:
    """Jinja's ``format`` filter with bounded widths."""
    try:
        check_format_widths(str(value))
    except simpleeval_errors as exc:
        raise SecurityError(str(exc)) from None
    return str(value) % (kwargs or args)


def bounded_range(*args: int) -> range:
    """``range`` limited to 1,000 items: templates loop over state, not over big counters."""
    r = range(*args)
    if len(r) > 1_000:
        raise SecurityError("range() in templates is limited to 1,000 items")
    return r


def _make_env() -> _Environment:
    env = _Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.globals = {"range": bounded_range, "dict": dict}
    env.filters["join"] = join_filter
    env.filters["format"] = format_filter
    env.filters["sentences"] = split_sentences
    env.filters["numbered"] = numbered
    return env


_env = _make_env()
GLOBAL_NAMES = frozenset(_env.globals)


@dataclass(frozen=True)
class TemplateInfo:
    """What static analysis learned about a template."""

    source: str
    names: frozenset[str]  # state names the template reads


def _unsafe_part(ast: nodes.Template) -> str | None:
    """Name of the first underscore attribute/key/name the template touches, if any."""
    for node in ast.find_all(
        (nodes.Getattr, nodes.Getitem, nodes.Name, nodes.Filter, nodes.Test, nodes.Call)
    ):
        if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            return node.attr
        if (
            isinstance(node, nodes.Getitem)
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)
            and node.arg.value.startswith("_")
        ):
            return node.arg.value
        if isinstance(node, nodes.Name) and node.name.startswith("_"):
            return node.name
        if isinstance(node, (nodes.Filter, nodes.Test, nodes.Call)):
            # attr('__class__'), map(attribute='__x'), selectattr('_y'): string arguments that
            # name underscore attributes
            for arg in [*node.args, *(kw.value for kw in node.kwargs)]:
                if isinstance(arg, nodes.Const) and isinstance(arg.value, str) and arg.value.startswith("_"):
                    return arg.value
    return None


@lru_cache(maxsize=1024)
def check_template(source: str) -> TemplateInfo:
    """Parse ``source`` without rendering it; refuse unsafe templates; list the names it reads."""
    if not isinstance(source, str):
        raise FlowDefinitionError(f"a template must be a string, not {type(source).__name__}")
    try:
        ast = _env.parse(source)
        _env.compile(ast)  # unknown filters/tests are only found when compiling
    except jinja2.TemplateSyntaxError as exc:
        raise FlowDefinitionError(
            f"template syntax error: {exc.message} (template line {exc.lineno})"
        ) from None
    bad = _unsafe_part(ast)
    if bad is not None:
        raise UnsafeExpressionError(
            f"template touches {bad!r}: names starting with '_' are not allowed in templates"
        )
    names = frozenset(meta.find_undeclared_variables(ast) - GLOBAL_NAMES)
    return TemplateInfo(source, names)


class TemplateError(Exception):
    """Rendering a (statically safe) template failed on this state; the runner wraps it."""


@lru_cache(maxsize=1024)
def _compiled(source: str) -> jinja2.Template:
    check_template(source)
    return _env.from_string(source)


def render(source: str, context: Mapping[str, Any]) -> str:
    """Render ``source`` with ``context`` (state values) in the sandbox.

    Raises :class:`UnsafeExpressionError` for unsafe templates (before rendering) and
    :class:`TemplateError` when rendering fails (undefined name, sandbox violation, ...).
    """
    template = _compiled(source)
    try:
        return template.render(**context)
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"{exc.message} (no node has written it on this path?)") from None
    except SecurityError as exc:
        raise TemplateError(f"refused by the sandbox: {exc}") from None
    except Exception as exc:
        raise TemplateError(f"{type(exc).__name__}: {exc}") from None


_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{((?:(?!\}\}|\{\{).)*)\}\}\s*$", re.DOTALL)


def single_expression(source: str) -> str | None:
    """The expression of a template that is exactly ``{{ expr }}`` (else None)."""
    match = _SINGLE_EXPRESSION.match(source) if isinstance(source, str) else None
    return match.group(1).strip() if match else None


def evaluate_native(source: str, context: Mapping[str, Any]) -> Any:
    """Value of a ``{{ expr }}`` template as a Python object (not its text), in the sandbox.

    Used where a consumer declares it wants a non-text value (a tool parameter typed ``list``).
    """
    expr = single_expression(source)
    if expr is None:
        raise TemplateError(f"{source!r} is not a single {{{{ expression }}}}")
    check_template(source)
    try:
        value = _compiled_expression(expr)(**context)
        if isinstance(value, jinja2.Undefined):
            value._fail_with_undefined_error()
        return value
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"{exc.message} (no node has written it on this path?)") from None
    except SecurityError as exc:
        raise TemplateError(f"refused by the sandbox: {exc}") from None
    except Exception as exc:
        raise TemplateError(f"{type(exc).__name__}: {exc}") from None


@lru_cache(maxsize=1024)
def _compiled_expression(expr: str) -> Any:
    return _env.compile_expression(expr, undefined_to_none=False)


def map_strings(value: Any, fn: Callable[[str, tuple[Any, ...]], Any], path: tuple[Any, ...] = ()) -> Any:
    """``value`` with every string in it (inside mappings, lists and tuples, as lists) replaced by
    ``fn(string, path)``, ``path`` being the keys and indices that lead to it: the one walk behind
    checking a literal's templates and rendering them."""
    if isinstance(value, str):
        return fn(value, path)
    if isinstance(value, Mapping):
        return {k: map_strings(v, fn, path + (k,)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [map_strings(v, fn, path + (i,)) for i, v in enumerate(value)]
    return value


def is_template(value: Any) -> bool:
    """Whether a string contains Jinja syntax (literal strings need no rendering)."""
    return isinstance(value, str) and any(tok in value for tok in ("{{", "{%", "{#"))


def render_template(source: str, context: Mapping[str, Any], *, what: str = "template") -> str:
    """Render a template that is not part of a flow file (an intrinsic's input or adapted input).

    Same checks and limits as flow templates; errors are typed and name ``what``: an unsafe or
    malformed template is an :class:`UnsafeExpressionError` / :class:`FlowDefinitionError`, a
    failure on these values (a missing variable) a :class:`FlowRuntimeError`.
    """
    try:
        check_template(source)
    except FlowDefinitionError as exc:
        raise type(exc)(f"{what}: {exc.detail}") from None
    try:
        return render(source, context)
    except TemplateError as exc:
        known = ", ".join(sorted(context)) or "none"
        raise FlowRuntimeError(f"{what}: {exc} (available: {known})") from None
