"""The application layer: load a flow's model and intrinsics, run it with listeners, in a run
directory or not. This is what the CLI calls, and what Python users call for the same behaviour.

Process-wide CPU settings (:mod:`alora_flows.core.tuning`: torch's thread count, the long-context
tuning) are applied here, by the entry point that owns the process, never at import and never by
constructing a :class:`~alora_flows.core.backend.Backend`. The CLI calls :func:`prepare_process`
first (so it can say how many threads it chose); :func:`load_backend` applies the default for
Python callers that did not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from alora_flows.core.backend import Backend
from alora_flows.core.documents import DocumentSet
from alora_flows.core.models import EMBEDDED
from alora_flows.core.session import Session
from alora_flows.core.tuning import (
    CpuSampler,
    ThreadChoice,
    apply_cpu_tuning,
    choose_threads,
    library_progress,
    set_torch_threads,
)
from alora_flows.errors import UsageError
from alora_flows.flow import Flow, TraceJsonWriter
from alora_flows.flow.catalog import CatalogLike, Intrinsic, as_catalog
from alora_flows.flow.runner import RunResult
from alora_flows.flow.trace import Trace
from alora_flows.runs.rundir import RunDir, check_resume_values, load_run, resume_run, run_with_dir


def model_spec(model: str, base_dir: Path) -> str:
    """A relative model path in a flow file is relative to the file."""
    local = base_dir / model
    if model != EMBEDDED and not Path(model).is_absolute() and local.exists():
        return str(local.resolve())
    return model


_threads: ThreadChoice | None = None


def resolve_device(device: str | None) -> str:
    """``None``/``"auto"`` -> ``"cuda"`` when a GPU is available, else ``"cpu"``; others unchanged."""
    if device in (None, "", "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def use_cpu(threads: int | None = None) -> ThreadChoice:
    """Set this process up to run a model on the CPU: torch threads (``threads``, else
    ``ALORA_FLOWS_THREADS``, else ``OMP_NUM_THREADS``, else the load-aware default) and the
    long-context tuning. The first choice sticks: a later call without ``threads`` keeps it."""
    global _threads
    if threads is None and _threads is not None:
        return _threads
    _threads = choose_threads(threads)
    set_torch_threads(_threads.threads)
    apply_cpu_tuning()
    return _threads


def prepare_process(
    *, threads: int | None = None, device: str | None = None, verbose: bool = False
) -> ThreadChoice | None:
    """What every model-running command does first: third-party progress bars only when
    ``verbose``, and the CPU settings when the model will run on the CPU (returns the thread
    choice then, None on a GPU)."""
    library_progress(verbose)
    if resolve_device(device).startswith("cpu"):
        return use_cpu(threads)
    return None


def load_backend(
    model: str = EMBEDDED, *, device: str | None = None, threads: int | None = None, progress: bool = True
) -> Backend:
    """:meth:`Backend.load` plus the process's CPU settings when the model runs on the CPU."""
    device = resolve_device(device)
    if device.startswith("cpu"):
        use_cpu(threads)
    return Backend.load(model, device=device, progress=progress)


def prefill_seconds_per_token(backend: Backend, *, short: int = 8, long: int = 136, reps: int = 2) -> float:
    """What one more prefilled token costs on this machine now: base-model forwards of ``short``
    and ``long`` tokens on fresh caches, the fastest of ``reps`` each, difference per token.

    The live summary multiplies the tokens reuse did not re-prefill by this to estimate the time
    it saved. Timed apart rather than read off the run's steps: those mix prefill with decoding,
    whose per-token cost (one forward each) is many times a prefilled token's.
    """
    ids = [int(backend.tokenizer.eos_token_id or 0)] * long
    best = {short: float("inf"), long: float("inf")}
    for _ in range(reps):
        for n in (short, long):
            started = time.perf_counter()
            backend.forward(ids[:n], backend.new_cache())
            best[n] = min(best[n], time.perf_counter() - started)
    return max(0.0, (best[long] - best[short]) / (long - short))


def attach_prefill_cost(live: Any, backend: Backend) -> None:
    """Let a live view time the prefill cost on ``backend`` if its summary needs it."""
    if live is not None and hasattr(live, "prefill_cost") and live.prefill_cost is None:
        live.prefill_cost = lambda: prefill_seconds_per_token(backend)


