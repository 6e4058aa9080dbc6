"""Evaluate intrinsics: metrics (re-exported from :mod:`intrinsics.training.metrics`) and a runner.

The runner compares, per intrinsic and on the same eval JSONL (the training format):

- ``alora``: the aLoRA adapter through the real engine path (``Session.invoke``, cache reuse);
- ``lora``: a standard LoRA trained on the same data and budget (adapter on every token);
- ``base``: the base model prompted with the spec's ``base_prompt``, no adapter;
- ``trivial``: majority label / copy the question / "everything faithful".

Each system is a :class:`Predictor` returning the adapter's raw output for an example; scoring
parses gold and predictions with the spec's own parser, so "malformed" means exactly what a flow
would see. Unparseable predictions are counted and scored as the trivial answer.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from pydantic import BaseModel, Field

from alora_flows.core.adapters import is_activated, read_adapter_config
from alora_flows.core.backend import cache_kwarg
from alora_flows.core.decoding import decode, detokenize, stop_token_ids
from alora_flows.errors import AloraFlowsError, IntrinsicOutputError
from alora_flows.sandbox.text import split_sentences
from intrinsics.outputs import AnswerabilityOutput, HallucinationOutput, RewriteOutput, UncertaintyOutput
from intrinsics.spec import IntrinsicSpec, RawOutput
from intrinsics.training.data_format import Encoder, Example, write_jsonl
from intrinsics.training.metrics import (
    PRF,
    accuracy,
    answer_correct,
    auroc,
    binary_prf,
    bootstrap_values,
    exact_match,
    expected_calibration_error,
    mean,
    normalize_text,
    percentile_interval,
    sentence_prf,
    token_f1,
)

__all__ = [
    "PRF",
    "accuracy",
    "auroc",
    "binary_prf",
    "exact_match",
    "expected_calibration_error",
    "mean",
    "normalize_text",
    "sentence_prf",
    "token_f1",
    "EvalRow",
    "Predictor",
    "SessionPredictor",
    "HFPredictor",
    "TrivialPredictor",
    "example_context",
    "evaluate_spec",
    "score",
    "rows_table",
    "write_rows",
    "read_rows",
    "HEADLINE",
]


class EvalRow(BaseModel):
    """One (intrinsic, system) result.

    ``ci``: 95% bootstrap intervals of the intrinsic's headline metric (:data:`HEADLINE`), keyed
    by its name, and, for every system after the first of its run, of its paired difference from
    that first system, keyed ``"<metric> - <first system>"``.
    """

    intrinsic: str
    system: str
    n: int
    malformed: int = 0
    seconds: float = 0.0
    metrics: dict[str, float] = Field(default_factory=dict)
    ci: dict[str, tuple[float, float]] = Field(default_factory=dict)


# The metric each intrinsic kind is judged by (its target in the README); custom kinds: accuracy.
HEADLINE = {
    "uncertainty": "auroc",
    "hallucination": "sentence_f1",
    "rewrite": "exact_match",
    "answerability": "accuracy",
}


def example_context(spec: IntrinsicSpec, example: Example) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """Split an example into (conversation before the input turn, parser context)."""
    return spec.example_context(example.message_dicts(), example.meta)


class Predictor(Protocol):
    """A system under evaluation: raw output for one example (``messages`` include the input turn)."""

    name: str

    def predict(self, spec: IntrinsicSpec, example: Example) -> RawOutput: ...


class SessionPredictor:
    """The aLoRA adapter through the engine: ``Session.extend(messages)`` then ``Session.invoke``."""

    def __init__(self, backend, adapter_name: str, *, name: str = "alora") -> None:
        self.backend, self.adapter_name, self.name = backend, adapter_name, name

    def predict(self, spec: IntrinsicSpec, example: Example) -> RawOutput:
        from alora_flows.core.session import Session

        _, context = example_context(spec, example)
        session = Session(self.backend, messages=example.message_dicts())
        tokenizer = self.backend.tokenizer
        plan = spec.decoding_plan(tokenizer)
        result = session.invoke(
            self.adapter_name,
            adapted_input=spec.adapted_input_ids(tokenizer, context),
            max_new_tokens=plan.max_new_tokens,
            allowed_token_ids=plan.allowed_token_ids,
            return_probs=plan.return_probs,
        )
        return spec.raw_from_tokens(result.text, result.token_ids, result.probs, plan, context)


class HFPredictor:
    """Greedy decoding with plain transformers/PEFT, for systems the Session does not serve.

    ``adapter`` = a LoRA or aLoRA directory (loaded on a private copy of ``model``), or None for the
    base model prompted with ``spec.base_prompt``. Decoding is ``Session.invoke``'s own loop
    (:func:`alora_flows.core.decoding.decode`) with the session's stop tokens; only the forward differs.
    The prompt follows the ``intrinsic.yaml`` next to the adapter when there is one (so a twin
    trained without, say, an adapted input is prompted as it was trained); parsing and scoring
    always use the spec under evaluation.
    """

    def __init__(
        self, model, tokenizer, *, adapter: str | Path | None = None, name: str | None = None
    ) -> None:
        self.tokenizer = tokenizer
        self.alora = False
        self.prompt_spec: IntrinsicSpec | None = None
        if adapter is not None:
            from peft import PeftModel

            from intrinsics.specfile import SPEC_FILE, read_spec_file

            self.alora = is_activated(read_adapter_config(adapter))
            if (Path(adapter) / SPEC_FILE).is_file():
                self.prompt_spec = read_spec_file(adapter)
            model = PeftModel.from_pretrained(copy.deepcopy(model), str(adapter))
        self.model = model.eval()
        self.adapter = adapter
        self.name = name or ("base" if adapter is None else ("alora-hf" if self.alora else "lora"))
        # The session's stop tokens (one list: alora_flows.core.decoding), so both systems stop alike.
        self.stop = stop_token_ids(tokenizer, getattr(model, "generation_config", None))
        self.cache_key = cache_kwarg(model.get_base_model() if adapter is not None else model)

    def prompt_ids(self, spec: IntrinsicSpec, example: Example) -> tuple[list[int], int]:
        """Token ids to decode from, and how many trailing positions the adapter covers."""
        spec = self.prompt_spec or spec
        encoder = Encoder.for_spec(self.tokenizer, spec)
        messages = example.message_dicts()
        if self.adapter is None:
            instruction = spec.base_prompt or f"Answer as the '{spec.name}' check would."
            ids = encoder.renderer.ids(
                messages + [{"role": "user", "content": instruction}], add_generation_prompt=True
            )
            return ids, 0
        ids, start = encoder.prompt(messages, example.meta)
        return ids, len(ids) - start

    @torch.inference_mode()
    def predict(self, spec: IntrinsicSpec, example: Example) -> RawOutput:
        from transformers import DynamicCache

        _, context = example_context(spec, example)
        plan = spec.decoding_plan(self.tokenizer)
        ids, adapted = self.prompt_ids(spec, example)
        device = next(self.model.parameters()).device
        cache = DynamicCache()

        def forward(feed: list[int], offset: int) -> torch.Tensor:
            kwargs: dict[str, Any] = {
                "input_ids": torch.tensor([feed], device=device),
                self.cache_key: cache,
                "use_cache": True,
                "logits_to_keep": 1,
            }
            if self.alora:
                kwargs["alora_offsets"] = [offset]
            return self.model(**kwargs).logits[0, -1]

        decoded = decode(
            lambda token: forward([token], 1),
            forward(ids, adapted),
            stop=self.stop,
            max_new_tokens=plan.max_new_tokens,
            allowed=plan.allowed_token_ids,
            want_probs=plan.return_probs,
        )
        text = detokenize(self.tokenizer, decoded.tokens, self.stop)
        return spec.raw_from_tokens(text, decoded.tokens, decoded.probs, plan, context)


class TrivialPredictor:
    """The baseline any intrinsic must beat: majority output, copy the question, all faithful."""

    name = "trivial"

    def __init__(self, reference: Sequence[Example] = ()) -> None:
        self.majority = Counter(ex.output.strip() for ex in reference).most_common(1)
        self._majority = self.majority[0][0] if self.majority else ""

    def predict(self, spec: IntrinsicSpec, example: Example) -> RawOutput:
        _, context = example_context(spec, example)
        text = trivial_text(spec, context, self._majority)
        return RawOutput(text=text, context=context)


def trivial_text(spec: IntrinsicSpec, context: Mapping[str, Any], majority: str) -> str:
    if spec.kind == "rewrite":
        return json.dumps({"rewritten_question": str(context.get("input") or context.get("last_user") or "")})
    if spec.kind == "hallucination":
        n = len(split_sentences(context.get("last_assistant", "")))
        return json.dumps([{"r": i, "f": "faithful"} for i in range(n)])
    if majority:
        return majority
    return spec.allowed_outputs[0] if spec.allowed_outputs else ""


# ---------------------------------------------------------------------------------- scoring
def _safe_parse(
    spec: IntrinsicSpec, raw: RawOutput, fallback: Callable[[], RawOutput]
) -> tuple[BaseModel | None, bool]:
    """Parsed prediction, or the trivial answer (built-in kinds always parse it) when malformed;
    ``None`` only for custom kinds whose trivial answer does not parse either (scored as wrong)."""
    try:
        return spec.parse(raw), False
    except IntrinsicOutputError:
        try:
            return spec.parse(fallback()), True
        except IntrinsicOutputError:
            return None, True


def _trivial_raw(spec: IntrinsicSpec, context: dict[str, Any]) -> RawOutput:
    return RawOutput(text=trivial_text(spec, context, ""), context=context)


def score(
    spec: IntrinsicSpec,
    golds: Sequence[BaseModel],
    preds: Sequence[BaseModel | None],
    examples: Sequence[Example],
) -> dict[str, float]:
    """Metrics for one system, by intrinsic kind."""
    if spec.kind == "uncertainty":
        g = [x for x in golds if isinstance(x, UncertaintyOutput)]
        p = [x for x in preds if isinstance(x, UncertaintyOutput)]
        correct = [answer_correct(ex.meta, gold.score) for ex, gold in zip(examples, g)]
        return {
            "auroc": auroc(correct, [x.score for x in p]),
            "ece": expected_calibration_error([x.score for x in p], correct),
            "mae": mean([abs(a.score - b.score) for a, b in zip(p, g)]),
            "digit_acc": accuracy([x.digit for x in g], [x.digit for x in p]),
        }
    if spec.kind == "hallucination":
        gh = [x for x in golds if isinstance(x, HallucinationOutput)]
        ph = [x for x in preds if isinstance(x, HallucinationOutput)]
        gold: list[dict[int, str]] = [{s.r: s.f for s in x.sentences} for x in gh]
        prf = sentence_prf(gold, [{s.r: s.f for s in x.sentences} for x in ph])
        unchecked = sentence_prf(gold, [{s.r: s.adapter_f or s.f for s in x.sentences} for x in ph])
        return {
            "sentence_f1": prf.f1,
            "sentence_precision": prf.precision,
            "sentence_recall": prf.recall,
            "response_acc": accuracy([x.unfaithful for x in gh], [x.unfaithful for x in ph]),
            "f1_without_evidence_check": unchecked.f1,
        }
    if spec.kind == "rewrite":
        gs = [str(x) for x in golds]
        pr = [x for x in preds if isinstance(x, RewriteOutput)]
        return {
            "exact_match": mean([exact_match(str(a), b) for a, b in zip(pr, gs)]),
            "token_f1": mean([token_f1(str(a), b) for a, b in zip(pr, gs)]),
            "fallback_rate": mean([float(x.fallback) for x in pr]),
        }
    if spec.kind == "answerability":
        ga = [x for x in golds if isinstance(x, AnswerabilityOutput)]
        pa = [x for x in preds if isinstance(x, AnswerabilityOutput)]
        unans = binary_prf([not x.answerable for x in ga], [not x.answerable for x in pa])
        return {
            "accuracy": accuracy([x.label for x in ga], [x.label for x in pa]),
            "unanswerable_f1": unans.f1,
        }
    as_key = (
        [x.model_dump_json() for x in golds],
        [x.model_dump_json() if x is not None else None for x in preds],
    )
    return {"accuracy": accuracy(*as_key)}


def evaluate_spec(
    spec: IntrinsicSpec,
    examples: Sequence[Example],
    predictors: Sequence[Predictor],
    *,
    on_progress: Callable[[str, int], None] | None = None,
    predictions: str | Path | None = None,
) -> list[EvalRow]:
    """Run every predictor on every example of ``spec``; one :class:`EvalRow` per predictor.

    ``predictions``: a directory to write ``<intrinsic>.<system>.jsonl`` into, one line per example
    (last message, gold, prediction, raw output), because a score alone does not say what to fix.
    """
    golds, kept = [], []
    for ex in examples:
        _, context = example_context(spec, ex)
        try:
            golds.append(spec.parse(RawOutput(text=ex.output, context=context)))
            kept.append(ex)
        except IntrinsicOutputError:
            continue  # a gold target the parser rejects is a data bug; skip rather than score noise
    rows, all_preds = [], []
    for predictor in predictors:
        start, preds, malformed, records = time.perf_counter(), [], 0, []
        for i, ex in enumerate(kept):
            _, context = example_context(spec, ex)
            raw = predictor.predict(spec, ex)
            pred, bad = _safe_parse(
                spec,
                raw,
                functools.partial(_trivial_raw, spec, context),
            )
            preds.append(pred)
            malformed += bad
            if predictions is not None:
                records.append(
                    {
                        "last_message": ex.messages[-1].content,
                        "gold": golds[i].model_dump(mode="json"),
                        "prediction": pred.model_dump(mode="json") if pred is not None else None,
                        "raw": raw.text,
                        "malformed": bad,
                        **({"meta": ex.meta} if ex.meta else {}),
                    }
                )
            if on_progress:
                on_progress(predictor.name, i + 1)
        metrics = score(spec, golds, preds, kept) if kept else {}
        all_preds.append(preds)
        if predictions is not None:
            write_jsonl(Path(predictions) / f"{spec.name}.{predictor.name}.jsonl", records)
        rows.append(
            EvalRow(
                intrinsic=spec.name,
                system=predictor.name,
                n=len(kept),
                malformed=malformed,
                seconds=round(time.perf_counter() - start, 3),
                metrics={k: (round(v, 4) if not math.isnan(v) else v) for k, v in metrics.items()},
            )
        )
    if kept:
        _add_intervals(spec, golds, kept, rows, all_preds)
    return rows


def _add_intervals(
    spec: IntrinsicSpec,
    golds: Sequence[BaseModel],
    examples: Sequence[Example],
    rows: Sequence[EvalRow],
    preds: Sequence[Sequence[BaseModel | None]],
) -> None:
    """Fill each row's ``ci``: the headline metric, and its paired difference from the first row
    (the same resampled examples for both systems, so shared hard examples cancel out). Each
    system's metric is computed once per resample; the differences reuse those values."""
    key = HEADLINE.get(spec.kind, "accuracy")

    def metric(system: int) -> Callable[[Sequence[int]], float]:
        return lambda idx: score(
            spec, [golds[i] for i in idx], [preds[system][i] for i in idx], [examples[i] for i in idx]
        )[key]

    values = [bootstrap_values(metric(k), len(examples)) for k in range(len(rows))]
    for k, row in enumerate(rows):
        row.ci[key] = percentile_interval(values[k])
        if k:
            row.ci[f"{key} - {rows[0].system}"] = percentile_interval(
                [a - b for a, b in zip(values[k], values[0])]
            )


