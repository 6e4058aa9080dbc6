"""Flow-level concurrency: threads running flows on one shared backend (a Session each) give
exactly what the same runs give one after another (the backend lock serialises forward passes and
adapter switches; sessions share nothing else)."""

from __future__ import annotations

import threading

from alora_flows.core.session import Session
from alora_flows.flow import END, Flow
from intrinsics import text_spec, uncertainty_spec

SPECS = {
    "alpha": uncertainty_spec("alpha", "<|im_start|>certainty\n"),
    "beta": text_spec("beta", "<|im_start|>rewrite\n", max_new_tokens=3),
}


def build_flow() -> Flow:
    flow = Flow("threads", inputs=["question"], model="tiny", max_steps=12)
    flow.message("ask", "user", "Documents: Velmora was founded in 1832.\n\n{{ question }}")
    flow.generate("answer", max_new_tokens=5, output="answer")
    flow.intrinsic("rate", "alpha", output="certainty")
    flow.intrinsic("note", "beta", output="note")
    flow.message("more", "user", "And then? ({{ note }})")
    flow.generate("answer2", max_new_tokens=5, temperature=0.8, output="answer2")  # seeded
    flow.intrinsic("rate2", "alpha", output="certainty2")
    flow.edge("ask", "answer").edge("answer", "rate").edge("rate", "note")
    flow.branch("note", [("certainty.score >= 0.0", "more")], default=END)
    flow.edge("more", "answer2").edge("answer2", "rate2").edge("rate2", END)
    return flow


def run_one(backend, flow: Flow, question: str, seed: int) -> tuple:
    result = flow.run(Session(backend), {"question": question}, seed=seed, intrinsic_specs=SPECS)
    steps = [
        (s.node, s.prefill_tokens, s.reused_tokens, s.generated_tokens, s.next) for s in result.trace.steps
    ]
    return result.trace.final_state, steps


def test_threads_running_flows_on_one_backend_match_sequential_runs(backend):
    flow = build_flow()
    jobs = [(f"Question {i}: when was the town number {i * 3} founded?", i) for i in range(5)]
    sequential = [run_one(backend, flow, q, seed) for q, seed in jobs]
    results: dict[int, tuple] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(jobs))

    def worker(i: int) -> None:
        try:
            barrier.wait()  # start together, so the runs really interleave
            results[i] = run_one(backend, flow, *jobs[i])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert [results[i] for i in range(len(jobs))] == sequential
    assert len({str(r[0]) for r in sequential}) == len(jobs)  # the runs really differ
