"""The HTTP API of ``alora-flows serve`` (FastAPI; the OpenAPI description is at /openapi.json).

- ``POST /runs``: ``{"inputs": {...}, "seed": null}`` in; the final state and the trace out.
- ``POST /runs/stream``: the same run, its events as server-sent events while it runs.
- ``GET /healthz``: the process answers. ``GET /readyz``: the model is loaded (503 until then).

A request carries data only: the flow's declared inputs (checked against their types; unknown
keys refused) and an optional seed. Nothing in it names code, a template or a file; the flow,
its tools and templates are fixed when the server starts. Bodies above ``max_body_bytes`` get
413, a full queue 429, a run past its deadline 504, and with ``api_key`` set, /runs without
``Authorization: Bearer KEY`` gets 401. Probes and the API description need no key.
"""

# No `from __future__ import annotations`: FastAPI reads the annotations of the routes defined
# inside create_app, whose request model is built at runtime from the flow's inputs.

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Optional

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, create_model

from alora_flows.errors import AloraFlowsError, ContextLengthError, FlowInputError, RunTimeoutError
from alora_flows.flow.trace import (
    RunFailed,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    TokenStreamed,
)
from alora_flows.serve.service import Busy, FlowService

log = logging.getLogger("alora_flows.serve")


class RunResponse(BaseModel):
    """A finished run."""

    run_id: str
    final_state: dict[str, Any] = Field(description="the flow's state at END, as JSON")
    trace: dict[str, Any] = Field(description="the run's trace (the --trace-json layout)")


class ErrorResponse(BaseModel):
    detail: str


class BodyLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, declared (Content-Length) or streamed
    (chunked), before the application has read it all into memory."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    @property
    def detail(self) -> str:
        return f"request body is larger than {self.max_bytes} bytes"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse({"detail": self.detail}, status_code=413, headers={"Connection": "close"})
            await response(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # FastAPI passes an HTTPException through body parsing
                    raise HTTPException(413, self.detail, {"Connection": "close"})
            return message

        await self.app(scope, counting_receive, send)


def error_status(exc: BaseException) -> int:
    """The HTTP status for a run that ended with ``exc``."""
    if isinstance(exc, (FlowInputError, ContextLengthError)):
        return 422  # the inputs cannot be processed as given
    if isinstance(exc, (RunTimeoutError, asyncio.TimeoutError)):
        return 504
    return 500


def error_detail(exc: BaseException) -> str:
    """The one line a client sees; a bug's traceback goes to the server's log instead."""
    if error_status(exc) == 500:
        log.error("run failed: %s", exc, exc_info=exc)
    if isinstance(exc, AloraFlowsError):
        return str(exc)
    if isinstance(exc, asyncio.TimeoutError):
        return "the run did not finish within the server's time limit"
    return f"internal error ({type(exc).__name__})"  # no traceback or internals to the client


def event_payload(event: Any) -> tuple[str, dict[str, Any]] | None:
    """A run event as a server-sent event (name, data); None for events not sent."""
    if isinstance(event, RunStarted):
        return "run_started", {"flow": event.flow, "inputs": event.inputs}
    if isinstance(event, StepStarted):
        return "step_started", event.model_dump(mode="json")
    if isinstance(event, TokenStreamed):
        return "token", event.model_dump(mode="json")
    if isinstance(event, StepFinished):
        return "step_finished", event.step.model_dump(mode="json")
    if isinstance(event, RunFinished):
        return "run_finished", {
            "final_state": event.trace.final_state,
            "trace": event.trace.model_dump(mode="json"),
        }
    if isinstance(event, RunFailed):
        return None  # the stream ends with an `error` event naming the status instead
    return None


def sse(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def create_app(service: FlowService, *, load_on_startup: bool = True) -> FastAPI:
    """The FastAPI application serving ``service``'s flow."""
    from contextlib import asynccontextmanager

    settings = service.settings
    flow = service.flow
    Inputs = service.inputs_model
    RunRequest = create_model(
        "RunRequest",
        __config__=ConfigDict(extra="forbid"),
        inputs=(Inputs, Field(description=f"the inputs of flow '{flow.name}'")),
        seed=(Optional[int], Field(None, description="seed for sampled generation steps")),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if load_on_startup and not service.loaded.is_set():
            service.start_loading()
        yield
        service.close()

    declared = ", ".join(f"{k}: {v}" for k, v in flow.spec.inputs.items()) or "none"
    app = FastAPI(
        title=f"alora-flows: {flow.name}",
        description=f"Runs the flow '{flow.name}' (inputs: {declared}). Served by alora-flows.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    bearer = HTTPBearer(auto_error=False, description="the server's API key (when it has one)")

    def require_key(
        credentials: Annotated[Optional[HTTPAuthorizationCredentials], Depends(bearer)],
    ) -> None:
        if settings.api_key is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode(), settings.api_key.encode()):
            raise HTTPException(
                401, "missing or wrong API key (Authorization: Bearer KEY)", {"WWW-Authenticate": "Bearer"}
            )

    def admit(request: Any) -> tuple[dict[str, Any], Any]:
        """503 until loaded, 422 for inputs the flow refuses, 429 when full; else the inputs and
        the admission of this run."""
        worker = service.worker
        if worker is None:
            detail = f": {service.load_error}" if service.load_error else " yet"
            raise HTTPException(503, f"the flow is not loaded{detail}")
        inputs = request.inputs.model_dump()
        try:
            worker.compiled.new_state(inputs)
        except FlowInputError as exc:
            raise HTTPException(422, str(exc)) from None
        try:
            return inputs, service.admit()
        except Busy:
            raise HTTPException(
                429,
                f"the server is busy ({service.capacity} runs in progress or queued); retry later",
                {"Retry-After": "1"},
            ) from None

    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorResponse} for code in (401, 413, 422, 429, 500, 503, 504)
    }

    @app.get("/healthz", summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        summary="The flow's model and adapters are loaded",
        responses={503: {"model": ErrorResponse}},
    )
    async def readyz() -> JSONResponse:
        if service.ready:
            stats = service.batching
            return JSONResponse(
                {
                    "status": "ready",
                    "flow": flow.name,
                    "in_progress": service.running,
                    "capacity": service.capacity,
                    # whether concurrent runs' forwards are batched, and how full the batches were
                    "batching": None
                    if stats is None
                    else {
                        "forwards": stats.forwards,
                        "requests": stats.rows,
                        "max_requests": stats.max_rows,
                    },
                }
            )
        detail = f"failed to load: {service.load_error}" if service.load_error else "loading"
        return JSONResponse({"status": "not ready", "detail": detail}, status_code=503)

    @app.post(
        "/runs",
        summary="Run the flow and return its final state and trace",
        response_model=RunResponse,
        responses=errors,
        dependencies=[Depends(require_key)],
    )
    async def run(request: RunRequest) -> Any:
        inputs, admission = admit(request)
        run_id = uuid.uuid4().hex
        try:
            result = await service.run(admission, inputs, seed=request.seed)  # type: ignore[attr-defined]
        except Exception as exc:
            raise HTTPException(error_status(exc), error_detail(exc)) from None
        return RunResponse(
            run_id=run_id, final_state=result.trace.final_state, trace=result.trace.model_dump(mode="json")
        )

    @app.post(
        "/runs/stream",
        summary="Run the flow; its events as server-sent events",
        description="Events: run_started, step_started, token (generated text), step_finished, then "
        "run_finished (final_state and trace) or error (status and detail). Each `data:` is JSON.",
        responses={200: {"content": {"text/event-stream": {}}}, **errors},
        dependencies=[Depends(require_key)],
    )
    async def run_stream(request: RunRequest) -> StreamingResponse:
        inputs, admission = admit(request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
        run_id = uuid.uuid4().hex

        def forward(event: Any) -> None:  # called in the run's thread
            payload = event_payload(event)
            if payload is not None:
                loop.call_soon_threadsafe(queue.put_nowait, payload)

        future = service.submit(admission, inputs, seed=request.seed, listeners=[forward])  # type: ignore[attr-defined]

        def finished(f: Any) -> None:
            exc = None if f.cancelled() else f.exception()
            if f.cancelled() or exc is not None:
                error = exc or asyncio.TimeoutError()
                payload = {"status": error_status(error), "detail": error_detail(error)}
                loop.call_soon_threadsafe(queue.put_nowait, ("error", payload))
            loop.call_soon_threadsafe(queue.put_nowait, None)

        future.add_done_callback(finished)

        async def events() -> AsyncIterator[bytes]:
            try:
                yield sse("accepted", {"run_id": run_id})
                while True:
                    deadline = admission.stop.deadline
                    remaining = None if deadline is None else max(0.0, deadline - time.monotonic()) + 5.0
                    item = await asyncio.wait_for(queue.get(), remaining)
                    if item is None:
                        return
                    yield sse(*item)
            except asyncio.TimeoutError:
                yield sse("error", {"status": 504, "detail": error_detail(asyncio.TimeoutError())})
            finally:
                if not future.done():
                    service.abandon(admission, future)

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    return app