def format_interval(interval: Sequence[float] | None) -> str:
    """``[0.702, 0.835]``, or ``-`` for a missing or undefined interval."""
    if not interval or any(math.isnan(v) for v in interval):
        return "-"
    return f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def interval_columns(rows: Sequence[EvalRow]) -> list[str]:
    return list(dict.fromkeys(k for row in rows for k in row.ci))


def rows_table(rows: Sequence[EvalRow]):
    """A rich table: one line per (intrinsic, system), one column per metric, then the 95%
    intervals (:attr:`EvalRow.ci`)."""
    from rich.table import Table

    names: list[str] = []
    for row in rows:
        names += [k for k in row.metrics if k not in names]
    intervals = interval_columns(rows)
    table = Table(title="Intrinsic evaluation (95% bootstrap intervals)")
    for col in ("intrinsic", "system", "n", "malformed", *names, *(f"{k} 95%" for k in intervals), "seconds"):
        table.add_column(col, justify="left" if col in ("intrinsic", "system") else "right")
    for row in rows:
        cells = [
            f"{row.metrics[k]:.3f}" if k in row.metrics and not math.isnan(row.metrics[k]) else "-"
            for k in names
        ]
        table.add_row(
            row.intrinsic,
            row.system,
            str(row.n),
            str(row.malformed),
            *cells,
            *(format_interval(row.ci.get(k)) for k in intervals),
            f"{row.seconds:.1f}",
        )
    return table


