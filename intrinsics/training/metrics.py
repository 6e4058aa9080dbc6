"""Evaluation metrics for the intrinsics, dependency-free and checked against hand-computed values.

- certainty: AUROC of the score for "the answer was correct", expected calibration error (ECE)
- hallucination: sentence-level precision/recall/F1 with ``unfaithful`` as the positive class
- rewrite: normalised exact match and token F1 (SQuAD-style normalisation)
- answerability / classifiers: accuracy (and F1 of a chosen positive label)
- abstention thresholds: what cutting answers below a certainty threshold keeps and cuts
- uncertainty of any of these on a held-out set: percentile bootstrap intervals
"""

from __future__ import annotations

import math
import random
import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel


class PRF(BaseModel):
    precision: float
    recall: float
    f1: float
    support: int  # number of gold positives


def accuracy(y_true: Sequence[object], y_pred: Sequence[object]) -> float:
    _same_length(y_true, y_pred)
    if not y_true:
        return math.nan
    return sum(t == p for t, p in zip(y_true, y_pred)) / len(y_true)


def auroc(labels: Sequence[bool | int], scores: Sequence[float]) -> float:
    """Area under the ROC curve = P(score of a random positive > a random negative), ties count 1/2.

    ``nan`` when only one class is present (AUROC is undefined then).
    """
    _same_length(labels, scores)
    pos = [s for y, s in zip(labels, scores) if y]
    neg = [s for y, s in zip(labels, scores) if not y]
    if not pos or not neg:
        return math.nan
    # rank-based (Mann-Whitney U) with average ranks for ties: O(n log n)
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = sum(r for r, y in zip(ranks, labels) if y)
    u = rank_sum - len(pos) * (len(pos) + 1) / 2
    return u / (len(pos) * len(neg))


def expected_calibration_error(
    confidences: Sequence[float], correct: Sequence[bool | int], n_bins: int = 10
) -> float:
    """ECE with ``n_bins`` equal-width bins over [0, 1]: sum_b (n_b / n) * |accuracy_b - confidence_b|.

    A confidence of exactly 1.0 falls in the last bin; bins are (lo, hi] except the first, [0, hi].
    """
    _same_length(confidences, correct)
    if not confidences:
        return math.nan
    bins: list[list[int]] = [[] for _ in range(n_bins)]
    for idx, c in enumerate(confidences):
        if not 0.0 <= c <= 1.0:
            raise ValueError(f"confidence {c} is outside [0, 1]")
        b = max(0, math.ceil(c * n_bins) - 1)
        bins[min(b, n_bins - 1)].append(idx)
    n = len(confidences)
    ece = 0.0
    for members in bins:
        if members:
            acc = sum(bool(correct[i]) for i in members) / len(members)
            conf = sum(confidences[i] for i in members) / len(members)
            ece += len(members) / n * abs(acc - conf)
    return ece


def binary_prf(y_true: Sequence[bool], y_pred: Sequence[bool]) -> PRF:
    """Precision/recall/F1 of the positive class (``True``). Empty denominators give 0."""
    _same_length(y_true, y_pred)
    tp = sum(1 for t, p in zip(y_true, y_pred) if t and p)
    fp = sum(1 for t, p in zip(y_true, y_pred) if not t and p)
    fn = sum(1 for t, p in zip(y_true, y_pred) if t and not p)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PRF(precision=precision, recall=recall, f1=f1, support=tp + fn)


def sentence_prf(
    gold: Sequence[dict[int, str]], pred: Sequence[dict[int, str]], positive: str = "unfaithful"
) -> PRF:
    """Sentence-level P/R/F1 for ``positive`` over responses: each item maps sentence index -> label.

    Every gold sentence is scored; a sentence the prediction skipped counts as not ``positive``;
    predicted indices that do not exist in gold are ignored (they are not sentences).
    """
    _same_length(gold, pred)
    y_true, y_pred = [], []
    for g, p in zip(gold, pred):
        for r, label in g.items():
            y_true.append(label == positive)
            y_pred.append(p.get(r) == positive)
    return binary_prf(y_true, y_pred)


def answer_correct(meta: Mapping[str, Any], gold_score: float) -> bool:
    """Whether a rated answer was right: the example's ``correct`` field when it has one (the
    base answer scored against gold), else a gold certainty of at least 0.5."""
    return bool(meta.get("correct", gold_score >= 0.5))


