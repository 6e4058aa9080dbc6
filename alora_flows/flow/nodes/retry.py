"""Retry policies and error routes for steps that can fail for reasons outside the flow.

A tool calls a service that times out; a base-model turn on a shared GPU runs out of memory.
Such a node takes ``retry`` (how often, how long to wait, which errors) and ``on_error`` (where
the run goes when the last try failed); the runner applies both the same way for every kind that
derives from :class:`~alora_flows.flow.nodes.base.Retryable`::

    fetch:
      tool: "app.search:query"
      retry: {attempts: 4, backoff: 0.5, multiplier: 2, jitter: true, on: [timeout, ConnectionError]}
      on_error: apologise          # else the run fails as without a policy
      error_output: fetch_error    # optional: the error message, for the handler's templates

``on`` lists exception class names, matched against the error raised and every error it was
raised from (so ``ValueError`` matches a tool's ``ValueError`` that the engine wrapped), and
categories: ``any`` (the default), ``timeout`` (``TimeoutError``), ``connection``
(``ConnectionError``). A Ctrl-C (``KeyboardInterrupt``) and an interrupt are never retried.
"""

from __future__ import annotations

import random
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Categories an ``on`` list may name, and the exception classes each one covers.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "any": ("Exception",),
    "timeout": ("TimeoutError",),
    "connection": ("ConnectionError",),
}


class RetryPolicy(BaseModel):
    """``attempts`` tries in all; after try ``n`` fails, wait ``backoff * multiplier**(n-1)``
    seconds (at most ``max_backoff``; with ``jitter``, a uniform random part of it)."""

    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(3, ge=1, le=100)
    backoff: float = Field(0.0, ge=0.0)
    multiplier: float = Field(2.0, ge=1.0)
    max_backoff: float = Field(60.0, ge=0.0)
    jitter: bool = False
    on: list[str] = Field(default_factory=lambda: ["any"], min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _attempts_only(cls, value: Any) -> Any:
        """``retry: 3`` is short for ``retry: {attempts: 3}``."""
        if isinstance(value, int) and not isinstance(value, bool):
            return {"attempts": value}
        return value

    @field_validator("on")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in CATEGORIES and not name.isidentifier():
                raise ValueError(
                    f"{name!r} is neither an exception class name nor one of {', '.join(CATEGORIES)}"
                )
        return value

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after try ``attempt`` (1-based) failed."""
        delay = min(self.max_backoff, self.backoff * self.multiplier ** (attempt - 1))
        if self.jitter:
            delay = (rng or random).uniform(0.0, delay)
        return round(delay, 6)

    def matches(self, exc: BaseException) -> bool:
        """Whether ``exc`` (or an error it was raised from) is one this policy retries."""
        wanted = {cls for name in self.on for cls in CATEGORIES.get(name, (name,))}
        return bool(wanted & error_names(exc))


def error_names(exc: BaseException) -> set[str]:
    """Class names (with base classes) of ``exc`` and of the errors it was raised from."""
    names: set[str] = set()
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        names.update(cls.__name__ for cls in type(current).__mro__)
        current = current.__cause__
    return names


class ErrorRoute(BaseModel):
    """Where a step that failed for good sends the run, and the field that gets the message."""

    model_config = ConfigDict(extra="forbid")

    to: str
    output: str | None = None
