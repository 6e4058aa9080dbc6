"""A flow loaded once (model, adapters, compiled graph) that runs input after input.

Batch workers (threads, processes, Ray actors) and the HTTP server all hold one
:class:`FlowWorker`: loading is the slow part (seconds), running an input is a new
:class:`~alora_flows.core.session.Session` on the shared backend. Loading goes through the
application layer (:func:`~alora_flows.app.load_flow_backend`), exactly as ``alora-flows run``.

:class:`WorkerConfig` is what travels to another process or machine: the flow's *text* (so every
worker runs the definition the driver validated) and the directory its relative paths are
relative to (adapters, a local model), which must exist where the worker runs.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from alora_flows.app import load_flow_backend
from alora_flows.batch.records import BatchInput, BatchResult
from alora_flows.core.backend import Backend
from alora_flows.core.batching import BatchedBackend
from alora_flows.core.session import Session
from alora_flows.errors import AloraFlowsError, RunCancelledError, RunTimeoutError
from alora_flows.flow import Flow, RunFailed, RunFinished, Runner, RunResult
from alora_flows.flow.trace import Listener


class WorkerConfig(BaseModel):
    """Everything a worker needs to load the flow, as plain data (picklable, JSON-able)."""

    flow_text: str
    flow_file: str  # for error messages (file:line) and the default base directory
    base_dir: str
    device: str | None = None
    reuse: bool = True
    seed: int | None = None
    threads: int | None = None  # torch threads in this worker's process (None: leave as is)
    #: Threads sharing this worker batch their forwards (``core.batching``): the steps of
    #: concurrent runs that are ready together run as one forward.
    batching: bool = False

    @classmethod
    def from_file(cls, flow_file: str | Path, **options: Any) -> WorkerConfig:
        path = Path(flow_file)
        return cls(
            flow_text=path.read_text(encoding="utf-8"),
            flow_file=str(path),
            base_dir=str(path.resolve().parent),
            **options,
        )

    def flow(self) -> Flow:
        """The flow, parsed and validated (no model loaded)."""
        flow = Flow.from_yaml_text(self.flow_text, file=self.flow_file)
        flow.validate()
        return flow


class StopCheck:
    """A run listener that stops the run at its next step or generated token once it is told to,
    or once its deadline passes (the server's per-request timeout, a client gone, Ctrl-C).

    A Python thread cannot be killed; a run can be stopped between two model calls. The run
    then fails with the reason, its session is dropped, and the backend (its lock released by the
    ``with`` block that raised) serves the next run.
    """

    def __init__(self, timeout: float | None = None) -> None:
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.reason: AloraFlowsError | None = None

    def stop(self, reason: AloraFlowsError) -> None:
        if self.reason is None:
            self.reason = reason

    def __call__(self, event: Any) -> None:
        if isinstance(event, (RunFailed, RunFinished)):
            return
        if self.reason is None and self.deadline is not None and time.monotonic() > self.deadline:
            self.reason = RunTimeoutError(f"the run took longer than its {self.timeout:g} s limit")
        if self.reason is not None:
            raise self.reason


def worker_name() -> str:
    """``host:pid``: which process ran an input (recorded in every result)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class FlowWorker:
    """The flow's backend and adapters, loaded once; :meth:`run` starts a new session per input.

    Several threads may call :meth:`run` at once: they share the backend (its lock serialises
    forward passes, or, with ``config.batching``, a scheduler runs their ready forwards as one)
    and nothing else.
    """

    def __init__(self, config: WorkerConfig) -> None:
        if config.threads:
            import torch

            torch.set_num_threads(config.threads)
        self.config = config
        self.flow = config.flow()
        self.backend, self.specs = load_flow_backend(self.flow, Path(config.base_dir), device=config.device)
        self.compiled = self.flow.compiled(self.specs)
        #: What the runs' sessions use: the backend, or a batching view of it.
        self.session_backend: Backend = BatchedBackend(self.backend) if config.batching else self.backend
        self.name = worker_name()
        self.closing = threading.Event()  # set: runs in progress stop at their next step

    def close(self) -> None:
        """Stop the runs in progress at their next step or token (they fail as cancelled)."""
        self.closing.set()

    def release(self) -> None:
        """Stop the batching scheduler's thread (after the runs have ended); a no-op without one."""
        if isinstance(self.session_backend, BatchedBackend):
            self.session_backend.close()

    def run(
        self, inputs: dict[str, Any], *, seed: int | None = None, listeners: Iterable[Listener] = ()
    ) -> RunResult:
        """Run one input on a new session; raises what the run raises."""

        def stop_when_closing(event: Any) -> None:
            if self.closing.is_set() and not isinstance(event, (RunFailed, RunFinished)):
                raise RunCancelledError("the worker is shutting down")

        session = Session(self.session_backend, reuse=self.config.reuse)
        runner = Runner(
            self.compiled,
            session,
            seed=self.config.seed if seed is None else seed,
            listeners=[stop_when_closing, *listeners],
        )
        return runner.run(inputs)

    def run_item(self, item: BatchInput) -> BatchResult:
        """Run one batch input; a failure becomes an ``error`` result, never an exception."""
        failed: list[RunFailed] = []
        started = time.perf_counter()

        def keep_failure(event: Any) -> None:
            if isinstance(event, RunFailed):
                failed.append(event)

        try:
            result = self.run(item.inputs, listeners=[keep_failure])
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # recorded; the batch goes on
            message = str(exc) if isinstance(exc, AloraFlowsError) else f"{type(exc).__name__}: {exc}"
            trace = failed[0].trace if failed else None
            return BatchResult(
                id=item.id,
                status="error",
                error=message or type(exc).__name__,
                final_state=trace.final_state if trace else {},
                totals=trace.totals.model_dump() if trace else {},
                path=[s.node for s in trace.steps] if trace else [],
                seconds=round(time.perf_counter() - started, 6),
                worker=self.name,
            )
        trace = result.trace
        return BatchResult(
            id=item.id,
            status="ok",
            final_state=trace.final_state,
            totals=trace.totals.model_dump(),
            path=[s.node for s in trace.steps],
            seconds=round(time.perf_counter() - started, 6),
            worker=self.name,
        )
