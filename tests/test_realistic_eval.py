"""The realistic evaluation: its hand-written cases, labelling rules, heuristics and runner.

The runner is exercised on the tiny random model with random adapters (the scores mean nothing
there; what is checked is that cases flow through ``spec.run`` on a Session, that checkpoints
resume, and that metrics and intervals are wired to the right predictions).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest

from alora_flows.core.models import EMBEDDED_MODEL_ID
from alora_flows.sandbox.text import split_sentences
from intrinsics.training.data_format import DataError
from intrinsics.training.realistic import heuristics
from intrinsics.training.realistic.base_answers import ANSWERS_FILE, current_answers, read_answers
from intrinsics.training.realistic.judge import answer_correct, contains, rewrite_check, tokens
from intrinsics.training.realistic.loader import (
    DOMAINS,
    HELD_OUT_DOMAINS,
    INTRINSICS,
    SYSTEM_PROMPT,
    UncertaintyCase,
    load_cases,
    presented_docs,
)
from intrinsics.training.realistic.scoring import (
    ADAPTER,
    HEADLINE,
    SYSTEMS,
    TOKEN_PROB,
    build_items,
    metrics,
    score_intrinsic,
)


@pytest.fixture(scope="module")
def case_set():
    return load_cases()


# ---------------------------------------------------------------------------------- the cases
def test_every_intrinsic_has_300_cases_in_every_domain(case_set):
    for name in INTRINSICS:
        cases = case_set.cases[name]
        assert len(cases) >= 300, name
        per_domain = Counter(c.domain for c in cases)
        assert set(per_domain) == set(DOMAINS), name
        assert min(per_domain.values()) >= 25, (name, per_domain)
    assert set(HELD_OUT_DOMAINS) <= set(DOMAINS)


def test_ids_are_unique_and_every_document_is_used(case_set):
    ids = [c.id for name in INTRINSICS for c in case_set.cases[name]]
    assert len(ids) == len(set(ids))
    used = {d for name in INTRINSICS for c in case_set.cases[name] for d in getattr(c.data, "docs", [])}
    assert used == set(case_set.documents)
    for doc in case_set.documents.values():
        assert doc.id.split(".")[0] in {d[:3] for d in DOMAINS}, doc.id


def test_label_balance(case_set):
    answerability = Counter(c.data.label for c in case_set.cases["answerability"])
    assert answerability["unanswerable"] >= sum(answerability.values()) / 3
    kinds = Counter(c.kind for c in case_set.cases["answerability"])
    assert {"near_miss", "other_entity", "absent", "direct", "paraphrase"} <= set(kinds)
    sentences = Counter(s.f for c in case_set.cases["hallucination"] for s in c.data.answer)
    assert sentences["unfaithful"] >= 150 and sentences["faithful"] >= 150 and sentences["partial"] >= 20
    errors = Counter(
        s.why for c in case_set.cases["hallucination"] for s in c.data.answer if s.f != "faithful"
    )
    for kind in (
        "changed_number",
        "swapped_entity",
        "wrong_document",
        "invented",
        "overgeneralised",
        "negation",
    ):
        assert errors[kind] >= 5, kind
    rewrite = Counter(c.kind for c in case_set.cases["rewrite"])
    assert min(rewrite[k] for k in ("pronoun", "ellipsis", "switch", "reference")) >= 30
    for name in ("uncertainty", "answerability", "hallucination"):
        sizes = Counter(len(c.data.docs) for c in case_set.cases[name])
        assert sizes[1] and sizes[2] and sizes[1] < sizes[2] + sizes[3], (name, sizes)


def test_each_case_is_consistent_with_its_documents(case_set):
    for case in case_set.cases["uncertainty"]:
        key = case_set.documents[case.data.docs[0]].text
        assert any(contains(key, v) for v in (case.data.gold, *case.data.aliases, *case.data.all_of))
    for case in case_set.cases["hallucination"]:
        sentences = [s.s for s in case.data.answer]
        assert split_sentences(case.data.answer_text) == sentences
    for case in case_set.cases["rewrite"]:
        assert rewrite_check(case.data.gold, case.data) and not rewrite_check(case.data.question, case.data)
        assert case.data.turns[0].role == "user" and case.data.turns[-1].role == "assistant"


def test_prompts_follow_the_demo_flow(case_set):
    case = case_set.cases["hallucination"][0]
    messages = case_set.messages(case)
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert messages[0]["content"] == SYSTEM_PROMPT
    docs = case_set.doc_texts(case)
    assert messages[1]["content"] == "\n".join(docs) + "\n\nQuestion: " + case.data.question
    flow = (Path(__file__).parents[1] / "alora_flows" / "demo" / "flow.yaml").read_text()
    assert f'instruction: "{SYSTEM_PROMPT}"' in flow  # the demo's system turn
    assert 'content: "Question: {{ question }}"' in flow and "documents_as: inline" in flow
    rewrite = case_set.cases["rewrite"][0]
    assert case_set.messages(rewrite) == [t.model_dump() for t in rewrite.data.turns]


def test_key_document_position_is_shuffled_but_fixed(case_set):
    cases = [c for c in case_set.cases["uncertainty"] if len(c.data.docs) > 1]
    first = [presented_docs(c.id, c.data.docs)[0] == c.data.docs[0] for c in cases]
    assert 0.25 < sum(first) / len(first) < 0.75
    assert all(presented_docs(c.id, c.data.docs) == presented_docs(c.id, c.data.docs) for c in cases)


def _write_case_file(tmp_path, text: str) -> Path:
    folder = tmp_path / "cases"
    folder.mkdir(exist_ok=True)
    (folder / "x.yaml").write_text(text)
    return folder


DOC = """domain: science
documents:
  - {id: d1, title: T, domain: science, style: encyclopedia, text: "The boiling point of water at sea level is 100 degrees Celsius, and it freezes at 0 degrees."}
