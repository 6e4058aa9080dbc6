"""The flow engine: define flows (Python or YAML), validate them, run them on a Session.

Modules, one job each: ``spec`` (pydantic models of a flow definition), ``expressions`` (safe
``when`` conditions), ``templates`` (sandboxed Jinja), ``yaml_io`` (YAML with line numbers),
``state`` (the typed state model), ``tools`` (importing ``module:function`` tools),
``validation`` (checks and compilation), ``graph`` (the :class:`Flow` API), ``runner`` (the step
loop), ``trace`` (trace records, events, JSON writer), ``stream`` (event iterators, async),
``otel`` (OpenTelemetry export, optional), ``draw`` (mermaid), ``live`` (rich view).
"""

from alora_flows.errors import FlowInputError
from alora_flows.flow.graph import Flow
from alora_flows.flow.nodes import RetryPolicy
from alora_flows.flow.runner import Runner, RunResult
from alora_flows.flow.spec import END, START, FlowSpec
from alora_flows.flow.trace import (
    Attempt,
    BranchTaken,
    Event,
    Frame,
    Interrupted,
    InterruptRequest,
    ResumeRecord,
    RunFailed,
    RunFinished,
    RunListener,
    RunStarted,
    StepFinished,
    StepRetried,
    StepStarted,
    TokenStreamed,
    Trace,
    TraceJsonWriter,
    TraceStep,
)
from alora_flows.flow.validation import CompiledFlow

__all__ = [
    "END",
    "START",
    "Attempt",
    "BranchTaken",
    "CompiledFlow",
    "Event",
    "Frame",
    "InterruptRequest",
    "Interrupted",
    "ResumeRecord",
    "RetryPolicy",
    "StepRetried",
    "Flow",
    "FlowInputError",
    "FlowSpec",
    "RunFailed",
    "RunFinished",
    "RunListener",
    "RunResult",
    "RunStarted",
    "Runner",
    "StepFinished",
    "StepStarted",
    "TokenStreamed",
    "Trace",
    "TraceJsonWriter",
    "TraceStep",
]
