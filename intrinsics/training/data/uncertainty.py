"""Uncertainty (certainty) data: prompts for the base model, then labels from its own answers.

Step 1, :func:`build_prompts`: records ``{"id", "messages", "gold", "variant"}`` where messages =
system "Answer only from the documents." + user (documents + question). Variants make the base
model sometimes wrong: ``clean`` (the entity's document, at most one distractor), ``distractors``
(two same-type documents that state the same attribute with other values), ``missing`` (no
document about the entity; same-type documents state the attribute; the gold answer is unknowable).

Step 2, the trainer runs the base model on each record (greedy, plus optional samples).

Step 3, :func:`label_uncertainty`: appends the assistant answer and sets ``output`` to a digit
"0".."9" encoding the probability that the answer is correct (Granite recipe; the runtime reads
certainty = 0.1 * digit + 0.05, or the probability-weighted mean over the digit tokens):
  * one answer per question: "9" if correct, "0" if wrong. Chosen over 8/1 so that the
    expected-value readout spans the full range; calibration then comes from the adapter's
    probabilities over the digits, which is how the flow reads it.
  * k answers per question: digit = round-half-up(9 * correct / k); by default the training line
    carries the *first* answer (put the greedy one first: it is what the flow will produce),
    ``emit="all"`` writes one line per sampled answer, all with the question-level digit.

Correctness, :func:`is_correct`: lower-case, drop thousands separators ("52,400" -> "52400"),
keep alphanumeric tokens, drop articles (a/an/the); correct iff the gold token sequence occurs
contiguously in the answer. So "It was founded in 1843." matches "1843", "Tavi Orlen" needs both
tokens, and "18430" does not match "1843". Limitation: an answer that lists several candidates
("1843 or 1850") counts as correct; the base model rarely hedges this way.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence

from intrinsics.training.data.common import Context, make_context
from intrinsics.training.data.kb import KnowledgeBase, fill, gold
from intrinsics.training.data.text import SYSTEM_DOCS, docs_prompt, read_jsonl, write_jsonl

INTRINSIC = "uncertainty"
VARIANTS = {"clean": 0.45, "distractors": 0.35, "missing": 0.20}
_ARTICLES = frozenset({"a", "an", "the"})
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_TOKEN = re.compile(r"[^\W_]+")


def _tokens(text: str) -> list[str]:
    text = _THOUSANDS.sub("", text.lower())
    return [t for t in _TOKEN.findall(text) if t not in _ARTICLES]


def is_correct(answer: str, gold_answer: str) -> bool:
    """Normalised contiguous token containment of ``gold_answer`` in ``answer`` (see module doc)."""
    g, a = _tokens(gold_answer), _tokens(answer)
    if not g:
        return False
    return any(a[i : i + len(g)] == g for i in range(len(a) - len(g) + 1))


def digit_for(n_correct: int, n_total: int) -> str:
    """Probability of correctness in tenths, rounded half up: 1 of 1 -> "9", 0 of 1 -> "0"."""
    if n_total <= 0:
        raise ValueError("need at least one answer")
    return str(int(9 * n_correct / n_total + 0.5))


def build_prompt(ctx: Context, index: int) -> dict:
    rng = ctx.rng
    entity = ctx.entity()
    asked = rng.choice(list(entity.attrs))
    variant = rng.choices(list(VARIANTS), list(VARIANTS.values()))[0]
    docs = []
    if variant != "missing":
        docs.append(ctx.doc(entity, ctx.doc_keys(entity, include=asked)))
    n_other = {"clean": rng.choice((0, 0, 1)), "distractors": 2, "missing": rng.choice((1, 2, 3))}[variant]
    same = 0.3 if variant == "clean" else 1.0
    for other in ctx.others(entity, n_other, same_type_p=same, key=asked):
        include = asked if asked in other.attrs and (variant != "clean" or rng.random() < 0.5) else None
        docs.append(ctx.doc(other, ctx.doc_keys(other, include=include, k_max=2)))
    rng.shuffle(docs)
    question = fill(rng.choice(entity.attr_spec(asked).question[ctx.tsplit]), entity)
    msgs = [
        {"role": "system", "content": SYSTEM_DOCS},
        {"role": "user", "content": docs_prompt([d.text for d in docs], question)},
    ]
    return {
        "id": f"unc-{ctx.split}-{index:05d}",
        "messages": msgs,
        "gold": gold(entity.attrs[asked]),
        "variant": variant,
    }


def build_prompts(kb: KnowledgeBase, split: str, n: int, seed: int = 0) -> list[dict]:
    """``n`` prompt records for ``split`` (to be answered by the base model)."""
    ctx = make_context(kb, split, seed, INTRINSIC)
    return [build_prompt(ctx, i) for i in range(n)]


Answer = str | Sequence[str]  # one answer, or several sampled answers (greedy first)
Answers = Mapping[str, Answer] | Sequence[Answer]


def label_uncertainty(records: Sequence[dict], answers: Answers, *, emit: str = "first") -> list[dict]:
    """Training lines from prompt records and the base model's answers.

    ``answers`` is either a mapping record id -> answer(s) or a sequence aligned with
    ``records``; each entry is one answer string or a list of sampled answers (greedy first).
    ``emit``: "first" (one line per record) or "all" (one line per answer).
    """
    if emit not in ("first", "all"):
        raise ValueError("emit must be 'first' or 'all'")
    if not isinstance(answers, Mapping) and len(answers) != len(records):
        raise ValueError(f"{len(answers)} answers for {len(records)} records")
    lines = []
    for i, rec in enumerate(records):
        got = answers[rec["id"]] if isinstance(answers, Mapping) else answers[i]
        samples = [got] if isinstance(got, str) else list(got)
        if not samples:
            raise ValueError(f"no answer for record {rec['id']}")
        digit = digit_for(sum(is_correct(s, rec["gold"]) for s in samples), len(samples))
        for text in samples if emit == "all" else samples[:1]:
            msgs = list(rec["messages"]) + [{"role": "assistant", "content": text.strip()}]
            lines.append({"intrinsic": INTRINSIC, "messages": msgs, "output": digit})
    return lines


def main(argv: list[str] | None = None) -> int:
    """``python -m intrinsics.training.data.uncertainty --prompts P --answers A --out O [--emit all]``;
    answers JSONL rows: ``{"id": ..., "answer": "..."}`` or ``{"id": ..., "answers": [...]}``."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--prompts", required=True)
    p.add_argument("--answers", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--emit", choices=("first", "all"), default="first")
    args = p.parse_args(argv)
    records = read_jsonl(args.prompts)
    answers = {r["id"]: r["answers"] if "answers" in r else r["answer"] for r in read_jsonl(args.answers)}
    records = [r for r in records if r["id"] in answers]
    n = write_jsonl(args.out, label_uncertainty(records, answers, emit=args.emit))
    print(f"wrote {n} uncertainty training lines to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