"""


@pytest.mark.parametrize(
    "cases, message",
    [
        (
            "uncertainty:\n  - {id: u1, docs: [d1], question: 'When does water boil?', gold: '90'}\n",
            "not found",
        ),
        (
            "uncertainty:\n  - {id: u1, docs: [d9], question: 'When does water boil?', gold: '100'}\n",
            "unknown documents",
        ),
        (
            "uncertainty:\n  - {id: u1, docs: [d1], question: 'When does water boil?', gold: '100'}\n"
            "answerability:\n  - {id: u1, docs: [d1], question: 'When does water boil?', label: answerable, kind: direct}\n",
            "used twice",
        ),
        (
            "answerability:\n  - {id: a1, docs: [d1], question: 'Why is the sky blue?', label: answerable, kind: absent}\n",
            "does not fit",
        ),
        (
            "hallucination:\n  - {id: h1, docs: [d1], question: 'Boiling point?', answer: [{s: 'Dr. Who says 100. It is.', f: faithful, why: copied}]}\n",
            "split back",
        ),
        (
            "rewrite:\n  - {id: r1, turns: [{role: user, content: 'Water?'}, {role: assistant, content: 'Yes.'}], "
            "question: 'When does water boil?', gold: 'When does water boil?', entity: [water], attribute: [boil], kind: pronoun}\n",
            "needs no context",
        ),
    ],
)
def test_loader_rejects_broken_cases(tmp_path, cases, message):
    folder = _write_case_file(tmp_path, DOC + cases)
    with pytest.raises(DataError, match=message):
        load_cases(folder)


# ---------------------------------------------------------------------------------- judge
def test_normalisation_and_containment():
    assert tokens("The lake is 1,642 m deep; eight rivers.") == [
        "lake",
        "is",
        "1642",
        "m",
        "deep",
        "8",
        "river",
    ]
    assert contains("It is 1642 metres deep.", "1,642")
    assert not contains("It is 16,420 metres deep.", "1,642")
    assert contains("marie curie's second prize", "Marie Curie")
    assert contains("Three cookies", "3 cookie")
    assert not contains("anything", "")


def test_answer_correct_uses_gold_aliases_and_lists():
    case = UncertaintyCase(id="u", docs=["d"], question="Which seal?", gold="nerpa", aliases=["Baikal seal"])
    assert answer_correct("It is the Baikal seal.", case)
    assert answer_correct("The nerpa.", case)
    assert not answer_correct("A grey seal.", case)
    listing = UncertaintyCase(
        id="l", docs=["d"], question="Which elements?", gold="a", all_of=["polonium", "radium"]
    )
    assert answer_correct("She found radium and polonium.", listing)
    assert not answer_correct("She found radium.", listing)


def test_rewrite_check(case_set):
    case = next(c.data for c in case_set.cases["rewrite"] if c.kind == "switch" and c.data.forbid)
    assert rewrite_check(case.gold, case)
    assert not rewrite_check(case.question, case)
    assert not rewrite_check(case.gold + " " + case.forbid[0], case)
    assert not rewrite_check(case.gold.rstrip("?"), case)  # a fragment, not a question


# ---------------------------------------------------------------------------------- heuristics
DOCS = ["Lake Baikal in Siberia is 1,642 metres deep. The Angara river drains it."]


def test_uncertainty_heuristic_is_word_overlap():
    assert heuristics.overlap_certainty("Lake Baikal is 1642 metres deep.", DOCS) == 1.0
    assert heuristics.overlap_certainty("It is in Canada.", DOCS) == 0.0
    assert heuristics.overlap_certainty("Baikal is in Canada.", DOCS) == 0.5
    assert heuristics.overlap_certainty("", DOCS) == 0.0


def test_hallucination_heuristic_flags_absent_numbers_and_names():
    answer = (
        "Lake Baikal is 1,642 metres deep. The Volga drains it. It is 1,842 metres deep. It is very deep."
    )
    assert heuristics.hallucination_labels(answer, DOCS) == {
        0: "faithful",
        1: "unfaithful",
        2: "unfaithful",
        3: "faithful",
    }
    assert heuristics.unsupported_values("Yes, the Angara drains Baikal.", DOCS) == []


def test_answerability_heuristics():
    assert heuristics.question_overlap("How deep is Lake Baikal?", DOCS) == 1.0
    assert heuristics.overlap_answerable("How deep is Lake Baikal?", DOCS)
    assert not heuristics.overlap_answerable("How cold is Lake Baikal in January?", DOCS)
    assert heuristics.echo_rewrite("And its depth?") == "And its depth?"


# ---------------------------------------------------------------------------------- scoring
def _perfect_records(name, cases):
    records = {}
    for c in cases:
        d = c.data
        if name == "uncertainty":
            records[c.id] = {"score": 0.9 if c.id.endswith(("1", "3", "5", "7", "9")) else 0.1}
        elif name == "hallucination":
            labels = {str(i): s.f for i, s in enumerate(d.answer)}
            records[c.id] = {"labels": labels, "adapter_labels": labels}
        elif name == "answerability":
            records[c.id] = {"label": d.label, "probability": 1.0 if d.label == "answerable" else 0.0}
        else:
            records[c.id] = {"rewritten_question": d.gold, "fallback": False}
    return records


@pytest.mark.parametrize("name", INTRINSICS)
def test_scoring_gives_full_marks_to_a_perfect_system(case_set, name):
    cases = case_set.cases[name][:40]
    records = _perfect_records(name, cases)
    answers = None
    if name == "uncertainty":  # the "right" answers are exactly the ones scored 0.9
        answers = {c.id: {"answer": c.data.gold, "correct": records[c.id]["score"] > 0.5} for c in cases}
    items = build_items(name, cases, case_set, records, answers)
    assert metrics(name, items, ADAPTER)[HEADLINE[name]] == 1.0
    result = score_intrinsic(name, items, resamples=30)
    assert result["values"][ADAPTER] == 1.0 and result["ci"][ADAPTER] == [1.0, 1.0]
    base = SYSTEMS[name][1]
    lo, hi = result["paired"][f"{ADAPTER} - {base}"]
    assert lo <= 1.0 - result["values"][base] <= hi
    assert sum(d["n"] for d in result["domains"].values()) == len(cases)


def test_heuristic_scores_match_direct_computation(case_set):
    cases = case_set.cases["answerability"]
    items = build_items("answerability", cases, case_set, {c.id: {"malformed": True} for c in cases})
    expected = sum(
        heuristics.overlap_answerable(c.data.question, case_set.doc_texts(c))
        == (c.data.label == "answerable")
        for c in cases
    ) / len(cases)
    assert metrics("answerability", items, "question overlap")["accuracy"] == pytest.approx(expected)
    majority = Counter(c.data.label for c in cases).most_common(1)[0][1] / len(cases)
    assert metrics("answerability", items, "majority")["accuracy"] == pytest.approx(majority)
    # a malformed adapter output is scored as the trivial answer, "answerable"
    assert all(it.malformed and it.preds[ADAPTER][0] == "answerable" for it in items)


# ---------------------------------------------------------------------------------- stored labels
def test_stored_base_answers_are_current(case_set):
    """Every uncertainty case has the embedded model's answer for its current prompt, and the file
    stores the label the rule gives today (regenerate with ``python -m
    intrinsics.training.realistic.base_answers``)."""
    if not ANSWERS_FILE.is_file():
        pytest.skip("base answers not generated yet")
    stored = read_answers()
    current = current_answers(case_set, EMBEDDED_MODEL_ID)
    assert set(current) == {c.id for c in case_set.cases["uncertainty"]}
    assert all(stored[k]["correct"] == v["correct"] for k, v in current.items())
    right = sum(v["correct"] for v in current.values())
    assert 0.2 < right / len(current) < 0.8  # both labels well represented for an AUROC


# ---------------------------------------------------------------------------------- runner
@pytest.fixture(scope="module")
def tiny_intrinsics(tmp_path_factory):
    """The tiny random model with a random aLoRA for each built-in intrinsic's invocation."""
    from alora_flows.testing import save_random_alora, tiny_backend
    from intrinsics.known import get_spec

    folder = tmp_path_factory.mktemp("realistic")
    backend = tiny_backend(folder, {})
    specs, paths = {}, {}
    for i, name in enumerate(INTRINSICS):
        spec = get_spec(name)
        specs[name] = spec
        # one directory level deeper, like intrinsics/adapters/<model>/<name>
        paths[name] = save_random_alora(
            backend.base_model,
            backend.tokenizer,
            spec.invocation,
            folder / "adapters" / "tiny" / name,
            seed=10 + i,
            base_model_name="tiny",
        )
    return backend, specs, paths, folder