def load_intrinsics(
    flow: Flow, backend: Backend, base_dir: Path, catalog: CatalogLike = None
) -> dict[str, Intrinsic]:
    """Add the adapter of every intrinsic in the flow's ``intrinsics:`` (and its subflows') to
    ``backend``; return their specs (the spec that travels with an adapter wins over the library's)."""
    library = as_catalog(catalog)
    specs: dict[str, Intrinsic] = {}
    for name, (source, where) in flow.intrinsic_sources(base_dir, intrinsic_specs=catalog).items():
        resolved = library.resolve(
            name, source, backend.model_id, base_dir=where, tokenizer=backend.tokenizer
        )
        backend.add_adapter(name, resolved.path)
        specs[name] = resolved.spec
    return specs


def load_flow_backend(
    flow: Flow,
    base_dir: Path,
    *,
    device: str | None = None,
    threads: int | None = None,
    catalog: CatalogLike = None,
) -> tuple[Backend, dict[str, Intrinsic]]:
    """The flow's model and adapters, with their specs: what ``run``, ``resume`` and ``demo`` load."""
    backend = load_backend(model_spec(flow.spec.model, base_dir), device=device, threads=threads)
    return backend, load_intrinsics(flow, backend, base_dir, catalog)


def run_listeners(live: Any, trace_json: Path | None) -> list[Any]:
    """The live view (if any) and a trace-JSON writer (if asked for)."""
    out: list[Any] = [live] if live is not None else []
    if trace_json is not None:
        out.append(TraceJsonWriter(trace_json))
    return out


def live_context(live: Any) -> AbstractContextManager[Any]:
    """``live`` as a context manager, or a no-op one when there is no live view."""
    return live if live is not None else nullcontext()


def run_flow(
    flow: Flow,
    inputs: Mapping[str, Any],
    *,
    base_dir: Path,
    reuse: bool = True,
    seed: int | None = None,
    trace_json: Path | None = None,
    live: Any = None,
    device: str | None = None,
    threads: int | None = None,
    listeners: Sequence[Any] = (),
) -> RunResult:
    """Load the flow's model and adapters, then run it on a new session."""
    backend, specs = load_flow_backend(flow, base_dir, device=device, threads=threads)
    attach_prefill_cost(live, backend)
    with live_context(live):
        return flow.run(
            Session(backend, reuse=reuse),
            inputs,
            seed=seed,
            listeners=[*run_listeners(live, trace_json), *listeners],
            intrinsic_specs=specs,
        )


def run_in_dir(
    run_dir: Path,
    flow_file: Path,
    inputs: Mapping[str, Any],
    *,
    reuse: bool = True,
    seed: int | None = None,
    trace_json: Path | None = None,
    live: Any = None,
    device: str | None = None,
    threads: int | None = None,
) -> RunResult:
    """``alora-flows run FLOW.yaml --run-dir DIR``: create DIR, load the model, run, checkpoint.

    The flow that runs is parsed from the very text copied into DIR, so the copy is exactly what
    ran. A model or adapter that fails to load leaves DIR with status ``failed`` and no step:
    fix the cause and ``resume`` it.
    """
    text = Path(flow_file).read_text(encoding="utf-8")
    flow = Flow.from_yaml_text(text, file=str(flow_file))
    flow.validate().new_state(inputs)
    run = RunDir.create(
        run_dir,
        flow_text=text,
        flow_file=flow_file,
        flow_name=flow.name,
        model=flow.spec.model,
        inputs=inputs,
        reuse=reuse,
        seed=seed,
    )
    base_dir = Path(run.read_manifest().base_dir)
    try:
        backend, specs = load_flow_backend(flow, base_dir, device=device, threads=threads)
    except Exception as exc:  # the directory records why; Ctrl-C is recorded by the CLI
        run.update(status="failed", error=str(exc) or type(exc).__name__)
        raise
    session = Session(backend, reuse=reuse)
    attach_prefill_cost(live, backend)
    with live_context(live):
        return run_with_dir(
            run,
            flow,
            session,
            inputs,
            seed=seed,
            listeners=run_listeners(live, trace_json),
            intrinsic_specs=specs,
        )


def resume_in_dir(
    run_dir: Path,
    *,
    trace_json: Path | None = None,
    live: Any = None,
    device: str | None = None,
    threads: int | None = None,
    values: Mapping[str, Any] | None = None,
) -> RunResult:
    """``alora-flows resume DIR [--set k=v]``: load the run's model and adapters, then continue it
    (``values``: what a run paused at an interrupt waits for)."""
    saved = load_run(run_dir)
    check_resume_values(saved, values)  # before the model loads
    backend, specs = load_flow_backend(
        saved.flow, Path(saved.manifest.base_dir), device=device, threads=threads
    )
    attach_prefill_cost(live, backend)
    if live is not None and saved.checkpoint is not None:
        live.steps = list(saved.checkpoint.trace.steps)  # show the steps done before
    with live_context(live):
        return resume_run(
            run_dir,
            backend,
            intrinsic_specs=specs,
            saved=saved,
            listeners=run_listeners(live, trace_json),
            values=values,
        )


