"""The application layer: load a flow's model and intrinsics, run it with listeners, in a run
directory or not. This is what the CLI calls, and what Python users call for the same behaviour.

Process-wide CPU settings (:mod:`alora_flows.core.tuning`) are applied here, by the entry point
that owns the process, never by constructing a :class:`~alora_flows.core.backend.Backend`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from alora_flows.core.backend import Backend
from alora_flows.core.models import EMBEDDED
from alora_flows.core.session import Session
from alora_flows.core.tuning import apply_cpu_tuning
from alora_flows.flow import Flow, TraceJsonWriter
from alora_flows.flow.catalog import CatalogLike, Intrinsic, as_catalog
from alora_flows.flow.runner import RunResult
from alora_flows.runs.rundir import RunDir, check_resume_values, load_run, resume_run, run_with_dir


def model_spec(model: str, base_dir: Path) -> str:
    """A relative model path in a flow file is relative to the file."""
    local = base_dir / model
    if model != EMBEDDED and not Path(model).is_absolute() and local.exists():
        return str(local.resolve())
    return model


def load_backend(model: str = EMBEDDED, *, device: str | None = None, progress: bool = True) -> Backend:
    """:meth:`Backend.load` plus the process's CPU tuning when the model runs on the CPU."""
    backend = Backend.load(model, device=device, progress=progress)
    if backend.device.type == "cpu":
        apply_cpu_tuning()
    return backend


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
    flow: Flow, base_dir: Path, *, device: str | None = None, catalog: CatalogLike = None
) -> tuple[Backend, dict[str, Intrinsic]]:
    """The flow's model and adapters, with their specs: what ``run``, ``resume`` and ``demo`` load."""
    backend = load_backend(model_spec(flow.spec.model, base_dir), device=device)
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
    listeners: Sequence[Any] = (),
) -> RunResult:
    """Load the flow's model and adapters, then run it on a new session."""
    backend, specs = load_flow_backend(flow, base_dir, device=device)
    with live_context(live):
        return flow.run(
            Session(backend, reuse=reuse),
            inputs,
            seed=seed,  # type: ignore[no-any-return]
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
        backend, specs = load_flow_backend(flow, base_dir, device=device)
    except Exception as exc:  # the directory records why; Ctrl-C is recorded by the CLI
        run.update(status="failed", error=str(exc) or type(exc).__name__)
        raise
    session = Session(backend, reuse=reuse)
    with live_context(live):
        return run_with_dir(
            run,
            flow,
            session,
            inputs,
            seed=seed,  # type: ignore[no-any-return]
            listeners=run_listeners(live, trace_json),
            intrinsic_specs=specs,
        )


def resume_in_dir(
    run_dir: Path,
    *,
    trace_json: Path | None = None,
    live: Any = None,
    device: str | None = None,
    values: Mapping[str, Any] | None = None,
) -> RunResult:
    """``alora-flows resume DIR [--set k=v]``: load the run's model and adapters, then continue it
    (``values``: what a run paused at an interrupt waits for)."""
    saved = load_run(run_dir)
    check_resume_values(saved, values)  # before the model loads
    backend, specs = load_flow_backend(saved.flow, Path(saved.manifest.base_dir), device=device)
    if live is not None and saved.checkpoint is not None:
        live.steps = list(saved.checkpoint.trace.steps)  # show the steps done before
    with live_context(live):
        return resume_run(
            run_dir,
            backend,
            intrinsic_specs=specs,  # type: ignore[no-any-return]
            saved=saved,
            listeners=run_listeners(live, trace_json),
            values=values,
        )