def test_shards_share_one_checkpoint_and_a_full_run_only_scores(case_set, tiny_intrinsics):
    """Two workers (--shard 0/2, 1/2) each run their half into one checkpoint; the run over all
    cases then computes nothing and scores what a single run would."""
    from intrinsics.training.realistic.evaluate import evaluate_intrinsic

    backend, specs, paths, folder = tiny_intrinsics
    name, limit = "answerability", 5

    def run(work: Path, shard: tuple[int, int] = (0, 1)) -> dict:
        return evaluate_intrinsic(
            name, backend, case_set, work, spec=specs[name], adapter_path=paths[name],
            limit=limit, resamples=20, shard=shard,
        )  # fmt: skip

    work = folder / "work-shards"
    assert run(work, (0, 2))["n"] == 3 and run(work, (1, 2))["n"] == 2
    checkpoint = work / f"{name}.jsonl"
    ids = [json.loads(line)["id"] for line in checkpoint.read_text().splitlines()]
    assert sorted(ids) == sorted(c.id for c in case_set.cases[name][:limit])
    merged = run(work)
    assert len(checkpoint.read_text().splitlines()) == limit  # nothing recomputed
    single = run(folder / "work-single")
    assert merged["n"] == limit and merged["values"] == single["values"]


@pytest.mark.parametrize("name", ["hallucination", "rewrite"])
def test_a_candidate_is_scored_paired_against_the_shipped_adapter(
    case_set, tiny_intrinsics, name, monkeypatch
):
    """``--adapter``: the shipped adapter becomes one more system; its predictions are the ones
    it gives as the main adapter, and a candidate equal to it differs by exactly nothing."""
    from alora_flows.testing import save_random_alora
    from intrinsics.training.realistic import predict
    from intrinsics.training.realistic.evaluate import evaluate_intrinsic, markdown
    from intrinsics.training.realistic.scoring import SHIPPED

    real = predict.case_session
    backend, specs, paths, folder = tiny_intrinsics
    other = save_random_alora(
        backend.base_model, backend.tokenizer, specs[name].invocation,
        folder / "candidates" / "tiny" / name, seed=99, base_model_name="tiny",
    )  # fmt: skip

    def run(work: str, adapter: Path, shipped: Path | None = None) -> dict:
        return evaluate_intrinsic(
            name, backend, case_set, folder / work, spec=specs[name], adapter_path=adapter,
            shipped=shipped, limit=4, resamples=20,
        )  # fmt: skip

    alone = run(f"alone-{name}", other)
    built: list[str] = []  # the sessions the runner builds (the real function, counted)
    monkeypatch.setattr(
        predict,
        "case_session",
        lambda backend, case, *a, **k: built.append(case.id) or real(backend, case, *a, **k),
    )
    paired = run(f"paired-{name}", paths[name], shipped=other)
    # One session per case, not per system: the shipped adapter ran on the session the candidate
    # had just used (spec.run rolls back), so the case's conversation was prefilled once.
    assert len(built) == len(set(built)) == 4
    assert paired["values"][SHIPPED] == alone["values"][ADAPTER]
    assert paired["systems"][SHIPPED] == alone["systems"][ADAPTER]
    assert (folder / f"paired-{name}" / f"{name}-shipped.jsonl").is_file()

    same = run(f"same-{name}", other, shipped=other)
    assert same["values"][SHIPPED] == same["values"][ADAPTER]
    assert same["paired"][f"{ADAPTER} - {SHIPPED}"] in ([0.0, 0.0], [None, None])
    report = {"command": "x --adapter D", "model": "tiny", "threads": 1, "resamples": 20, "counts": {}}
    text = markdown({**report, "intrinsics": {name: paired}})
    assert text.startswith("# Realistic evaluation of a candidate adapter")
    assert f"| {name} | {HEADLINE[name]} | 4 | - |" in text  # eval.md's synthetic score is the shipped one's
    rows = [line for line in text.splitlines() if f"| {SHIPPED} | " in line]
    assert any(line.startswith("|  |") for line in rows)  # a baseline of the headline table
    assert any(line.startswith(f"| {SHIPPED} |") for line in rows)  # a row of the systems table


