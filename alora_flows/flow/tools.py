"""Tool references: ``"package.module:function"`` <-> the callable it names.

Only the module named in the reference is imported (``importlib.import_module``) and only the one
attribute named after the colon is read from it: a flow file cannot reach anything it does not
name explicitly. Private names (``_x``) and dotted attribute paths are refused by the spec's regex.
"""

from __future__ import annotations

import functools
import importlib
import re
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alora_flows.errors import FlowDefinitionError

TOOL_REF_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z]\w*$")


def _import_near(module_name: str, base_dir: Path | None) -> Any:
    """Import ``module_name``; failing that, from ``base_dir`` (the flow file's folder), as
    ``model:`` paths are resolved relative to the flow file. Only a module whose file is in that
    folder is taken from there, and the folder is not left on ``sys.path``."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        top = module_name.split(".")[0]
        if (
            base_dir is None
            or exc.name != top
            or not ((base_dir / f"{top}.py").is_file() or (base_dir / top / "__init__.py").is_file())
        ):
            raise
    sys.path.insert(0, str(base_dir))
    try:
        return importlib.import_module(module_name)
    finally:
        sys.path.remove(str(base_dir))


def resolve_tool(ref: str, *, base_dir: Path | None = None) -> Callable[..., Any]:
    """Import the callable named by ``ref`` (``"package.module:function"``), also from a module
    next to the flow file (``base_dir``)."""
    if not TOOL_REF_RE.match(ref):
        raise FlowDefinitionError(f"tool must look like 'package.module:function', got {ref!r}")
    module_name, attr = ref.split(":")
    try:
        module = _import_near(module_name, base_dir)
    except ImportError as exc:
        raise FlowDefinitionError(
            f"cannot import module {module_name!r} for tool {ref!r}: {exc} "
            "(install it, or put it next to the flow file)"
        ) from None
    fn = getattr(module, attr, None)
    if fn is None:
        raise FlowDefinitionError(f"module {module_name!r} has no attribute {attr!r} (tool {ref!r})")
    if not callable(fn):
        raise FlowDefinitionError(f"tool {ref!r} is not callable")
    return fn


def tool_ref(fn: Callable[..., Any]) -> str | None:
    """The ``module:name`` reference that imports back to exactly ``fn``, or None if there is none
    (lambdas, closures, callables defined in ``__main__``)."""
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if not module or not name or module == "__main__":
        return None
    ref = f"{module}:{name}"
    if not TOOL_REF_RE.match(ref):
        return None
    try:
        return ref if resolve_tool(ref) is fn else None
    except FlowDefinitionError:
        return None


def tool_label(tool: str | Callable[..., Any]) -> str:
    """A short human name for a tool, for traces and drawings."""
    if isinstance(tool, str):
        return tool
    return tool_ref(tool) or getattr(tool, "__qualname__", None) or repr(tool)


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    target: Any = fn
    if isinstance(fn, type):
        target = fn.__init__  # type: ignore[misc] # a class: its __init__ carries the hints
    elif not hasattr(fn, "__annotations__"):
        target = type(fn).__call__  # a callable object: its __call__ carries the hints
    try:
        return typing.get_type_hints(target)
    except Exception:
        return {}


@functools.lru_cache(maxsize=512)
def _cached_parameter_types(fn: Callable[..., Any]) -> dict[str, Any]:
    return {k: v for k, v in _hints(fn).items() if k != "return"}


def parameter_types(fn: Callable[..., Any]) -> dict[str, Any]:
    """Annotated parameter types of a tool (unannotated parameters are left out).

    Cached: resolving annotations with ``get_type_hints`` on every tool step was a measurable
    share of the engine's per-step overhead."""
    try:
        return dict(_cached_parameter_types(fn))
    except TypeError:  # an unhashable callable object
        return {k: v for k, v in _hints(fn).items() if k != "return"}


def wants_value(annotation: Any) -> bool:
    """Whether a parameter asks for a value rather than text (anything but ``str``/``Any``)."""
    return annotation is not None and annotation is not str and annotation is not Any


def return_type(fn: Callable[..., Any]) -> Any:
    """The callable's return annotation, or ``Any`` when it has none or it cannot be resolved."""
    if isinstance(fn, type):
        return fn
    hint = _hints(fn).get("return", Any)
    return type(None) if hint is None else hint
