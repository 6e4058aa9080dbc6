"""The llama.cpp comparison skips cleanly (exit 0, a reason) where llama-server cannot be built."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_llamacpp_compare_skips_cleanly_without_a_toolchain(tmp_path):
    env = {
        **os.environ,
        "PATH": str(tmp_path / "empty"),
        "ALORA_FLOWS_LLAMACPP_CACHE": str(tmp_path / "cache"),
    }
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "llamacpp_compare.py"), "--out", str(tmp_path / "out")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "SKIPPED" in proc.stdout and "cmake" in proc.stdout
    assert not (tmp_path / "out").exists()  # nothing measured, nothing written
