"""Evaluate the shipped intrinsics on their held-out sets: one command, reproducible anywhere.

    python -m intrinsics.eval_builtin [--limit N] [--out intrinsics/results]

Regenerates the evaluation sets (deterministic, seed 0; entities and templates disjoint from
training), labels the uncertainty set with the embedded base model's own greedy answers, then
compares per intrinsic: the shipped aLoRA (through the real Session), the standard LoRA twin where
one is shipped (same data and budget), the base model prompted without an adapter, and a trivial
baseline (majority class / copy the question). Writes ``eval.json`` and ``eval.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path

from alora_flows.models import EMBEDDED_KEY

from .build_builtin import ADAPTERS_ROOT, INTRINSICS, label_uncertainty_split

RESULTS = Path(__file__).parent / "results"


def markdown(rows) -> str:
    lines = []
    for name in dict.fromkeys(r.intrinsic for r in rows):
        subset = [r for r in rows if r.intrinsic == name]
        metrics = list(dict.fromkeys(k for r in subset for k in r.metrics))
        lines += [f"**{name}** (n = {subset[0].n})", "",
                  "| system | " + " | ".join(metrics) + " | malformed | seconds |",
                  "|---|" + "---:|" * (len(metrics) + 2)]
        for r in subset:
            cells = [f"{r.metrics[m]:.3f}" if r.metrics.get(m) == r.metrics.get(m) and m in r.metrics
                     else "-" for m in metrics]
            lines.append(f"| {r.system} | " + " | ".join(cells) + f" | {r.malformed} | {r.seconds:.0f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="first N examples per intrinsic")
    parser.add_argument("--only", nargs="*", default=list(INTRINSICS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from alora_flows.backend import Backend
    from intrinsics.data.build import build_all

    from .evaluate import evaluate_file, write_rows

    backend = Backend.load("embedded", device="cpu")
    base = copy.deepcopy(backend.base_model)  # unwrapped copy for the LoRA and prompted-base systems
    adapters = ADAPTERS_ROOT / EMBEDDED_KEY
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build_all(work, seed=0)
        if "uncertainty" in args.only:
            label_uncertainty_split(work, "eval", base, backend.tokenizer)
        for name in args.only:
            lora_dir = adapters / f"{name}-lora"
            rows += evaluate_file(
                work / f"{name}.eval.jsonl", backend=backend, alora={name: "builtin"},
                lora={name: lora_dir} if lora_dir.is_dir() else None, base_model=base,
                train_data=work / f"{name}.train.jsonl" if name != "uncertainty" else None,
                limit=args.limit)
            write_rows(rows, args.out / "eval.json")  # after each intrinsic: long runs keep results
            (args.out / "eval.md").write_text(markdown(rows))
    Console().print(rows_table(rows))
    print(json.dumps({"written": str(args.out / "eval.md")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
