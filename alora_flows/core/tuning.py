"""Process settings for running models on a CPU: torch's thread count, and two settings that make
long-context intrinsic calls cheaper. The application layer applies them for the process it runs
(``alora_flows.app``); nothing here runs at import.

**Threads** (:func:`choose_threads`): ``--threads N``, else ``ALORA_FLOWS_THREADS``, else
``OMP_NUM_THREADS``, else a default that leaves busy CPUs to the processes using them
(:func:`default_threads`).

**Long contexts** (:func:`apply_cpu_tuning`). Both settings were found by profiling an intrinsic
call on an 8,000-token conversation (``benchmarks/profile_invoke.py``, notes in ``benchmarks/results/NOTES.md``):

- *GQA in SDPA.* With a mask (always, for a few query tokens over a long cache), transformers
  expands the KV heads to the query heads (``repeat_kv``) before attention on CPU: ~1 GB of
  copying per call at 8k tokens for SmolLM2 (3 KV heads, 9 query heads). torch's SDPA handles
  grouped-query attention itself on CPU; ``TRANSFORMERS_SDPA_FORCE_GQA=1`` lets it, with
  identical logits (our equivalence tests run with it).
- *Allocator trimming.* Each call concatenates the cache, uses the copy and frees it; glibc then
  returns that memory to the OS and the next call page-faults it back (~100k faults at 8k).
  Raising glibc's trim and mmap thresholds keeps it in the process.

Set ``ALORA_FLOWS_NO_CPU_TUNING=1`` to leave these two untouched.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time
from collections.abc import Mapping
from typing import NamedTuple

from alora_flows.errors import UsageError

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_applied = False


def apply_cpu_tuning() -> bool:
    """Apply the settings once per process; returns whether they are in effect."""
    global _applied
    if _applied or os.environ.get("ALORA_FLOWS_NO_CPU_TUNING") == "1":
        return _applied
    os.environ.setdefault("TRANSFORMERS_SDPA_FORCE_GQA", "1")
    libc_name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(libc_name) if libc_name else None
        if libc is not None and hasattr(libc, "mallopt"):  # glibc only
            libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
            libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    except OSError:
        pass
    _applied = True
    return True


# ---------------------------------------------------------------------- torch threads
#: Environment variable that sets the torch thread count for every command (``--threads`` wins).
THREADS_ENV = "ALORA_FLOWS_THREADS"
#: More threads than this gain little for small models and crowd out other work on the machine.
MAX_DEFAULT_THREADS = 4
#: How long the default samples the machine's load before choosing (this process sleeps meanwhile).
LOAD_SAMPLE_SECONDS = 0.2


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity mask; all CPUs where there is none)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return list(range(os.cpu_count() or 1))


def cgroup_cpu_limit(path: str = "/sys/fs/cgroup/cpu.max") -> float | None:
    """The container's CPU quota in CPUs (cgroup v2 ``cpu.max``), or None when unlimited/unknown."""
    try:
        with open(path, encoding="ascii") as f:
            quota, period = f.read().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


def physical_cores() -> int | None:
    """Physical cores of the machine (hyper-threads share a core's arithmetic units)."""
    try:
        import psutil

        return psutil.cpu_count(logical=False)
    except Exception:  # psutil missing or unable to tell
        return None


class CpuSampler:
    """How many of ``cpus`` other processes keep busy, from ``/proc/stat`` minus this process's
    own CPU time over the same interval (Linux; ``other_cpus()`` is None elsewhere).

    The thread default samples while this process sleeps; benchmarks sample around a timed block
    to record how loaded the machine was while it ran.
    """

    def __init__(self, cpus: list[int] | None = None) -> None:
        self.cpus = set(usable_cpus() if cpus is None else cpus)
        self.start = self._sample()

    def _sample(self) -> tuple[float, int, int] | None:
        try:
            busy = 0
            with open("/proc/stat", encoding="ascii") as f:
                for line in f:
                    name, _, rest = line.partition(" ")
                    if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in self.cpus):
                        continue
                    fields = [int(x) for x in rest.split()]
                    busy += sum(fields[:8]) - fields[3] - fields[4]  # all but idle and iowait
            with open("/proc/self/stat", encoding="ascii") as f:
                parts = f.read().rsplit(")", 1)[1].split()
            own = int(parts[11]) + int(parts[12])  # utime + stime, in clock ticks
            return time.perf_counter(), busy, own
        except (OSError, ValueError, IndexError):
            return None

    def other_cpus(self) -> float | None:
        """CPUs kept busy by other processes since construction (or the last call), e.g. 0.98."""
        end = self._sample()
        start, self.start = self.start, end
        if end is None or start is None or end[0] <= start[0]:
            return None
        ticks = (end[1] - start[1]) - (end[2] - start[2])
        return max(0.0, ticks / os.sysconf("SC_CLK_TCK") / (end[0] - start[0]))


