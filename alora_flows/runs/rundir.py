"""Run directories: a run's flow, inputs, state, trace and session on disk after every step; resume.

``alora-flows run FLOW.yaml --run-dir DIR`` writes::

    DIR/manifest.json          RunManifest: flow file, inputs, model, reuse, seed, status
    DIR/flow.yaml              the flow file as it was when the run started (resume runs this copy)
    DIR/checkpoint.json        Checkpoint after the last finished step: state, next node, trace,
                               the session's messages and token ids. The only file resume trusts.
    DIR/steps/0003-answer.json one per finished step: the step record and the state after it
    DIR/trace.json             the trace so far (--trace-json layout; ``error`` if it failed)
    DIR/result.json            the final state, once the run has finished

``alora-flows resume DIR`` rebuilds the Session from the saved messages (one prefill of the
conversation), restores the typed state and the trace, and continues at the checkpoint's next
node: with greedy decoding (or a seed) it ends in the same final state as an uninterrupted run.

Inside subflows, the checkpoint's ``next_node`` is the subflow node that was running and
``inside`` holds, per nesting level, the child's state, trace and next node: resume continues in
the child where it stopped. A run paused at an ``interrupt`` node has status ``waiting`` and its
manifest says what for (``waiting``); ``alora-flows resume DIR --set field=value`` (or
:func:`resume_run` with ``values``) continues it. Every resume is recorded with what rebuilding
the session cost, in the manifest and in the trace (``resumes``), once.

Why it survives Ctrl-C, ``kill -9`` or a power cut: every file is written to a temporary file,
flushed and renamed over the old one (``os.replace`` is atomic), and everything resume needs is in
the one checkpoint file. Whatever instant the process dies, the directory holds a complete
checkpoint at a step boundary; files written after it (a step file, the trace) are informative
only. A step that was running when the process died is run again on resume (steps are
*at-least-once*: a tool with side effects may see a second call).

Two processes never write one directory: the one running in it holds an OS lock on ``DIR/lock``,
which the OS releases when the process ends, however it ends.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python

from alora_flows import __version__
from alora_flows.core.documents import DocsAs, Document, DocumentSet
from alora_flows.errors import AloraFlowsError, FlowInputError, RunDirError, RunInterruptedError
from alora_flows.flow.nodes import coerce_values
from alora_flows.flow.spec import END, START
from alora_flows.flow.state import state_values
from alora_flows.flow.trace import (
    Frame,
    Interrupted,
    InterruptRequest,
    ResumeRecord,
    RunFailed,
    RunFinished,
    RunListener,
    RunStarted,
    StepFinished,
    Trace,
    jsonable,
)

FORMAT = 1
#: ``interrupted``: stopped by Ctrl-C; ``waiting``: paused at an interrupt node for input
RunStatus = Literal["created", "running", "finished", "failed", "interrupted", "waiting"]

__all__ = ["Checkpoint", "ResumeRecord", "RunDir", "RunDirWriter", "RunManifest", "load_run", "resume_run"]


# ---------------------------------------------------------------------- files


class RunManifest(BaseModel):
    """``manifest.json``: what the run is; rewritten when its status changes."""

    format: int = FORMAT
    flow: str
    flow_file: str  # the original flow file (absolute); errors name it
    base_dir: str  # where relative model / adapter paths are resolved
    model: str  # the flow's model spec
    model_id: str | None = None  # what the backend reported; resume checks it
    inputs: dict[str, Any]
    reuse: bool = True
    seed: int | None = None
    status: RunStatus = "created"
    error: str | None = None
    waiting: InterruptRequest | None = None  # what a run paused at an interrupt waits for
    created: str
    updated: str
    resumes: list[ResumeRecord] = Field(default_factory=list)
    #: subflow files the flow reads (path -> sha256): resume refuses if one changed
    subflow_files: dict[str, str] = Field(default_factory=dict)
    alora_flows_version: str = __version__


class SessionSnapshot(BaseModel):
    """The conversation as the session held it after the step (intrinsic calls rolled back):
    its messages, its documents and how they render (``core.documents``), and the token ids
    they rendered to, which a resume checks."""

    messages: list[dict[str, str]]
    documents: list[Document] = Field(default_factory=list)
    documents_as: DocsAs | None = None
    token_ids: list[int] | None = None


class SubflowPosition(BaseModel):
    """Where a subflow that was running stands: its state, its trace so far, its next node."""

    next_node: str
    state: dict[str, Any]
    unsaved: list[str] = Field(default_factory=list)
    trace: Trace


class Checkpoint(BaseModel):
    """``checkpoint.json``: everything needed to continue after ``steps_done`` steps.

    ``inside`` is empty at top level; when the run stopped inside subflows it holds one position
    per level (outermost first), and ``next_node`` is the subflow node that was running.
    """

    format: int = FORMAT
    steps_done: int
    next_node: str
    state: dict[str, Any]
    #: fields whose values are not JSON data (a tool returned an arbitrary object): not restorable
    unsaved: list[str] = Field(default_factory=list)
    trace: Trace
    session: SessionSnapshot | None = None
    inside: list[SubflowPosition] = Field(default_factory=list)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def atomic_write(path: Path, text: str, *, fsync: bool = True) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)  # umask applies
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):  # disk full, permissions: stop the run, say why
            error = RunDirError(f"cannot write {path}: {exc.strerror or exc}")
            error.exit_code = 1  # an environment failure, not an invalid directory
            raise error from None
        raise


def _dump(model: BaseModel) -> str:
    return json.dumps(model.model_dump(mode="json"), indent=1, ensure_ascii=False) + "\n"


@lru_cache(maxsize=256)
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)


def snapshot_state(state: BaseModel) -> tuple[dict[str, Any], list[str]]:
    """The set fields as JSON data, and the fields that would not come back equal from it.

    A field is *unsaved* when its value is not JSON data (an arbitrary object from a tool) or does
    not validate back to an equal value; resume refuses to continue with such a field rather than
    hand later steps a different object.
    """
    data: dict[str, Any] = {}
    unsaved: list[str] = []
    fields = type(state).model_fields
    for name, value in state_values(state).items():
        try:
            dumped = (
                value.model_dump(mode="json") if isinstance(value, BaseModel) else to_jsonable_python(value)
            )
            restored = _adapter(fields[name].annotation).validate_python(dumped)  # type: ignore[arg-type]
            same = restored == value
        except Exception:
            dumped, same = jsonable(value), False
        data[name] = dumped
        if not same:
            unsaved.append(name)
    return data, unsaved


class RunDir:
    """The files of one run directory (see the module docstring for the layout)."""

    def __init__(self, path: str | Path, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync

    manifest_path = property(lambda self: self.path / "manifest.json")
    flow_path = property(lambda self: self.path / "flow.yaml")
    checkpoint_path = property(lambda self: self.path / "checkpoint.json")
    trace_path = property(lambda self: self.path / "trace.json")
    result_path = property(lambda self: self.path / "result.json")
    steps_dir = property(lambda self: self.path / "steps")
    lock_path = property(lambda self: self.path / "lock")

    # ------------------------------------------------------------------ create / open
    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        flow_text: str,
        flow_file: str | Path,
        flow_name: str,
        model: str,
        inputs: Mapping[str, Any],
        reuse: bool,
        seed: int | None,
        base_dir: str | Path | None = None,
        fsync: bool = True,
    ) -> RunDir:
        """A new run directory holding the flow copy and the manifest (status ``created``)."""
        run = cls(path, fsync=fsync)
        if run.path.exists() and (not run.path.is_dir() or any(run.path.iterdir())):
            raise RunDirError(
                f"run directory {run.path} already exists and is not empty: choose a new "
                f"--run-dir, or continue that run with `alora-flows resume {run.path}`"
            )
        try:
            run.steps_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirError(f"cannot create run directory {run.path}: {exc.strerror or exc}") from None
        flow_file = Path(flow_file).resolve()
        now = _now()
        manifest = RunManifest(
            flow=flow_name,
            flow_file=str(flow_file),
            base_dir=str(Path(base_dir).resolve() if base_dir else flow_file.parent),
            model=model,
            inputs={k: jsonable(v) for k, v in inputs.items()},
            reuse=reuse,
            seed=seed,
            created=now,
            updated=now,
        )
        atomic_write(run.flow_path, flow_text, fsync=fsync)
        run.write_manifest(manifest)
        return run

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """An existing run directory (checked to hold a readable manifest and flow copy)."""
        run = cls(path)
        if not run.manifest_path.is_file() or not run.flow_path.is_file():
            raise RunDirError(
                f"{run.path} is not a run directory (no manifest.json/flow.yaml); "
                "it is written by `alora-flows run FLOW.yaml --run-dir DIR`"
            )
        run.read_manifest()
        return run

    # ------------------------------------------------------------------ manifest
    def read_manifest(self) -> RunManifest:
        return self._read(self.manifest_path, RunManifest)

    def write_manifest(self, manifest: RunManifest) -> None:
        atomic_write(self.manifest_path, _dump(manifest), fsync=self.fsync)

    def update(self, **changes: Any) -> RunManifest:
        manifest = self.read_manifest().model_copy(update={**changes, "updated": _now()})
        self.write_manifest(manifest)
        return manifest

    # ------------------------------------------------------------------ checkpoint
    def read_checkpoint(self) -> Checkpoint | None:
        """The last checkpoint, or None when no step has finished yet."""
        if not self.checkpoint_path.is_file():
            return None
        return self._read(self.checkpoint_path, Checkpoint)

    def write_checkpoint(self, checkpoint: Checkpoint) -> None:
        atomic_write(self.checkpoint_path, _dump(checkpoint), fsync=self.fsync)

    def write_step(self, index: int, node: str, record: Mapping[str, Any]) -> None:
        self.write_step_file(f"{index:04d}-{node}", record)

    def write_step_file(self, name: str, record: Mapping[str, Any]) -> None:
        """``steps/NAME.json``: one finished step (``0003-verify.0001-rate`` inside a subflow)."""
        self.steps_dir.mkdir(exist_ok=True)
        atomic_write(
            self.steps_dir / f"{name}.json",
            json.dumps(record, indent=1, ensure_ascii=False) + "\n",
            fsync=False,
        )

    def write_trace(self, trace: Trace) -> None:
        atomic_write(self.trace_path, trace.to_json() + "\n", fsync=False)

    def _read(self, path: Path, model: type[BaseModel]) -> Any:
        try:
            return model.model_validate_json(path.read_bytes())
        except (OSError, ValidationError, ValueError) as exc:
            detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            raise RunDirError(
                f"{path} is unreadable or corrupt ({detail}); the run directory "
                "was not written by this version of alora-flows, or was edited"
            ) from None

    # ------------------------------------------------------------------ ownership
    @contextmanager
    def claimed(self) -> Iterator[None]:
        """Hold the directory's lock while this process runs in it.

        An OS file lock (``flock``; ``msvcrt.locking`` on Windows) rather than a pid file: the
        OS releases it when its process dies, even by ``kill -9``, so there is never a stale lock
        to guess about. The file itself stays (unlinking lock files races); it names the owner.
        """
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        if not _try_lock(fd):
            owner = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise RunDirError(
                f"run directory {self.path} is in use by {owner}; wait for it to "
                "end (or stop it) before resuming"
            )
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"process {os.getpid()}".encode())
            yield
        finally:
            os.ftruncate(fd, 0)
            os.close(fd)  # releases the lock


def _try_lock(fd: int) -> bool:
    """Take an exclusive, non-blocking lock on ``fd``; False when another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------- the listener
