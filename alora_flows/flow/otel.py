"""OpenTelemetry export: one span per run and one per step (subflow steps nest), as a listener.

    pip install 'alora-flows[otel]'

    from alora_flows.flow.otel import OpenTelemetryListener
    flow.run(session, inputs, listeners=[OpenTelemetryListener()])   # the global tracer provider

Span ``flow <name>`` covers a run (a resume starts a new one, with ``alora.resumed``); inside it,
span ``step <node>`` covers each executed node, and a subflow step's span holds its child steps'
spans. Attributes (all ``alora.*``):

- run: ``flow``, ``model``, ``reuse``, ``max_steps``; at the end ``tokens.prefill`` /
  ``tokens.reused`` / ``tokens.generated`` (the trace totals), ``steps``, and ``interrupted`` or
  the error (span status ERROR) when it did not finish;
- step: ``node``, ``node.kind``, ``step.index``, ``path`` (enclosing subflows, "/"-joined),
  ``adapter``, ``tokens.prefill``, ``tokens.reused``, ``tokens.generated``, ``tokens.context``,
  ``next``, ``branch`` (the condition that chose ``next``), ``attempts``, ``error``; each failed
  try of a retried step is a span event ``retry``.

Spans are started with explicit parents, so a run streamed from a worker thread
(:mod:`alora_flows.flow.stream`) nests the same way.
"""

from __future__ import annotations

from typing import Any

try:
    from opentelemetry import trace as otel_trace
    from opentelemetry.trace import Span, Status, StatusCode
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "OpenTelemetry export needs the 'otel' extra: pip install 'alora-flows[otel]' "
        "(opentelemetry-api and opentelemetry-sdk)"
    ) from exc

from alora_flows.flow.trace import (
    Interrupted,
    RunFailed,
    RunFinished,
    RunListener,
    RunStarted,
    StepFinished,
    StepRetried,
    StepStarted,
    TraceStep,
)

TRACER_NAME = "alora_flows"


def _attributes(values: dict[str, Any]) -> dict[str, Any]:
    """OpenTelemetry attributes take str/bool/int/float (no None)."""
    return {f"alora.{key}": value for key, value in values.items() if value is not None}


def step_attributes(step: TraceStep) -> dict[str, Any]:
    """What a finished step tells its span."""
    return _attributes(
        {
            "adapter": step.adapter,
            "tokens.prefill": step.prefill_tokens,
            "tokens.reused": step.reused_tokens,
            "tokens.generated": step.generated_tokens,
            "tokens.context": step.context_tokens,
            "next": step.next,
            "branch": step.branch,
            "attempts": len(step.attempts) if step.attempts else None,
            "error": step.error,
        }
    )


class OpenTelemetryListener(RunListener):
    """A listener that exports runs as OpenTelemetry spans (see the module docstring).

    ``tracer_provider``: where spans go (default: the global provider that
    ``opentelemetry.trace.set_tracer_provider`` set). One listener may serve several runs one
    after another; give concurrent runs one listener each.
    """

    def __init__(self, tracer_provider: Any = None) -> None:
        self.tracer = otel_trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
        self.run_span: Span | None = None
        self.open: list[Span] = []  # step spans not yet ended, innermost last

    def on_run_started(self, event: RunStarted) -> None:
        self._end_all()
        attributes = _attributes(
            {"flow": event.flow, "model": event.model, "reuse": event.reuse, "max_steps": event.max_steps}
        )
        if event.resume is not None:
            attributes.update(
                _attributes(
                    {
                        "resumed": True,
                        "resume.node": event.resume.node,
                        "resume.session": event.resume.session,
                        "resume.prefill_tokens": event.resume.prefill_tokens,
                    }
                )
            )
        self.run_span = self.tracer.start_span(f"flow {event.flow}", attributes=attributes)

    def on_step_started(self, event: StepStarted) -> None:
        parent = self.open[-1] if self.open else self.run_span
        context = otel_trace.set_span_in_context(parent) if parent is not None else None
        attributes = _attributes(
            {
                "node": event.node,
                "node.kind": event.kind,
                "step.index": event.index,
                "adapter": event.adapter,
                "path": "/".join(event.path) if event.path else None,
            }
        )
        self.open.append(self.tracer.start_span(f"step {event.node}", context=context, attributes=attributes))

    def on_step_retried(self, event: StepRetried) -> None:
        if self.open:
            attempt = event.attempt
            self.open[-1].add_event(
                "retry",
                _attributes(
                    {
                        "attempt": attempt.number,
                        "error": attempt.error,
                        "error_type": attempt.error_type,
                        "delay": attempt.delay,
                    }
                ),
            )

    def on_step_finished(self, event: StepFinished) -> None:
        if not self.open:
            return
        span = self.open.pop()
        span.set_attributes(step_attributes(event.step))
        if event.step.error is not None:
            span.set_status(Status(StatusCode.ERROR, event.step.error))
        span.end()

    def on_interrupted(self, event: Interrupted) -> None:
        request = event.request
        for span in self.open:
            span.set_attribute("alora.interrupted", True)
        if self.run_span is not None:
            self.run_span.set_attributes(
                _attributes({"interrupted": True, "interrupt.node": "/".join([*request.path, request.node])})
            )
        self._finish(event.trace)

    def on_run_finished(self, event: RunFinished) -> None:
        self._finish(event.trace)

    def on_run_failed(self, event: RunFailed) -> None:
        status = Status(StatusCode.ERROR, event.error)
        for span in self.open:
            span.set_status(status)
        if self.run_span is not None:
            self.run_span.set_status(status)
            self.run_span.set_attributes(_attributes({"error": event.error, "error.node": event.node}))
        self._finish(event.trace)

    def _finish(self, trace: Any) -> None:
        if self.run_span is not None:
            totals = trace.totals
            self.run_span.set_attributes(
                _attributes(
                    {
                        "steps": len(trace.steps),
                        "tokens.prefill": totals.prefill_tokens,
                        "tokens.reused": totals.reused_tokens,
                        "tokens.generated": totals.generated_tokens,
                    }
                )
            )
        self._end_all()

    def _end_all(self) -> None:
        while self.open:
            self.open.pop().end()
        if self.run_span is not None:
            self.run_span.end()
            self.run_span = None
