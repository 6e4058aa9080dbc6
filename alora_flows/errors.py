"""Typed errors: every error a user can cause, in one module, for the engine and the intrinsics.

Each error carries structured fields (``detail``, ``node``, ``file``, ``line``) instead of
messages rewritten on the way up: the runner attaches the node an error happened in with
:meth:`AloraFlowsError.at`, the validator the file and line, and ``str(error)`` composes them
(``flow.yaml:12: node 'answer': ...``). The CLI prints that one line and exits with
``exit_code``; anything that is not an ``AloraFlowsError`` is a bug and keeps its traceback
(shown with ``--debug``).
"""

from __future__ import annotations

from typing import Any, TypeVar

_E = TypeVar("_E", bound="AloraFlowsError")


class AloraFlowsError(Exception):
    """Base class of every error a user can cause."""

    exit_code: int = 1

    def __init__(
        self, message: str = "", *, node: str | None = None, file: str | None = None, line: int | None = None
    ) -> None:
        super().__init__(message)
        self.detail = message
        self.node, self.file, self.line = node, file, line

    def at(self: _E, *, node: str | None = None, file: str | None = None, line: int | None = None) -> _E:
        """Fill in where the error happened (fields already known are kept); returns ``self``."""
        self.node = self.node or node
        self.file = self.file or file
        self.line = self.line or line
        return self

    def with_detail(self: _E, detail: str) -> _E:
        """A copy of this error (same type and place) with another message."""
        twin = type(self).__new__(type(self))
        twin.__dict__.update(self.__dict__)
        Exception.__init__(twin, detail)
        twin.detail = detail
        return twin

    def __str__(self) -> str:
        where = ":".join(str(p) for p in (self.file, self.line) if p is not None)
        prefix = f"{where}: " if where else ""
        node = f"node '{self.node}': " if self.node else ""
        return f"{prefix}{node}{self.detail}"

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across processes (batch workers)
        return (_rebuild, (type(self), self.detail, self.node, self.file, self.line))


def _rebuild(
    cls: type[AloraFlowsError], detail: str, node: str | None, file: str | None, line: int | None
) -> AloraFlowsError:
    error = cls.__new__(cls)
    AloraFlowsError.__init__(error, detail, node=node, file=file, line=line)
    return error


# ---------------------------------------------------------------------- models and adapters
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


class InvocationMismatchError(AdapterError):
    """An adapter config records its invocation twice (the old ``invocation_string`` and PEFT's
    ``alora_invocation_tokens``) and the two name different activation points."""


class DocumentError(AloraFlowsError):
    """A document given to a session or an intrinsic is malformed (it needs an id and a text)."""


class ContextLengthError(AloraFlowsError):
    """The conversation (plus the tokens to generate) would exceed the model's context length."""


# ---------------------------------------------------------------------- intrinsics
class IntrinsicOutputError(AloraFlowsError):
    """An intrinsic produced output that its parser could not turn into the typed result."""


class IntrinsicInputError(AloraFlowsError):
    """An intrinsic call lacks an input its adapter reads (an instruction placeholder without a
    value, documents it needs, a conversation that does not end where the adapter expects)."""


class IntrinsicSpecError(AloraFlowsError, ValueError):
    """An intrinsic spec (Python or ``intrinsic.yaml``) is invalid or does not fit the tokenizer."""


class UnknownIntrinsicError(AloraFlowsError, KeyError):
    """No spec is known under that name. (A ``KeyError`` too, for dict-like callers.)"""

    __str__ = AloraFlowsError.__str__  # KeyError would quote the message


class IntrinsicConflictError(AloraFlowsError, ValueError):
    """A different spec is already registered under that name."""


# ---------------------------------------------------------------------- flows
class FlowDefinitionError(AloraFlowsError):
    """A flow definition is invalid. Names the file, line and node when they are known."""

    exit_code = 2


class UnsafeExpressionError(FlowDefinitionError):
    """An expression or template tried something outside the safe subset (calls, dunders, imports)."""


class FlowInputError(AloraFlowsError):
    """The inputs given to a run do not match the flow's ``inputs:`` (missing, unknown, bad type)."""

    exit_code = 2


class FlowRuntimeError(AloraFlowsError):
    """A flow failed while running (a tool raised, max_steps reached, ...)."""


class UsageError(AloraFlowsError):
    """A command-line option or argument is invalid."""

    exit_code = 2


# ---------------------------------------------------------------------- runs
class RunDirError(AloraFlowsError):
    """A run directory cannot be created, read or resumed (missing, corrupt, already in use)."""

    exit_code = 2


class RunInterruptedError(AloraFlowsError):
    """The run was interrupted (Ctrl-C). The message says how to resume it, when that is possible."""

    exit_code = 130


# ---------------------------------------------------------------------- batch and serve
class BatchFileError(AloraFlowsError):
    """A ``batch`` inputs or results file is malformed (names the file and line)."""

    exit_code = 2


class WorkerError(AloraFlowsError):
    """Batch or serve workers could not load the flow, or were all lost."""


class RunTimeoutError(FlowRuntimeError):
    """A run passed its time limit (the server's per-request timeout) and was stopped."""


class RunCancelledError(FlowRuntimeError):
    """A run was stopped because nobody waits for it any more (the client went away)."""
