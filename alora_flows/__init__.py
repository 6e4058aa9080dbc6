"""alora-flows: agentic LLM workflows on Activated LoRA (aLoRA).

One :class:`Session` holds a conversation's tokens and KV cache; base-model steps extend it and
aLoRA intrinsic steps reuse it, paying only for their own few tokens.
"""

__version__ = "0.1.0"

from .backend import Backend  # noqa: E402
from .errors import AloraFlowsError  # noqa: E402
from .session import CallStats, GenerateResult, InvokeResult, Session  # noqa: E402

__all__ = ["Backend", "Session", "CallStats", "GenerateResult", "InvokeResult", "AloraFlowsError"]
