"""The serving core, without HTTP: one loaded flow, a bounded number of runs, per-run deadlines.

Runs execute in a pool of ``concurrency`` threads that share one backend, each with its own
session. With batching (``ServeSettings.batching``, on by default when ``concurrency > 1``) the
forwards of the runs that are ready at the same moment run as one forward
(:mod:`alora_flows.core.batching`): on a CPU a decode step's cost is reading the weights, so eight
runs decoding together cost little more than one (``benchmarks/results/serve_batching.md``).
Without it the backend's lock serialises forward passes, and more threads interleave runs rather
than speed them up. At most ``concurrency + queue`` runs are admitted at once; beyond that
:meth:`FlowService.admit` refuses (HTTP 429), so a burst cannot pile up unbounded work.

A run's deadline starts when it is admitted (queue wait included). A thread cannot be killed, so
a run past its deadline is stopped at its next step or generated token (:class:`StopCheck`); its
slot is counted as busy until its thread really ends.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from alora_flows.batch.worker import FlowWorker, StopCheck, WorkerConfig
from alora_flows.core.batching import BatchedBackend, BatchingStats, batchable
from alora_flows.errors import RunCancelledError
from alora_flows.flow import Flow, RunResult
from alora_flows.flow.state import INPUT_TYPES
from alora_flows.flow.trace import Listener


class ServeSettings(BaseModel):
    """How ``alora-flows serve`` runs (its command-line options)."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = 8000
    concurrency: int = Field(2, ge=1, description="runs in progress at once (threads sharing one backend)")
    queue: int = Field(16, ge=0, description="runs waiting for a thread; more are refused with 429")
    timeout: float = Field(120.0, gt=0, description="seconds a run may take, queue wait included")
    max_body_bytes: int = Field(1 << 20, ge=1, description="larger request bodies are refused with 413")
    api_key: str | None = Field(None, description="when set, /runs needs 'Authorization: Bearer KEY'")
    batching: bool | None = Field(
        None,
        description="run the ready forwards of concurrent runs as one forward; None (default): "
        "when concurrency > 1 (a lone run gains nothing from it)",
    )

    @property
    def batches(self) -> bool:
        """Whether runs share a batching backend: ``batching``, or by default ``concurrency > 1``.
        A model whose attention cannot be packed then runs its forwards one by one (no cost)."""
        return self.concurrency > 1 if self.batching is None else self.batching


class Busy(Exception):
    """The queue is full."""


def inputs_model(flow: Flow) -> type[BaseModel]:
    """A pydantic model of the flow's declared inputs (unknown keys refused): the request schema
    in the OpenAPI description, and the first check a request's inputs pass."""
    camel = "".join(part.capitalize() for part in flow.name.replace("_", "-").split("-") if part.isalnum())
    fields: dict[str, Any] = {name: (INPUT_TYPES[tp], ...) for name, tp in flow.spec.inputs.items()}
    return create_model(f"{camel or 'Flow'}Inputs", __config__=ConfigDict(extra="forbid"), **fields)


class Admission:
    """A run let in: its deadline, and how to stop it."""

    def __init__(self, timeout: float) -> None:
        self.stop = StopCheck(timeout)


class FlowService:
    """One flow served: loading in the background, admission, runs in threads."""

    def __init__(
        self,
        config: WorkerConfig,
        settings: ServeSettings,
        *,
        loader: Callable[[WorkerConfig], FlowWorker] = FlowWorker,
    ) -> None:
        # the serve setting decides whether the worker's runs share a batching backend
        self.config = config.model_copy(update={"batching": settings.batches})
        self.settings, self.loader = settings, loader
        self.flow = config.flow()  # parsed and validated now: a bad flow never starts a server
        self.inputs_model = inputs_model(self.flow)
        self.worker: FlowWorker | None = None
        self.load_error: str | None = None
        self.loaded = threading.Event()
        self.executor = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="alora-serve")
        self._lock = threading.Lock()
        self._admitted: set[Admission] = set()  # runs whose thread has not ended (queued included)

    # ------------------------------------------------------------------ loading
    def start_loading(self) -> threading.Thread:
        """Load the model and adapters in a background thread (``/readyz`` says when done)."""
        thread = threading.Thread(target=self._load, name="alora-serve-load", daemon=True)
        thread.start()
        return thread

    def _load(self) -> None:
        try:
            self.worker = self.loader(self.config)
        except Exception as exc:
            self.load_error = str(exc) or type(exc).__name__
        finally:
            self.loaded.set()

    @property
    def ready(self) -> bool:
        return self.worker is not None

    @property
    def batching(self) -> BatchingStats | None:
        """What the batching scheduler has run (forwards, requests in them), or None when the runs'
        forwards are not batched (batching off, or a model whose attention cannot be packed)."""
        backend = self.worker.session_backend if self.worker is not None else None
        if isinstance(backend, BatchedBackend) and batchable(backend):
            return backend.stats
        return None

    def close(self) -> None:
        """Shutting down: queued runs are dropped, running ones stop at their next step, and the
        batching scheduler's thread ends (a forward still waiting for it fails, its run with it)."""
        with self._lock:
            admitted = list(self._admitted)
        for admission in admitted:
            admission.stop.stop(RunCancelledError("the server is shutting down"))
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.worker is not None:
            self.worker.release()

    # ------------------------------------------------------------------ running
    @property
    def capacity(self) -> int:
        return self.settings.concurrency + self.settings.queue

    @property
    def running(self) -> int:
        """Admitted runs whose thread has not ended (queued ones included)."""
        return len(self._admitted)

    def admit(self) -> Admission:
        """Let one run in, or raise :class:`Busy` when ``concurrency + queue`` runs are in."""
        admission = Admission(self.settings.timeout)
        with self._lock:
            if len(self._admitted) >= self.capacity:
                raise Busy()
            self._admitted.add(admission)
        return admission

    def _release(self, admission: Admission) -> None:
        with self._lock:
            self._admitted.discard(admission)

    def submit(
        self,
        admission: Admission,
        inputs: dict[str, Any],
        *,
        seed: int | None = None,
        listeners: Iterable[Listener] = (),
    ) -> Future[RunResult]:
        """Start an admitted run in the thread pool; the slot is freed when its thread ends."""
        worker = self.worker
        assert worker is not None, "submit() before the flow is loaded"
        try:
            future = self.executor.submit(
                worker.run, inputs, seed=seed, listeners=[admission.stop, *listeners]
            )
        except BaseException:
            self._release(admission)
            raise
        future.add_done_callback(lambda _: self._release(admission))
        return future

    async def run(
        self, admission: Admission, inputs: dict[str, Any], *, seed: int | None = None
    ) -> RunResult:
        """Run and wait at most until the deadline (then the run is told to stop and this raises
        ``asyncio.TimeoutError``; the run ends at its next step)."""
        future = self.submit(admission, inputs, seed=seed)
        deadline = admission.stop.deadline
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), remaining)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            self.abandon(admission, future)
            raise

    def abandon(self, admission: Admission, future: Future[Any]) -> None:
        """Nobody waits for this run any more: drop it if queued, else stop it at its next step."""
        future.cancel()
        admission.stop.stop(RunCancelledError("the request ended before the run did"))
