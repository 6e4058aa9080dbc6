"""alora-flows: agentic LLM workflows on Activated LoRA (aLoRA).

One :class:`Session` holds a conversation's tokens and KV cache; base-model steps extend it and
aLoRA intrinsic steps reuse it, paying only for their own few tokens.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# Lazy exports: `alora-flows validate` and `draw` must not pay for importing torch.
_EXPORTS = {
    "Backend": "core.backend",
    "Session": "core.session",
    "CallStats": "core.session",
    "GenerateResult": "core.session",
    "InvokeResult": "core.session",
    "AloraFlowsError": "errors",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'alora_flows' has no attribute {name!r}")
