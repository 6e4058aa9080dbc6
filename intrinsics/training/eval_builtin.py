"""Evaluate the shipped intrinsics on their held-out sets: one command, reproducible anywhere.

    python -m intrinsics.training.eval_builtin [--only NAME ...] [--systems alora base ...] [--limit N]
                                      [--predictions DIR]

Regenerates the evaluation sets (deterministic, seed 0; entities and templates disjoint from
training), labels the uncertainty set with the embedded base model's own greedy answers, then
compares per intrinsic: the shipped aLoRA (through the real Session), the standard LoRA twin where
one is shipped (same data and budget), the base model prompted without an adapter, and a trivial
baseline (majority class / copy the question). Writes ``eval.json`` and ``eval.md``; a partial run
(``--only``, ``--systems``) replaces just its own rows, so rebuilding one adapter needs only its
own evaluation.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path

from alora_flows.core.models import EMBEDDED_KEY
from intrinsics.training.build_builtin import ADAPTERS_ROOT, INTRINSICS, label_uncertainty_split

RESULTS = Path(__file__).resolve().parent.parent / "results"


def markdown(rows) -> str:
    from intrinsics.training.evaluate import format_interval, interval_columns

    lines = []
    for name in dict.fromkeys(r.intrinsic for r in rows):
        subset = [r for r in rows if r.intrinsic == name]
        metrics = list(dict.fromkeys(k for r in subset for k in r.metrics))
        intervals = interval_columns(subset)
        lines += [
            f"**{name}** (n = {subset[0].n})",
            "",
            "| system | "
            + " | ".join([*metrics, *(f"{k}, 95% CI" for k in intervals)])
            + " | malformed | seconds |",
            "|---|" + "---:|" * (len(metrics) + len(intervals) + 2),
        ]
        for r in subset:
            cells = [
                f"{r.metrics[m]:.3f}" if r.metrics.get(m) == r.metrics.get(m) and m in r.metrics else "-"
                for m in metrics
            ]
            cells += [format_interval(r.ci.get(k)) for k in intervals]
            lines.append(f"| {r.system} | " + " | ".join(cells) + f" | {r.malformed} | {r.seconds:.0f} |")
        lines.append("")
    if any(r.ci for r in rows):
        lines.append(
            "95% CI: percentile bootstrap over the examples (1,000 resamples, seed 0); "
            '"<metric> - <system>": the paired difference from that system.'
        )
        lines.append("")
    return "\n".join(lines)


SYSTEMS = ("alora", "lora", "base", "trivial")


def merge_rows(previous: list, new: list) -> list:
    """``previous`` with the (intrinsic, system) rows of ``new`` replaced or added, in table order.
    A kept row's paired interval against a system that was just re-run is dropped: it compared
    with predictions that are no longer in the table."""
    rerun = {(r.intrinsic, r.system) for r in new}

    def current(r, key: str) -> bool:
        return " - " not in key or (r.intrinsic, key.rpartition(" - ")[2]) not in rerun

    kept = [r.model_copy(update={"ci": {k: v for k, v in r.ci.items() if current(r, k)}}) for r in previous]
    merged = {(r.intrinsic, r.system): r for r in [*kept, *new]}  # later rows win
    order = {name: i for i, name in enumerate(INTRINSICS)}
    return sorted(
        merged.values(),
        key=lambda r: (
            order.get(r.intrinsic, len(order)),
            SYSTEMS.index(r.system) if r.system in SYSTEMS else len(SYSTEMS),
        ),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="first N examples per intrinsic")
    parser.add_argument("--only", nargs="*", default=list(INTRINSICS), choices=INTRINSICS)
    parser.add_argument("--systems", nargs="*", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--predictions",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write every prediction to DIR/<intrinsic>.<system>.jsonl",
    )
    args = parser.parse_args(argv)

    from alora_flows.core.backend import Backend
    from intrinsics.training.data.build import build_all
    from intrinsics.training.evaluate import evaluate_file, read_rows, write_rows

    results = args.out / "eval.json"
    rows = read_rows(results)
    backend = Backend.load("embedded", device="cpu")
    base = copy.deepcopy(backend.base_model)  # unwrapped copy for the LoRA and prompted-base systems
    adapters = ADAPTERS_ROOT / EMBEDDED_KEY
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build_all(work, seed=0)
        if "uncertainty" in args.only:
            label_uncertainty_split(work, "eval", base, backend.tokenizer)
        for name in args.only:
            lora_dir = adapters / f"{name}-lora"
            new = evaluate_file(
                work / f"{name}.eval.jsonl",
                backend=backend,
                alora={name: "builtin"} if "alora" in args.systems else None,
                lora={name: lora_dir} if lora_dir.is_dir() and "lora" in args.systems else None,
                include_base="base" in args.systems,
                include_trivial="trivial" in args.systems,
                base_model=base,
                intrinsics=[name],
                train_data=work / f"{name}.train.jsonl" if name != "uncertainty" else None,
                limit=args.limit,
                predictions=args.predictions,
            )
            rows = merge_rows(rows, new)
            write_rows(rows, results)  # after each intrinsic: long runs keep results
            (args.out / "eval.md").write_text(markdown(rows))
    print(markdown(rows))
    print(json.dumps({"written": str(args.out / "eval.md")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
