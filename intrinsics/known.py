"""The process-wide registry of intrinsic specs: the built-ins and whatever users register.

Kept apart from adapter resolution (:mod:`intrinsics.registry`) so that spec files
(:mod:`intrinsics.specfile`) can refer to registered specs without an import cycle.
"""

from __future__ import annotations

import threading

from alora_flows.errors import IntrinsicConflictError, UnknownIntrinsicError
from intrinsics.builtin import builtin_specs
from intrinsics.spec import IntrinsicSpec

#: Other names people use for the built-ins (Granite's names among them).
ALIASES = {"certainty": "uncertainty", "query_rewrite": "rewrite", "hallucination_detection": "hallucination"}

_LOCK = threading.Lock()
_REGISTRY: dict[str, IntrinsicSpec] = {}


def canonical_name(name: str) -> str:
    return ALIASES.get(name, name)


def register_spec(spec: IntrinsicSpec, *, replace: bool = False) -> IntrinsicSpec:
    """Register ``spec`` under ``spec.name``. Re-registering an identical spec is a no-op;
    a *different* spec under a taken name needs ``replace=True`` (so a typo cannot silently
    shadow a built-in)."""
    if not isinstance(spec, IntrinsicSpec):
        raise TypeError(f"register_spec expects an IntrinsicSpec, got {type(spec).__name__}")
    with _LOCK:
        current = _REGISTRY.get(spec.name)
        if current is not None and current != spec and not replace:
            raise IntrinsicConflictError(
                f"an intrinsic named '{spec.name}' is already registered; pass replace=True to override it"
            )
        _REGISTRY[spec.name] = spec
    return spec


def unregister_spec(name: str) -> None:
    with _LOCK:
        _REGISTRY.pop(name, None)


def has_spec(name: str) -> bool:
    return name in _REGISTRY or canonical_name(name) in _REGISTRY


def get_spec(name: str) -> IntrinsicSpec:
    """The spec registered as ``name`` (aliases such as ``certainty`` accepted)."""
    spec = _REGISTRY.get(name) or _REGISTRY.get(canonical_name(name))
    if spec is None:
        raise UnknownIntrinsicError(
            f"unknown intrinsic '{name}' (registered: {', '.join(list_specs())}). Register it with "
            "intrinsics.register_spec(IntrinsicSpec(...)) or put an intrinsic.yaml next to its adapter"
        )
    return spec


def list_specs() -> list[str]:
    return sorted(_REGISTRY)


for _spec in builtin_specs():
    register_spec(_spec)