class RunDirWriter(RunListener):
    """Persists a run into a :class:`RunDir` as it goes: a checkpoint after every finished step
    (inside subflows too) and when the run pauses for input.

    ``session`` is the run's session (its messages and token ids go into each checkpoint).
    """

    def __init__(self, run: RunDir, session: Any) -> None:
        self.run = run
        self.session = session
        self.waiting = False

    def on_run_started(self, event: RunStarted) -> None:
        manifest = self.run.read_manifest()
        resumes = [*manifest.resumes, event.resume] if event.resume is not None else manifest.resumes
        self.waiting = manifest.waiting is not None
        self.run.update(status="running", error=None, resumes=resumes)

    def on_step_finished(self, event: StepFinished) -> None:
        step = event.step
        stack = [*event.frames, Frame(node=step.next or END, state=event.state, trace=event.trace)]
        checkpoint = self._checkpoint(stack)
        indices = [f"{len(frame.trace.steps):04d}-{frame.node}" for frame in event.frames]
        name = ".".join([*indices, f"{step.index:04d}-{step.node}"])
        state = checkpoint.inside[-1].state if checkpoint.inside else checkpoint.state
        self.run.write_step_file(
            name, {"path": event.path, "step": step.model_dump(mode="json"), "state": state}
        )
        self.run.write_checkpoint(checkpoint)
        self.run.write_trace(stack[0].trace)
        if self.waiting:  # the interrupt this run waited at has run: nothing is awaited now
            self.waiting = False
            self.run.update(waiting=None)

    def on_interrupted(self, event: Interrupted) -> None:
        self.run.write_checkpoint(self._checkpoint(event.frames))
        self.run.write_trace(event.trace)
        self.waiting = True
        self.run.update(status="waiting", error=None, waiting=event.request)

    def on_run_finished(self, event: RunFinished) -> None:
        state, _ = snapshot_state(event.state)
        atomic_write(
            self.run.result_path, json.dumps(state, indent=2, ensure_ascii=False) + "\n", fsync=False
        )
        self.run.write_trace(event.trace)
        self.run.update(status="finished", error=None)

    def on_run_failed(self, event: RunFailed) -> None:
        self.run.write_trace(event.trace)
        self.run.update(status="failed", error=event.error)

    def _checkpoint(self, stack: Sequence[Frame]) -> Checkpoint:
        """A checkpoint of the frame stack (outermost first) and the session as it is now."""
        top, inner = stack[0], stack[1:]
        state, unsaved = snapshot_state(top.state)
        inside = []
        for frame in inner:
            child_state, child_unsaved = snapshot_state(frame.state)
            inside.append(
                SubflowPosition(
                    next_node=frame.node, state=child_state, unsaved=child_unsaved, trace=frame.trace
                )
            )
        ids = getattr(self.session, "ids", None)
        messages = [dict(m) for m in getattr(self.session, "messages", [])]
        documents = list(getattr(self.session, "documents", []))
        documents_as = getattr(self.session, "documents_as", None)
        return Checkpoint(
            steps_done=len(top.trace.steps),
            next_node=top.node,
            state=state,
            unsaved=unsaved,
            trace=top.trace,
            session=SessionSnapshot(
                messages=messages,
                documents=documents,
                documents_as=documents_as,
                token_ids=list(ids) if ids is not None else None,
            ),
            inside=inside,
        )


