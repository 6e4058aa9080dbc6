"""Metrics against hand-computed values, and the evaluation runner on the tiny model."""

from __future__ import annotations

import json
import math

import pytest
from rich.console import Console

from alora_flows.testing import save_random_alora
from intrinsics import get_spec
from intrinsics.training.data.text import read_jsonl as read_jsonl_rows
from intrinsics.training.data_format import read_jsonl, write_jsonl
from intrinsics.training.evaluate import (
    HFPredictor,
    SessionPredictor,
    TrivialPredictor,
    evaluate_file,
    evaluate_spec,
    read_rows,
    rows_table,
    write_rows,
)
from intrinsics.training.metrics import (
    accuracy,
    auroc,
    best_threshold,
    binary_prf,
    bootstrap_ci,
    bootstrap_values,
    exact_match,
    expected_calibration_error,
    normalize_text,
    percentile_interval,
    sentence_prf,
    threshold_sweep,
    token_f1,
)
from intrinsics.training.thresholds import PredictionsFileError, read_scored_answers


# ---------------------------------------------------------------------------------- metrics
def test_auroc_hand_computed():
    # positives 0.9, 0.4; negatives 0.6, 0.1: pairs (0.9>0.6, 0.9>0.1, 0.4<0.6, 0.4>0.1) -> 3/4
    assert auroc([1, 1, 0, 0], [0.9, 0.4, 0.6, 0.1]) == pytest.approx(0.75)
    assert auroc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)  # a tie counts one half
    assert auroc([True, False, True], [0.2, 0.1, 0.3]) == 1.0
    assert math.isnan(auroc([1, 1], [0.2, 0.3]))


def test_ece_hand_computed():
    # bins of width 0.5: {0.2, 0.4} acc 1/2 conf 0.3 -> |0.2|; {0.8, 1.0} acc 1 conf 0.9 -> |0.1|
    assert expected_calibration_error([0.2, 0.4, 0.8, 1.0], [1, 0, 1, 1], n_bins=2) == pytest.approx(
        0.5 * 0.2 + 0.5 * 0.1
    )
    assert expected_calibration_error([0.0, 1.0], [0, 1]) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        expected_calibration_error([1.5], [1])


def test_prf_and_sentence_level_f1():
    prf = binary_prf([True, True, False, False], [True, False, True, False])
    assert (prf.precision, prf.recall, prf.f1, prf.support) == (0.5, 0.5, 0.5, 2)
    gold = [{0: "faithful", 1: "unfaithful"}, {0: "unfaithful"}]
    pred = [{0: "unfaithful", 1: "unfaithful"}, {}]  # second response: sentence skipped -> not positive
    # tp=1 (resp0 s1), fp=1 (resp0 s0), fn=1 (resp1 s0) -> P=R=F1=0.5
    assert sentence_prf(gold, pred).f1 == pytest.approx(0.5)
    assert binary_prf([False], [False]).f1 == 0.0


def test_threshold_sweep_hand_computed():
    # correct answers score 0.9, 0.6, 0.3; wrong ones 0.5, 0.2. t = 0.25 cuts the 0.2 (net 1);
    # t = 0.55 cuts 0.5 and 0.2 but loses 0.3 (net 1); t = 0.35 and 0.4 ... 0.5 cut 0.2 and lose
    # 0.3 (net 0) until 0.5 < t, where the wrong 0.5 goes too.
    points = threshold_sweep([0.9, 0.6, 0.3, 0.5, 0.2], [1, 1, 1, 0, 0], step=0.05)
    assert [p.threshold for p in points][:3] == [0.05, 0.1, 0.15] and points[-1].threshold == 0.95
    by_t = {p.threshold: p for p in points}
    assert (by_t[0.25].kept_correct, by_t[0.25].cut_wrong, by_t[0.25].cut_correct, by_t[0.25].kept_wrong) == (
        3,
        1,
        0,
        1,
    )
    assert by_t[0.55].net == 1 and by_t[0.4].net == 0 and by_t[0.95].net == -1
    assert best_threshold(points).threshold == 0.25  # ties go to the threshold losing fewest correct
    assert best_threshold(threshold_sweep([0.9, 0.1], [1, 0], step=0.5)).threshold == 0.5
    with pytest.raises(ValueError):
        threshold_sweep([0.5], [1], step=1.0)