def test_adapter_option_needs_one_intrinsic(capsys):
    from intrinsics.training.realistic.evaluate import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--adapter", "somewhere"])
    assert exit_info.value.code == 2
    assert "--only NAME" in capsys.readouterr().err


def test_the_model_loads_on_the_asked_device_with_the_thread_policy(monkeypatch):
    """``--device``/``--threads`` reach the backend: the thread policy on the CPU, none on a GPU."""
    import torch

    from alora_flows.core.backend import Backend
    from intrinsics.training.realistic import base_answers

    loads: list[str] = []
    monkeypatch.setattr(Backend, "load", classmethod(lambda cls, model, device: loads.append(device)))
    before = torch.get_num_threads()
    try:
        base_answers.load_embedded("cpu", threads=1)
        assert loads == ["cpu"] and torch.get_num_threads() == 1
        torch.set_num_threads(2)
        base_answers.load_embedded("cuda:1", threads=1)
        assert loads == ["cpu", "cuda:1"] and torch.get_num_threads() == 2  # threads are the CPU's
    finally:
        torch.set_num_threads(before)


def test_the_report_says_where_the_adapters_ran():
    from intrinsics.training.realistic.evaluate import RESULTS, markdown

    report = json.loads((RESULTS / "realistic.json").read_text())
    report.pop("device", None)  # the published report was run before --device existed
    assert f"`{report['model']}`, 1 thread(s), CPU)" in markdown(report)
    assert f"`{report['model']}`, cuda:0, bfloat16)" in markdown({**report, "device": "cuda:0"})


