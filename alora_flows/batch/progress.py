"""The batch progress bar: inputs done of total, throughput in flows per minute, ETA, failures."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from alora_flows.batch.dispatch import BatchListener
from alora_flows.batch.records import BatchInput, BatchResult


class FlowsPerMinute(ProgressColumn):
    """Finished inputs per minute since the first worker was ready (model loading excluded)."""

    def render(self, task: Any) -> Text:
        elapsed = task.elapsed
        if not elapsed or not task.completed:
            return Text("-- flows/min", style="progress.data.speed")
        return Text(f"{task.completed / elapsed * 60:.1f} flows/min", style="progress.data.speed")


class ProgressBar(BatchListener):
    """A :class:`BatchListener` drawing a rich progress bar on ``console`` (stderr)."""

    def __init__(self, console: Console, total: int, workers: int, kind: str) -> None:
        self.workers, self.kind = workers, kind
        self.ready = self.failed = self.lost = 0
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            FlowsPerMinute(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
            transient=False,
        )
        self.task: TaskID = self.progress.add_task(
            f"loading {workers} {kind} worker(s)", total=total, start=False, status=""
        )

    def __enter__(self) -> ProgressBar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def _status(self) -> str:
        parts = [f"{self.failed} failed"] if self.failed else []
        if self.lost:
            parts.append(f"{self.lost} worker(s) lost")
        return ", ".join(parts)

    def on_ready(self, worker: str) -> None:
        if self.ready == 0:
            self.progress.start_task(self.task)
        self.ready += 1
        self.progress.update(self.task, description=f"{self.ready} {self.kind} worker(s)")

    def on_result(self, result: BatchResult, written: bool) -> None:
        if not written:
            return
        if result.status != "ok":
            self.failed += 1
        self.progress.update(self.task, advance=1, status=self._status())

    def on_lost(self, worker: str, item: BatchInput | None) -> None:
        self.lost += 1
        self.ready = max(0, self.ready - 1) if worker != "(starting)" else self.ready
        self.progress.update(self.task, status=self._status())
