"""Build the shipped intrinsics for the embedded model, end to end, reproducibly.

    python -m intrinsics.build_builtin --work /tmp/intrinsics-work [--device cuda]

Steps: generate the datasets (deterministic, seed 0) -> answer the uncertainty prompts with the
base model itself (greedy + samples) and label them (Granite recipe) -> train one aLoRA per
intrinsic, plus a standard LoRA for uncertainty and rewrite (same data and budget; the paper's
parity claim) -> copy the adapters to ``intrinsics/adapters/<model>/``. Evaluation is separate:
``alora-flows eval-intrinsics``. On a GPU the whole build takes a few minutes; on a 2-core CPU
(about 150 training tokens/s) budget an hour per adapter, or lower ``--epochs``/``--limit``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from alora_flows.models import EMBEDDED_KEY

ADAPTERS_ROOT = Path(__file__).parent / "adapters"
INTRINSICS = ("uncertainty", "rewrite", "hallucination", "answerability")
LORA_TWINS = ("uncertainty", "rewrite")  # trained as standard LoRA too, for the parity table
SAMPLES = 4


def label_uncertainty_split(work: Path, split: str, model, tokenizer) -> Path:
    from intrinsics.base_answers import answer_all
    from intrinsics.data.text import read_jsonl, write_jsonl
    from intrinsics.data.uncertainty import is_correct, label_uncertainty

    records = read_jsonl(work / f"uncertainty_prompts.{split}.jsonl")
    answers = answer_all(model, tokenizer, [r["messages"] for r in records],
                         samples=0 if split == "eval" else SAMPLES, batch_size=64)
    lines = label_uncertainty(records, answers)
    for line, record, got in zip(lines, records, answers):
        line["correct"] = is_correct(got[0], record["gold"])  # of the greedy answer, for AUROC
        line["variant"] = record.get("variant")
    out = work / f"uncertainty.{split}.jsonl"
    write_jsonl(out, lines)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="scratch dir for data/checkpoints")
    parser.add_argument("--out", type=Path, default=ADAPTERS_ROOT / EMBEDDED_KEY)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--limit", type=int, default=None, help="train on the first N examples")
    parser.add_argument("--only", nargs="*", default=list(INTRINSICS))
    parser.add_argument("--no-lora-twins", action="store_true")
    args = parser.parse_args(argv)

    from intrinsics.data.build import build_all
    from intrinsics.train import TrainConfig, load_base, pick_device, train_intrinsic

    args.work.mkdir(parents=True, exist_ok=True)
    build_all(args.work, seed=0)
    device = pick_device(args.device)
    model, tokenizer, base_id = load_base(TrainConfig(data=args.work, out=args.work,
                                                      dtype="float32"), device)
    model.eval()
    report: dict[str, dict] = {}
    if "uncertainty" in args.only:
        started = time.perf_counter()
        for split in ("train", "val", "eval"):
            label_uncertainty_split(args.work, split, model, tokenizer)
        report["uncertainty_labels_s"] = {"seconds": time.perf_counter() - started}

    jobs = [(name, False) for name in args.only]
    if not args.no_lora_twins:
        jobs += [(name, True) for name in LORA_TWINS if name in args.only]
    for name, lora in jobs:
        out = args.work / "adapters" / (f"{name}-lora" if lora else name)
        config = TrainConfig(
            intrinsic=name, data=args.work / f"{name}.train.jsonl",
            val_data=args.work / f"{name}.val.jsonl", out=out, lora=lora, epochs=args.epochs,
            batch_size=args.batch_size, lr=args.lr, device=args.device, dtype="float32",
            limit=args.limit, base_model_id=base_id, eval_every=25, seed=0)
        result = train_intrinsic(config, model=model, tokenizer=tokenizer, model_id=base_id)
        report[out.name] = {"steps": result.steps, "best_step": result.best_step,
                            "best_val_loss": result.best_val_loss, "seconds": result.seconds,
                            "n_train": result.n_train, "n_val": result.n_val}
        print(json.dumps({out.name: report[out.name]}), flush=True)
        target = args.out / out.name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(out, target, ignore=shutil.ignore_patterns("checkpoint*"))
    (args.out / "build_report.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