class ReuseComparison(BaseModel):
    """Timed runs of one flow input with and without cache reuse (see :func:`compare_reuse`)."""

    reuse: list[Trace]
    no_reuse: list[Trace]
    warmup: list[Trace] = []
    #: CPU seconds this process used in each run (all its threads): on a shared machine the wall
    #: time also measures the other processes, the CPU time mostly the work done.
    reuse_cpu_seconds: list[float] = []
    no_reuse_cpu_seconds: list[float] = []
    #: CPUs (of this process's) that other processes kept busy during each timed run (Linux).
    other_cpus: list[float] = []

    @staticmethod
    def _seconds(traces: Sequence[Trace]) -> list[float]:
        return [t.compute_totals().seconds for t in traces]

    @property
    def reuse_seconds(self) -> list[float]:
        return self._seconds(self.reuse)

    @property
    def no_reuse_seconds(self) -> list[float]:
        return self._seconds(self.no_reuse)

    @property
    def savings(self) -> list[float]:
        """Seconds saved in each round (the no-reuse run minus the reuse run of the same round)."""
        return [b - a for a, b in zip(self.reuse_seconds, self.no_reuse_seconds)]

    @property
    def cpu_savings(self) -> list[float]:
        """CPU seconds saved in each round."""
        return [b - a for a, b in zip(self.reuse_cpu_seconds, self.no_reuse_cpu_seconds)]

    @property
    def saved_prefill_tokens(self) -> int:
        return (
            self.no_reuse[0].compute_totals().prefill_tokens - self.reuse[0].compute_totals().prefill_tokens
        )

    @property
    def same_path(self) -> bool:
        """Whether every run took the same steps (greedy decoding must make it so)."""
        paths = {tuple(s.node for s in t.steps) for t in [*self.reuse, *self.no_reuse]}
        return len(paths) == 1


def compare_reuse(
    flow: Flow,
    backend: Backend,
    inputs: Mapping[str, Any],
    *,
    intrinsic_specs: Mapping[str, Intrinsic] | None = None,
    start: Session | None = None,
    repeats: int = 3,
    warmup: Sequence[bool] = (False,),
    seed: int | None = None,
    on_run: Callable[[str, Trace], None] | None = None,
) -> ReuseComparison:
    """Time ``flow`` on ``inputs`` with and without reuse, fairly: ``warmup`` runs first (one
    without reuse by default: the caller's own reuse run has usually warmed that path), then
    ``repeats`` rounds of one run each way, the order alternating from round to round, so that
    neither path pays the process's first calls or gains from the other's warm caches.

    Every run starts from ``start``'s conversation (empty by default): reuse runs on a fork of it
    (no copy), no-reuse runs on a new no-reuse session with the same messages and documents. ``on_run`` hears
    ``("warm-up" | "reuse" | "no reuse", trace)`` after each run (progress for a CLI).
    """
    if repeats < 1:
        raise UsageError(f"repeats must be at least 1, got {repeats}")
    messages = list(start.messages) if start is not None else []
    documents: Any = (
        DocumentSet(documents=start.documents, render_as=start.documents_as)
        if start is not None and start.documents
        else ()
    )

    def once(reuse: bool) -> tuple[Trace, float]:
        if reuse and start is not None and start.reuse:
            session = start.fork()
        else:
            session = Session(backend, reuse=reuse, messages=messages, documents=documents)
        cpu, load = time.process_time(), CpuSampler()
        trace = flow.run(session, inputs, seed=seed, intrinsic_specs=intrinsic_specs).trace
        cpu = time.process_time() - cpu
        others = load.other_cpus()
        if others is not None:
            result.other_cpus.append(round(others, 2))
        return trace, cpu

    result = ReuseComparison(reuse=[], no_reuse=[])
    for reuse in warmup:
        result.warmup.append(once(reuse)[0])
        result.other_cpus.clear()  # only the timed runs
        if on_run is not None:
            on_run("warm-up", result.warmup[-1])
    for round_ in range(repeats):
        for reuse in (False, True) if round_ % 2 == 0 else (True, False):
            trace, cpu = once(reuse)
            (result.reuse if reuse else result.no_reuse).append(trace)
            (result.reuse_cpu_seconds if reuse else result.no_reuse_cpu_seconds).append(cpu)
            if on_run is not None:
                on_run("reuse" if reuse else "no reuse", trace)
    return result