def test_bootstrap_interval():
    hits = [1] * 60 + [0] * 40

    def share(idx):
        return sum(hits[i] for i in idx) / len(idx)

    lo, hi = bootstrap_ci(share, len(hits))
    assert lo < 0.6 < hi and 0.08 < hi - lo < 0.25  # binomial: 2 * 1.96 * sqrt(.24 / 100) = 0.19
    assert bootstrap_ci(share, len(hits)) == (lo, hi)  # seeded
    assert bootstrap_ci(lambda idx: share(idx) - share(idx), len(hits)) == (0.0, 0.0)  # paired draws
    # value lists with the same seed and n are aligned draw by draw: a paired difference from them
    # equals the interval of the difference statistic
    a, b = bootstrap_values(share, len(hits)), bootstrap_values(lambda idx: share(idx) ** 2, len(hits))
    assert percentile_interval([x - y for x, y in zip(a, b)]) == bootstrap_ci(
        lambda idx: share(idx) - share(idx) ** 2, len(hits)
    )
    with pytest.raises(ValueError):
        bootstrap_ci(share, len(hits), level=1.0)
    assert bootstrap_ci(lambda idx: 0.7, 5) == (0.7, 0.7)
    assert all(math.isnan(v) for v in bootstrap_ci(lambda idx: math.nan, 5))
    wide = bootstrap_ci(lambda idx: share([i * 10 for i in idx]), 10)  # ten examples, 6 hits
    assert wide[1] - wide[0] > hi - lo  # fewer examples, wider interval
    with pytest.raises(ValueError):
        bootstrap_ci(share, 0)


def test_read_scored_answers_rejects_other_files(tmp_path):
    hallucination = tmp_path / "hallucination.alora.jsonl"
    hallucination.write_text(json.dumps({"gold": {"sentences": []}, "prediction": None}) + "\n")
    with pytest.raises(PredictionsFileError, match="not an uncertainty prediction"):
        read_scored_answers(hallucination)
    with pytest.raises(PredictionsFileError, match="no predictions file"):
        read_scored_answers(tmp_path / "missing.jsonl")
    scored = tmp_path / "uncertainty.alora.jsonl"
    scored.write_text(
        "\n".join(
            json.dumps(r)
            for r in (
                {"gold": {"score": 0.95}, "prediction": {"score": 0.7}},
                {"gold": {"score": 0.05}, "prediction": None},  # malformed: skipped, counted
                {"gold": {"score": 0.05}, "prediction": {"score": 0.2}},
                {"gold": {"score": 0.35}, "prediction": {"score": 0.4}, "meta": {"correct": True}},
            )
        )
        + "\n"
    )
    assert read_scored_answers(scored) == ([0.7, 0.2, 0.4], [True, False, True], 1)


def test_text_metrics():
    assert normalize_text("The  Capital, of France!") == "capital of france"
    assert exact_match("When was Velmora founded?", "when was velmora founded") == 1.0
    # pred tokens: when founded velmora (3); gold: when was velmora founded (4); common 3
    assert token_f1("When founded Velmora", "When was Velmora founded?") == pytest.approx(2 * 1 * 0.75 / 1.75)
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0
    assert accuracy(["a", "b"], ["a", "c"]) == 0.5
    with pytest.raises(ValueError):
        accuracy([1], [1, 2])


# ---------------------------------------------------------------------------------- runner
def uncertainty_rows():
    convo = [{"role": "user", "content": "What is the capital of France?"}]
    rows = []
    for i, (answer, digit, correct) in enumerate(
        [("Paris.", "9", True), ("Velmora.", "0", False), ("Paris!", "9", True), ("Quell.", "0", False)]
    ):
        rows.append(
            {
                "intrinsic": "uncertainty",
                "messages": convo + [{"role": "assistant", "content": answer}],
                "output": digit,
                "correct": correct,
            }
        )
    rows.append(
        {
            "intrinsic": "rewrite",
            "messages": convo
            + [
                {"role": "assistant", "content": "Paris."},
                {"role": "user", "content": "and its population?"},
            ],
            "output": json.dumps({"rewritten_question": "What is the population of Paris?"}),
        }
    )
    return rows


def test_trivial_baseline_scores(tmp_path):
    examples = read_jsonl(write_jsonl(tmp_path / "eval.jsonl", uncertainty_rows()))
    assert examples[0].meta == {"correct": True}
    unc = [e for e in examples if e.intrinsic == "uncertainty"]
    [row] = evaluate_spec(get_spec("uncertainty"), unc, [TrivialPredictor(unc)])
    assert row.system == "trivial" and row.n == 4 and row.malformed == 0
    assert row.metrics["auroc"] == 0.5  # a constant score cannot rank
    assert row.ci == {"auroc": (0.5, 0.5)}  # one-class resamples are skipped, the rest rank nothing
    assert row.metrics["digit_acc"] == 0.5
    rw = [e for e in examples if e.intrinsic == "rewrite"]
    [row] = evaluate_spec(get_spec("rewrite"), rw, [TrivialPredictor(rw)], predictions=tmp_path / "p")
    assert row.metrics["exact_match"] == 0.0 and 0 < row.metrics["token_f1"] < 1  # copying the question
    records = read_jsonl_rows(tmp_path / "p" / "rewrite.trivial.jsonl")
    assert [r["last_message"] for r in records] == [e.messages[-1].content for e in rw]
    assert all(
        r["prediction"]["rewritten_question"] == r["last_message"] != r["gold"]["rewritten_question"]
        and not r["malformed"]
        for r in records
    )


