"""Local batch workers: threads sharing one backend, or processes with a backend each.

Threads share one model in memory, but the backend's lock lets one forward pass run at a time,
so N threads run about as fast as one (they overlap only tokenising, parsing and tools), unless
the worker batches (``WorkerConfig.batching``, ``--batching``): then the forwards of the threads'
runs that are ready at the same moment run as one (:mod:`alora_flows.core.batching`), and on a
CPU the decode steps of N runs cost little more than one's.
Processes each load the model (about 0.6 GB for the embedded one) and really run in parallel; on
a CPU each should get ``cores / workers`` torch threads (:func:`default_threads`), since torch's
own threads do not scale a small model's forward pass as well as separate processes do. The
numbers are in ``benchmarks/results/batch_serve.md``.

A local process is started with ``spawn`` (forking a process that has run torch is unsafe), so
it takes a few seconds to import torch and load the flow; a process that dies (killed, out of
memory) loses only the input it was running, which runs again on another worker.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from alora_flows.batch.dispatch import Slot, chain
from alora_flows.batch.records import BatchInput, BatchResult
from alora_flows.batch.worker import FlowWorker, WorkerConfig


def default_threads(workers: int) -> int:
    """Torch threads per worker process: the CPU cores shared out, at least one each."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


# ---------------------------------------------------------------------- threads
class ThreadSlot:
    def __init__(self, worker: FlowWorker, executor: ThreadPoolExecutor, index: int) -> None:
        self.worker, self.executor = worker, executor
        self.name = f"{worker.name}/thread-{index}"

    def submit(self, item: BatchInput) -> Future[BatchResult]:
        return self.executor.submit(self.worker.run_item, item)

    def stop(self) -> None:  # a thread is never lost
        pass


class ThreadPool:
    """``size`` threads running inputs on one shared :class:`FlowWorker` (loaded once)."""

    kind = "thread"

    def __init__(self, config: WorkerConfig, size: int) -> None:
        self.config, self.size = config, size
        self.executor = ThreadPoolExecutor(max_workers=size + 1, thread_name_prefix="alora-batch")
        self.loaded = self.executor.submit(FlowWorker, config)
        self.started = 0

    def start_slot(self) -> Future[Slot]:
        self.started += 1
        index = self.started
        return chain(self.loaded, lambda worker: ThreadSlot(worker, self.executor, index))

    def is_lost(self, exc: BaseException) -> bool:
        return False

    def close(self) -> None:
        worker = self.loaded.result() if self.loaded.done() and self.loaded.exception() is None else None
        if worker is not None:
            worker.close()  # runs in progress stop at their next step
        self.executor.shutdown(wait=True, cancel_futures=True)
        if worker is not None:
            worker.release()


# ---------------------------------------------------------------------- processes
_worker: FlowWorker | None = None  # the FlowWorker of a worker process


def _load_in_process(config: WorkerConfig) -> str:
    global _worker
    _worker = FlowWorker(config)
    return _worker.name


def _run_in_process(item: BatchInput) -> BatchResult:
    assert _worker is not None, "the worker process has not loaded the flow"
    return _worker.run_item(item)


class ProcessSlot:
    def __init__(self, executor: ProcessPoolExecutor, name: str) -> None:
        self.executor, self.name = executor, name

    def submit(self, item: BatchInput) -> Future[BatchResult]:
        try:
            return self.executor.submit(_run_in_process, item)
        except BrokenProcessPool as exc:  # died while idle: report it like a loss mid-run
            future: Future[BatchResult] = Future()
            future.set_exception(exc)
            return future

    def stop(self) -> None:
        stop_executor(self.executor)


def stop_executor(executor: ProcessPoolExecutor, grace: float = 0.0) -> None:
    """Stop a one-process executor: its process may finish within ``grace`` seconds (an idle one
    exits at once), then it is killed (a run in progress is abandoned)."""
    processes = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + grace
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(5)


class ProcessPool:
    """``size`` processes, each with its own :class:`FlowWorker` and ``config.threads`` torch threads."""

    kind = "process"

    def __init__(self, config: WorkerConfig, size: int) -> None:
        self.config, self.size = config, size
        self.context: Any = multiprocessing.get_context("spawn")
        self.executors: list[ProcessPoolExecutor] = []

    def start_slot(self) -> Future[Slot]:
        executor = ProcessPoolExecutor(max_workers=1, mp_context=self.context)
        self.executors.append(executor)
        return chain(executor.submit(_load_in_process, self.config), lambda name: ProcessSlot(executor, name))

    def is_lost(self, exc: BaseException) -> bool:
        return isinstance(exc, BrokenProcessPool)

    def close(self) -> None:
        for executor in self.executors:
            stop_executor(executor, grace=1.0)
