"""Long runs and concurrency: nothing drifts after many calls, threads agree with sequential runs."""

import gc
import threading

import psutil
import torch

from alora_flows.core.session import Session

from .test_session import conversation


def test_thousand_invocations_leave_cache_and_memory_flat(backend):
    session = Session(backend)
    session.extend(conversation(6))
    keys_before = [layer.keys.clone() for layer in session._cache.layers]
    ids_before = list(session._cached_ids)
    process = psutil.Process()
    rss = []
    for i in range(1000):
        session.invoke("alpha" if i % 2 else "beta", max_new_tokens=2)
        if i % 100 == 99:
            gc.collect()
            rss.append(process.memory_info().rss)
    assert session._cached_ids == ids_before
    assert all(torch.equal(a, layer.keys) for a, layer in zip(keys_before, session._cache.layers))
    warm = rss[1]  # after warm-up (allocator pools, first-call caches)
    assert max(rss[2:]) <= warm * 1.05, [r // 2**20 for r in rss]
    assert len(session.history) == 1001


def run_conversation(backend, question: str) -> list[list[int]]:
    session = Session(backend)
    session.extend([{"role": "user", "content": question}])
    out = [session.generate(8).token_ids]
    out.append(session.invoke("alpha", max_new_tokens=3).token_ids)
    out.append(session.invoke("beta", max_new_tokens=3).token_ids)
    session.extend([{"role": "user", "content": "and then?"}])
    out.append(session.generate(6).token_ids)
    return out


def test_threads_sharing_one_backend_match_sequential_runs(backend):
    questions = [f"Question number {i}: where is the river {i * 7}?" for i in range(6)]
    sequential = [run_conversation(backend, q) for q in questions]
    results: dict[int, list] = {}

    def worker(i: int) -> None:
        results[i] = run_conversation(backend, questions[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(questions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(len(questions))] == sequential
