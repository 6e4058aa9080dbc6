"""The batch driver: hands inputs to free workers, writes each result once, survives lost workers.

One loop for every kind of worker (threads, local processes, Ray actors). A pool only knows how
to start a worker (a :class:`Slot`, ready when its model is loaded) and which exceptions mean "the
worker is gone". Each slot runs one input at a time, so an input goes to the first free worker
and a slow input never holds others back.

When a worker is lost (its process killed, its node gone), the input it was running goes back
to the front of the queue and runs on another worker, and the pool starts a replacement (up to
``replacements``). An input whose workers keep dying (``max_attempts``) is recorded as failed
instead of taking every worker down in turn. The driver is the only writer of RESULTS.jsonl and
writes an id once, so an input that ran twice (its worker died after finishing it) appears once.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from alora_flows.batch.records import BatchInput, BatchResult, ResultsFile
from alora_flows.errors import WorkerError

T = TypeVar("T")


class Slot(Protocol):
    """One worker with the flow loaded; runs one input at a time."""

    name: str

    def submit(self, item: BatchInput) -> Future[BatchResult]: ...

    def stop(self) -> None: ...


class WorkerPool(Protocol):
    """Starts workers of one kind (threads, processes, Ray actors)."""

    size: int
    kind: str

    def start_slot(self) -> Future[Slot]:
        """A new worker; the future resolves when its model and adapters are loaded."""
        ...

    def is_lost(self, exc: BaseException) -> bool:
        """Whether ``exc`` (from a slot's future) means the worker is gone, not that a run failed."""
        ...

    def close(self) -> None: ...


class BatchListener:
    """What the driver reports (the progress bar; tests). Every method is optional."""

    def on_ready(self, worker: str) -> None: ...
    def on_result(self, result: BatchResult, written: bool) -> None: ...
    def on_lost(self, worker: str, item: BatchInput | None) -> None: ...


@dataclass
class BatchStats:
    ok: int = 0
    failed: int = 0
    retried: int = 0  # inputs put back in the queue because their worker was lost
    lost_workers: int = 0
    duplicates: int = 0  # results dropped because their id was already written


def chain(source: Future[Any], convert: Callable[[Any], T]) -> Future[T]:
    """A future for ``convert(source.result())`` (exceptions pass through)."""
    out: Future[T] = Future()

    def done(f: Future[Any]) -> None:
        if out.done():  # cancelled by the driver on its way out
            return
        try:
            out.set_result(convert(f.result()))
        except BaseException as exc:
            out.set_exception(exc)

    source.add_done_callback(done)
    return out


def run_batch(
    pool: WorkerPool,
    items: Iterable[BatchInput],
    results: ResultsFile,
    *,
    listener: BatchListener | None = None,
    max_attempts: int = 3,
    replacements: int | None = None,
) -> BatchStats:
    """Run every input in ``items`` on ``pool``'s workers, appending each result to ``results``.

    ``replacements``: how many lost workers may be replaced (default: the pool's size).
    Raises :class:`WorkerError` when no worker is left, or the load error of a worker that could
    not load the flow. Closes the pool on the way out (also on Ctrl-C).
    """
    listener = listener or BatchListener()
    stats = BatchStats()
    pending = deque(items)
    attempts: Counter[str] = Counter()
    spare = pool.size if replacements is None else replacements
    starting: set[Future] = set()
    running: dict[Future, tuple[Slot, BatchInput]] = {}
    idle: list[Slot] = []

    def lose(worker: str, item: BatchInput | None) -> None:
        nonlocal spare
        stats.lost_workers += 1
        listener.on_lost(worker, item)
        if spare > 0 and pending:
            spare -= 1
            starting.add(pool.start_slot())

    def record(result: BatchResult) -> None:
        written = results.append(result)
        if not written:
            stats.duplicates += 1
        elif result.status == "ok":
            stats.ok += 1
        else:
            stats.failed += 1
        listener.on_result(result, written)

    try:
        starting.update(pool.start_slot() for _ in range(pool.size))
        while pending or running:
            while idle and pending:
                slot, item = idle.pop(), pending.popleft()
                attempts[item.key] += 1
                running[slot.submit(item)] = (slot, item)
            if not starting and not running:
                raise WorkerError(
                    f"all {pool.kind} workers were lost; {len(pending)} input(s) did not run "
                    "(rerun the same command to run them)"
                )
            done, _ = wait(starting | set(running), return_when=FIRST_COMPLETED)
            for future in done:
                if future in starting:
                    starting.discard(future)
                    try:
                        slot = future.result()
                    except Exception as exc:
                        if not pool.is_lost(exc):
                            raise  # the flow could not load: no worker will do better
                        lose("(starting)", None)
                        continue
                    idle.append(slot)
                    listener.on_ready(slot.name)
                    continue
                slot, item = running.pop(future)
                try:
                    result = future.result()
                except Exception as exc:
                    if not pool.is_lost(exc):
                        raise
                    slot.stop()
                    if attempts[item.key] >= max_attempts:
                        record(
                            BatchResult(
                                id=item.id,
                                status="error",
                                error=f"its worker was lost {attempts[item.key]} times while running it",
                                worker=slot.name,
                                attempts=attempts[item.key],
                            )
                        )
                    else:
                        pending.appendleft(item)
                        stats.retried += 1
                    lose(slot.name, item)
                    continue
                result.attempts = attempts[item.key]
                idle.append(slot)
                record(result)
    finally:
        for future in [*starting, *running]:
            future.cancel()
        pool.close()
    return stats
