"""The CPU thread policy (issue 21): --threads, then ALORA_FLOWS_THREADS, then OMP_NUM_THREADS,
then a default that leaves CPUs busy with other work alone; applied by the app layer, never at
import."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from alora_flows import app as application
from alora_flows.core import tuning
from alora_flows.core.tuning import THREADS_ENV, choose_threads, default_threads
from alora_flows.errors import UsageError


@pytest.mark.parametrize(
    "usable, busy, physical, expected",
    [
        (2, 0.0, 2, 2),  # idle 2-core machine: both cores
        (2, 0.4, 2, 2),  # a little background work
        (2, 0.6, 2, 1),  # another process holds most of a core
        (2, 1.0, 2, 1),
        (2, 2.0, 2, 1),  # never fewer than one
        (8, 2.0, 8, 4),  # capped at MAX_DEFAULT_THREADS
        (16, 0.0, 8, 4),
        (4, 0.0, 2, 2),  # one thread per physical core (hyper-threads share a core)
        (4, 2.6, 4, 1),
        (4, None, 4, 4),  # load unknown: the cap
        (1, 0.0, None, 1),
    ],
)
def test_default_threads(usable, busy, physical, expected):
    assert default_threads(usable, busy, physical) == expected


def test_the_option_wins_then_our_variable_then_omp():
    env = {THREADS_ENV: "3", "OMP_NUM_THREADS": "2"}
    assert choose_threads(5, environ=env)[:2] == (5, "--threads")
    assert choose_threads(None, environ=env)[:2] == (3, THREADS_ENV)
    assert choose_threads(None, environ={"OMP_NUM_THREADS": "2"})[:2] == (2, "OMP_NUM_THREADS")
    default = choose_threads(None, environ={}, sample_seconds=0)
    assert default.source == "default" and default.busy is None and default.threads >= 1


@pytest.mark.parametrize("value", ["0", "-2", "many", "1.5"])
def test_bad_values_are_usage_errors_naming_their_source(value):
    with pytest.raises(
        UsageError, match=f"{THREADS_ENV} must be a whole number of threads >= 1, got '{value}'"
    ):
        choose_threads(None, environ={THREADS_ENV: value})


def test_descriptions():
    assert choose_threads(1, environ={}).describe() == "1 torch thread (from --threads)"
    chosen = tuning.ThreadChoice(1, "default", 2, 1.04)
    assert (
        chosen.describe() == "1 torch thread: 2 usable CPUs, 1.0 busy with other work (--threads N to change)"
    )


def test_cgroup_limit(tmp_path):
    limit = tmp_path / "cpu.max"
    limit.write_text("150000 100000\n")
    assert tuning.cgroup_cpu_limit(str(limit)) == 1.5
    limit.write_text("max 100000\n")
    assert tuning.cgroup_cpu_limit(str(limit)) is None
    assert tuning.cgroup_cpu_limit(str(tmp_path / "missing")) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_a_busy_process_is_seen_and_leaves_its_cpu_alone():
    """Two CPUs of this machine, another process spinning on one of them: the sampler sees it
    and the default takes one thread (run in a child pinned to those CPUs)."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs")
    cpus = sorted(os.sched_getaffinity(0))[:2]
    code = textwrap.dedent(
        f"""
        import os, subprocess, sys, time
        os.sched_setaffinity(0, {set(cpus)!r})
        spin = subprocess.Popen([sys.executable, "-c",
            "import os, time; os.sched_setaffinity(0, {{{cpus[0]}}}); t = time.time()\\n"
            "while time.time() - t < 4: pass"])
        time.sleep(0.5)
        from alora_flows.core.tuning import choose_threads
        choice = choose_threads(environ={{}}, sample_seconds=1.0)
        spin.kill()
        print(choice.threads, round(choice.busy, 2), choice.usable)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    threads, busy, usable = out.stdout.split()
    assert usable == "2" and float(busy) >= 0.7 and threads == "1", out.stdout


def test_importing_the_package_and_the_cli_leaves_torch_threads_alone():
    code = (
        "import torch; torch.set_num_threads(3); "
        "import alora_flows, alora_flows.app, alora_flows.cli, alora_flows.demo, alora_flows.flow.live; "
        "print(torch.get_num_threads())"
    )
    env = {k: v for k, v in os.environ.items() if k not in (THREADS_ENV, "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"


def test_use_cpu_applies_the_choice_and_keeps_it(monkeypatch):
    monkeypatch.setattr(application, "_threads", None)
    before = torch.get_num_threads()
    try:
        assert application.use_cpu(2).threads == 2 and torch.get_num_threads() == 2
        assert application.use_cpu().source == "--threads"  # a later call without a choice keeps it
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_prepare_process_leaves_a_gpu_run_alone(monkeypatch):
    monkeypatch.setattr(application, "_threads", None)
    calls = []
    monkeypatch.setattr(application, "use_cpu", lambda threads=None: calls.append(threads))
    assert application.prepare_process(threads=2, device="cuda:0") is None
    assert calls == []
    application.prepare_process(threads=2, device="cpu")
    assert calls == [2]


@pytest.mark.slow
def test_threads_benchmark_smoke(tmp_path):
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    cmd = [
        sys.executable,
        str(root / "benchmarks" / "threads.py"),
        "--reps",
        "1",
        "--calls",
        "1",
        "--load",
        "1",
    ]
    proc = subprocess.run(
        [*cmd, "--no-demo", "--tokens", "256", "--out", str(tmp_path)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "threads.json").read_text())
    assert [(r["condition"], r["setting"]) for r in data["rows"]] == [
        (c, s) for c in ("idle", "loaded") for s in ("1", "2", "default")
    ]
    loaded = {r["setting"]: r for r in data["rows"] if r["condition"] == "loaded"}
    assert loaded["1"]["threads_used"] == [1] and loaded["2"]["threads_used"] == [2]
    assert all(b >= 0.7 for b in loaded["1"]["other_cpus_busy"])  # the load the benchmark added
    assert "| +1 busy process | default (chose" in (tmp_path / "threads.md").read_text()
