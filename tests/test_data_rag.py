"""The committed RAG example collection: format, gold answers, and that it is up to date."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run without installing the package

from intrinsics.training.data.kb import generate_kb
from intrinsics.training.data.rag_export import LICENSE, build_rag, questions_yaml
from intrinsics.training.data.text import split_sentences
from intrinsics.training.data.uncertainty import is_correct

RAG = ROOT / "examples" / "rag"
CORPUS = ROOT / "alora_flows" / "demo" / "corpus"


def _read_doc(path: Path) -> tuple[dict, str]:
    _, head, body = path.read_text(encoding="utf-8").split("---\n", 2)
    meta = dict(line.split(": ", 1) for line in head.strip().splitlines())
    return meta, body.strip()


@pytest.fixture(scope="module")
def docs():
    return {p.stem: _read_doc(p) for p in sorted(CORPUS.glob("*.md"))}


@pytest.fixture(scope="module")
def questions():
    return YAML(typ="safe").load((RAG / "questions.yaml").read_text(encoding="utf-8"))["questions"]


def test_documents_are_short_synthetic_and_licensed(docs):
    assert len(docs) == 120
    for stem, (meta, body) in docs.items():
        assert meta["id"] == stem and meta["license"] == LICENSE and "Synthetic fiction" in meta["note"]
        assert 2 <= len(split_sentences(body)) <= 4
        assert meta["title"] in body


def test_questions_have_gold_in_their_document(docs, questions):
    assert len(questions) >= 40
    assert len({q["id"] for q in questions}) == len(questions)
    answerable = [q for q in questions if q["gold"] is not None]
    assert 0.6 <= len(answerable) / len(questions) <= 0.8
    for q in questions:
        assert q["question"].endswith("?")
        if q["gold"] is None:
            assert q["doc"] is None
        else:
            assert is_correct(docs[q["doc"]][1], q["gold"]), q
    assert sum(q["needs_name"] for q in answerable) >= 5


def test_committed_files_match_the_generator(docs):
    """Regenerating gives byte-identical files, so the example never drifts from its source."""
    gen_docs, gen_questions = build_rag()
    assert [d.id for d in gen_docs] == sorted(docs)
    for d in gen_docs:
        assert (CORPUS / f"{d.id}.md").read_text(encoding="utf-8") == d.markdown()
    assert (RAG / "questions.yaml").read_text(encoding="utf-8") == questions_yaml(gen_questions)


def test_unanswerable_questions_ask_for_facts_no_document_states():
    gen_docs, gen_questions = build_rag()
    stated = {(d.entity.name, k) for d in gen_docs for k in d.facts}
    titles = {d.entity.name for d in gen_docs}
    kinds = {"absent_attr": 0, "unknown_entity": 0}
    for q in gen_questions:
        key = (q["_entity"].name, q["_key"])
        assert q["_entity"].name in q["question"]
        if q["gold"] is None:
            assert key not in stated
            kinds["absent_attr" if q["_entity"].name in titles else "unknown_entity"] += 1
        else:
            assert key in stated
    assert kinds["absent_attr"] >= 10 and kinds["unknown_entity"] >= 1


def test_rag_entities_are_not_training_entities():
    kb = generate_kb(0)
    rag = {e.name for e in kb.pool("rag")}
    gen_docs, _ = build_rag()
    assert {d.entity.name for d in gen_docs} <= rag
    for pool in ("train", "val", "eval"):
        assert not rag & {e.name for e in kb.pool(pool)}
