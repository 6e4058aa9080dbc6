"""Evaluate the shipped intrinsics on the hand-written realistic cases, beside string heuristics.

    python -m intrinsics.training.realistic.evaluate [--only NAME ...] [--limit N]
                                                    [--work DIR] [--out DIR] [--resamples N]

Loads the embedded model and each shipped adapter the way a flow does (``load_intrinsic(name,
"builtin", ...)`` + ``backend.add_adapter``), runs the intrinsic on every case with ``spec.run``
on a Session (:mod:`.predict`), scores it and its heuristic baselines (:mod:`.scoring`) and writes
``realistic.json`` and ``realistic.md`` to ``--out`` (``intrinsics/results``). ``--adapter DIR``
evaluates a candidate (say a ``build_builtin --out`` folder) instead, beside the shipped adapter
as one more system, so the report's ``adapter - shipped adapter`` is the paired difference a
decision to ship needs (both run on one session per case, :func:`.predict.run_systems`); its
report goes to ``--work`` unless ``--out`` says otherwise. The base model's
answers for the uncertainty cases come from ``cases/base_answers.jsonl``; missing ones are
generated first (:mod:`.base_answers`). Adapter outputs are checkpointed in ``--work``
(``runs/realistic-eval``), one JSONL line per case: rerun the same command after an interruption
and it continues where it stopped. ``--only`` re-runs some intrinsics and keeps the others'
results in the files. CPU run on one thread: set ``OMP_NUM_THREADS=1`` (or ``--threads 1``);
``--device cuda`` runs on a GPU (bfloat16: compare systems run on one device, in their own
``--work``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from intrinsics.training.realistic.base_answers import (
    add_device_options,
    current_answers,
    generate_answers,
    load_embedded,
    progress_printer,
)
from intrinsics.training.realistic.loader import (
    HELD_OUT_DOMAINS,
    INTRINSICS,
    CaseSet,
    case_summary,
    load_cases,
)
from intrinsics.training.realistic.predict import (
    Checkpoint,
    System,
    adapter_fingerprint,
    parse_shard,
    run_systems,
)
from intrinsics.training.realistic.scoring import (
    ADAPTER,
    HEADLINE,
    SHIPPED,
    SYSTEMS,
    TOKEN_PROB,
    TWIN,
    build_items,
    score_intrinsic,
)

RESULTS = Path(__file__).resolve().parents[2] / "results"
WORK = Path("runs") / "realistic-eval"
COMMAND = "OMP_NUM_THREADS=1 python -m intrinsics.training.realistic.evaluate"


def evaluate_intrinsic(
    name: str,
    backend,
    case_set: CaseSet,
    work: Path,
    *,
    spec=None,
    adapter_path: str | Path | None = None,
    limit: int | None = None,
    resamples: int = 1000,
    answers: Mapping[str, Mapping[str, Any]] | None = None,
    twin: tuple[str | Path, str | Path] | None = None,
    shipped: str | Path | None = None,
    shard: tuple[int, int] = (0, 1),
) -> dict[str, Any]:
    """Run and score one intrinsic. Without ``spec``/``adapter_path`` the shipped adapter of
    ``backend``'s model is loaded as a flow loads it. ``twin`` = (standard LoRA directory, base
    model directory) adds that LoRA as the ``LoRA twin`` system (uncertainty only). ``shipped``
    (an adapter directory, run with ``spec``) adds the :data:`SHIPPED` system, so a candidate
    ``adapter_path`` gets a paired difference against it.
    ``shard`` = (I, N) runs and scores only every N-th case from the I-th: N processes sharing
    one ``work`` checkpoint split a long run, and a run over all cases then only scores."""
    if spec is None or adapter_path is None:
        from intrinsics.registry import load_intrinsic

        resolved = load_intrinsic(name, "builtin", backend.model_id, tokenizer=backend.tokenizer)
        spec, adapter_path = resolved.spec, resolved.path
    # Named by their files: a candidate and the shipped adapter live side by side in one backend.
    adapter_name, fingerprint = _load(backend, name, adapter_path)
    index, count = shard
    cases = case_set.cases[name][:limit][index::count]
    texts = {k: str(v["answer"]) for k, v in (answers or {}).items()}
    start = time.perf_counter()
    systems = {ADAPTER: System(adapter_name, fingerprint, Checkpoint(work / f"{name}.jsonl"))}
    if shipped is not None:  # right after the adapter: on the same session, so no second prefill
        systems[SHIPPED] = System(*_load(backend, name, shipped), Checkpoint(work / f"{name}-shipped.jsonl"))
    if name == "uncertainty":
        from intrinsics.training.realistic.token_prob import token_prob_predict_case

        systems[TOKEN_PROB] = System(
            adapter_name,
            "token-probability",
            Checkpoint(work / f"{name}-token-prob.jsonl"),
            partial(token_prob_predict_case, backend),
        )
    if twin is not None:
        from intrinsics.training.realistic.twin import LoraTwin, twin_predict_case

        systems[TWIN] = System(
            adapter_name,
            "lora:" + adapter_fingerprint(twin[0]),
            Checkpoint(work / f"{name}-lora.jsonl"),
            partial(twin_predict_case, LoraTwin(backend, *twin)),
        )
    others = run_systems(
        backend,
        spec,
        systems,
        cases,
        case_set,
        answers=texts if name == "uncertainty" else None,
        on_progress=progress_printer(f"{name} ({', '.join(systems)})"),
    )
    records = others.pop(ADAPTER)
    items = build_items(name, cases, case_set, records, answers, others=others)
    result = score_intrinsic(name, items, resamples=resamples)
    result["adapter"] = "/".join(Path(adapter_path).resolve().parts[-3:])
    result["adapter_seconds_per_case"] = round(
        sum(float(r.get("seconds", 0.0)) for r in records.values()) / max(len(records), 1), 3
    )
    result["run_seconds"] = round(time.perf_counter() - start, 1)
    if name == "uncertainty":
        result["base_answers_correct"] = sum(bool(it.gold) for it in items)
    return result


def _load(backend, name: str, path: str | Path) -> tuple[str, str]:
    """The backend's name for the adapter in ``path`` (loading it on first use) and the
    fingerprint of its files, which also keys its checkpoint records."""
    fingerprint = adapter_fingerprint(path)
    adapter_name = f"realistic_{name}_{fingerprint[:8]}"
    if adapter_name not in backend.adapters:
        backend.add_adapter(adapter_name, path)
    return adapter_name, fingerprint


# ---------------------------------------------------------------------------------- report
def _compared(name: str, values: Mapping[str, Any]) -> tuple[str, ...]:
    """What the summaries pair the adapter with: the heuristic, and the shipped adapter when the
    adapter is a candidate."""
    return (SYSTEMS[name][1], *([SHIPPED] if SHIPPED in values else []))


def _f(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def _ci(interval: Sequence[Any] | None) -> str:
    if not interval or any(v is None for v in interval):
        return "-"
    return f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def _synthetic() -> dict[str, tuple[str, float]]:
    """The shipped adapters' headline on the project's own (synthetic) held-out eval."""
    path = RESULTS / "eval.json"
    if not path.is_file():
        return {}
    rows = json.loads(path.read_text())
    keys = {
        "uncertainty": "auroc",
        "hallucination": "sentence_f1",
        "answerability": "accuracy",
        "rewrite": "exact_match",
    }
    return {
        r["intrinsic"]: (keys[r["intrinsic"]], r["metrics"][keys[r["intrinsic"]]])
        for r in rows
        if r["system"] == "alora"
        and r["intrinsic"] in keys
        and r["metrics"].get(keys[r["intrinsic"]]) is not None
    }


def markdown(report: Mapping[str, Any]) -> str:
    results = report["intrinsics"]
    candidate = "--adapter" in report["command"]
    synthetic = {} if candidate else _synthetic()  # eval.md scores the shipped adapters only
    lines = [
        "# Realistic evaluation of a candidate adapter, beside the shipped one"
        if candidate
        else "# Realistic evaluation of the shipped intrinsics",
        "",
        "Hand-written cases on real-world topics (`intrinsics/training/realistic/cases/`, written",
        "independently of the training-data generators; never train on them), run through the engine as a",
        "flow runs them, beside string heuristics that need no model. 95% intervals: percentile bootstrap",
        f"over cases ({report['resamples']:,} resamples, seed 0); `adapter - X`: paired difference on the same",
        "resampled cases.",
        "",
        f"Command: `{report['command']}` (model `{report['model']}`, {_where(report)}).",
        "",
        "| intrinsic | metric | n | synthetic eval | adapter [95% CI] | baseline | baseline [95% CI] | adapter - baseline [95% CI] | target |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for name in INTRINSICS:
        r = results.get(name)
        if not r:
            continue
        synth = synthetic.get(name)
        synth_cell = f"{synth[1]:.3f} ({synth[0]})" if synth else "-"
        for k, base in enumerate(s for s in r["systems"] if s != ADAPTER and not s.startswith("adapter")):
            first = k == 0
            lines.append(
                "| "
                + " | ".join(
                    [
                        name if first else "",
                        r["headline"] if first else "",
                        str(r["n"]) if first else "",
                        synth_cell if first else "",
                        f"**{_f(r['values'][ADAPTER])}** {_ci(r['ci'][ADAPTER])}" if first else "",
                        base,
                        f"{_f(r['values'][base])} {_ci(r['ci'][base])}",
                        _ci(r["paired"][f"{ADAPTER} - {base}"]),
                        f">= {r['target']:.2f}" if first else "",
                    ]
                )
                + " |"
            )
    lines += [
        "",
        'Headline metrics: uncertainty, AUROC of the certainty for "the base model\'s own answer is right"',
        "(right = the answer contains the gold value or a listed alias after normalisation,",
        "`realistic/judge.py`); hallucination, F1 of `unfaithful` over answer sentences; answerability,",
        "accuracy; rewrite, share of rewrites that are a question naming the right entity and attribute and",
        "no entity of an earlier turn (`judge.rewrite_check`). The synthetic column is the same adapter's headline on the",
        "project's generated eval (`eval.md`; rewrite there is exact match).",
        "",
        f"## Held-out domains ({', '.join(HELD_OUT_DOMAINS)})",
        "",
        "No training data may use these domains (`realistic.loader.HELD_OUT_DOMAINS`).",
        "",
        "| intrinsic | n | adapter [95% CI] | baseline [95% CI] | adapter - baseline [95% CI] |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in INTRINSICS:
        r = results.get(name)
        if not r or not r.get("held_out"):
            continue
        h = r["held_out"]
        for base in _compared(name, h["values"]):
            lines.append(
                f"| {name} | {h['n']} | {_f(h['values'][ADAPTER])} {_ci(h['ci'][ADAPTER])} | {base}: "
                f"{_f(h['values'][base])} {_ci(h['ci'][base])} | {_ci(h['paired'][f'{ADAPTER} - {base}'])} |"
            )
    for name in INTRINSICS:
        r = results.get(name)
        if not r:
            continue
        systems = list(r["systems"])  # SYSTEMS[name], then the twin when it ran
        metric_names = list(dict.fromkeys(k for s in systems for k in r["systems"][s]))
        lines += [
            "",
            f"## {name}",
            "",
            f"Adapter `{r['adapter']}`; {r['n']} cases; malformed outputs: {r['malformed']}; "
            f"{r['adapter_seconds_per_case']:.2f} s per case on this CPU.",
        ]
        if name == "uncertainty":
            lines.append(
                f"The base model answered {r['base_answers_correct']} of {r['n']} questions right "
                "(`cases/base_answers.jsonl`)."
            )
        lines += ["", "| system | " + " | ".join(metric_names) + " |", "|---|" + "---:|" * len(metric_names)]
        for s in systems:
            lines.append(f"| {s} | " + " | ".join(_f(r["systems"][s].get(m)) for m in metric_names) + " |")
        base = systems[1]
        lines += [
            "",
            f"By domain ({r['headline']}; held-out domains marked *):",
            "",
            "| domain | n | " + " | ".join(systems) + f" | adapter - {base} [95% CI] |",
            "|---|---:|" + "---:|" * (len(systems) + 1),
        ]
        for domain, d in r["domains"].items():
            mark = "*" if domain in HELD_OUT_DOMAINS else ""
            lines.append(
                f"| {domain}{mark} | {d['n']} | "
                + " | ".join(_f(d["values"][s]) for s in systems)
                + f" | {_ci(d['paired'][f'{ADAPTER} - {base}'])} |"
            )
        lines += [
            "",
            f"By writing style ({r['headline']}):",
            "",
            "| style | n | " + " | ".join(systems) + " |",
        ]
        lines.append("|---|---:|" + "---:|" * len(systems))
        for style, d in r["styles"].items():
            lines.append(f"| {style} | {d['n']} | " + " | ".join(_f(d["values"][s]) for s in systems) + " |")
        lines += ["", _kinds_caption(name), ""]
        if name == "hallucination":
            lines += ["| gold label / sentence kind | n | " + " | ".join(systems) + " |"]
            lines.append("|---|---:|" + "---:|" * len(systems))
            for kind, d in r["kinds"].items():
                lines.append(
                    f"| {kind} | {d['n']} | "
                    + " | ".join(_f(d["called_unfaithful"][s]) for s in systems)
                    + " |"
                )
        elif name == "uncertainty":
            lines += [
                "| base answer | n | " + " | ".join(systems) + " |",
                "|---|---:|" + "---:|" * len(systems),
            ]
            for kind, d in r["kinds"].items():
                lines.append(
                    f"| {kind} | {d['n']} | " + " | ".join(_f(d["mean_score"][s]) for s in systems) + " |"
                )
        else:
            lines += [
                "| case kind | n | " + " | ".join(systems) + " |",
                "|---|---:|" + "---:|" * len(systems),
            ]
            for kind, d in r["kinds"].items():
                lines.append(
                    f"| {kind} | {d['n']} | " + " | ".join(_f(d["values"][s]) for s in systems) + " |"
                )
    lines += ["", *_counts_table(report["counts"]), ""]
    return "\n".join(lines)


def _counts_table(counts: Mapping[str, Any]) -> list[str]:
    """Cases per intrinsic and domain (the documents are shared by all intrinsics)."""
    names = [n for n in INTRINSICS if n in counts]
    domains = sorted({d for n in names for d in counts[n]["domains"]})
    lines = [
        f"## Case counts ({counts.get('documents', 0)} documents)",
        "",
        "| domain | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for domain in domains:
        mark = "*" if domain in HELD_OUT_DOMAINS else ""
        lines.append(
            f"| {domain}{mark} | "
            + " | ".join(str(counts[n]["domains"].get(domain, 0)) for n in names)
            + " |"
        )
    lines.append("| total | " + " | ".join(str(counts[n]["n"]) for n in names) + " |")
    return lines


def _kinds_caption(name: str) -> str:
    return {
        "uncertainty": "Mean certainty (adapter) or overlap (heuristic) for right and wrong base answers:",
        "hallucination": "Share of sentences each system calls `unfaithful`, by gold label and kind of sentence "
        "(for faithful sentences this is the false-alarm rate):",
        "answerability": "Accuracy by kind of case (near_miss, other_entity, absent are unanswerable):",
        "rewrite": "Standalone-with-right-entity-and-attribute rate by kind of follow-up:",
    }[name]


def _where(report: Mapping[str, Any]) -> str:
    """Where the adapters ran: "1 thread(s), CPU" or the GPU (reports before ``--device`` are CPU)."""
    device = report.get("device", "cpu")
    return f"{report['threads']} thread(s), CPU" if device.startswith("cpu") else f"{device}, bfloat16"


def write_report(report: Mapping[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "realistic.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "realistic.md").write_text(markdown(report))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", default=list(INTRINSICS), choices=INTRINSICS)
    parser.add_argument("--limit", type=int, default=None, help="first N cases per intrinsic (smoke runs)")
    parser.add_argument("--work", type=Path, default=WORK, help="checkpoint directory")
    parser.add_argument("--out", type=Path, default=None, help="where realistic.{json,md} go")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument(
        "--twin",
        action="store_true",
        help="also run the shipped standard-LoRA twin of uncertainty (<adapters>/uncertainty-lora), "
        "which sees the whole prompt with no cache reuse",
    )
    parser.add_argument(
        "--adapter",
        type=Path,
        default=None,
        metavar="DIR",
        help="evaluate this adapter directory (one --only intrinsic) beside the shipped one, paired; "
        "the report goes to --work unless --out is given",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite realistic.md from realistic.json, run nothing"
    )
    parser.add_argument(
        "--shard",
        type=parse_shard,
        default=(0, 1),
        metavar="I/N",
        help="run only every N-th case from the I-th (0-based) into --work and write no report: "
        "for N worker processes sharing one --work; a run without --shard then scores them all",
    )
    add_device_options(parser)
    args = parser.parse_args(argv)
    shard: tuple[int, int] = args.shard
    if args.adapter is not None and len(args.only) != 1:
        parser.error("--adapter evaluates one intrinsic's adapter: name it with --only NAME")
    # A --limit or --adapter run never overwrites the shipped adapters' results unless asked to.
    out = args.out or (args.work if args.limit or args.adapter else RESULTS)
    if args.report_only:
        write_report(json.loads((out / "realistic.json").read_text()), out)
        print(json.dumps({"written": [str(out / "realistic.md")]}))
        return 0

    import torch

    case_set = load_cases()
    backend = load_embedded(args.device, args.threads)
    previous = out / "realistic.json"
    report: dict[str, Any] = json.loads(previous.read_text()) if previous.is_file() else {}
    command = COMMAND + ("" if args.only == list(INTRINSICS) else " --only " + " ".join(args.only))
    command += " --twin" if args.twin else ""
    command += f" --adapter {args.adapter}" if args.adapter else ""
    command += f" --device {args.device}" if not args.device.startswith("cpu") else ""
    report.update(
        command=command,
        model=backend.model_id,
        threads=torch.get_num_threads(),
        device=str(backend.device),
        resamples=args.resamples,
        counts=case_summary(case_set),
    )
    report.setdefault("intrinsics", {})
    answers = None
    if "uncertainty" in args.only:
        generate_answers(backend, case_set, limit=args.limit, on_progress=progress_printer("base answers"))
        answers = current_answers(case_set, backend.model_id)
    from intrinsics.registry import load_intrinsic, resolve_adapter

    for name in args.only:
        shipped = resolve_adapter(name, "builtin", backend.model_id)
        twin = None
        if args.twin and name == "uncertainty":
            from alora_flows.core.models import resolve_model

            twin = (shipped.parent / f"{name}-lora", resolve_model("embedded").path)
        candidate: dict[str, Any] = {}
        if args.adapter is not None:
            resolved = load_intrinsic(name, args.adapter, backend.model_id, tokenizer=backend.tokenizer)
            candidate = dict(spec=resolved.spec, adapter_path=resolved.path, shipped=shipped)
        report["intrinsics"][name] = evaluate_intrinsic(
            name,
            backend,
            case_set,
            args.work,
            limit=args.limit,
            resamples=args.resamples,
            answers=answers,
            twin=twin,
            shard=shard,
            **candidate,
        )
        if shard != (0, 1):
            continue  # a worker: its cases are in the checkpoint; the report scores all of them
        write_report(report, out)  # after each intrinsic: a long run keeps what it has
        r = report["intrinsics"][name]
        for base in _compared(name, r["values"]):
            print(
                f"{name}: {HEADLINE[name]} adapter {r['values'][ADAPTER]} {r['ci'][ADAPTER]} vs {base} "
                f"{r['values'][base]}; paired {r['paired'][f'{ADAPTER} - {base}']}",
                file=sys.stderr,
                flush=True,
            )
    if shard != (0, 1):
        print(json.dumps({"shard": "/".join(map(str, shard)), "checkpoints": str(args.work)}))
    else:
        print(json.dumps({"written": [str(out / "realistic.json"), str(out / "realistic.md")]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
