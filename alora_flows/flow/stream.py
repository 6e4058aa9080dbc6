"""Event streams of a run: ``for event in flow.stream(...)`` and ``async for`` / ``await`` forms.

The runner is synchronous and tells listeners about each event as it happens (a token from
inside the model's decode loop, a step, a branch). A stream runs the run in a worker thread with
one more listener, which hands each event to the consumer and then *waits until the consumer
asks for the next one*. Why lockstep rather than a buffer: events carry the live state and trace
(``StepFinished.state``), so a consumer looking at an event sees the run exactly as it was when
the event happened, as with a plain listener, and a consumer that stops iterating stops the run
at its next event instead of letting it run on unseen.

Async: the consumer awaits an :class:`asyncio.Queue` fed with ``loop.call_soon_threadsafe`` while
the model runs in the worker thread, so the event loop keeps serving other coroutines. Breaking
out of a stream (or cancelling the task) stops the run at its next event and waits for the
worker to leave the step it is in; the run then ends with ``RunFailed`` (the error says so).

A failed run yields ``RunFailed`` and then raises its error; a paused run ends with
``Interrupted``. Either way ``stream.result`` holds the :class:`RunResult` once the stream ends
(for a paused run: ``stream.result.resume(values)``).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from alora_flows.errors import FlowRuntimeError

#: Starts the run with the stream's listener added; returns its RunResult.
Start = Callable[[list[Any]], Any]


def _closed() -> FlowRuntimeError:
    return FlowRuntimeError("the event stream was closed by its reader; the run stopped there")


class _Bridge:
    """The worker side: a listener that hands over one event at a time and waits for the next
    request; ``deliver`` puts an item where the consumer reads it."""

    def __init__(self, deliver: Callable[[tuple[str, Any]], None]) -> None:
        self.deliver = deliver
        self.taken = threading.Semaphore(0)
        self.closed = threading.Event()
        self.ended = False  # the run returned: a paused run resumed later no longer streams here

    def listener(self, event: Any) -> None:
        if self.ended:
            return
        if self.closed.is_set():
            raise _closed()
        self.deliver(("event", event))
        self.taken.acquire()
        if self.closed.is_set():
            raise _closed()

    def work(self, start: Start) -> None:
        try:
            result = start([self.listener])
        except BaseException as exc:  # handed to the consumer, who raises it
            self.ended = True
            self.deliver(("error", exc))
        else:
            self.ended = True
            self.deliver(("done", result))

    def close(self) -> None:
        self.closed.set()
        self.taken.release()


class _Once:
    """A stream starts its run when first iterated, and can be iterated once. The iterator is not
    kept here, so leaving a ``for`` loop early drops the last reference to it, which closes it
    (and stops the run) at once."""

    def __init__(self, start: Start) -> None:
        self._start = start
        self._used = False
        self.result: Any = None

    def _claim(self) -> None:
        if self._used:
            raise FlowRuntimeError("a run's event stream can be read once; start another run")
        self._used = True


class RunStream(_Once):
    """Iterate over a run's events (see the module docstring); ``result`` when it has ended."""

    def __iter__(self) -> Iterator[Any]:
        self._claim()
        return self._events()

    def _events(self) -> Iterator[Any]:
        inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        bridge = _Bridge(inbox.put)
        worker = threading.Thread(
            target=bridge.work, args=(self._start,), name="alora-flows-run", daemon=True
        )
        worker.start()
        ended = False
        try:
            while True:
                kind, item = inbox.get()
                if kind == "event":
                    try:
                        yield item
                    except BaseException:  # closed or thrown into: stop the run, then wake it
                        bridge.closed.set()
                        raise
                    finally:
                        bridge.taken.release()
                elif kind == "done":
                    ended, self.result = True, item
                    return
                else:
                    ended = True
                    raise item
        finally:
            if not ended:  # the reader stopped early: stop the run at its next event
                bridge.close()
                worker.join()


class AsyncRunStream(_Once):
    """``async for event in flow.astream(...)``; ``result`` when it has ended."""

    def __aiter__(self) -> AsyncIterator[Any]:
        self._claim()
        return self._events()

    async def _events(self) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def deliver(item: tuple[str, Any]) -> None:
            try:
                loop.call_soon_threadsafe(inbox.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is reading any more
                pass

        bridge = _Bridge(deliver)
        worker = threading.Thread(
            target=bridge.work, args=(self._start,), name="alora-flows-run", daemon=True
        )
        worker.start()
        ended = False
        try:
            while True:
                kind, item = await inbox.get()
                if kind == "event":
                    try:
                        yield item
                    except BaseException:  # closed or thrown into: stop the run, then wake it
                        bridge.closed.set()
                        raise
                    finally:
                        bridge.taken.release()
                elif kind == "done":
                    ended, self.result = True, item
                    return
                else:
                    ended = True
                    raise item
        finally:
            if not ended:
                bridge.close()
                await asyncio.shield(asyncio.to_thread(worker.join))

    async def wait(self) -> Any:
        """Read the stream to its end; return the RunResult."""
        events = self.__aiter__()
        try:
            async for _ in events:
                pass
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        return self.result


def run_async(start: Start) -> Awaitable[Any]:
    """Run ``start`` in a worker thread without blocking the event loop; returns its result."""
    return AsyncRunStream(start).wait()
