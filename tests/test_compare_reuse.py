"""`compare_reuse` (what `demo --compare` measures): a warm-up, then rounds in alternating order,
every run from the same conversation, the same path both ways."""

from __future__ import annotations

import pytest

from alora_flows.app import ReuseComparison, compare_reuse
from alora_flows.core.session import Session
from alora_flows.demo import comparison_lines
from alora_flows.errors import UsageError
from tests.test_live_narrow import rag_flow


@pytest.fixture()
def uncertainty_backend(tmp_path):
    from alora_flows.testing import tiny_backend

    return tiny_backend(tmp_path, {"uncertainty": "<|im_start|>certainty\n"})


def test_rounds_alternate_after_a_warm_up_and_take_the_same_path(uncertainty_backend):
    heard: list[str] = []
    result = compare_reuse(
        rag_flow(),
        uncertainty_backend,
        {"question": "When was Velmora founded?"},
        repeats=3,
        on_run=lambda label, trace: heard.append(f"{label}:{'reuse' if trace.reuse else 'no reuse'}"),
    )
    assert heard == [
        "warm-up:no reuse",
        "no reuse:no reuse",
        "reuse:reuse",
        "reuse:reuse",
        "no reuse:no reuse",
        "no reuse:no reuse",
        "reuse:reuse",
    ]
    assert len(result.reuse_seconds) == len(result.no_reuse_seconds) == len(result.savings) == 3
    assert len(result.reuse_cpu_seconds) == len(result.no_reuse_cpu_seconds) == 3
    assert result.same_path
    reuse, no_reuse = result.reuse[0].compute_totals(), result.no_reuse[0].compute_totals()
    assert result.saved_prefill_tokens == no_reuse.prefill_tokens - reuse.prefill_tokens > 0
    assert result.savings == [b - a for a, b in zip(result.reuse_seconds, result.no_reuse_seconds)]


def test_every_run_starts_from_the_given_conversation(uncertainty_backend):
    start = Session(uncertainty_backend)
    start.extend([{"role": "user", "content": "An earlier turn about rivers."}])
    start.generate(max_new_tokens=4)
    before = list(start.messages)
    result = compare_reuse(rag_flow(), uncertainty_backend, {"question": "When?"}, start=start, repeats=1)
    assert start.messages == before  # the caller's session is untouched
    first_model_step = next(s for s in result.reuse[0].steps if s.kind == "generate")
    # Everything cached is reused; only the closing tokens of the start's last turn were pending.
    assert first_model_step.reused_tokens == start.cached_tokens
    assert first_model_step.context_tokens == len(start.ids) > start.cached_tokens
    no_reuse_step = next(s for s in result.no_reuse[0].steps if s.kind == "generate")
    assert no_reuse_step.reused_tokens == 0 and no_reuse_step.prefill_tokens > len(start.ids)


def test_repeats_must_be_positive(uncertainty_backend):
    with pytest.raises(UsageError):
        compare_reuse(rag_flow(), uncertainty_backend, {"question": "q"}, repeats=0)


def test_the_report_gives_medians_ranges_and_the_saving():
    from alora_flows.flow.trace import Trace, TraceStep

    def trace(reuse: bool, seconds: float, prefill: int) -> Trace:
        t = Trace(flow="f", model="m", reuse=reuse)
        t.add_step(TraceStep(node="a", kind="generate", prefill_tokens=prefill, seconds=seconds))
        return t

    result = ReuseComparison(
        reuse=[trace(True, s, 40) for s in (8.0, 9.0, 8.5)],
        no_reuse=[trace(False, s, 100) for s in (10.0, 9.5, 11.0)],
        other_cpus=[0.1, 0.0, 0.2],
    )
    lines = comparison_lines(result)
    assert lines[0] == "measured, 3 rounds after a warm-up, order alternating (median, range):"
    assert lines[1] == "  without reuse 10.0 s (9.5-11.0 s), with reuse 8.5 s (8.0-9.0 s)"
    assert lines[2] == "  saved 60 prefill tokens and 2.0 s a run (20%; rounds 0.5-2.5 s)"
    assert len(lines) == 3  # a quiet machine, no CPU times recorded: no more lines
    timed = result.model_copy(
        update={"reuse_cpu_seconds": [7.0, 7.5, 7.2], "no_reuse_cpu_seconds": [8.0, 8.1, 8.6]}
    )
    assert comparison_lines(timed)[3] == ("  CPU time 8.1 s and 7.2 s, saved 1.0 s (rounds 0.6-1.4 s)")
    busy = result.model_copy(update={"other_cpus": [1.2, 1.5, 0.9]})
    assert (
        comparison_lines(busy)[-1] == "  note: other work kept 1.2 CPUs busy; more --repeats narrow the range"
    )


def test_no_reuse_runs_start_from_the_same_documents(uncertainty_backend):
    from alora_flows.core.documents import DocumentSet

    start = Session(uncertainty_backend)
    docs = DocumentSet(documents=["Velmora was founded in 1832."], render_as="inline")
    start.extend([{"role": "user", "content": "Question: When was Velmora founded?"}], documents=docs)
    start.generate(max_new_tokens=4)
    result = compare_reuse(rag_flow(), uncertainty_backend, {"question": "Who?"}, start=start, repeats=1)
    reuse_step = next(s for s in result.reuse[0].steps if s.kind == "generate")
    no_reuse_step = next(s for s in result.no_reuse[0].steps if s.kind == "generate")
    assert no_reuse_step.context_tokens == reuse_step.context_tokens == len(start.ids)