@pytest.mark.parametrize("name", INTRINSICS)
def test_runner_resumes_from_its_checkpoint(case_set, tiny_intrinsics, name):
    from intrinsics.training.realistic.evaluate import evaluate_intrinsic, markdown

    backend, specs, paths, folder = tiny_intrinsics
    work = folder / f"work-{name}"
    limit = 3
    answers = None
    if name == "uncertainty":
        cases = case_set.cases[name][:limit]
        answers = {
            c.id: {"answer": f"It is {c.data.gold}.", "correct": i % 2 == 0} for i, c in enumerate(cases)
        }
    run = lambda: evaluate_intrinsic(  # noqa: E731
        name,
        backend,
        case_set,
        work,
        spec=specs[name],
        adapter_path=paths[name],
        limit=limit,
        resamples=20,
        answers=answers,
    )
    first = run()
    checkpoint = work / f"{name}.jsonl"
    lines = checkpoint.read_text().splitlines()
    assert len(lines) == limit and first["n"] == limit
    records = [json.loads(line) for line in lines]
    assert all(r["malformed"] or r["prefill_tokens"] > 0 for r in records)
    # a second run computes nothing and scores the same predictions
    again = run()
    assert len(checkpoint.read_text().splitlines()) == limit
    assert again["values"] == first["values"] and again["systems"] == first["systems"]
    # a lost line (a run killed mid-case) is recomputed, and only that one
    checkpoint.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    resumed = run()
    assert len(checkpoint.read_text().splitlines()) == limit + 1
    assert resumed["values"] == first["values"]
    # uncertainty also scores the base model's own token probability of its answer
    assert set(first["systems"]) == set(SYSTEMS[name]) | ({TOKEN_PROB} if name == "uncertainty" else set())
    for system, value in first["values"].items():
        lo, hi = first["ci"][system]
        assert value is None or lo is None or lo - 1e-9 <= value <= hi + 1e-9
    report = {
        "command": "test",
        "model": "tiny",
        "threads": 1,
        "resamples": 20,
        "counts": {},
        "intrinsics": {name: first},
    }
    text = markdown(report)
    assert f"## {name}" in text and "adapter - " in text


