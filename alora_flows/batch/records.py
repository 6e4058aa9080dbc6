"""The two files of ``alora-flows batch``: INPUTS.jsonl (read) and RESULTS.jsonl (appended).

INPUTS.jsonl has one JSON object per line, ``{"id": "q1", "inputs": {"question": "..."}}``: the id
is a string or an integer, unique in the file; ``inputs`` are the flow's declared inputs (checked
by the flow when the input runs, so a bad one is recorded as failed and the rest go on). Blank
lines are skipped.

RESULTS.jsonl has one :class:`BatchResult` per line, appended as each input finishes and flushed
to disk (``fsync``) before the next, so a crash loses at most the line being written. Rerunning
the same command reads it back and skips every id it holds (resume). Only the last line may be
torn (a crash mid-write): it is cut off and that input runs again; a malformed line elsewhere is
an error, since it means the file is not one this command wrote.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from alora_flows.errors import BatchFileError

BatchId = str | int


class BatchInput(BaseModel):
    """One line of INPUTS.jsonl."""

    model_config = ConfigDict(extra="forbid")

    id: BatchId
    inputs: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        """The id as the string results are matched by (``1`` and ``"1"`` are the same input)."""
        return str(self.id)


class BatchResult(BaseModel):
    """One line of RESULTS.jsonl: how one input ended."""

    id: BatchId
    status: Literal["ok", "error"]
    final_state: dict[str, Any] = Field(default_factory=dict)
    totals: dict[str, Any] = Field(default_factory=dict)
    path: list[str] = Field(default_factory=list)  # the nodes that ran, in order
    error: str | None = None
    seconds: float = 0.0
    worker: str = ""  # host:pid of the process that ran it
    attempts: int = 1  # > 1 when a worker was lost while running it

    @property
    def key(self) -> str:
        return str(self.id)


def _line_error(path: Path, number: int, message: str) -> BatchFileError:
    return BatchFileError(message, file=str(path), line=number)


def read_inputs(path: str | Path) -> list[BatchInput]:
    """Every input in ``path``, in file order; one clear error for the first bad line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BatchFileError(f"cannot read inputs file {path}: {exc.strerror or exc}") from None
    items: list[BatchInput] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _line_error(path, number, f"not a JSON object: {exc.msg}") from None
        if not isinstance(data, dict):
            raise _line_error(path, number, 'expected {"id": ..., "inputs": {...}}')
        if "id" not in data:
            raise _line_error(path, number, 'every line needs an "id" (a string or an integer)')
        try:
            item = BatchInput.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "line"
            raise _line_error(path, number, f"{where}: {err['msg']}") from None
        if item.key in seen:
            raise _line_error(path, number, f"id {item.id!r} is used twice (first on line {seen[item.key]})")
        seen[item.key] = number
        items.append(item)
    return items


class ResultsFile:
    """RESULTS.jsonl: what it already holds (for resume) and an appender that syncs every line.

    The driver of a batch is the only writer, and it writes each id once: :meth:`append` drops a
    result whose id is already in the file (a worker lost after finishing an input can make that
    input run twice; only the first result is kept).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.done: dict[str, BatchResult] = {}
        self.dropped_duplicates = 0
        self._handle: Any = None
        self._needs_newline = False

    # ------------------------------------------------------------------ reading
    def load(self) -> dict[str, BatchResult]:
        """Read the finished results (cutting a torn last line off the file); returns them by id."""
        self.done = {}
        if not self.path.exists():
            return self.done
        data = self.path.read_bytes()
        body, newline, tail = data.rpartition(b"\n")
        for number, raw in enumerate(body.split(b"\n") if newline else [], start=1):
            if raw.strip():
                self._keep(self._parse(raw, number))
        if tail.strip():  # bytes after the last newline: a line torn by a crash mid-write
            try:
                self._keep(BatchResult.model_validate_json(tail))
                self._needs_newline = True  # whole but for its newline: keep it
            except ValidationError:
                with self.path.open("r+b") as fh:  # cut it off; that input runs again
                    fh.truncate(len(body) + len(newline))
        return self.done

    def _parse(self, raw: bytes, number: int) -> BatchResult:
        try:
            return BatchResult.model_validate_json(raw)
        except ValidationError as exc:
            raise _line_error(self.path, number, f"not a result record: {_first_error(exc)}") from None

    def _keep(self, record: BatchResult) -> None:
        self.done.setdefault(record.key, record)

    def drop_failed(self) -> int:
        """Rewrite the file without its failed results (so they run again); returns how many."""
        failed = [k for k, r in self.done.items() if r.status != "ok"]
        if not failed:
            return 0
        for key in failed:
            del self.done[key]
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            for record in self.done.values():
                fh.write(record.model_dump_json() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        return len(failed)

    # ------------------------------------------------------------------ writing
    def __enter__(self) -> ResultsFile:
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("a", encoding="utf-8")
        if self._needs_newline:
            self._handle.write("\n")
            self._needs_newline = False
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def append(self, record: BatchResult) -> bool:
        """Write ``record`` and sync it to disk; False (nothing written) when its id is done."""
        if record.key in self.done:
            self.dropped_duplicates += 1
            return False
        self._handle.write(record.model_dump_json() + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.done[record.key] = record
        return True


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else str(err["msg"])


def pending_inputs(items: list[BatchInput], done: dict[str, BatchResult]) -> Iterator[BatchInput]:
    """The inputs that have no result yet, in file order."""
    return (item for item in items if item.key not in done)
