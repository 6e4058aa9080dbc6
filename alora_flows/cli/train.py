"""``alora-flows train``, ``alora-flows eval-intrinsics`` and ``alora-flows threshold``: the
command-line face of :mod:`intrinsics.training`. Heavy imports happen inside the commands, so the
rest of the CLI stays fast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.text import Text

from alora_flows.cli.common import (
    DebugOption,
    DeviceOption,
    ThreadsOption,
    VerboseOption,
    cli_errors,
    err_console,
    model_setup,
)
from alora_flows.errors import UsageError


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    """``["uncertainty=builtin", "rewrite=./out"]`` -> dict; clear error on a missing ``=``."""
    result: dict[str, str] = {}
    for value in values or []:
        name, sep, source = value.partition("=")
        if not sep or not name.strip() or not source.strip():
            raise UsageError(f"{option} expects NAME=SOURCE, got {value!r}")
        if name.strip() in result:
            raise UsageError(
                f"{option} {name.strip()} is given twice "
                f"({result[name.strip()]} and {source.strip()}); give each name once"
            )
        result[name.strip()] = source.strip()
    return result


def eval_lines(rows: Sequence[Any]) -> list[str]:
    """The evaluation as short lines, for terminals and logs narrower than its table: one line
    per (intrinsic, system), then one per metric with its 95% interval when there is one."""
    from intrinsics.training.evaluate import format_interval

    lines = []
    for row in rows:
        lines.append(
            f"{row.intrinsic} · {row.system}: n={row.n}, malformed {row.malformed}, {row.seconds:.1f} s"
        )
        for name, value in row.metrics.items():
            interval = f" {format_interval(row.ci[name])}" if name in row.ci else ""
            lines.append(f"    {name} {'-' if math.isnan(value) else f'{value:.3f}'}{interval}")
        for name, interval in row.ci.items():
            if name not in row.metrics:  # paired differences from the first system
                lines.append(f"    {name} {format_interval(interval)}")
    return lines


def print_table_or_lines(console: Any, table: Any, lines: Sequence[str]) -> None:
    """``table`` when it fits the console's width, else ``lines`` (a wrapped table is unreadable)."""
    from rich.measure import Measurement

    unlimited = console.options.update(max_width=10_000)  # measure the table's natural width
    if Measurement.get(console, unlimited, table).maximum <= console.width:
        console.print(table)
    else:
        for line in lines:
            console.print(line, soft_wrap=True, highlight=False, markup=False)