def test_runner_is_the_flow_path(case_set, tiny_intrinsics):
    """The runner's prediction equals calling the intrinsic on a Session by hand."""
    from alora_flows.core.session import Session
    from intrinsics.training.realistic.predict import predict_case

    backend, specs, paths, _ = tiny_intrinsics
    if "realistic_rewrite" not in backend.adapters:
        backend.add_adapter("realistic_rewrite", paths["rewrite"])
    case = case_set.cases["rewrite"][0]
    fields, malformed = predict_case(backend, specs["rewrite"], "realistic_rewrite", case, case_set, None)
    session = Session(backend, messages=[t.model_dump() for t in case.data.turns])
    output, _ = specs["rewrite"].run(session, "realistic_rewrite", {"question": case.data.question})
    assert not malformed
    assert fields["rewritten_question"] == output.rewritten_question
    assert session.messages == [t.model_dump() for t in case.data.turns]  # rolled back


def test_interval_of_an_undefined_auroc_is_none(case_set):
    cases = case_set.cases["uncertainty"][:6]
    answers = {c.id: {"answer": "x", "correct": True} for c in cases}  # one class only
    items = build_items("uncertainty", cases, case_set, {c.id: {"score": 0.5} for c in cases}, answers)
    result = score_intrinsic("uncertainty", items, resamples=10)
    assert result["values"][ADAPTER] is None and result["ci"][ADAPTER] == [None, None]
    assert math.isnan(metrics("uncertainty", items, ADAPTER)["auroc"])


# ---------------------------------------------------------------------------------- RAG questions
def test_rag_questions_and_corpus(case_set, tmp_path):
    from alora_flows.demo.retrieval import search
    from intrinsics.training.realistic.rag import export_corpus, rag_outcome, rag_questions

    questions = rag_questions(case_set)
    unanswerable = [q for q in questions if not q.answerable]
    assert len(questions) >= 150 and len(unanswerable) >= len(questions) / 3
    assert {q.kind for q in unanswerable} == {"near_miss", "other_entity", "absent"}
    assert len({q.question for q in questions}) == len(questions)
    export_corpus(case_set, tmp_path)
    assert len(list(tmp_path.glob("*.md"))) == len(case_set.documents)
    case = case_set.cases["uncertainty"][0]
    assert case.data.docs[0] in [doc_id for doc_id, _, _ in search(case.data.question, 2, tmp_path)]
    answerable = next(q for q in questions if q.answerable and not q.all_of)
    assert rag_outcome(answerable, f"It is {answerable.gold}.") == "correct"
    assert rag_outcome(answerable, "It is something else entirely.") == "wrong"
    assert rag_outcome(answerable, "I don't know: the documents do not answer this.") == "abstained"
    assert rag_outcome(unanswerable[0], "It is 42.") == "wrong"
    assert rag_outcome(unanswerable[0], "It is 42.", abstained=True) == "abstained"


def test_case_sessions_hold_documents_as_documents_with_the_same_tokens(case_set, backend):
    """The evaluation hands the case's documents to the session (the hallucination evidence check
    reads only those) and the model sees exactly the prompt the case describes."""
    from alora_flows.core.session import Session
    from intrinsics.training.realistic.predict import case_session, conversation

    for name in ("hallucination", "answerability"):
        case = case_set.cases[name][0]
        session = case_session(backend, case, case_set)
        assert [d.text for d in session.documents] == case_set.doc_texts(case)
        assert session.ids == Session(backend, messages=conversation(case, case_set)).ids
    rewrite = case_set.cases["rewrite"][0]
    assert case_session(backend, rewrite, case_set).documents == []


