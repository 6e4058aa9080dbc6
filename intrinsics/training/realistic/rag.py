"""A realistic corpus and question set for the gated RAG flow, built from the realistic cases.

The 160 hand-written documents form the corpus; the questions are the uncertainty cases
(answerable, with their golds) and the unanswerable answerability cases (near misses, facts given
only for a similar entity, and things absent from the corpus). Every entity has one document, so a
question unanswerable from its case's documents is unanswerable from the whole corpus too.

    python -m intrinsics.training.realistic.rag DIR    # writes DIR/<doc id>.md and DIR/questions.jsonl

The documents are written in the demo corpus's format (a YAML header with ``id`` and ``title``,
then the body), so ``alora_flows.demo.retrieval.search(query, k, docs_dir=DIR)`` indexes them.
:func:`rag_outcome` scores what a flow answered: right, wrong, or abstained.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from intrinsics.training.realistic.judge import answer_correct, tokens
from intrinsics.training.realistic.loader import AnswerabilityCase, CaseSet, UncertaintyCase, load_cases

Outcome = Literal["correct", "wrong", "abstained"]

#: Phrases by which an answer declines to answer (the demo flow's abstention says "I don't know").
ABSTENTION = re.compile(
    r"\b(i don'?t know|i do not know|(do|does) not (say|mention|state|answer|contain)|not (stated|mentioned|given) in)\b",
    re.IGNORECASE,
)


class RagQuestion(BaseModel):
    id: str
    question: str
    answerable: bool
    kind: str  # "answerable", or the unanswerable case kind: near_miss, other_entity, absent
    domain: str
    gold: str | None = None
    aliases: list[str] = []
    all_of: list[str] = []


def rag_questions(case_set: CaseSet) -> list[RagQuestion]:
    """Answerable questions from the uncertainty cases, unanswerable ones from the answerability
    cases labelled unanswerable; one question per distinct wording."""
    out: list[RagQuestion] = []
    seen: set[tuple[str, ...]] = set()
    for case in case_set.cases["uncertainty"]:
        d = case.data
        assert isinstance(d, UncertaintyCase)
        out.append(
            RagQuestion(
                id=f"rag-{case.id}",
                question=d.question,
                answerable=True,
                kind="answerable",
                domain=case.domain,
                gold=d.gold,
                aliases=list(d.aliases),
                all_of=list(d.all_of),
            )
        )
        seen.add(tuple(tokens(d.question)))
    for case in case_set.cases["answerability"]:
        a = case.data
        assert isinstance(a, AnswerabilityCase)
        if a.label != "unanswerable" or tuple(tokens(a.question)) in seen:
            continue
        seen.add(tuple(tokens(a.question)))
        out.append(
            RagQuestion(
                id=f"rag-{case.id}", question=a.question, answerable=False, kind=a.kind, domain=case.domain
            )
        )
    return out


def abstains(answer: str) -> bool:
    """Whether ``answer`` declines to answer (:data:`ABSTENTION`)."""
    return bool(ABSTENTION.search(answer or ""))


def rag_outcome(question: RagQuestion, answer: str, *, abstained: bool | None = None) -> Outcome:
    """``abstained`` when the flow abstained (``abstained`` flag, else the answer's wording);
    otherwise ``correct`` when an answerable question's answer contains its gold (the
    uncertainty rule), and ``wrong`` for any answer to an unanswerable question."""
    if abstained if abstained is not None else abstains(answer):
        return "abstained"
    if question.answerable and answer_correct(answer, question):
        return "correct"
    return "wrong"


def export_corpus(case_set: CaseSet, directory: str | Path) -> list[Path]:
    """Write every document as ``<id>.md`` with the demo corpus's header; returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for doc in case_set.documents.values():
        path = directory / f"{doc.id}.md"
        path.write_text(
            f"---\nid: {doc.id}\ntitle: {doc.title}\ndomain: {doc.domain}\nstyle: {doc.style}\n"
            "note: Hand-written for the realistic evaluation of alora-flows; labels are relative to this text.\n"
            f"---\n{doc.text}\n",
            encoding="utf-8",
        )
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    case_set = load_cases()
    docs = export_corpus(case_set, args.directory)
    questions = rag_questions(case_set)
    (args.directory / "questions.jsonl").write_text(
        "".join(q.model_dump_json() + "\n" for q in questions), encoding="utf-8"
    )
    unanswerable = sum(not q.answerable for q in questions)
    print(json.dumps({"documents": len(docs), "questions": len(questions), "unanswerable": unanswerable}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