class ThresholdPoint(BaseModel):
    """What a flow that abstains below ``threshold`` does to a set of scored answers."""

    threshold: float
    kept_correct: int
    cut_correct: int
    kept_wrong: int
    cut_wrong: int

    @property
    def net(self) -> int:
        """Wrong answers cut minus correct answers lost: the number of right keep/cut calls
        beyond keeping everything."""
        return self.cut_wrong - self.cut_correct


def threshold_sweep(
    scores: Sequence[float], correct: Sequence[bool | int], step: float = 0.05
) -> list[ThresholdPoint]:
    """One :class:`ThresholdPoint` per threshold ``step, 2*step, ...`` below 1; an answer is cut
    when its score is below the threshold (the ``certainty < t`` edge of a flow)."""
    _same_length(scores, correct)
    if not 0 < step < 1:
        raise ValueError(f"step must be in (0, 1), got {step}")
    points = []
    for i in range(1, math.ceil(1 / step - 1e-9)):
        t = round(i * step, 6)
        cut = [s < t for s in scores]
        points.append(
            ThresholdPoint(
                threshold=t,
                kept_correct=sum(1 for c, x in zip(correct, cut) if c and not x),
                cut_correct=sum(1 for c, x in zip(correct, cut) if c and x),
                kept_wrong=sum(1 for c, x in zip(correct, cut) if not c and not x),
                cut_wrong=sum(1 for c, x in zip(correct, cut) if not c and x),
            )
        )
    return points


def best_threshold(points: Sequence[ThresholdPoint]) -> ThresholdPoint:
    """The point with the most wrong answers cut minus correct answers lost; on a tie the lowest
    threshold, which loses the fewest correct answers."""
    if not points:
        raise ValueError("no thresholds to choose from")
    return max(points, key=lambda p: (p.net, -p.threshold))


def bootstrap_values(
    statistic: Callable[[Sequence[int]], float], n: int, *, resamples: int = 1000, seed: int = 0
) -> list[float]:
    """``statistic(indices)`` for each of ``resamples`` draws of ``n`` item indices with
    replacement, in draw order (``nan`` kept).

    The draws depend only on ``seed`` and ``n``: value lists computed with the same arguments are
    aligned draw by draw, so a paired comparison of two systems is their element-wise difference,
    with each system's statistic computed once.
    """
    if n < 1 or resamples < 1:
        raise ValueError(f"need n >= 1 and resamples >= 1 (got {n}, {resamples})")
    rng = random.Random(seed)
    return [statistic([rng.randrange(n) for _ in range(n)]) for _ in range(resamples)]


def percentile_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` interval of ``values``; ``nan`` values (a statistic undefined on that
    resample, e.g. an AUROC of one class) are skipped, ``(nan, nan)`` if all are."""
    if not 0 < level < 1:
        raise ValueError(f"need 0 < level < 1 (got {level})")
    kept = sorted(v for v in values if not math.isnan(v))
    if not kept:
        return math.nan, math.nan
    tail = (1 - level) / 2
    return kept[int(tail * (len(kept) - 1))], kept[math.ceil((1 - tail) * (len(kept) - 1))]


def bootstrap_ci(
    statistic: Callable[[Sequence[int]], float],
    n: int,
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(indices)`` (:func:`bootstrap_values`, then
    :func:`percentile_interval`).

    Why: held-out sets here have 200 examples, where an AUROC moves by several points from one
    sample to the next; "within 3 points" means something only next to its interval.
    """
    return percentile_interval(bootstrap_values(statistic, n, resamples=resamples, seed=seed), level)


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_text(text: str) -> str:
    """Lower-case, drop punctuation and English articles, collapse whitespace (SQuAD)."""
    text = str(text).lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(pred: str, gold: str) -> float:
    return float(normalize_text(pred) == normalize_text(gold))


def token_f1(pred: str, gold: str) -> float:
    """Harmonic mean of token precision and recall after normalisation (1.0 if both are empty)."""
    p, g = normalize_text(pred).split(), normalize_text(gold).split()
    if not p or not g:
        return float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _same_length(a: Sequence[object], b: Sequence[object]) -> None:
    if len(a) != len(b):
        raise ValueError(f"length mismatch: {len(a)} vs {len(b)}")