def write_rows(rows: Sequence[EvalRow], path: str | Path) -> Path:
    """JSON list of rows (NaN written as null, so any JSON reader accepts it)."""
    path = Path(path)
    data = [
        {
            **r.model_dump(),
            "metrics": {k: None if math.isnan(v) else v for k, v in r.metrics.items()},
            "ci": {k: [None if math.isnan(v) else round(v, 4) for v in ci] for k, ci in r.ci.items()},
        }
        for r in rows
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    return path


def read_rows(path: str | Path) -> list[EvalRow]:
    """Rows written by :func:`write_rows` (null back to NaN); an absent file gives no rows."""
    path = Path(path)
    if not path.is_file():
        return []
    nan = float("nan")
    return [
        EvalRow.model_validate(
            {
                **r,
                "metrics": {k: nan if v is None else v for k, v in r["metrics"].items()},
                "ci": {k: [nan if v is None else v for v in ci] for k, ci in r.get("ci", {}).items()},
            }
        )
        for r in json.loads(path.read_text())
    ]


def evaluate_file(
    data: str | Path,
    *,
    backend,
    alora: Mapping[str, str | Path] | None = None,
    lora: Mapping[str, str | Path] | None = None,
    intrinsics: Sequence[str] | None = None,
    include_base: bool = True,
    include_trivial: bool = True,
    base_model=None,
    train_data: str | Path | None = None,
    limit: int | None = None,
    base_dir: str | Path | None = None,
    predictions: str | Path | None = None,
) -> list[EvalRow]:
    """Evaluate every intrinsic in ``data`` (or ``intrinsics``) with every available system.

    ``alora`` maps intrinsic name -> ``"builtin"`` or a directory (loaded into ``backend`` and run
    through the Session); ``lora`` maps name -> a standard LoRA directory. The prompted-base and
    LoRA systems need an unmodified base model: ``base_model``, or a copy of ``backend.base_model``
    taken here before any adapter is added (PEFT modifies the model it wraps).
    """
    from intrinsics.known import get_spec
    from intrinsics.registry import load_intrinsic
    from intrinsics.training.data_format import read_jsonl

    alora, lora = dict(alora or {}), dict(lora or {})
    examples = read_jsonl(data)
    names = list(intrinsics or dict.fromkeys(ex.intrinsic for ex in examples if ex.intrinsic))
    if base_model is None and (lora or include_base):
        if backend.adapters:
            raise AloraFlowsError(
                "pass base_model: the backend already has adapters, so its base model "
                "is wrapped by PEFT and cannot serve the LoRA/base systems"
            )
        base_model = copy.deepcopy(backend.base_model)
    reference = read_jsonl(train_data) if train_data else examples
    rows: list[EvalRow] = []
    for name in names:
        subset = [ex for ex in examples if ex.intrinsic in (None, name)][:limit]
        spec = get_spec(name)
        predictors: list[Any] = []
        if name in alora:
            resolved = load_intrinsic(
                name, alora[name], backend.model_id, base_dir=base_dir, tokenizer=backend.tokenizer
            )
            spec = resolved.spec
            adapter_name = f"eval_{name}"
            if adapter_name not in backend.adapters:
                backend.add_adapter(adapter_name, resolved.path)
            predictors.append(SessionPredictor(backend, adapter_name))
        if name in lora:
            predictors.append(HFPredictor(base_model, backend.tokenizer, adapter=lora[name], name="lora"))
        if include_base:
            predictors.append(HFPredictor(base_model, backend.tokenizer, name="base"))
        if include_trivial:
            predictors.append(TrivialPredictor([ex for ex in reference if ex.intrinsic in (None, name)]))
        rows += evaluate_spec(spec, subset, predictors, predictions=predictions)
    return rows
