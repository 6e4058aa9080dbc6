"""``alora-flows batch``: run a flow over every input of a JSONL file, resumably.

The flow and every input line are checked before any model loads; ids already in the results file
are skipped (resume); the rest run on the chosen workers (:func:`make_pool`) and are appended to
the results file as they finish (:mod:`.dispatch`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from alora_flows.batch.dispatch import BatchListener, BatchStats, WorkerPool, run_batch
from alora_flows.batch.local import ProcessPool, ThreadPool, default_threads
from alora_flows.batch.records import BatchInput, BatchResult, ResultsFile, pending_inputs, read_inputs
from alora_flows.batch.worker import WorkerConfig
from alora_flows.errors import UsageError

PoolKind = Literal["process", "thread"]

#: ``ray=LOCAL_RAY``: start a local Ray instance for this command instead of joining a cluster.
LOCAL_RAY = "local"


@dataclass
class BatchSummary:
    """How a batch command ended."""

    total: int  # inputs in the file
    skipped: int  # already in the results file when the command started
    retried_failed: int  # failed results removed by ``retry_failed`` (they ran again)
    stats: BatchStats = field(default_factory=BatchStats)
    unknown_results: int = 0  # results whose id is not in the inputs file
    workers: str = ""  # "2 process workers, 1 torch thread each"


def make_pool(
    config: WorkerConfig,
    *,
    workers: int,
    pool: PoolKind | str = "process",
    ray: str | None = None,
    cpus_per_worker: int = 1,
) -> WorkerPool:
    """The workers: Ray actors (``ray``: an address, or :data:`LOCAL_RAY`), else local threads
    or processes. One worker always runs in this process (no process start-up to pay)."""
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    if config.batching and (ray is not None or (pool != "thread" and workers > 1)):
        raise UsageError(
            "--batching batches the forwards of thread workers that share one backend: "
            "use it with --pool thread (processes and Ray actors each have a backend of their own)"
        )
    if ray is not None:
        from alora_flows.batch.ray_actors import RayPool

        address = None if ray in ("", LOCAL_RAY) else ray
        return RayPool(config, workers, address=address, cpus_per_worker=cpus_per_worker)
    if pool == "thread" or workers == 1:
        return ThreadPool(config, workers)
    if pool != "process":
        raise UsageError(f"--pool must be 'process' or 'thread', got {pool!r}")
    return ProcessPool(config, workers)


def worker_threads(threads: int | None, *, workers: int, pool: str, ray: str | None) -> int | None:
    """Torch threads per worker: as asked, else the cores shared out among local processes
    (Ray actors default to their ``cpus_per_worker``; threads keep the process's setting)."""
    if threads is None and ray is None and pool == "process" and workers > 1:
        return default_threads(workers)
    return threads


def describe_pool(pool: WorkerPool) -> str:
    threads = getattr(getattr(pool, "config", None), "threads", None)
    if pool.kind == "thread":  # one process, one backend: its torch threads are shared
        batching = getattr(getattr(pool, "config", None), "batching", False)
        return (
            f"{pool.size} thread worker(s) on one backend"
            + (", forwards batched" if batching else "")
            + (f", {threads} torch thread(s)" if threads else "")
        )
    return f"{pool.size} {pool.kind} worker(s)" + (f", {threads} torch thread(s) each" if threads else "")


@dataclass
class BatchPlan:
    """What a batch command will do, decided before any model loads."""

    config: WorkerConfig
    results: ResultsFile
    todo: list[BatchInput]
    summary: BatchSummary


def plan_batch(
    flow_file: str | Path,
    inputs_file: str | Path,
    out: str | Path,
    *,
    threads: int | None = None,
    device: str | None = None,
    reuse: bool = True,
    seed: int | None = None,
    retry_failed: bool = False,
    batching: bool = False,
) -> BatchPlan:
    """Check the flow and the inputs, read the results so far (resume); nothing is loaded yet.

    ``retry_failed`` removes the failed results from ``out`` so those inputs run again;
    ``batching`` makes thread workers batch their forwards (``core.batching``).
    """
    config = WorkerConfig.from_file(
        flow_file, device=device, reuse=reuse, seed=seed, threads=threads, batching=batching
    )
    config.flow()  # a bad flow fails here, before any input is read or model loaded
    items = read_inputs(inputs_file)
    results = ResultsFile(out)
    done = results.load()
    retried = results.drop_failed() if retry_failed else 0
    keys = {item.key for item in items}
    unknown = sum(1 for key in done if key not in keys)
    summary = BatchSummary(
        total=len(items), skipped=len(done) - unknown, retried_failed=retried, unknown_results=unknown
    )
    return BatchPlan(config, results, list(pending_inputs(items, done)), summary)


def run_plan(plan: BatchPlan, pool: WorkerPool, listeners: Sequence[BatchListener] = ()) -> BatchSummary:
    """Run the plan's inputs on ``pool`` (closed at the end), appending to its results file."""
    plan.summary.workers = describe_pool(pool)
    with plan.results:
        plan.summary.stats = run_batch(pool, plan.todo, plan.results, listener=_Fanout(listeners))
    return plan.summary


def batch(
    flow_file: str | Path,
    inputs_file: str | Path,
    out: str | Path,
    *,
    workers: int = 1,
    pool: PoolKind = "process",
    ray: str | None = None,
    cpus_per_worker: int = 1,
    threads: int | None = None,
    device: str | None = None,
    reuse: bool = True,
    seed: int | None = None,
    retry_failed: bool = False,
    batching: bool = False,
    listeners: Sequence[BatchListener] = (),
) -> BatchSummary:
    """Run ``flow_file`` on every input of ``inputs_file`` not yet in ``out`` (the Python face of
    ``alora-flows batch``).

    ``threads``: torch threads per worker process (default: the cores shared out among local
    process workers, ``cpus_per_worker`` on Ray, torch's default for threads in this process).
    ``batching`` (with ``pool="thread"``): the thread workers' forwards that are ready at the same
    moment run as one (:mod:`alora_flows.core.batching`).
    """
    threads = worker_threads(threads, workers=workers, pool=pool, ray=ray)
    plan = plan_batch(
        flow_file,
        inputs_file,
        out,
        threads=threads,
        device=device,
        reuse=reuse,
        seed=seed,
        retry_failed=retry_failed,
        batching=batching,
    )
    if not plan.todo:
        return plan.summary  # nothing to run: no model to load
    worker_pool = make_pool(plan.config, workers=workers, pool=pool, ray=ray, cpus_per_worker=cpus_per_worker)
    return run_plan(plan, worker_pool, listeners)


class _Fanout(BatchListener):
    def __init__(self, listeners: Sequence[BatchListener]) -> None:
        self.listeners = list(listeners)

    def on_ready(self, worker: str) -> None:
        for listener in self.listeners:
            listener.on_ready(worker)

    def on_result(self, result: BatchResult, written: bool) -> None:
        for listener in self.listeners:
            listener.on_result(result, written)

    def on_lost(self, worker: str, item: BatchInput | None) -> None:
        for listener in self.listeners:
            listener.on_lost(worker, item)
