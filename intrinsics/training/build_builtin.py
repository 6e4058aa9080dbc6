"""Build the shipped intrinsics for the embedded model, end to end, reproducibly.

    python -m intrinsics.training.build_builtin --work /tmp/intrinsics-work [--device cuda] [--only NAME ...]

Steps, per intrinsic, with its :data:`RECIPES` entry (command-line options override it): generate
its dataset (deterministic, seed 0) -> for uncertainty, answer the prompts with the base model
itself and label the answers -> train the aLoRA, plus a standard LoRA twin for uncertainty (same
data and budget; the paper's parity claim) -> copy the adapters to ``intrinsics/adapters/<model>/``
and record the run in ``build_report.json``. Evaluation is separate: ``python -m
intrinsics.training.eval_builtin``. On an H200 each adapter takes about a minute; on a 2-core CPU (with the
trainer's prefix cache, ~400 training tokens/s) 10-80 minutes (hallucination, with its evidence
tokens, the longest), labelling uncertainty ~15 more.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import inspect
import json
import random
import shutil
import sys
import time
from pathlib import Path
from types import ModuleType

from pydantic import BaseModel

from alora_flows.core.models import EMBEDDED_KEY

ADAPTERS_ROOT = Path(__file__).resolve().parent.parent / "adapters"
INTRINSICS = ("uncertainty", "rewrite", "hallucination", "answerability")
LORA_TWINS = ("uncertainty",)  # trained as standard LoRA too, for the parity table
#: Each intrinsic's realistic-style generator (``--realworld``), ``module:function`` with
#: ``function(split, n, seed) -> rows``. All draw their subjects from ``realworld``. Uncertainty's
#: rows are prompts: they are mixed with the synthetic prompts, then answered and labelled.
REALWORLD_GENERATORS = {
    "answerability": "intrinsics.training.data.realworld:build",
    "rewrite": "intrinsics.training.data.realworld_rewrite:build",
    "hallucination": "intrinsics.training.data.realworld_hallucination:build",
    "uncertainty": "intrinsics.training.data.realworld:build_uncertainty_prompts",
}


class Recipe(BaseModel):
    """How one shipped adapter is built (see ``adapters/<model>/BUILD.md`` for why)."""

    train_size: int = 1200
    epochs: int = 3
    eval_every: int = 25
    samples: int = 0  # uncertainty only: sampled answers per prompt, 0 = greedy correctness
    # Realistic-style examples (REALWORLD_GENERATORS, one per intrinsic) added to the
    # synthetic ones; validation then mixes ``realworld_val`` of them with as many synthetic ones.
    realworld: int = 0
    realworld_val: int = 100
    synthetic: int | None = None  # with realworld: only the first N synthetic training examples


RECIPES: dict[str, Recipe] = {
    # Each greedy answer's own correctness (9/0), on three times the answers: with the documents
    # in the conversation, whether *this* answer is right is observable. The first build's
    # labels (share right of greedy + 4 samples, 1,200 answers) reached AUROC 0.713; see BUILD.md.
    "uncertainty": Recipe(train_size=3600, epochs=2, eval_every=50),
    # More examples and steps: the rewrite must generalise to unseen question wordings. Shipped:
    # this recipe, then a second stage from its weights on realistic-style follow-ups (pronouns,
    # ellipsis, references, switches about real-world subjects), which took realistic standalone
    # rewrites from 0.563 to 0.700 (BUILD.md): --only rewrite --realworld 1500 --synthetic 500
    # --epochs 1 --init-adapter <the first stage's adapter>.
    "rewrite": Recipe(train_size=2400, epochs=2, eval_every=50),
    # Evidence ("e": the documents' value) before each label, and more data: with labels alone
    # and 1,200 examples it mostly said "faithful" on held-out templates (see BUILD.md). Its data
    # uses eight wordings per attribute (intrinsics/data/paraphrases.py). 3,600 examples (450
    # steps) instead of 2,400: validation F1 0.798 -> 0.842 (BUILD.md).
    "hallucination": Recipe(train_size=3600, epochs=2, eval_every=50),
    # Shipped: synthetic data only. Tried and not shipped (BUILD.md): fine-tuning it from its own
    # weights on 900 realistic-style + 300 synthetic examples (--realworld 900 --synthetic 300).
    "answerability": Recipe(),
}


def _generator_hash(module: ModuleType) -> str:
    """The generator's source and that of the subject pool it draws from (``realworld``, which
    for answerability is the generator itself): a change to either rebuilds the mixed files."""
    from intrinsics.training.data import realworld

    files = dict.fromkeys([inspect.getfile(module), inspect.getfile(realworld)])
    return hashlib.sha256(b"".join(Path(f).read_bytes() for f in files)).hexdigest()


def _stem(name: str) -> str:
    """The file stem of ``name``'s generated rows: uncertainty's are prompts, labelled later."""
    return "uncertainty_prompts" if name == "uncertainty" else name


def mix_realworld(work: Path, name: str, recipe: Recipe, seed: int = 0) -> tuple[Path, Path]:
    """Write ``<stem>.mix.{train,val}.jsonl``: the synthetic split plus realistic-style rows from
    ``name``'s generator (:data:`REALWORLD_GENERATORS`); ``stem`` is ``name``, or
    ``uncertainty_prompts`` for uncertainty, whose mixed prompts are labelled afterwards.

    Deterministic (seeded shuffle), and skipped when the files exist with the same inputs, so an
    interrupted build resumes without rewriting what training may already be reading."""
    from intrinsics.training.data.text import read_jsonl, write_jsonl

    if name not in REALWORLD_GENERATORS:
        raise ValueError(
            f"no realistic-style generator for {name!r} (have: {', '.join(REALWORLD_GENERATORS)})"
        )
    module_name, function = REALWORLD_GENERATORS[name].split(":")
    generator = importlib.import_module(module_name)
    build = getattr(generator, function)

    stem = _stem(name)
    out = {split: work / f"{stem}.mix.{split}.jsonl" for split in ("train", "val")}
    stamp = work / f"{stem}.mix.json"
    sources = {split: work / f"{stem}.{split}.jsonl" for split in ("train", "val")}
    key = {
        "realworld": recipe.realworld,
        "realworld_val": recipe.realworld_val,
        "synthetic": recipe.synthetic,
        "seed": seed,
        "sources": {s: hashlib.sha256(p.read_bytes()).hexdigest() for s, p in sources.items()},
        "generator": _generator_hash(generator),
    }
    if all(p.is_file() for p in out.values()) and stamp.is_file() and json.loads(stamp.read_text()) == key:
        return out["train"], out["val"]
    sizes = {"train": recipe.realworld, "val": recipe.realworld_val}
    for split, path in out.items():
        real = build(split, sizes[split], seed)
        write_jsonl(work / f"{stem}_realworld.{split}.jsonl", real)
        synthetic = read_jsonl(sources[split])
        if split == "val":
            synthetic = synthetic[: recipe.realworld_val]
        elif recipe.synthetic is not None:
            synthetic = synthetic[: recipe.synthetic]
        rows = synthetic + real
        random.Random(f"mix:{name}:{split}:{seed}").shuffle(rows)
        tmp = path.with_suffix(".tmp")
        write_jsonl(tmp, rows)
        tmp.replace(path)
    stamp.write_text(json.dumps(key))
    return out["train"], out["val"]


def label_uncertainty_split(
    work: Path, split: str, model, tokenizer, *, samples: int = 0, mixed: bool = False
) -> Path:
    """Answer ``split``'s uncertainty prompts with the base model and write the labelled lines:
    ``uncertainty_prompts[.mix].<split>.jsonl`` -> ``uncertainty[.mix].<split>.jsonl`` (``mixed``:
    the prompts :func:`mix_realworld` wrote).

    ``samples`` > 0: greedy + that many sampled answers, digit = share correct (Granite recipe).
    ``samples`` = 0: the greedy answer's own correctness (9/0). Here the documents are in the
    conversation, so whether *this* answer is right is observable, and that is exactly what the
    flow asks; the eval split is always labelled this way. Labels already in ``work`` for the same
    prompts and ``samples`` are reused (labelling is the slow part on a CPU).
    """
    from intrinsics.training.base_answers import answer_all
    from intrinsics.training.data.text import read_jsonl, write_jsonl
    from intrinsics.training.data.uncertainty import is_correct, label_uncertainty

    samples = 0 if split == "eval" else samples
    part = f"mix.{split}" if mixed else split
    prompts = work / f"uncertainty_prompts.{part}.jsonl"
    out, stamp = work / f"uncertainty.{part}.jsonl", work / f"uncertainty.{part}.labels.json"
    key = {"samples": samples, "prompts": hashlib.sha256(prompts.read_bytes()).hexdigest()}
    if out.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == key:
        return out
    records = read_jsonl(prompts)
    answers = answer_all(model, tokenizer, [r["messages"] for r in records], samples=samples, batch_size=64)
    lines = label_uncertainty(records, answers)
    for line, record, got in zip(lines, records, answers):
        line["correct"] = is_correct(got[0], record["gold"])  # of the greedy answer, for AUROC
        line["variant"] = record.get("variant")
    write_jsonl(out, lines)
    stamp.write_text(json.dumps(key))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="scratch dir for data/checkpoints")
    parser.add_argument("--out", type=Path, default=ADAPTERS_ROOT / EMBEDDED_KEY)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipes' epochs")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--limit", type=int, default=None, help="train on the first N examples")
    parser.add_argument(
        "--train-size", type=int, default=None, help="override the recipes' training set size"
    )
    parser.add_argument(
        "--eval-every", type=int, default=None, help="override: validate every N optimizer steps"
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=None,
        help="override: sampled base answers per uncertainty prompt (0: greedy correctness)",
    )
    parser.add_argument(
        "--realworld", type=int, default=None, help="override: realistic-style examples added to training"
    )
    parser.add_argument(
        "--synthetic", type=int, default=None, help="override, with --realworld: first N synthetic examples"
    )
    parser.add_argument(
        "--realworld-val", type=int, default=None, help="override: realistic-style validation examples"
    )
    parser.add_argument("--only", nargs="*", default=list(INTRINSICS), choices=INTRINSICS)
    parser.add_argument("--no-lora-twins", action="store_true", help="skip the standard-LoRA twins")
    parser.add_argument("--lora-twins-only", action="store_true", help="train only the standard-LoRA twins")
    parser.add_argument(
        "--resume", action="store_true", help="continue each run from its checkpoint in --work"
    )
    parser.add_argument(
        "--init-adapter",
        type=Path,
        default=None,
        help="start from this adapter's weights (one intrinsic; e.g. the previously shipped one)",
    )
    parser.add_argument(
        "--keep",
        choices=("best", "last"),
        default="best",
        help="the weights to write: of the lowest validation loss (best) or the final ones (last)",
    )
    args = parser.parse_args(argv)
    overrides = {
        k: v
        for k, v in {
            "train_size": args.train_size,
            "epochs": args.epochs,
            "eval_every": args.eval_every,
            "samples": args.samples,
            "realworld": args.realworld,
            "synthetic": args.synthetic,
            "realworld_val": args.realworld_val,
        }.items()
        if v is not None
    }
    recipes = {name: RECIPES[name].model_copy(update=overrides) for name in args.only}
    from intrinsics.training.data.build import build_all
    from intrinsics.training.train import TrainConfig, load_base, pick_device, train_intrinsic

    args.work.mkdir(parents=True, exist_ok=True)
    for name, recipe in recipes.items():
        build_all(
            args.work,
            seed=0,
            sizes={"train": recipe.train_size},
            only=["uncertainty_prompts" if name == "uncertainty" else name],
        )
    device = pick_device(args.device)
    model, tokenizer, base_id = load_base(TrainConfig(data=args.work, out=args.work, dtype="float32"), device)
    model.eval()
    report_file = args.out / "build_report.json"  # a partial rebuild (--only) updates its entries
    report: dict[str, dict] = json.loads(report_file.read_text()) if report_file.is_file() else {}
    if "uncertainty" in recipes:
        started = time.perf_counter()
        mixed = bool(recipes["uncertainty"].realworld)
        if mixed:
            mix_realworld(args.work, "uncertainty", recipes["uncertainty"])
        for split in ("train", "val", "eval"):
            label_uncertainty_split(
                args.work,
                split,
                model,
                tokenizer,
                samples=recipes["uncertainty"].samples,
                mixed=mixed and split != "eval",
            )
        report["uncertainty_labels_s"] = {"seconds": time.perf_counter() - started}

    jobs = [] if args.lora_twins_only else [(name, False) for name in args.only]
    if not args.no_lora_twins:
        jobs += [(name, True) for name in LORA_TWINS if name in args.only]
    for name, lora in jobs:
        out = args.work / "adapters" / (f"{name}-lora" if lora else name)
        part = "mix." if recipes[name].realworld else ""
        train_file, val_file = (args.work / f"{name}.{part}{split}.jsonl" for split in ("train", "val"))
        if recipes[name].realworld and name != "uncertainty":  # uncertainty's: labelled above
            mix_realworld(args.work, name, recipes[name])
        config = TrainConfig(
            intrinsic=name,
            data=train_file,
            val_data=val_file,
            out=out,
            lora=lora,
            epochs=recipes[name].epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            device=args.device,
            dtype="float32",
            limit=args.limit,
            base_model_id=base_id,
            eval_every=recipes[name].eval_every,
            seed=0,
            resume=args.resume and (out / "checkpoint" / "trainer_state.pt").is_file(),
            init_adapter=args.init_adapter,
            keep=args.keep,
        )
        result = train_intrinsic(config, model=model, tokenizer=tokenizer, model_id=base_id)
        report[out.name] = {
            "command": " ".join(["python -m intrinsics.training.build_builtin", *(argv or sys.argv[1:])]),
            "device": str(device),
            **recipes[name].model_dump(),
            "lr": args.lr,
            "batch_size": args.batch_size,
            "steps": result.steps,
            "best_step": result.best_step,
            "best_val_loss": result.best_val_loss,
            "seconds": result.seconds,
            "n_train": result.n_train,
            "n_val": result.n_val,
            "init_adapter": str(args.init_adapter) if args.init_adapter else None,
        }
        print(json.dumps({out.name: report[out.name]}), flush=True)
        target = args.out / out.name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(out, target, ignore=shutil.ignore_patterns("checkpoint*", "README.md"))
        report_file.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
