"""Plain RAG (retrieve -> answer) vs the full flow with intrinsics, on held-out questions.

    python -m examples.rag.evaluate [--limit N] [--out examples/rag/results]

For each question in ``questions.yaml`` (answerable ones with a gold answer, unanswerable ones
with ``gold: null``) both pipelines answer on the embedded model, each in a fresh session, and
the answer is classed as:
- *correct*: a gold answer is given (``is_correct``: normalised token containment) and the
  pipeline did not abstain;
- *abstained*: the flow abstained, or the answer says it does not know (``ABSTAIN_MARKERS``);
  for an unanswerable question this is the honest outcome;
- *wrong*: anything else (a wrong answer, or an invented answer to an unanswerable question).
A flagged answer (hallucination intrinsic still finds unfaithful sentences after the strict retry)
counts as an abstention only if ``--flagged-abstains`` is given; by default it is judged by its text.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from intrinsics.training.data.uncertainty import is_correct

HERE = Path(__file__).parent
ABSTAIN_MARKERS = (
    "i don't know",
    "i do not know",
    "not mentioned",
    "does not mention",
    "do not mention",
    "no information",
    "not provided",
    "does not provide",
    "do not provide",
    "not specified",
    "does not specify",
    "cannot answer",
    "not stated",
    "does not state",
)


def load_questions(path: Path = HERE / "questions.yaml") -> list[dict[str, Any]]:
    return YAML(typ="safe").load(path.read_text())["questions"]


def says_unknown(answer: str) -> bool:
    text = answer.lower().replace("’", "'")
    return any(marker in text for marker in ABSTAIN_MARKERS)


def judge(answer: str, gold: str | None, abstained: bool) -> str:
    if abstained or says_unknown(answer):
        return "abstained"
    if gold is not None and is_correct(answer, gold):
        return "correct"
    return "wrong"


def plain_answer(backend, question: str) -> str:
    """The baseline every RAG tutorial builds: retrieve, then answer, no checks."""
    from alora_flows.core.session import Session
    from alora_flows.demo.retrieval import retrieve

    session = Session(backend)
    docs = retrieve(question, 2)
    session.extend(
        [
            {"role": "system", "content": "Answer only from the documents."},
            {"role": "user", "content": "\n".join(docs) + f"\n\nQuestion: {question}"},
        ]
    )
    return session.generate(64).text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--flagged-abstains", action="store_true")
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.progress import track
    from rich.table import Table

    from alora_flows.core.session import Session
    from alora_flows.demo import DemoRunner

    runner = DemoRunner()
    questions = load_questions()[: args.limit]
    rows = []
    for q in track(questions, description="questions", console=Console(stderr=True)):
        started = time.perf_counter()
        plain = plain_answer(runner.backend, q["question"])
        plain_s = time.perf_counter() - started
        runner.session = Session(runner.backend)  # a fresh conversation per question
        started = time.perf_counter()
        result = runner.ask(q["question"])
        flow_s = time.perf_counter() - started
        values = result.values
        abstained = bool(values.get("abstained")) or (args.flagged_abstains and bool(values.get("flagged")))
        rows.append(
            {
                "id": q["id"],
                "question": q["question"],
                "gold": q.get("gold"),
                "plain": {"answer": plain, "verdict": judge(plain, q.get("gold"), False), "seconds": plain_s},
                "flow": {
                    "answer": values.get("answer", ""),
                    "verdict": judge(values.get("answer", ""), q.get("gold"), abstained),
                    "seconds": flow_s,
                    "certainty": values["certainty"].score if "certainty" in values else None,
                    "flagged": bool(values.get("flagged")),
                    "path": [s.node for s in result.trace.steps],
                },
            }
        )

    summary: dict[str, dict[str, int]] = {}
    for system in ("plain", "flow"):
        counts = {"correct": 0, "abstained": 0, "wrong": 0}
        split = {"answerable": dict(counts), "unanswerable": dict(counts)}
        for row in rows:
            verdict = row[system]["verdict"]
            counts[verdict] += 1
            split["answerable" if row["gold"] is not None else "unanswerable"][verdict] += 1
        summary[system] = {
            **counts,
            **{f"{k}_{v}": n for k, d in split.items() for v, n in d.items()},
            "seconds": round(sum(r[system]["seconds"] for r in rows), 1),
        }
    table = Table(title=f"RAG on {len(rows)} held-out questions (embedded model)")
    for col in ("pipeline", "correct", "honest abstentions", "wrong", "seconds"):
        table.add_column(col, justify="right" if col != "pipeline" else "left")
    for system, label in (("plain", "plain (retrieve -> answer)"), ("flow", "full flow (intrinsics)")):
        s = summary[system]
        table.add_row(label, str(s["correct"]), str(s["abstained"]), str(s["wrong"]), str(s["seconds"]))
    Console().print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rag_eval.json").write_text(
        json.dumps({"summary": summary, "rows": rows}, indent=2, ensure_ascii=False)
    )
    md = [
        "| pipeline | correct | honest abstentions | wrong | of which on unanswerable | seconds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for system, label in (("plain", "plain (retrieve -> answer)"), ("flow", "full flow (intrinsics)")):
        s = summary[system]
        md.append(
            f"| {label} | {s['correct']} | {s['abstained']} | {s['wrong']} | "
            f"{s['unanswerable_wrong']} | {s['seconds']} |"
        )
    (args.out / "rag_eval.md").write_text("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
