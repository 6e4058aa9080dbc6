"""The realistic RAG evaluation: the fixed question subset and the scores of its report."""

from collections import Counter

from examples.rag.realistic_eval import markdown, paths, score, select_questions
from intrinsics.training.realistic.loader import load_cases
from intrinsics.training.realistic.rag import rag_questions


def test_the_subset_is_fixed_stratified_and_a_third_unanswerable():
    questions = rag_questions(load_cases())
    chosen = select_questions(questions)
    assert chosen == select_questions(questions)  # seeded: the same every time
    assert len(chosen) >= 150 and len({q.id for q in chosen}) == len(chosen)
    kinds = Counter(q.kind for q in chosen)
    assert kinds["answerable"] == 90 and sum(kinds.values()) - kinds["answerable"] >= len(chosen) / 3
    assert kinds["absent"] == sum(q.kind == "absent" for q in questions) > 0
    domains = Counter(q.domain for q in chosen if q.kind == "answerable")
    assert set(domains.values()) == {9}
    assert [q.id for q in select_questions(questions, seed=1)] != [q.id for q in chosen]


def _records(questions, outcomes):
    out = {}
    for q, (plain, gated) in zip(questions, outcomes):
        out[("plain", q.id)] = {"outcome": plain, "outcome_flag_abstains": plain, "seconds": 1.0}
        path = (
            ["answer", "certainty", "widen", "retry_wider", "abstain"] if gated == "abstained" else ["answer"]
        )
        out[("gated", q.id)] = {
            "outcome": gated,
            "outcome_flag_abstains": gated,
            "seconds": 2.0,
            "path": path,
            "abstained": gated == "abstained",
            "flagged": False,
            "rewind_reused_tokens": 0,
            "rewind_recomputed_tokens": 0,
        }
    return out


def test_scores_count_the_targets_per_question():
    questions = select_questions(rag_questions(load_cases()))[:10]
    outcomes = (
        [("correct", "correct")] * 4
        + [("correct", "abstained")]
        + [("wrong", "abstained")] * 3
        + [("wrong", "wrong")] * 2
    )
    records = _records(questions, outcomes)
    report = score(questions, records, resamples=50)
    assert report["n"] == 10
    assert report["plain"]["correct"]["count"] == 5 and report["plain"]["wrong"]["count"] == 5
    assert report["gated"]["abstained"]["count"] == 4
    assert report["wrong_cut"]["value"] == 0.6 and not report["wrong_cut"]["met"]  # 5 -> 2
    assert report["correct_kept"]["value"] == 0.8 and not report["correct_kept"]["met"]  # 5 -> 4
    lo, hi = report["wrong_cut"]["ci"]
    assert lo <= 0.6 <= hi
    # a question only one pipeline answered is left out
    del records[("gated", questions[0].id)]
    assert score(questions, records, resamples=20)["n"] == 9
    info = paths(questions, _records(questions, outcomes))
    assert info["rewinds"]["runs_with_rewind"] == 4
    text = markdown(
        {
            "command": "x",
            "threads": 1,
            "resamples": 50,
            "selected": 12,
            "score": report,
            "score_flag_abstains": report,
            "paths": info,
        }
    )
    assert "| wrong answers cut | 60.0%" in text and "**no**" in text
    assert "2 selected questions were not answered" in text
    assert "shipped adapters, CPU, 1 thread)" in text  # a report from before --device ran on the CPU
    on_gpu = markdown(
        {
            **dict(command="x", threads=1, resamples=50, selected=12, score=report),
            "score_flag_abstains": report,
            "paths": info,
            "device": "cuda",
        }
    )
    assert "shipped adapters, cuda, bfloat16)" in on_gpu and "CPU" not in on_gpu.split("\n")[2]
