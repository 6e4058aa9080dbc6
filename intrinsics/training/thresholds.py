"""Choosing a flow's certainty threshold from scored answers.

Why a command for it: a flow's ``certainty < t`` edge trades correct answers lost for wrong answers
stopped, and ``t`` must be chosen on data the flow is not judged on (a validation split), not
guessed or tuned on the test questions. ``eval-intrinsics --predictions DIR`` already writes each
answer's gold and predicted certainty; this reads that file and sweeps ``t``.
"""

from __future__ import annotations

import json
from pathlib import Path

from alora_flows.errors import AloraFlowsError
from intrinsics.training.metrics import ThresholdPoint, answer_correct, best_threshold, threshold_sweep


class PredictionsFileError(AloraFlowsError):
    """A predictions file is missing or is not an uncertainty predictions file."""


def read_scored_answers(path: str | Path) -> tuple[list[float], list[bool], int]:
    """``(scores, correct, skipped)`` from an ``uncertainty.<system>.jsonl`` predictions file.

    Whether an answer is correct is decided as ``eval-intrinsics`` decides it
    (:func:`~intrinsics.training.metrics.answer_correct`); lines whose prediction was malformed are skipped
    and counted.
    """
    path = Path(path)
    if not path.is_file():
        raise PredictionsFileError(f"no predictions file at {path}")
    scores, correct, skipped = [], [], 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            gold = record["gold"]["score"]
            pred = record["prediction"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise PredictionsFileError(
                f"{path}:{number}: not an uncertainty prediction (expected gold.score and prediction.score; "
                f"write one with eval-intrinsics --predictions DIR): {exc}"
            ) from None
        if pred is None or "score" not in pred:
            skipped += 1
            continue
        scores.append(float(pred["score"]))
        correct.append(answer_correct(record.get("meta", {}), float(gold)))
    if not scores:
        raise PredictionsFileError(f"{path}: no scored answers")
    return scores, correct, skipped


def sweep_table(points: list[ThresholdPoint], best: ThresholdPoint):
    """A rich table of the sweep, the chosen threshold in bold."""
    from rich.table import Table

    table = Table(title="Abstain when certainty < t")
    for col in (
        "t",
        "keeps correct",
        "cuts wrong",
        "loses correct",
        "lets wrong through",
        "cut wrong - lost correct",
    ):
        table.add_column(col, justify="right")
    for p in points:
        table.add_row(
            f"{p.threshold:.2f}",
            str(p.kept_correct),
            str(p.cut_wrong),
            str(p.cut_correct),
            str(p.kept_wrong),
            str(p.net),
            style="bold" if p is best else None,
        )
    return table


def choose_threshold(
    path: str | Path, step: float = 0.05
) -> tuple[list[ThresholdPoint], ThresholdPoint, int]:
    """Sweep a predictions file: ``(points, best, skipped)``."""
    scores, correct, skipped = read_scored_answers(path)
    points = threshold_sweep(scores, correct, step)
    return points, best_threshold(points), skipped
