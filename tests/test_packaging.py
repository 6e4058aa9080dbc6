"""A wheel installs into a fresh virtualenv outside the checkout and runs the demo's entry points.

The venv shares this interpreter's site-packages (torch and friends are not downloaded again), but
the project itself comes only from the wheel: the test checks that the modules it imports live in
the venv, that ``examples`` (not part of the wheel) cannot be imported, and that the packaged demo
flow validates, which needs the intrinsics library found through its entry point.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    dist = tmp_path / "dist"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(ROOT),
        ],
        cwd=tmp_path,
    )
    [wheel] = dist.glob("alora_flows-*.whl")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], cwd=tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run(
        [
            str(python),
            "-c",
            "import alora_flows, intrinsics, alora_flows.demo as d; "
            "print(alora_flows.__file__); print(intrinsics.__file__); print(d.FLOW_FILE)",
        ],
        cwd=work,
    )
    package, library, flow = where.split()
    for path in (package, library, flow):
        assert path.startswith(str(env_dir)), f"{path} does not come from the wheel"
    missing = subprocess.run([str(python), "-c", "import examples"], cwd=work, capture_output=True)
    assert missing.returncode != 0, "examples/ must not be installed"
    cli = env_dir / "bin" / "alora-flows"
    assert "--question" in _run([str(cli), "demo", "--help"], cwd=work)
    assert _run([str(cli), "validate", flow], cwd=work).startswith("ok: flow 'rag-with-checks' is valid")
    corpus = Path(flow).parent / "corpus"
    assert len(list(corpus.glob("*.md"))) == 120
