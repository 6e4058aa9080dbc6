"""The accuracy cost of the half-precision KV cache on the realistic intrinsic evaluation.

Runs the shipped answerability and uncertainty intrinsics on the hand-written realistic cases
(``intrinsics/training/realistic``, through its own loaders, predictor and scoring: each case is a
fresh Session holding the conversation a flow would have, the intrinsic called with
``spec.run``) twice: on a backend with the exact KV cache (``kv_dtype="auto"``, the default) and
on one with ``kv_dtype="float16"``. Reports each system's headline metric with its bootstrap
interval, the paired difference f16 - exact on the same resampled cases, and how many
predictions changed (label, digit) and by how much the probabilities moved.

The uncertainty cases rate the base model's stored answers (``cases/base_answers.jsonl``), the
same for both caches, so the comparison isolates the intrinsic call. Per-case outputs are
checkpointed under ``--work`` (one directory per cache): a rerun continues, and a larger
``--limit`` only computes the new cases.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/kv_dtype_accuracy.py              # all cases, ~1.5 h on one core
    OMP_NUM_THREADS=1 python benchmarks/kv_dtype_accuracy.py --limit 100  # first 100 cases each
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, environment, quiet_cpu, write_results

KVS = ("auto", "float16")
INTRINSICS = ("answerability", "uncertainty")


def changed(name: str, a: dict, b: dict) -> tuple[bool, float]:
    """Whether the prediction differs, and the absolute change of its probability/score."""
    if name == "answerability":
        return a.get("label") != b.get("label"), abs(
            float(a.get("probability") or 0) - float(b.get("probability") or 0)
        )
    return a.get("digit") != b.get("digit"), abs(float(a.get("score") or 0) - float(b.get("score") or 0))


def paired_interval(name: str, items: dict, resamples: int) -> list[float]:
    """Percentile bootstrap of metric(f16) - metric(exact) over cases resampled together."""
    from intrinsics.training.realistic.scoring import ADAPTER, HEADLINE, metrics

    ids = sorted(items["auto"])
    rng = random.Random(0)
    diffs = []
    for _ in range(resamples):
        pick = [rng.choice(ids) for _ in ids]
        values = [
            metrics(name, [items[kv][i] for i in pick], ADAPTER, headline_only=True)[HEADLINE[name]]
            for kv in KVS
        ]
        if not any(v is None or v != v for v in values):  # AUROC is NaN on a one-class draw
            diffs.append(values[1] - values[0])
    diffs.sort()
    if not diffs:
        return [float("nan"), float("nan")]
    return [diffs[int(0.025 * (len(diffs) - 1))], diffs[int(0.975 * (len(diffs) - 1))]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", default=list(INTRINSICS), choices=INTRINSICS)
    parser.add_argument("--limit", type=int, default=None, help="first N cases per intrinsic")
    parser.add_argument(
        "--limit-for",
        nargs="*",
        default=[],
        metavar="NAME=N",
        help="a limit for one intrinsic (overrides --limit for it), e.g. uncertainty=150",
    )
    parser.add_argument("--work", type=Path, default=Path("runs") / "kv-dtype-eval")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="kv_dtype_accuracy")
    args = parser.parse_args()
    quiet_cpu(args.threads)

    from alora_flows.core.backend import Backend
    from alora_flows.core.tuning import apply_cpu_tuning
    from intrinsics.training.realistic.base_answers import current_answers
    from intrinsics.training.realistic.evaluate import evaluate_intrinsic
    from intrinsics.training.realistic.loader import load_cases
    from intrinsics.training.realistic.predict import Checkpoint
    from intrinsics.training.realistic.scoring import build_items

    started = time.perf_counter()
    case_set = load_cases()
    backends = {kv: Backend.load("embedded", device="cpu", progress=False, kv_dtype=kv) for kv in KVS}
    apply_cpu_tuning()  # what alora_flows.app.load_backend does on CPU (as the realistic evaluation)
    model_id = backends["auto"].model_id
    answers = current_answers(case_set, model_id)
    limits = {name: args.limit for name in args.only}
    for item in args.limit_for:
        name, _, n = item.partition("=")
        limits[name] = int(n)
    rows = []
    for name in args.only:
        cases = case_set.cases[name][: limits[name]]
        if name == "uncertainty":
            cases = [c for c in cases if c.id in answers]  # rated answers are stored, never regenerated here
        results, records, items = {}, {}, {}
        for kv in KVS:
            work = args.work / kv
            results[kv] = evaluate_intrinsic(
                name,
                backends[kv],
                case_set,
                work,
                limit=limits[name],
                resamples=args.resamples,
                answers=answers,
            )
            records[kv] = {c.id: Checkpoint(work / f"{name}.jsonl").records[c.id] for c in cases}
            scored = build_items(name, cases, case_set, records[kv], answers)
            items[kv] = {c.id: it for c, it in zip(cases, scored)}
            print(f"{name} {kv}: {results[kv]['values']['adapter']}", flush=True)
        flips = [changed(name, records["auto"][c.id], records["float16"][c.id]) for c in cases]
        deltas = [d for _, d in flips]
        row = {
            "intrinsic": name,
            "n": len(cases),
            "metric": results["auto"]["headline"],
            "exact": {"value": results["auto"]["values"]["adapter"], "ci": results["auto"]["ci"]["adapter"]},
            "float16": {
                "value": results["float16"]["values"]["adapter"],
                "ci": results["float16"]["ci"]["adapter"],
            },
            "f16_minus_exact_ci": paired_interval(name, items, args.resamples),
            "predictions_changed": sum(f for f, _ in flips),
            "probability_abs_change": {
                "median": statistics.median(deltas),
                "max": max(deltas),
                "mean": statistics.fmean(deltas),
            },
            "malformed": {kv: sum(bool(r.get("malformed")) for r in records[kv].values()) for kv in KVS},
            "seconds_per_case": {kv: results[kv]["adapter_seconds_per_case"] for kv in KVS},
        }
        rows.append(row)
        print(row, flush=True)

    result = {
        "benchmark": "kv_dtype_accuracy",
        "model": backends["auto"].model_id,
        "limits": limits,
        "resamples": args.resamples,
        "environment": environment(),
        "total_seconds": time.perf_counter() - started,
        "rows": rows,
    }
    limit = (
        "all cases"
        if not any(limits.values())
        else "the first " + ", ".join(f"{n} {k}" for k, n in limits.items() if n) + " cases"
    )
    md = [
        f"Realistic evaluation ({limit}), shipped adapters on {result['model']}, exact KV cache "
        f'(`kv_dtype="auto"`, float32) vs `kv_dtype="float16"`; 95% percentile bootstrap over cases '
        f"({args.resamples:,} resamples, seed 0), paired on the same resampled cases.",
        "",
        "| intrinsic | metric | n | exact [95% CI] | float16 KV [95% CI] | f16 - exact [95% CI] | predictions "
        "changed | |prob. change| median / max | s per case exact / f16 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def ci(v: list) -> str:
        return f"[{v[0]:.3f}, {v[1]:.3f}]" if v and None not in v and v[0] == v[0] else "-"

    def f(v: float | None, sign: str = "") -> str:
        return "-" if v is None else f"{v:{sign}.3f}"

    def gap(r: dict) -> float | None:
        a, b = r["exact"]["value"], r["float16"]["value"]
        return None if a is None or b is None else b - a

    md += [
        f"| {r['intrinsic']} | {r['metric']} | {r['n']} | {f(r['exact']['value'])} {ci(r['exact']['ci'])} | "
        f"{f(r['float16']['value'])} {ci(r['float16']['ci'])} | "
        f"{f(gap(r), '+')} {ci(r['f16_minus_exact_ci'])} | "
        f"{r['predictions_changed']} of {r['n']} | {r['probability_abs_change']['median']:.4f} / "
        f"{r['probability_abs_change']['max']:.4f} | {r['seconds_per_case']['auto']:.2f} / "
        f"{r['seconds_per_case']['float16']:.2f} |"
        for r in rows
    ]
    md += [
        "",
        "Predictions changed: answerability label or uncertainty digit differs between the two "
        "caches; probability change: answerability P(answerable), uncertainty certainty score. "
        f"Command: `OMP_NUM_THREADS=1 python benchmarks/kv_dtype_accuracy.py"
        f"{f' --limit {args.limit}' if args.limit else ''}"
        f"{(' --limit-for ' + ' '.join(args.limit_for)) if args.limit_for else ''}`.",
    ]
    write_results(args.out, args.name, result, md)


if __name__ == "__main__":
    main()