def busy_cpus(seconds: float = LOAD_SAMPLE_SECONDS, cpus: list[int] | None = None) -> float | None:
    """Sample how many of this process's CPUs other processes keep busy (sleeps ``seconds``)."""
    sampler = CpuSampler(cpus)
    time.sleep(seconds)
    return sampler.other_cpus()


def default_threads(usable: int, busy: float | None, physical: int | None = None) -> int:
    """The default torch thread count: the CPUs nobody else is using, at most one per physical
    core and at most :data:`MAX_DEFAULT_THREADS`, at least 1.

    Why: torch's own default (one thread per CPU) is right only on an idle machine. OpenMP
    threads wait for each other at every operator, so when another process holds one of two
    cores, a two-thread forward runs at the pace of the descheduled thread: the demo took 66-98 s
    that way instead of 12 s with one thread (issue 21; ``benchmarks/results/threads.md``).
    """
    cap = max(1, min(usable, physical or usable, MAX_DEFAULT_THREADS))
    if busy is None:
        return cap
    free = int(usable - busy + 0.5)  # a CPU more than half taken by others counts as taken
    return max(1, min(cap, free))


class ThreadChoice(NamedTuple):
    """What :func:`choose_threads` decided, and why (shown to the user on model commands)."""

    threads: int
    source: str  # "--threads", THREADS_ENV, "OMP_NUM_THREADS" or "default"
    usable: int
    busy: float | None = None

    def describe(self) -> str:
        """``1 torch thread: 2 usable CPUs, 1.0 busy with other work (--threads N to change)``."""
        n = f"{self.threads} torch thread{'s' if self.threads != 1 else ''}"
        if self.source != "default":
            return f"{n} (from {self.source})"
        cpus = f"{self.usable} usable CPU{'s' if self.usable != 1 else ''}"
        load = f", {self.busy:.1f} busy with other work" if self.busy is not None else ""
        return f"{n}: {cpus}{load} (--threads N to change)"


def _positive_int(text: str, source: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"{source} must be a whole number of threads >= 1, got {text!r}")
    return value


def choose_threads(
    requested: int | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    sample_seconds: float = LOAD_SAMPLE_SECONDS,
) -> ThreadChoice:
    """``--threads`` if given, else ``ALORA_FLOWS_THREADS``, else ``OMP_NUM_THREADS`` (torch already
    read it), else :func:`default_threads` on this machine's CPUs and its current load."""
    env = os.environ if environ is None else environ
    cpus = usable_cpus()
    limit = cgroup_cpu_limit()
    usable = max(1, min(len(cpus), int(limit))) if limit else len(cpus)
    if requested is not None:
        return ThreadChoice(_positive_int(str(requested), "--threads"), "--threads", usable)
    for name in (THREADS_ENV, "OMP_NUM_THREADS"):
        if env.get(name, "").strip():
            return ThreadChoice(_positive_int(env[name].strip(), name), name, usable)
    busy = busy_cpus(sample_seconds, cpus) if sample_seconds > 0 else None
    return ThreadChoice(default_threads(usable, busy, physical_cores()), "default", usable, busy)


def set_torch_threads(threads: int) -> None:
    """Set torch's intra-op threads, and its inter-op pool to one thread while that can still
    change (eager inference never runs operators in parallel with each other; torch refuses the
    change once that pool has started, which is then harmless)."""
    import torch

    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != 1:
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass


# ---------------------------------------------------------------------- library chatter
def library_progress(show: bool) -> None:
    """Show or hide transformers' and huggingface_hub's progress bars ("Loading weights ...") in
    this process. Commands hide them unless ``--verbose``: they repeat on every model load and
    break up the live trace."""
    import sys

    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "0" if show else "1"  # read at their import
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

        (enable_progress_bars if show else disable_progress_bars)()
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        (hf_logging.enable_progress_bar if show else hf_logging.disable_progress_bar)()