def train(
    data: Annotated[Path, typer.Option("--data", help="Training JSONL (docs/intrinsics.md).")],
    out: Annotated[Path, typer.Option("--out", help="Adapter directory to write.")],
    intrinsic: Annotated[
        Optional[str], typer.Option("--intrinsic", help="Registered intrinsic name.")
    ] = None,
    spec_file: Annotated[
        Optional[Path], typer.Option("--spec-file", help="An intrinsic.yaml instead of --intrinsic.")
    ] = None,
    model: Annotated[
        str, typer.Option("--model", help="'embedded', a local HF directory or hub id.")
    ] = "embedded",
    val_data: Annotated[
        Optional[Path],
        typer.Option("--val-data", help="Validation JSONL (default: split --val-fraction off --data)."),
    ] = None,
    val_fraction: Annotated[
        float,
        typer.Option("--val-fraction", help="Share of --data held out for validation without --val-data."),
    ] = 0.1,
    lora: Annotated[
        bool, typer.Option("--lora", help="Train a standard LoRA (same data/budget) instead of an aLoRA.")
    ] = False,
    target_modules: Annotated[
        str, typer.Option("--target-modules", help="Comma-separated module names.")
    ] = "q_proj,k_proj,v_proj",
    r: Annotated[int, typer.Option("--r", "--rank", help="LoRA rank.")] = 32,
    alpha: Annotated[
        int, typer.Option("--alpha", help="LoRA alpha (the update is scaled by alpha / r).")
    ] = 32,
    dropout: Annotated[float, typer.Option("--dropout", help="LoRA dropout.")] = 0.05,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate (AdamW).")] = 2e-4,
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the training data.")] = 1,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Examples per step.")] = 8,
    grad_accum: Annotated[
        int, typer.Option("--grad-accum", help="Batches whose gradients add up to one optimizer step.")
    ] = 1,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="Overrides --epochs.")] = None,
    max_length: Annotated[int, typer.Option("--max-length", help="Longer examples are skipped.")] = 2048,
    eval_every: Annotated[
        Optional[int], typer.Option("--eval-every", help="Validate every N steps (default: each epoch).")
    ] = None,
    save_every: Annotated[int, typer.Option("--save-every", help="Checkpoint every N steps.")] = 25,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed for the data split, shuffling and initialisation.")
    ] = 0,
    device: DeviceOption = None,
    dtype: Annotated[
        str,
        typer.Option(
            "--dtype", help="auto (bfloat16 on a GPU that has it, else float32), float32, bfloat16, float16."
        ),
    ] = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/checkpoint.")] = False,
    keep_checkpoint: Annotated[
        bool,
        typer.Option("--keep-checkpoint", help="Keep OUT/checkpoint after training (to train on later)."),
    ] = False,
    keep: Annotated[
        str,
        typer.Option(
            "--keep",
            help="best: the weights of the lowest validation loss (default); last: the final weights.",
        ),
    ] = "best",
    limit: Annotated[Optional[int], typer.Option("--limit", help="Use only the first N examples.")] = None,
    base_model_id: Annotated[
        Optional[str], typer.Option("--base-model-id", help="Recorded as base_model_name_or_path.")
    ] = None,
    threads: ThreadsOption = None,
    verbose: VerboseOption = False,
    debug: DebugOption = False,
) -> None:
    """Train an intrinsic adapter (aLoRA by default) from JSONL; writes a PEFT adapter + intrinsic.yaml."""
    with cli_errors(debug):
        note = model_setup(threads=threads, device=device, verbose=verbose)
        if note:
            err_console().print(Text(note, style="dim"))
        from pydantic import ValidationError
        from rich.console import Console

        from intrinsics.training.train import TrainConfig, TrainError, train_intrinsic

        try:
            config = TrainConfig(
                data=data,
                out=out,
                intrinsic=intrinsic,
                spec_file=spec_file,
                model=model,
                val_data=val_data,
                val_fraction=val_fraction,
                lora=lora,
                target_modules=[m.strip() for m in target_modules.split(",") if m.strip()],
                r=r,
                alpha=alpha,
                dropout=dropout,
                lr=lr,
                epochs=epochs,
                batch_size=batch_size,
                grad_accum=grad_accum,
                max_steps=max_steps,
                max_length=max_length,
                eval_every=eval_every,
                save_every=save_every,
                seed=seed,
                device=device or "auto",
                dtype=dtype,
                resume=resume,
                keep_checkpoint=keep_checkpoint,
                keep=keep,
                limit=limit,
                base_model_id=base_model_id,
            )
        except ValidationError as exc:
            problems = "; ".join(f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']}" for e in exc.errors())
            raise TrainError(problems) from None
        result = train_intrinsic(config)
        console = Console(stderr=True)
        best = (
            f", best validation loss {result.best_val_loss:.4f} at step {result.best_step}"
            if result.best_val_loss is not None
            else ""
        )
        console.print(
            f"[green]Saved[/] {result.adapter_type} adapter to {result.out} "
            f"({result.steps} steps, {result.n_train} train / {result.n_val} val examples{best}, "
            f"{result.seconds:.0f} s)" + (f"; skipped {result.skipped} too long" if result.skipped else "")
        )


def eval_intrinsics(
    data: Annotated[Path, typer.Option("--data", help="Evaluation JSONL (the training format).")],
    alora: Annotated[
        Optional[list[str]],
        typer.Option("--alora", metavar="NAME=SOURCE", help="aLoRA adapter: builtin or a directory; repeat."),
    ] = None,
    lora: Annotated[
        Optional[list[str]],
        typer.Option("--lora", metavar="NAME=DIR", help="Standard LoRA adapter to compare; repeat."),
    ] = None,
    intrinsic: Annotated[
        Optional[list[str]], typer.Option("--intrinsic", help="Only these intrinsics; repeat.")
    ] = None,
    model: Annotated[
        str, typer.Option("--model", help="The base model: 'embedded', a local HF directory or a hub id.")
    ] = "embedded",
    train_data: Annotated[
        Optional[Path], typer.Option("--train-data", help="For the majority-class baseline.")
    ] = None,
    no_base: Annotated[bool, typer.Option("--no-base", help="Skip the prompted base model.")] = False,
    no_trivial: Annotated[bool, typer.Option("--no-trivial", help="Skip the trivial baseline.")] = False,
    limit: Annotated[Optional[int], typer.Option("--limit", help="First N examples per intrinsic.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the rows as JSON.")] = None,
    predictions: Annotated[
        Optional[Path],
        typer.Option(
            "--predictions", metavar="DIR", help="Write every prediction to DIR/<intrinsic>.<system>.jsonl."
        ),
    ] = None,
    device: DeviceOption = None,
    threads: ThreadsOption = None,
    verbose: VerboseOption = False,
    debug: DebugOption = False,
) -> None:
    """Compare aLoRA vs LoRA vs prompted base model vs a trivial baseline on eval JSONL."""
    with cli_errors(debug):
        from rich.console import Console

        from alora_flows.app import load_backend
        from intrinsics.training.evaluate import evaluate_file, rows_table, write_rows

        aloras, loras = _pairs(alora, "--alora"), _pairs(lora, "--lora")  # bad options fail before loading
        note = model_setup(threads=threads, device=device, verbose=verbose)
        if note:
            err_console().print(Text(note, style="dim"))
        backend = load_backend(model, device=device)
        rows = evaluate_file(
            data,
            backend=backend,
            alora=aloras,
            lora=loras,
            intrinsics=intrinsic,
            include_base=not no_base,
            include_trivial=not no_trivial,
            train_data=train_data,
            limit=limit,
            predictions=predictions,
        )
        print_table_or_lines(Console(), rows_table(rows), eval_lines(rows))
        if json_out is not None:
            write_rows(rows, json_out)


def threshold(
    predictions: Annotated[
        Path, typer.Argument(help="uncertainty.<system>.jsonl from eval-intrinsics --predictions.")
    ],
    step: Annotated[float, typer.Option("--step", help="Threshold spacing.")] = 0.05,
    debug: DebugOption = False,
) -> None:
    """Choose a flow's certainty threshold from scored answers (use a validation split).

    The threshold chosen is the one that cuts the most wrong answers net of the correct answers
    it loses."""
    with cli_errors(debug):
        from rich.console import Console

        from intrinsics.training.thresholds import choose_threshold, sweep_table

        if not 0 < step < 1:
            raise UsageError(f"--step must be between 0 and 1, got {step}")
        points, best, skipped = choose_threshold(predictions, step)
        console = Console()
        console.print(sweep_table(points, best))
        n_correct, n_wrong = best.kept_correct + best.cut_correct, best.kept_wrong + best.cut_wrong
        console.print(
            f"threshold {best.threshold:.2f}: keeps {best.kept_correct} of {n_correct} correct answers, "
            f"cuts {best.cut_wrong} of {n_wrong} wrong ones"
            + (f" ({skipped} malformed predictions skipped)" if skipped else "")
        )
