"""Scores of the adapter and the heuristics on the realistic cases, with bootstrap intervals.

Metrics come from :mod:`intrinsics.training.metrics` (AUROC, ECE, sentence P/R/F1, accuracy,
exact match, token F1, bootstrap draws and percentile intervals). Intervals are percentile
bootstraps over *cases* (1,000 resamples, seed 0 by default); a paired interval ``adapter - X``
scores both systems on the same resampled cases, so cases that are hard for both cancel out.
Every system's headline is computed once per resample and the differences reuse those values,
as in :func:`intrinsics.training.evaluate._add_intervals`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from intrinsics.training.metrics import (
    accuracy,
    auroc,
    binary_prf,
    bootstrap_values,
    exact_match,
    expected_calibration_error,
    mean,
    percentile_interval,
    sentence_prf,
    token_f1,
)
from intrinsics.training.realistic import heuristics
from intrinsics.training.realistic.judge import contains, rewrite_check
from intrinsics.training.realistic.loader import HELD_OUT_DOMAINS, Case, CaseSet

#: The metric each intrinsic is judged by, and the issue's target for it.
HEADLINE = {
    "uncertainty": "auroc",
    "hallucination": "unfaithful_f1",
    "answerability": "accuracy",
    "rewrite": "standalone",
}
TARGETS = {"uncertainty": 0.80, "hallucination": 0.80, "answerability": 0.85, "rewrite": 0.90}
ADAPTER = "adapter"
#: Systems per intrinsic: the adapter first, then the baselines (the first one is "the heuristic").
SYSTEMS = {
    "uncertainty": (ADAPTER, "word overlap"),
    "hallucination": (ADAPTER, "names/numbers absent", "all faithful", "adapter, own labels"),
    "answerability": (ADAPTER, "question overlap", "majority"),
    "rewrite": (ADAPTER, "echo question"),
}
#: Systems an evaluation may add: the standard LoRA trained on the same data and budget
#: (``evaluate --twin``, uncertainty), the base model's own confidence in its answer
#: (:mod:`.token_prob`, uncertainty), and the shipped adapter beside a candidate.
TWIN = "LoRA twin"
TOKEN_PROB = "answer token probability"
#: A candidate adapter (``evaluate --adapter DIR``) is compared with the shipped one, paired.
SHIPPED = "shipped adapter"


@dataclass
class Item:
    """One case: its gold label and every system's prediction."""

    case: Case
    gold: Any
    preds: dict[str, Any] = field(default_factory=dict)
    malformed: bool = False
    memo: dict[str, float] = field(default_factory=dict)  # per-system rewrite verdicts, for resampling

    def standalone(self, system: str) -> float:
        """The rewrite verdict of ``system`` on this case (computed once: bootstraps reuse it)."""
        if system not in self.memo:
            self.memo[system] = float(rewrite_check(self.preds[system], self.gold))
        return self.memo[system]


# ---------------------------------------------------------------------------------- items
def adapter_prediction(intrinsic: str, record: Mapping[str, Any], data: Any) -> Any:
    """What one adapter's record for a case predicts, in the form :func:`metrics` reads.

    A malformed output is scored as the trivial answer (0.5 certainty, all faithful, answerable,
    the question unchanged), the way :mod:`intrinsics.training.evaluate` scores it.
    """
    bad = bool(record.get("malformed", False))
    if intrinsic == "uncertainty":
        return 0.5 if bad else float(record["score"])
    if intrinsic == "hallucination":
        if bad:
            return {i: "faithful" for i in range(len(data.answer))}
        return {int(r): f for r, f in record["labels"].items()}
    if intrinsic == "answerability":
        if bad:
            return ("answerable", 0.5)
        probability = record.get("probability")
        return (record["label"], float(probability if probability is not None else 0.5))
    if intrinsic == "rewrite":
        return data.question if bad else str(record["rewritten_question"])
    raise ValueError(f"unknown intrinsic '{intrinsic}'")


