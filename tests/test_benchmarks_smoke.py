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