# ---------------------------------------------------------------------- running
def waiting_message(request: InterruptRequest, run_dir: Path | None) -> str:
    """One line for a person: what a paused run waits for and how to continue it."""
    where = "/".join([*request.path, request.node])
    fields = ", ".join(f"{name} ({tp})" for name, tp in request.fields.items())
    example = " ".join(f"--set {name}=..." for name in request.fields)
    if run_dir is None:
        return (
            f"paused at '{where}': {request.prompt} [{fields}]; nothing was saved, so it cannot be "
            "continued from the command line: run with --run-dir DIR, then `alora-flows resume DIR "
            f"{example}`"
        )
    return f"waiting at '{where}': {request.prompt} [{fields}]. Continue with: alora-flows resume {run_dir} {example}"


def check_resume_values(saved: SavedRun, values: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The values for a waiting run, checked against what it waits for (before any model loads).

    A waiting run needs them; a run that waits for nothing refuses them.
    """
    request = saved.manifest.waiting
    if request is None:
        if values:
            raise FlowInputError(
                f"run {saved.run.path} is not waiting for input (status '{saved.manifest.status}'); "
                "--set values are for a run paused at an interrupt node"
            )
        return None
    if not values:
        example = " ".join(f"--set {name}=..." for name in request.fields)
        raise FlowInputError(
            f"run {saved.run.path} is waiting for input at '{request.node}' ({request.prompt}); "
            f"give the values: alora-flows resume {saved.run.path} {example}"
        )
    return coerce_values(request.fields, values, f"interrupt '{request.node}'")


@contextmanager
def interrupt_hint(run_dir: Path | None) -> Iterator[None]:
    """Turn Ctrl-C into :class:`RunInterruptedError` (exit 130) saying how to go on."""
    try:
        yield
    except KeyboardInterrupt:
        if run_dir is None:
            raise RunInterruptedError(
                "interrupted; nothing was saved. Run with --run-dir DIR to be able to continue "
                "an interrupted run with `alora-flows resume DIR`"
            ) from None
        run = RunDir(run_dir)
        try:
            checkpoint = run.read_checkpoint()
            run.update(status="interrupted", error="interrupted (KeyboardInterrupt)")
        except (AloraFlowsError, OSError):  # interrupted before the directory was written
            raise RunInterruptedError("interrupted before the run started; nothing was saved") from None
        done = checkpoint.steps_done if checkpoint else 0
        raise RunInterruptedError(
            f"interrupted after {done} finished step{'s' if done != 1 else ''}; everything up "
            f"to there is saved in {run_dir}. Continue with: alora-flows resume {run_dir}"
        ) from None


def run_with_dir(
    run: RunDir,
    flow: Any,
    session: Any,
    inputs: Mapping[str, Any],
    *,
    seed: int | None = None,
    listeners: Sequence[Any] = (),
    intrinsic_specs: Any = None,
) -> Any:
    """Run ``flow`` from START on ``session``, checkpointing into ``run`` after every step.

    The Python-API counterpart of ``alora-flows run --run-dir``: create ``run`` with
    :meth:`RunDir.create` (its ``flow_text`` may be ``flow.to_yaml()``), then call this.
    """
    from alora_flows.flow.runner import Runner

    compiled = flow.validate(intrinsic_specs=intrinsic_specs)
    with run.claimed():
        model_id = getattr(getattr(session, "backend", None), "model_id", None)
        run.update(
            model_id=model_id,
            reuse=bool(getattr(session, "reuse", True)),
            subflow_files=compiled.subflow_files,
        )
        runner = Runner(compiled, session, seed=seed, listeners=[RunDirWriter(run, session), *listeners])
        result = runner.run(inputs)
    result._guard = run.claimed  # result.resume(...) holds the directory while it continues
    return result


@dataclass
class SavedRun:
    """A run directory read back: its manifest, last checkpoint and flow (not yet compiled)."""

    run: RunDir
    manifest: RunManifest
    checkpoint: Checkpoint | None
    flow: Any

    @property
    def finished(self) -> bool:
        """Every step is done (the process may have died before it could record that)."""
        return self.checkpoint is not None and self.checkpoint.next_node == END

    def finish(self) -> None:
        """Record the end of a run whose last checkpoint already reached END (no model needed)."""
        if self.finished and self.manifest.status != "finished":
            assert self.checkpoint is not None
            atomic_write(
                self.run.result_path, json.dumps(self.checkpoint.state, indent=2, ensure_ascii=False) + "\n"
            )
            self.run.write_trace(self.checkpoint.trace)
            self.manifest = self.run.update(status="finished", error=None)


def load_run(path: str | Path) -> SavedRun:
    """Read a run directory: manifest, checkpoint and the flow copy (checked, no model)."""
    from alora_flows.flow import Flow

    run = RunDir.open(path)
    manifest = run.read_manifest()
    flow = Flow.from_yaml_text(run.flow_path.read_text(encoding="utf-8"), file=manifest.flow_file)
    return SavedRun(run=run, manifest=manifest, checkpoint=run.read_checkpoint(), flow=flow)


def restore_state(compiled: Any, saved: SavedRun) -> BaseModel:
    """The typed state of the checkpoint (or the initial state when no step finished)."""
    checkpoint = saved.checkpoint
    if checkpoint is None:
        return compiled.new_state(saved.manifest.inputs)
    unsaved = [*checkpoint.unsaved, *(f for position in checkpoint.inside for f in position.unsaved)]
    if unsaved:
        raise RunDirError(
            f"cannot resume {saved.run.path}: field(s) {', '.join(unsaved)} held "
            "objects that are not JSON data, so they could not be saved. Make the tool(s) that "
            "write them return str/numbers/lists/dicts/pydantic models, then run again"
        )
    try:
        return compiled.state_model(**checkpoint.state)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise RunDirError(
            f"cannot resume {saved.run.path}: saved field '{err['loc'][0]}' does "
            f"not fit the flow's state ({err['msg']}); was flow.yaml edited?"
        ) from None


def restore_session(backend: Any, saved: SavedRun) -> tuple[Any, ResumeRecord]:
    """A Session holding the saved conversation (one prefill), checked token for token."""
    from alora_flows.core.session import Session

    checkpoint, manifest = saved.checkpoint, saved.manifest
    model_id = getattr(backend, "model_id", None)
    if manifest.model_id and model_id and manifest.model_id != model_id:
        raise RunDirError(
            f"run {saved.run.path} was started on model '{manifest.model_id}', "
            f"but the loaded model is '{model_id}'; resume with the same model"
        )
    started = time.perf_counter()
    snapshot = checkpoint.session if checkpoint is not None else None
    messages = snapshot.messages if snapshot is not None else []
    documents = (
        DocumentSet(documents=snapshot.documents, render_as=snapshot.documents_as)
        if snapshot is not None and snapshot.documents
        else ()
    )
    session = Session(backend, reuse=manifest.reuse, messages=messages, documents=documents)
    saved_ids = snapshot.token_ids if snapshot is not None else None
    if saved_ids is not None and session.ids != saved_ids:
        raise RunDirError(
            f"cannot resume {saved.run.path}: the saved conversation renders to "
            f"{len(session.ids)} tokens now but was {len(saved_ids)} tokens when saved "
            "(another tokenizer or chat template?); resume with the model the run started on"
        )
    prefill = sum(s.prefill_tokens for s in session.history)
    steps = checkpoint.steps_done if checkpoint is not None else 0
    node = checkpoint.next_node if checkpoint is not None else START
    if checkpoint is not None and checkpoint.inside:
        node = "/".join([node, *(p.next_node for p in checkpoint.inside)])
    return session, ResumeRecord(
        at_step=steps,
        node=node,
        prefill_tokens=prefill,
        seconds=round(time.perf_counter() - started, 6),
        session="rebuilt",
        time=_now(),
    )


def resume_run(
    path: str | Path,
    backend: Any,
    *,
    intrinsic_specs: Any = None,
    listeners: Sequence[Any] = (),
    saved: SavedRun | None = None,
    values: Mapping[str, Any] | None = None,
) -> Any:
    """Continue a saved run on ``backend`` from its last finished step; returns the RunResult.

    ``values``: what a run paused at an interrupt waits for (required then, refused otherwise).
    A finished run is not run again: its saved final state and trace are returned. The result
    of a run that pauses again can be continued in this process with ``result.resume(...)``.
    """
    from alora_flows.flow.runner import Runner, RunResult

    saved = saved or load_run(path)
    checked = check_resume_values(saved, values)
    compiled = saved.flow.validate(intrinsic_specs=intrinsic_specs)
    state = restore_state(compiled, saved)
    checkpoint = saved.checkpoint
    if saved.finished:
        assert checkpoint is not None
        saved.finish()
        return RunResult(state=state, trace=checkpoint.trace)
    changed = sorted(
        file
        for file, digest in saved.manifest.subflow_files.items()
        if compiled.subflow_files.get(file) != digest
    )
    if changed:
        raise RunDirError(
            f"cannot resume {saved.run.path}: subflow file(s) {', '.join(changed)} changed (or "
            "are no longer used) since the run started; restore them to continue this run"
        )
    node = checkpoint.next_node if checkpoint is not None else START
    if node not in (START, END) and node not in compiled.spec.nodes:
        raise RunDirError(
            f"cannot resume {saved.run.path}: its next node '{node}' is not in "
            "flow.yaml any more; was it edited?"
        )
    inside = [
        Frame(node=p.next_node, state=p.state, trace=p.trace)
        for p in (checkpoint.inside if checkpoint else [])
    ]
    run: RunDir = saved.run
    with run.claimed():
        session, record = restore_session(backend, saved)
        runner = Runner(
            compiled, session, seed=saved.manifest.seed, listeners=[RunDirWriter(run, session), *listeners]
        )
        if checkpoint is not None:
            trace = checkpoint.trace.model_copy(update={"error": None})
        else:
            trace = runner.new_trace()
        trace.resumes = [*trace.resumes, record]
        run.update(model_id=getattr(backend, "model_id", None))
        runner.emit_started(trace, saved.manifest.inputs, resume=record)
        result = runner.run_from(state, node, trace, inside=inside, values=checked)
    result._guard = run.claimed
    return result