def build_items(
    intrinsic: str,
    cases: Sequence[Case],
    case_set: CaseSet,
    records: Mapping[str, Mapping[str, Any]],
    answers: Mapping[str, Mapping[str, Any]] | None = None,
    others: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
) -> list[Item]:
    """Gold and predictions of all systems for ``cases`` (``records``: the adapter's, by case id;
    ``others``: system name -> another adapter-like system's records, such as the :data:`TWIN`
    or the :data:`SHIPPED` adapter a candidate is compared with)."""
    items = []
    majority = "answerable"
    if intrinsic == "answerability":
        counts = Counter(str(getattr(c.data, "label", "")) for c in cases)
        majority = max(sorted(counts), key=lambda k: counts[k])
    for case in cases:
        record = records.get(case.id, {})
        bad = bool(record.get("malformed", False))
        docs = case_set.doc_texts(case)
        data: Any = case.data  # its type follows from ``intrinsic``
        if intrinsic == "uncertainty":
            answer = (answers or {})[case.id]
            item = Item(case, bool(answer["correct"]), malformed=bad)
            item.preds["word overlap"] = heuristics.overlap_certainty(answer["answer"], docs)
        elif intrinsic == "hallucination":
            item = Item(case, {i: s.f for i, s in enumerate(data.answer)}, malformed=bad)
            item.preds["adapter, own labels"] = (
                dict.fromkeys(item.gold, "faithful")
                if bad
                else {int(r): f for r, f in record["adapter_labels"].items()}
            )
            item.preds["names/numbers absent"] = heuristics.hallucination_labels(data.answer_text, docs)
            item.preds["all faithful"] = dict.fromkeys(item.gold, "faithful")
        elif intrinsic == "answerability":
            item = Item(case, data.label, malformed=bad)
            share = heuristics.question_overlap(data.question, docs)
            label = "answerable" if share >= heuristics.ANSWERABLE_OVERLAP else "unanswerable"
            item.preds["question overlap"] = (label, share)
            item.preds["majority"] = (majority, 0.5)
        elif intrinsic == "rewrite":
            item = Item(case, data, malformed=bad)
            item.preds["echo question"] = heuristics.echo_rewrite(data.question)
        else:
            raise ValueError(f"unknown intrinsic '{intrinsic}'")
        item.preds[ADAPTER] = adapter_prediction(intrinsic, record, data)
        for system, other_records in (others or {}).items():
            item.preds[system] = adapter_prediction(intrinsic, other_records[case.id], data)
        items.append(item)
    return items


# ---------------------------------------------------------------------------------- metrics
def _three_way(gold: Sequence[dict[int, str]], pred: Sequence[dict[int, str]]) -> float:
    pairs = [(label, p.get(r, "faithful")) for g, p in zip(gold, pred) for r, label in g.items()]
    return accuracy([a for a, _ in pairs], [b for _, b in pairs])


def metrics(
    intrinsic: str, items: Sequence[Item], system: str, *, headline_only: bool = False
) -> dict[str, float]:
    """Metrics of ``system`` on ``items`` (only the headline when ``headline_only``)."""
    golds = [it.gold for it in items]
    preds = [it.preds[system] for it in items]
    if intrinsic == "uncertainty":
        out = {"auroc": auroc(golds, preds)}
        if not headline_only:
            right = [p for g, p in zip(golds, preds) if g]
            wrong = [p for g, p in zip(golds, preds) if not g]
            out.update(
                ece=expected_calibration_error(preds, golds),
                mean_score_right=mean(right),
                mean_score_wrong=mean(wrong),
            )
        return out
    if intrinsic == "hallucination":
        prf = sentence_prf(golds, preds)
        out = {"unfaithful_f1": prf.f1}
        if not headline_only:
            not_faithful = sentence_prf(
                [{r: "unfaithful" if f != "faithful" else f for r, f in g.items()} for g in golds],
                [{r: "unfaithful" if f != "faithful" else f for r, f in p.items()} for p in preds],
            )
            out.update(
                precision=prf.precision,
                recall=prf.recall,
                sentence_accuracy_3way=_three_way(golds, preds),
                response_accuracy=accuracy(
                    ["unfaithful" in g.values() for g in golds], ["unfaithful" in p.values() for p in preds]
                ),
                not_faithful_f1=not_faithful.f1,
            )
        return out
    if intrinsic == "answerability":
        labels = [p[0] for p in preds]
        out = {"accuracy": accuracy(golds, labels)}
        if not headline_only:
            unanswerable = binary_prf(
                [g == "unanswerable" for g in golds], [p == "unanswerable" for p in labels]
            )
            out.update(
                unanswerable_f1=unanswerable.f1,
                unanswerable_recall=unanswerable.recall,
                auroc=auroc([g == "answerable" for g in golds], [p[1] for p in preds]),
            )
        return out
    if intrinsic == "rewrite":
        out = {"standalone": mean([it.standalone(system) for it in items])}
        if not headline_only:
            out.update(
                right_entity=mean(
                    [float(any(contains(p, e) for e in g.entity)) for g, p in zip(golds, preds)]
                ),
                right_attribute=mean(
                    [float(any(contains(p, a) for a in g.attribute)) for g, p in zip(golds, preds)]
                ),
                exact_match=mean([exact_match(p, g.gold) for g, p in zip(golds, preds)]),
                token_f1=mean([token_f1(p, g.gold) for g, p in zip(golds, preds)]),
            )
        return out
    raise ValueError(f"unknown intrinsic '{intrinsic}'")