def test_runner_with_all_systems_on_the_tiny_model(tmp_path, fresh_backend):
    """aLoRA via the Session, the same aLoRA via plain PEFT, a LoRA, the prompted base model."""
    data = write_jsonl(tmp_path / "eval.jsonl", uncertainty_rows())
    tok = fresh_backend.tokenizer
    base_copy = __import__("copy").deepcopy(fresh_backend.base_model)
    alora = save_random_alora(
        base_copy, tok, get_spec("uncertainty").invocation, tmp_path / "a", base_model_name="tiny"
    )
    lora = save_random_alora(
        base_copy, tok, get_spec("uncertainty").invocation, tmp_path / "l", lora=True, base_model_name="tiny"
    )
    rows = evaluate_file(
        data,
        backend=fresh_backend,
        alora={"uncertainty": alora},
        lora={"uncertainty": lora},
        intrinsics=["uncertainty"],
        base_model=base_copy,
    )
    assert [r.system for r in rows] == ["alora", "lora", "base", "trivial"]
    assert all(r.n == 4 and set(r.metrics) == {"auroc", "ece", "mae", "digit_acc"} for r in rows)
    # the engine path and plain PEFT must agree on the aLoRA's predictions
    examples = [e for e in read_jsonl(data) if e.intrinsic == "uncertainty"]
    spec = get_spec("uncertainty")
    session_p = SessionPredictor(fresh_backend, "eval_uncertainty")
    hf_p = HFPredictor(base_copy, tok, adapter=alora)
    for ex in examples:
        a, b = session_p.predict(spec, ex), hf_p.predict(spec, ex)
        assert a.text == b.text
        assert a.label_probs == pytest.approx(b.label_probs, abs=1e-4)
    # intervals: each row's AUROC, and every later system paired against the first (the aLoRA)
    assert [set(r.ci) for r in rows] == [{"auroc"}] + [{"auroc", "auroc - alora"}] * 3
    for r in rows:
        lo, hi = r.ci["auroc"]
        assert lo <= r.metrics["auroc"] <= hi or math.isnan(r.metrics["auroc"])
    out = write_rows(rows, tmp_path / "rows.json")
    assert json.loads(out.read_text())[0]["intrinsic"] == "uncertainty"
    assert [r.ci for r in read_rows(out)] == [
        {k: tuple(round(v, 4) for v in ci) for k, ci in r.ci.items()} for r in rows
    ]
    console = Console(record=True, width=220)
    console.print(rows_table(rows))
    assert "auroc - alora 95%" in console.export_text()


def test_eval_cli(tmp_path, backend):
    from typer.testing import CliRunner

    from alora_flows.cli import app as cli_app

    tok = backend.tokenizer
    from alora_flows.testing import tiny_model

    base = tiny_model(tok)
    base.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    adapter = save_random_alora(
        base,
        tok,
        get_spec("uncertainty").invocation,
        tmp_path / "unc",
        base_model_name=str((tmp_path / "base").resolve()),
    )
    data = write_jsonl(tmp_path / "eval.jsonl", uncertainty_rows())
    app = cli_app
    result = CliRunner().invoke(
        app,
        [
            "eval-intrinsics",
            "--data",
            str(data),
            "--model",
            str(tmp_path / "base"),
            "--alora",
            f"uncertainty={adapter}",
            "--json",
            str(tmp_path / "r.json"),
            "--device",
            "cpu",
            "--predictions",
            str(tmp_path / "pred"),
        ],
    )
    assert result.exit_code == 0, result.output
    # the predictions it wrote choose a flow threshold in one more command
    swept = CliRunner().invoke(app, ["threshold", str(tmp_path / "pred" / "uncertainty.alora.jsonl")])
    assert swept.exit_code == 0, swept.output
    n_correct = sum(r.get("correct", False) for r in read_jsonl_rows(data) if r["intrinsic"] == "uncertainty")
    assert f"of {n_correct} correct answers" in swept.output, swept.output
    wrong = CliRunner().invoke(app, ["threshold", str(tmp_path / "pred" / "rewrite.base.jsonl")])
    assert wrong.exit_code == 1 and "not an uncertainty prediction" in wrong.output
    bad_step = CliRunner().invoke(
        app, ["threshold", str(tmp_path / "pred" / "uncertainty.alora.jsonl"), "--step", "2"]
    )
    assert bad_step.exit_code == 2 and "--step" in bad_step.output
    rows = json.loads((tmp_path / "r.json").read_text())
    assert [(r["intrinsic"], r["system"]) for r in rows] == [
        ("uncertainty", "alora"),
        ("uncertainty", "base"),
        ("uncertainty", "trivial"),
        ("rewrite", "base"),
        ("rewrite", "trivial"),
    ]
    bad = CliRunner().invoke(
        app,
        ["eval-intrinsics", "--data", str(data), "--model", str(tmp_path / "base"), "--alora", "uncertainty"],
    )
    assert bad.exit_code == 2 and "NAME=SOURCE" in bad.output
