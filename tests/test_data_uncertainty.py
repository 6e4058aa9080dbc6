"""Uncertainty labelling: answer correctness, digit encoding, training-line assembly, CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run without installing the package

from intrinsics.training.data.uncertainty import digit_for, is_correct, label_uncertainty, main


@pytest.mark.parametrize(
    "answer,gold,expected",
    [
        ("It was founded in 1843.", "1843", True),
        ("1843", "1843", True),
        ("It was founded in 18430.", "1843", False),
        ("It was founded in 1844.", "1843", False),
        ("About 52400 people live there.", "52,400", True),
        ("About 52,400 people live there.", "52400", True),
        ("About 52 400 people live there.", "52,400", False),
        ("The mayor is Tavi Orlen.", "Tavi Orlen", True),
        ("The mayor is Orlen.", "Tavi Orlen", False),
        ("The mayor is Orlen Tavi.", "Tavi Orlen", False),
        ("It celebrates the salt harvest.", "salt harvest", True),
        ("IT CELEBRATES THE SALT HARVEST!", "the salt harvest", True),
        ("Its hardness is 7.", "7", True),
        ("It was found in 1787.", "7", False),
        ("Lake Ombrel.", "Lake Ombrel", True),
        ("I don't know.", "1843", False),
        ("", "1843", False),
        ("anything", "", False),
    ],
)
def test_is_correct(answer, gold, expected):
    assert is_correct(answer, gold) is expected


def test_digit_encodes_fraction_correct():
    assert digit_for(1, 1) == "9" and digit_for(0, 1) == "0"
    assert digit_for(1, 2) == "5"  # 4.5 rounds half up
    assert digit_for(3, 4) == "7"  # 6.75
    assert digit_for(1, 10) == "1"
    with pytest.raises(ValueError):
        digit_for(0, 0)


RECORDS = [
    {
        "id": "a",
        "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q1"}],
        "gold": "1843",
    },
    {"id": "b", "messages": [{"role": "user", "content": "Q2"}], "gold": "Tavi Orlen"},
]


def test_label_single_answers_mapping_and_sequence():
    by_id = label_uncertainty(RECORDS, {"a": " Founded in 1843. ", "b": "Nobody knows."})
    by_pos = label_uncertainty(RECORDS, [" Founded in 1843. ", "Nobody knows."])
    assert by_id == by_pos
    assert [r["output"] for r in by_id] == ["9", "0"]
    assert by_id[0]["intrinsic"] == "uncertainty"
    assert by_id[0]["messages"][-1] == {"role": "assistant", "content": "Founded in 1843."}
    assert by_id[0]["messages"][:-1] == RECORDS[0]["messages"]
    assert len(RECORDS[0]["messages"]) == 2, "input records must not be mutated"


def test_label_sampled_answers():
    samples = {"a": ["1843", "1850", "1843", "1843"], "b": ["Tavi Orlen", "Tavi Orlen"]}
    first = label_uncertainty(RECORDS, samples)
    assert [r["output"] for r in first] == ["7", "9"]
    assert first[0]["messages"][-1]["content"] == "1843"
    every = label_uncertainty(RECORDS, samples, emit="all")
    assert len(every) == 6 and {r["output"] for r in every[:4]} == {"7"}


def test_label_rejects_bad_input():
    with pytest.raises(ValueError):
        label_uncertainty(RECORDS, ["only one"])
    with pytest.raises(ValueError):
        label_uncertainty(RECORDS, {"a": [], "b": "x"})
    with pytest.raises(ValueError):
        label_uncertainty(RECORDS, ["x", "y"], emit="some")


def test_label_cli(tmp_path):
    prompts = tmp_path / "p.jsonl"
    answers = tmp_path / "a.jsonl"
    out = tmp_path / "o.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    answers.write_text(
        json.dumps({"id": "a", "answers": ["1843", "no"]})
        + "\n"
        + json.dumps({"id": "b", "answer": "Tavi Orlen"})
        + "\n"
    )
    assert main(["--prompts", str(prompts), "--answers", str(answers), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["output"] for r in rows] == ["5", "9"]