def _clean(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(value, 4)


def _interval(values: Sequence[float]) -> list[float | None]:
    return [_clean(v) for v in percentile_interval(values)]


def _draws(
    intrinsic: str, items: Sequence[Item], systems: Sequence[str], resamples: int, seed: int
) -> dict[str, list[float]]:
    """Headline of each system on the same ``resamples`` bootstrap draws of ``items``."""

    def statistic(system: str) -> Callable[[Sequence[int]], float]:
        return lambda idx: metrics(intrinsic, [items[i] for i in idx], system, headline_only=True)[
            HEADLINE[intrinsic]
        ]

    return {s: bootstrap_values(statistic(s), len(items), resamples=resamples, seed=seed) for s in systems}


def _with_intervals(
    intrinsic: str, items: Sequence[Item], systems: Sequence[str], resamples: int, seed: int
) -> dict[str, Any]:
    key = HEADLINE[intrinsic]
    draws = _draws(intrinsic, items, systems, resamples, seed)
    return {
        "n": len(items),
        "values": {s: _clean(metrics(intrinsic, items, s, headline_only=True)[key]) for s in systems},
        "ci": {s: _interval(draws[s]) for s in systems},
        "paired": {
            f"{ADAPTER} - {s}": _interval([a - b for a, b in zip(draws[ADAPTER], draws[s])])
            for s in systems
            if s != ADAPTER
        },
    }


def _values(intrinsic: str, items: Sequence[Item], systems: Sequence[str]) -> dict[str, Any]:
    key = HEADLINE[intrinsic]
    return {
        "n": len(items),
        "values": {s: _clean(metrics(intrinsic, items, s, headline_only=True)[key]) for s in systems},
    }


def _group(items: Sequence[Item], key: Callable[[Item], str]) -> dict[str, list[Item]]:
    groups: dict[str, list[Item]] = {}
    for it in items:
        groups.setdefault(key(it), []).append(it)
    return dict(sorted(groups.items()))


def _kinds(intrinsic: str, items: Sequence[Item], systems: Sequence[str]) -> dict[str, Any]:
    """What each system does per kind of case: answerability/rewrite accuracy per case kind,
    hallucination share of sentences called unfaithful per sentence kind, uncertainty mean score
    of right and wrong answers."""
    if intrinsic == "hallucination":
        rows: dict[str, dict[str, Any]] = {}
        for it in items:
            answer: Any = getattr(it.case.data, "answer", [])
            for r, sentence in enumerate(answer):
                row = rows.setdefault(f"{sentence.f}/{sentence.why}", {"n": 0, **{s: 0 for s in systems}})
                row["n"] += 1
                for s in systems:
                    row[s] += it.preds[s].get(r) == "unfaithful"
        return {
            k: {"n": v["n"], "called_unfaithful": {s: round(v[s] / v["n"], 4) for s in systems}}
            for k, v in sorted(rows.items())
        }
    if intrinsic == "uncertainty":
        split = {"right": [it for it in items if it.gold], "wrong": [it for it in items if not it.gold]}
        return {
            label: {
                "n": len(group),
                "mean_score": {s: _clean(mean([it.preds[s] for it in group])) for s in systems},
            }
            for label, group in split.items()
        }
    return {
        k: _values(intrinsic, group, systems) for k, group in _group(items, lambda it: it.case.kind).items()
    }


def score_intrinsic(
    intrinsic: str, items: Sequence[Item], *, resamples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Everything the report shows for one intrinsic (its :data:`SYSTEMS`, then any other system
    the items carry, such as the :data:`TWIN`)."""
    systems = (
        *SYSTEMS[intrinsic],
        *(s for s in (items[0].preds if items else ()) if s not in SYSTEMS[intrinsic]),
    )
    overall = _with_intervals(intrinsic, items, systems, resamples, seed)
    held = [it for it in items if it.case.domain in HELD_OUT_DOMAINS]
    domains = {}
    for domain, group in _group(items, lambda it: it.case.domain).items():
        entry = _with_intervals(intrinsic, group, systems, resamples, seed)
        domains[domain] = {"n": entry["n"], "values": entry["values"], "paired": entry["paired"]}
    return {
        "n": len(items),
        "headline": HEADLINE[intrinsic],
        "target": TARGETS[intrinsic],
        "systems": {s: {k: _clean(v) for k, v in metrics(intrinsic, items, s).items()} for s in systems},
        "values": overall["values"],
        "ci": overall["ci"],
        "paired": overall["paired"],
        "malformed": sum(it.malformed for it in items),
        "held_out": {
            "domains": list(HELD_OUT_DOMAINS),
            **_with_intervals(intrinsic, held, systems, resamples, seed),
        }
        if held
        else None,
        "domains": domains,
        "styles": {
            k: _values(intrinsic, g, systems) for k, g in _group(items, lambda it: it.case.style).items()
        },
        "kinds": _kinds(intrinsic, items, systems),
    }
