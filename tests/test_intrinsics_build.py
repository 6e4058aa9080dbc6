"""The build/eval scripts' own logic: uncertainty labelling (greedy mode, reuse), partial result
merges, and the RAG threshold choice."""

from __future__ import annotations

import json

import pytest

from alora_flows.testing import tiny_model, tiny_tokenizer
from examples.rag.choose_threshold import choose, tradeoff
from intrinsics.build_builtin import label_uncertainty_split
from intrinsics.data.build import build_all
from intrinsics.data.text import read_jsonl
from intrinsics.eval_builtin import merge_rows
from intrinsics.evaluate import EvalRow


def row(intrinsic: str, system: str, value: float) -> EvalRow:
    return EvalRow(intrinsic=intrinsic, system=system, n=10, metrics={"m": value})


def test_merge_rows_replaces_only_the_new_rows_and_keeps_table_order():
    previous = [row("uncertainty", "alora", 0.1), row("uncertainty", "base", 0.2), row("rewrite", "alora", 0.3),
                row("rewrite", "trivial", 0.4)]
    merged = merge_rows(previous, [row("rewrite", "alora", 0.9), row("uncertainty", "lora", 0.5)])
    assert [(r.intrinsic, r.system, r.metrics["m"]) for r in merged] == [
        ("uncertainty", "alora", 0.1), ("uncertainty", "lora", 0.5), ("uncertainty", "base", 0.2),
        ("rewrite", "alora", 0.9), ("rewrite", "trivial", 0.4)]


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


def test_threshold_tradeoff_counts_and_choice():
    scores = [0.95, 0.9, 0.35, 0.2, 0.6, 0.1, 0.3]
    correct = [True, True, True, False, False, False, False]
    rows = {r["threshold"]: r for r in tradeoff(scores, correct)}
    assert rows[0.4] == {"threshold": 0.4, "correct_kept": 2, "correct": 3, "wrong_cut": 3, "wrong": 4, "net": 2}
    assert rows[0.1]["wrong_cut"] == 0 and rows[0.9]["correct_kept"] == 2
    # net: 0.1 -> 0, 0.2 -> 1, 0.3 -> 2, 0.4 -> 2, 0.5..0.6 -> 2, 0.7 -> 3, 0.8..0.9 -> 3
    assert choose(list(rows.values())) == 0.7
