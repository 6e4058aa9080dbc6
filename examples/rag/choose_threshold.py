"""Choose the RAG flow's certainty threshold on the uncertainty *validation* split (never on the
held-out RAG questions).

    python -m examples.rag.choose_threshold [--limit N] [--out examples/rag/results]

The base model answers the validation prompts (greedy), each answer is scored against gold, and
the shipped uncertainty aLoRA scores it through the Session, as the flow does. For each threshold
t, "low certainty" (score < t) would send the flow to retry/abstain: the table counts the correct
answers kept and the wrong answers cut. The threshold chosen maximises wrong cut minus correct
lost (the lower threshold on ties: abstaining costs the user an answer).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
THRESHOLDS = [round(0.1 * i, 1) for i in range(1, 10)]


def tradeoff(scores: list[float], correct: list[bool], thresholds: list[float] = THRESHOLDS) -> list[dict]:
    """Per threshold: correct answers kept, wrong answers cut, and the net gain (cut - lost)."""
    n_right = sum(correct)
    rows = []
    for t in thresholds:
        kept = sum(1 for s, c in zip(scores, correct) if c and s >= t)
        cut = sum(1 for s, c in zip(scores, correct) if not c and s < t)
        rows.append({"threshold": t, "correct_kept": kept, "correct": n_right, "wrong_cut": cut,
                     "wrong": len(correct) - n_right, "net": cut - (n_right - kept)})
    return rows


def choose(rows: list[dict]) -> float:
    best = max(r["net"] for r in rows)
    return min(r["threshold"] for r in rows if r["net"] == best)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--labelled", type=Path, default=None,
                        help="already labelled validation lines (with 'correct'); skips answering them")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)

    import copy

    from alora_flows.backend import Backend
    from intrinsics.build_builtin import label_uncertainty_split
    from intrinsics.data.build import build_all
    from intrinsics.data_format import read_jsonl
    from intrinsics.evaluate import SessionPredictor
    from intrinsics.registry import load_intrinsic

    backend = Backend.load("embedded", device="cpu")
    base = copy.deepcopy(backend.base_model)
    resolved = load_intrinsic("uncertainty", "builtin", backend.model_id, tokenizer=backend.tokenizer)
    backend.add_adapter("uncertainty", resolved.path)
    if args.labelled is not None:
        examples = read_jsonl(args.labelled)[:args.limit]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            build_all(tmp, seed=0, only=["uncertainty_prompts"])
            path = label_uncertainty_split(Path(tmp), "val", base, backend.tokenizer, samples=0)
            examples = read_jsonl(path)[:args.limit]
    predictor = SessionPredictor(backend, "uncertainty")
    scores = [resolved.spec.parse(predictor.predict(resolved.spec, ex)).score for ex in examples]
    correct = [bool(ex.meta["correct"]) for ex in examples]
    rows = tradeoff(scores, correct)
    chosen = choose(rows)
    lines = [f"Uncertainty validation split (n = {len(examples)}, {sum(correct)} base answers correct); "
             f"chosen threshold: **{chosen}**", "",
             "| threshold | correct kept | wrong cut | net (cut - lost) |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['threshold']} | {r['correct_kept']}/{r['correct']} | {r['wrong_cut']}/{r['wrong']} | {r['net']} |"
              for r in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "threshold.json").write_text(json.dumps({"chosen": chosen, "rows": rows, "scores": scores,
                                                         "correct": correct}, indent=1) + "\n")
    (args.out / "threshold.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
