"""Process settings that make long-context intrinsic calls cheaper on CPU (measured, opt-out).

Both were found by profiling an intrinsic call on an 8,000-token conversation
(``benchmarks/profile_invoke.py``, notes in ``benchmarks/results/NOTES.md``):

- *GQA in SDPA.* With a mask (always, for a few query tokens over a long cache), transformers
  expands the KV heads to the query heads (``repeat_kv``) before attention on CPU: ~1 GB of
  copying per call at 8k tokens for SmolLM2 (3 KV heads, 9 query heads). torch's SDPA handles
  grouped-query attention itself on CPU; ``TRANSFORMERS_SDPA_FORCE_GQA=1`` lets it, with
  identical logits (our equivalence tests run with it).
- *Allocator trimming.* Each call concatenates the cache, uses the copy and frees it; glibc then
  returns that memory to the OS and the next call page-faults it back (~100k faults at 8k).
  Raising glibc's trim and mmap thresholds keeps it in the process.

Set ``ALORA_FLOWS_NO_CPU_TUNING=1`` to leave the process untouched.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

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
