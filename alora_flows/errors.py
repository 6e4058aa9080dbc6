"""Typed errors. Every error a user can cause is one of these, and its message says how to fix it.

The CLI turns any ``AloraFlowsError`` into a one-line message and a non-zero exit code; anything
else is a bug and keeps its traceback (shown with ``--debug``).
"""

from __future__ import annotations


class AloraFlowsError(Exception):
    """Base class of every error a user can cause."""

    exit_code: int = 1


class ModelResolutionError(AloraFlowsError):
    """The model spec could not be resolved to weights (embedded fetch failed, bad path, ...)."""


class AdapterError(AloraFlowsError):
    """An adapter cannot be used: missing files, wrong format, or it does not fit the base model."""


class AdapterMismatchError(AdapterError):
    """The adapter was trained for another base model, or its modules/shapes do not fit."""


class NotAnALoRAError(AdapterError):
    """A plain LoRA adapter was offered where an activated LoRA (with invocation tokens) is required."""


class InvocationNotFoundError(AdapterError):
    """The adapter's invocation sequence is not where the adapter is supposed to start."""


class ContextLengthError(AloraFlowsError):
    """The conversation (plus the tokens to generate) would exceed the model's context length."""


class IntrinsicOutputError(AloraFlowsError):
    """An intrinsic produced output that its parser could not turn into the typed result."""


class FlowDefinitionError(AloraFlowsError):
    """A flow definition is invalid. Names the file, line and node when they are known."""

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 node: str | None = None) -> None:
        self.file, self.line, self.node, self.detail = file, line, node, message
        where = ":".join(str(p) for p in (file, line) if p is not None)
        prefix = f"{where}: " if where else ""
        node_part = f"node '{node}': " if node else ""
        super().__init__(f"{prefix}{node_part}{message}")


class FlowRuntimeError(AloraFlowsError):
    """A flow failed while running (a tool raised, max_steps reached, ...)."""


class UnsafeExpressionError(FlowDefinitionError):
    """An expression or template tried something outside the safe subset (calls, dunders, imports)."""


class RunDirError(AloraFlowsError):
    """A run directory cannot be created, read or resumed (missing, corrupt, already in use)."""

    exit_code = 2


class RunInterruptedError(AloraFlowsError):
    """The run was interrupted (Ctrl-C). The message says how to resume it, when that is possible."""

    exit_code = 130
