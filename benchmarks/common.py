"""Helpers shared by the CPU benchmarks: the embedded backend with a random aLoRA, conversations of
an exact token length, timing, and result writing."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

INVOCATION = "<|im_start|>certainty\n"
SENTENCE = "The Quellmark river runs 412 km from the Orsk hills to the Tarven sea. "
RESULTS = Path(__file__).resolve().parent / "results"


def quiet_cpu(threads: int) -> None:
    """Torch threads for a timing run (see benchmarks/README.md), without library chatter."""
    import warnings

    from transformers.utils import logging as hf_logging

    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")
    hf_logging.set_verbosity_error()


def embedded_backend(adapter_dir: str | Path, name: str = "certainty"):
    """The embedded model with one random aLoRA adapter (timing does not depend on trained weights),
    loaded as the CLI loads it (with the process's CPU tuning)."""
    from alora_flows.app import load_backend
    from alora_flows.testing import save_random_alora

    backend = load_backend("embedded", progress=False)
    path = save_random_alora(
        backend.base_model,
        backend.tokenizer,
        INVOCATION,
        Path(adapter_dir) / name,
        r=32,
        base_model_name=backend.model_id,
    )
    backend.add_adapter(name, path)
    return backend


def conversation(tokenizer, total_tokens: int, extra_tokens: int = 0) -> list[dict]:
    """A user document + assistant answer whose rendering is ``total_tokens - extra_tokens`` long
    (``extra_tokens``: e.g. the invocation tokens appended by an intrinsic call). Exact to the token
    when possible, otherwise at most one or two under."""
    from alora_flows.core.chat import ChatRenderer

    renderer = ChatRenderer(tokenizer)
    target = total_tokens - extra_tokens

    def render(body: str) -> list[dict]:
        return [
            {"role": "user", "content": body + "\nHow long is the Quellmark river?"},
            {"role": "assistant", "content": "It runs 412 km."},
        ]

    def size(body: str) -> int:
        return len(renderer.ids(render(body)))

    one, two = size(SENTENCE), size(SENTENCE * 2)
    per = two - one
    n = max(1, (target - one) // per + 1)
    while n > 1 and size(SENTENCE * n) > target:
        n -= 1
    body = SENTENCE * n
    while True:  # top up with single words
        grown = body + "river "
        if size(grown) > target:
            break
        body = grown
    return render(body)


def median_seconds(fn: Callable[[], object], reps: int, warmup: int = 1) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def environment() -> dict:
    import peft
    import transformers

    try:
        load = os.getloadavg()
    except OSError:  # pragma: no cover - not on Windows
        load = None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "load_average_at_start": load,
    }


def write_results(out: Path, name: str, result: dict, markdown: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{name}.md").write_text("\n".join(markdown) + "\n")
    print("\n".join(markdown), flush=True)


class CpuMonitor:
    """How many cores other processes kept busy while a block ran (from /proc; Linux only).

    The benchmark machines are shared: a parallel test run elsewhere slows OpenMP regions by a
    lot. Each result row records this so noisy rows can be recognised.
    """

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
            busy = sum(fields) - fields[3] - fields[4]  # minus idle and iowait
            with open("/proc/self/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
            own = int(parts[11]) + int(parts[12])  # utime + stime
            return time.perf_counter(), busy, own
        except (OSError, ValueError, IndexError):
            return None

    def other_cores(self) -> float | None:
        end = self._sample()
        if end is None or self.start is None:
            return None
        hz = os.sysconf("SC_CLK_TCK")
        seconds = end[0] - self.start[0]
        return round(((end[1] - self.start[1]) - (end[2] - self.start[2])) / hz / seconds, 2)