def test_the_lora_twin_runs_the_flows_prompt_with_the_adapter_on_every_token(
    case_set, tiny_intrinsics, tmp_path
):
    """The twin sees the very tokens the aLoRA sees in a flow, with its LoRA on all of them: a
    twin holding the aLoRA's own weights gives what the engine gives when told to adapt every
    position of that prompt, and not what the aLoRA call gives."""
    import shutil

    import torch

    from alora_flows.testing import tiny_model, tiny_tokenizer
    from intrinsics.training.realistic.predict import case_session
    from intrinsics.training.realistic.twin import LoraTwin, twin_predict_case

    backend, specs, paths, _ = tiny_intrinsics
    spec, name = specs["uncertainty"], "realistic_uncertainty"
    if name not in backend.adapters:
        backend.add_adapter(name, paths["uncertainty"])
    lora = tmp_path / "uncertainty-lora"
    shutil.copytree(paths["uncertainty"], lora)
    config = json.loads((lora / "adapter_config.json").read_text())
    config["alora_invocation_tokens"] = None  # the same weights, as a standard LoRA
    (lora / "adapter_config.json").write_text(json.dumps(config))
    base = tmp_path / "base"
    tiny_model(tiny_tokenizer(), seed=0).save_pretrained(base)  # the backend's base weights
    twin = LoraTwin(backend, lora, base)

    case = case_set.cases["uncertainty"][0]
    session = case_session(backend, case, case_set, "It is somewhere.")
    prepared = spec.prepare(session, name, {})
    result = twin.invoke(session, prepared.call)
    plan = session.invocation(name, adapted_input=prepared.call.adapted_input)
    assert result.stats.prefill_tokens == len(plan.ids) > plan.prompt  # the whole prompt, no cache

    allowed = list(prepared.call.allowed_token_ids)

    def probs(adapted: int) -> list[float]:
        logits = backend.forward(plan.ids, backend.new_cache(), adapter=name, adapted=adapted)
        return torch.softmax(logits[allowed].float(), dim=-1).tolist()

    twin_probs = [result.probs[t] for t in allowed]
    assert twin_probs == pytest.approx(probs(len(plan.ids)), abs=1e-4)
    assert twin_probs != pytest.approx(probs(plan.adapted), abs=1e-4)
    fields, malformed = twin_predict_case(twin, spec, name, case, case_set, "It is somewhere.")
    assert not malformed and 0.0 <= fields["score"] <= 1.0


def test_answer_token_probability_is_the_base_models_own_confidence(case_set, backend):
    """The baseline equals the mean probability of each answer token given the tokens before it,
    computed one forward at a time through the engine (base model, cache)."""
    import torch

    from alora_flows.core.chat import ChatRenderer
    from intrinsics.training.realistic.predict import case_session
    from intrinsics.training.realistic.token_prob import answer_token_probability

    case = case_set.cases["uncertainty"][0]
    answer = "It is in the north."
    value = answer_token_probability(backend, case, case_set, answer)
    session = case_session(backend, case, case_set, answer, reuse=False)
    full = session.ids
    prompt = ChatRenderer(backend.tokenizer).ids(
        session.messages[:-1], add_generation_prompt=True, documents=session._documents()
    )
    cache = backend.new_cache()
    logits = backend.forward(full[: len(prompt)], cache)
    probs = []
    for token in full[len(prompt) :]:
        probs.append(torch.softmax(logits.float(), dim=-1)[token].item())
        logits = backend.forward([token], cache)
    assert len(probs) > len(backend.tokenizer(answer, add_special_tokens=False)["input_ids"])  # + closing
    assert value == pytest.approx(sum(probs) / len(probs), abs=1e-5)


def test_shard_option_reads_i_of_n_and_refuses_the_rest():
    import argparse

    from intrinsics.training.realistic.predict import parse_shard

    assert parse_shard("0/2") == (0, 2) and parse_shard("3/4") == (3, 4)
    for bad in ("2/2", "-1/2", "1", "a/b", "1/2/3"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_shard(bad)
