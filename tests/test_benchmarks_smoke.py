"""The benchmark scripts run end to end on tiny settings and write their JSON + markdown."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_script(name: str, tmp_path: Path, *args: str) -> dict:
    cmd = [sys.executable, str(ROOT / "benchmarks" / name), "--out", str(tmp_path), *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stem = name.removesuffix(".py")
    assert (tmp_path / f"{stem}.md").read_text().count("|") > 10
    return json.loads((tmp_path / f"{stem}.json").read_text())


def test_engine_overhead_smoke(tmp_path):
    data = run_script(
        "engine_overhead.py", tmp_path, "--reps", "1", "--loop-steps", "50", "--branch-runs", "1"
    )
    assert [r["flow"] for r in data["rows"]] == ["loop", "branching"]
    loop = data["rows"][0]
    assert loop["steps_per_run"] == 50
    assert set(loop["us_per_step"]) == {"ours-yaml", "ours-python", "ours-yaml-flow.run", "langgraph"}


@pytest.mark.slow
def test_intrinsic_vs_context_smoke(tmp_path):
    data = run_script(
        "intrinsic_vs_context.py", tmp_path, "--lengths", "200", "--reps", "1", "--no-reuse-reps", "1"
    )
    (row,) = data["rows"]
    assert 198 <= row["tokens"] <= 200
    assert row["same_token"]["reuse"] == row["same_token"]["peft_pattern"] == row["same_token"]["no_reuse"]
    assert (tmp_path / "intrinsic_vs_context.png").stat().st_size > 1000


@pytest.mark.slow
def test_memory_smoke(tmp_path):
    data = run_script("memory.py", tmp_path, "--calls", "5", "--lengths", "128", "256", "--forks", "3")
    assert data["fork"]["all_tensors_shared"] and data["fork"]["unshared_bytes_per_fork"] == 0
    assert data["fork"]["parent_tensors_unchanged_after_child_append"]
    assert [r["target"] for r in data["kv"]["rows"]] == [128, 256]
    assert all(0 <= r["target"] - r["tokens"] <= 3 for r in data["kv"]["rows"])
    assert all(r["bytes_per_token"] == r["analytic_bytes_per_token"] for r in data["kv"]["rows"])


@pytest.mark.slow
def test_train_prefix_cache_smoke(tmp_path):
    data = run_script(
        "train_prefix_cache.py",
        tmp_path,
        "--batches",
        "1",
        "--batch-size",
        "2",
        "--only",
        "rewrite",
        "uncertainty_prompts",
    )
    assert [r["intrinsic"] for r in data["rows"]] == ["rewrite", "uncertainty"]
    assert all(r["max_loss_diff"] < 1e-4 and 0 < r["adapted_fraction"] < 1 for r in data["rows"])


@pytest.mark.slow
def test_adapted_input_cost_smoke(tmp_path):
    data = run_script(
        "adapted_input_cost.py", tmp_path, "--lengths", "200", "--reps", "1", "--no-reuse-reps", "1"
    )
    (row,) = data["rows"]
    assert row["conversation_tokens"] <= 200 and set(row["median_s"]) == {
        "reuse_0",
        "reuse_16",
        "reuse_48",
        "reuse_128",
        "no_reuse",
    }


@pytest.mark.slow
def test_base_generate_overhead_smoke(tmp_path):
    data = run_script("base_generate_overhead.py", tmp_path, "--reps", "1", "--tokens", "4", "--steps", "3")
    assert [r["system"] for r in data["rows"]][:2] == ["none", "4 adapters"]
    assert all(r["same_tokens_as_none"] for r in data["rows"])  # base logits do not depend on adapters


def test_second_model_score_and_turn_format(tmp_path):
    """benchmarks/second_model.py without its models: the paired scoring and Gemma's turn format."""
    import jinja2

    from benchmarks.second_model import GEMMA_TURNS, score

    rows = []
    for i in range(8):
        kind = "answerable" if i < 6 else "absent"
        for system, right in (("a:chat", i < 2), ("b:completion", i < 4)):
            outcome = "correct" if right else "wrong"
            rows.append(
                {
                    "system": system,
                    "question_id": f"q{i}",
                    "kind": kind,
                    "outcome": outcome,
                    "mean_prob": 0.9 if right else 0.2,
                    "tokens": 5,
                    "prompt_tokens": 50,
                    "prefill_s": 0.1,
                    "decode_s": 0.2,
                }
            )
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = score(path, resamples=50)
    assert report["n"] == 8
    assert report["systems"]["a:chat"]["correct"]["count"] == 2
    assert report["systems"]["b:completion"]["wrong"]["count"] == 4
    assert report["systems"]["b:completion"]["auroc_mean_prob_answerable"]["value"] == 1.0
    pair = report["paired_correct"]["b:completion - a:chat"]
    assert (pair["correct_diff"], pair["only_b"], pair["only_a"]) == (2, 2, 0)

    text = jinja2.Template(GEMMA_TURNS).render(
        bos_token="<bos>",
        add_generation_prompt=True,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Bye"},
        ],
    )
    assert text == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
    )
