"""CLI: ``python -m intrinsics.training.data.build --out DIR --seed N``.

Writes ``DIR/{rewrite,hallucination,answerability,uncertainty_prompts}.{train,val,eval}.jsonl``
plus ``DIR/manifest.json`` (seed, sizes, label counts, token-length estimates). Train/val use the
train/val entity pools with train templates; eval uses the eval pool and held-out templates.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from intrinsics.training.data import answerability, hallucination, rewrite, uncertainty
from intrinsics.training.data.common import DATA_SPLITS
from intrinsics.training.data.kb import KnowledgeBase, generate_kb
from intrinsics.training.data.text import estimate_tokens, normalize_question, write_jsonl

DEFAULT_SIZES = {"train": 1200, "val": 200, "eval": 200}

Builder = Callable[[KnowledgeBase, str, int, int], list[dict]]
DATASETS: dict[str, Builder] = {
    "rewrite": rewrite.build,
    "hallucination": hallucination.build,
    "answerability": answerability.build,
    "uncertainty_prompts": uncertainty.build_prompts,
}


def _label_key(name: str, row: dict) -> str:
    """A coarse label for the manifest: the class, or whether any sentence is non-faithful."""
    if name == "hallucination":
        bad = any(s["f"] != "faithful" for s in json.loads(row["output"]))
        return "has_nonfaithful" if bad else "all_faithful"
    if name == "rewrite":
        target = json.loads(row["output"])["rewritten_question"]
        return "standalone" if normalize_question(row["messages"][-1]["content"]) == target else "contextual"
    if name == "uncertainty_prompts":
        return row["variant"]
    return row["output"]


def build_all(
    out: str | Path, seed: int = 0, sizes: dict[str, int] | None = None, only: list[str] | None = None
) -> dict:
    """Builds every dataset into ``out``; returns the manifest it also writes."""
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    out = Path(out)
    kb = generate_kb(seed)
    manifest: dict = {"seed": seed, "sizes": sizes, "datasets": {}}
    for name, builder in DATASETS.items():
        if only and name not in only:
            continue
        for split in DATA_SPLITS:
            rows = builder(kb, split, sizes[split], seed)
            write_jsonl(out / f"{name}.{split}.jsonl", rows)
            lengths = [estimate_tokens(r["messages"], r.get("output", "")) for r in rows]
            manifest["datasets"][f"{name}.{split}"] = {
                "n": len(rows),
                "labels": dict(sorted(Counter(_label_key(name, r) for r in rows).items())),
                "est_tokens": {
                    "mean": round(statistics.fmean(lengths), 1) if lengths else 0,
                    "max": max(lengths, default=0),
                },
            }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m intrinsics.training.data.build", description="Build the synthetic intrinsic datasets."
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train", type=int, default=DEFAULT_SIZES["train"])
    p.add_argument("--val", type=int, default=DEFAULT_SIZES["val"])
    p.add_argument("--eval", type=int, default=DEFAULT_SIZES["eval"])
    p.add_argument("--only", default="", help=f"comma-separated subset of {','.join(DATASETS)}")
    args = p.parse_args(argv)
    only = [s for s in args.only.split(",") if s]
    unknown = set(only) - set(DATASETS)
    if unknown:
        print(f"error: unknown dataset(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    manifest = build_all(args.out, args.seed, {"train": args.train, "val": args.val, "eval": args.eval}, only)
    for name, info in manifest["datasets"].items():
        print(
            f"{name:34s} n={info['n']:5d}  tokens~mean {info['est_tokens']['mean']:6.1f} "
            f"max {info['est_tokens']['max']:4d}  {info['labels']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
