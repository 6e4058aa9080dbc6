"""Hallucination-detection data: documents + question, an answer of 1-3 sentences, and a label per
answer sentence.

Conversation at invocation: system "Answer only from the documents." / user (documents +
question) / assistant (the answer) / the spec's input turn (the answer's sentences, numbered).
Output: compact JSON
``[{"r":0,"e":"documents: 1843","f":"faithful"},{"r":1,"e":"documents: not stated","f":"unfaithful"}]``
where ``r`` indexes :func:`~intrinsics.training.data.text.split_sentences` of the answer and ``e`` is the
evidence: for each fact of the sentence, the value the documents give for that entity and
attribute, or "not stated".

Why evidence before the label: without it, the adapter has to compare a value in the answer with
one somewhere in the documents inside the few tokens of one label, and on held-out templates it
mostly said "faithful" (recall 0.33). Writing the documents' value first turns the label into a
comparison of two strings the adapter has just seen, whatever the templates.

Each sentence states one or two facts. A fact is *ok* when the documents state that value for
that entity; it is bad when the value contradicts the documents (a perturbed value, or the value of
a distractor entity) or when the documents do not state that attribute at all (even if it is
"true" in the knowledge base: grounding, not truth, is what is judged). Sentence label: all facts
ok -> faithful, none -> unfaithful, mixed -> partial. "The documents do not mention ..." for an
attribute that is indeed absent is faithful. About half of the examples contain a non-faithful
sentence; labels are always derived from the realised facts, never from the plan.
"""

from __future__ import annotations

from dataclasses import dataclass

from intrinsics.builtin import hallucination_spec
from intrinsics.parsers import EVIDENCE_PREFIX, NOT_STATED
from intrinsics.training.data.common import Context, make_context
from intrinsics.training.data.kb import (
    Doc,
    Entity,
    KnowledgeBase,
    fill,
    make_value,
    perturb_value,
    render_fact,
)
from intrinsics.training.data.schema import ABSTAIN_SENTENCES
from intrinsics.training.data.text import SYSTEM_DOCS, compact_json, docs_prompt, split_sentences

INTRINSIC = "hallucination"
LABELS = ("faithful", "partial", "unfaithful")


@dataclass
class Fact:
    key: str
    value: str
    ok: bool
    evidence: str = NOT_STATED  # what the documents say for this attribute (the "e" field)
    abstain: bool = False


class _Planner:
    """Draws facts for one answer without reusing an attribute twice."""

    def __init__(self, ctx: Context, entity: Entity, target: Doc, distractors: list[Doc]) -> None:
        self.ctx, self.entity, self.target, self.distractors = ctx, entity, target, distractors
        self.used: set[str] = set()

    def ok(self, prefer: str | None = None) -> Fact | None:
        cands = [k for k in self.target.facts if k not in self.used]
        if not cands:
            return None
        key = prefer if prefer in cands else self.ctx.rng.choice(cands)
        self.used.add(key)
        return Fact(key, self.target.facts[key], True, self.target.facts[key])

    def bad(self, prefer: str | None = None) -> Fact | None:
        rng, e = self.ctx.rng, self.entity
        mode = rng.choices(("wrong", "swap", "absent"), (0.45, 0.2, 0.35))[0]
        if prefer is not None:
            mode = "absent" if prefer not in self.target.facts else ("wrong" if mode == "absent" else mode)
        in_doc = [k for k in self.target.facts if k not in self.used]
        hidden = [
            k for k in list(e.attrs) + e.missing_keys() if k not in self.target.facts and k not in self.used
        ]
        if mode == "absent" and not hidden:
            mode = "wrong"
        if mode in ("wrong", "swap") and not in_doc:
            mode = "absent" if hidden else ""
        if not mode:
            return None
        if mode == "absent":
            key = prefer if prefer in hidden else rng.choice(hidden)
            self.used.add(key)
            value = e.attrs.get(key) or make_value(e.attr_spec(key), rng, self.ctx.names)
            return Fact(key, value, False)
        key = prefer if prefer in in_doc else rng.choice(in_doc)
        self.used.add(key)
        true = self.target.facts[key]
        if mode == "swap":
            others = [d.facts[key] for d in self.distractors if d.facts.get(key, true) != true]
            if others:
                return Fact(key, rng.choice(others), False, true)
        value = perturb_value(e.attr_spec(key), true, rng, self.ctx.names)
        return Fact(key, value, False, true)


def _combinable(templates: tuple[str, ...]) -> list[str]:
    return [t for t in templates if t.startswith(("{S}", "{P}"))]


def _render_sentence(ctx: Context, entity: Entity, facts: list[Fact], first: bool) -> str:
    """One or two facts as one sentence; the second clause opens with a pronoun."""
    rng = ctx.rng
    if facts[0].abstain:
        return fill(
            rng.choice(ABSTAIN_SENTENCES[ctx.tsplit]), entity, noun=entity.attr_spec(facts[0].key).noun
        )
    t0 = rng.choice(ctx.doc_templates(entity, facts[0].key))
    use_pronoun = not first and t0.startswith(("{S}", "{P}")) and rng.random() < 0.5
    text = render_fact(entity, facts[0].key, t0, facts[0].value, pronoun=use_pronoun)
    if len(facts) == 2:
        t1 = rng.choice(_combinable(ctx.doc_templates(entity, facts[1].key)))
        clause = render_fact(entity, facts[1].key, t1, facts[1].value, pronoun=True)
        text = f"{text[:-1]}, and {clause[:1].lower()}{clause[1:]}"
    return text


def _label(facts: list[Fact]) -> str:
    oks = sum(f.ok for f in facts)
    return "faithful" if oks == len(facts) else "unfaithful" if oks == 0 else "partial"


def _plan_labels(ctx: Context, n_sent: int, corrupt: bool) -> list[str]:
    rng = ctx.rng
    labels = ["faithful"] * n_sent
    if corrupt:
        n_bad = 2 if n_sent > 1 and rng.random() < 0.3 else 1
        for i in rng.sample(range(n_sent), n_bad):
            labels[i] = "partial" if rng.random() < 0.3 else "unfaithful"
    return labels


def _plan_answer(
    ctx: Context, entity: Entity, asked: str, target: Doc, distractors: list[Doc], corrupt: bool
) -> list[list[Fact]]:
    """Facts of each answer sentence. The first sentence answers the asked attribute (or, when
    the documents lack it, abstains faithfully / asserts a value unfaithfully)."""
    rng = ctx.rng
    planner = _Planner(ctx, entity, target, distractors)
    sentences: list[list[Fact]] = []
    for i, planned in enumerate(_plan_labels(ctx, rng.choice((1, 2, 2, 3)), corrupt)):
        prefer = asked if i == 0 else None
        facts: list[Fact | None]
        if i == 0 and asked not in target.facts and planned == "faithful":
            planner.used.add(asked)
            facts = [Fact(asked, "", True, abstain=True)]
        elif planned == "faithful":
            facts = [planner.ok(prefer)] + ([planner.ok()] if rng.random() < 0.25 else [])
        elif planned == "unfaithful":
            facts = [planner.bad(prefer)] + ([planner.bad()] if rng.random() < 0.15 else [])
        elif rng.random() < 0.5:
            facts = [planner.ok(prefer), planner.bad()]
        else:
            facts = [planner.bad(prefer), planner.ok()]
        real = [f for f in facts if f is not None]
        if not real or (i == 0 and real[0].key != asked):
            if i == 0:  # the first sentence must answer the question: give up on this plan
                return []
            continue
        sentences.append(real)
    return sentences


def build_example(ctx: Context, *, explain: bool = True) -> dict:
    rng = ctx.rng
    entity = ctx.entity()
    asked = rng.choice(list(entity.attrs))
    asked_in_doc = rng.random() < 0.88
    keys = ctx.doc_keys(entity, include=asked) if asked_in_doc else ctx.doc_keys(entity, exclude=(asked,))
    target = ctx.doc(entity, keys)
    distractor_docs = []
    for other in ctx.others(entity, rng.choice((0, 1, 1, 2)), key=asked):
        include = asked if asked in other.attrs and rng.random() < 0.6 else None
        distractor_docs.append(ctx.doc(other, ctx.doc_keys(other, include=include)))
    docs = [target] + distractor_docs
    rng.shuffle(docs)
    question = fill(rng.choice(entity.attr_spec(asked).question[ctx.tsplit]), entity)

    corrupt = rng.random() < 0.5
    sentences: list[list[Fact]] = []
    for _ in range(8):  # re-plan until the realised answer matches the planned class
        plan = _plan_answer(ctx, entity, asked, target, distractor_docs, corrupt)
        if plan and any(not f.ok for facts in plan for f in facts) == corrupt:
            sentences = plan
            break
        sentences = sentences or plan
    if not sentences:  # fall back: answer faithfully, or abstain
        sentences = [
            [
                Fact(asked, target.facts[asked], True, target.facts[asked])
                if asked in target.facts
                else Fact(asked, "", True, abstain=True)
            ]
        ]

    texts = [_render_sentence(ctx, entity, facts, i == 0) for i, facts in enumerate(sentences)]
    answer = " ".join(texts)
    assert len(split_sentences(answer)) == len(texts), answer
    out = []
    for i, facts in enumerate(sentences):
        item: dict = {"r": i}
        if explain:  # key order r, e, f as intrinsics.parsers.format_hallucination writes it
            item["e"] = EVIDENCE_PREFIX + "; ".join(f.evidence for f in facts)
        item["f"] = _label(facts)
        out.append(item)
    msgs = [
        {"role": "system", "content": SYSTEM_DOCS},
        {"role": "user", "content": docs_prompt([d.text for d in docs], question)},
        {"role": "assistant", "content": answer},
    ]
    return {
        "intrinsic": INTRINSIC,
        "messages": hallucination_spec().training_messages(msgs),
        "output": compact_json(out),
    }


def build(
    kb: KnowledgeBase, split: str, n: int, seed: int = 0, *, explain: bool = True, paraphrases: bool = True
) -> list[dict]:
    """``n`` hallucination examples for ``split``; ``explain`` (the shipped format) writes the
    evidence ``"e"`` before each label, ``explain=False`` the labels alone. ``paraphrases`` (the
    shipped data) renders train/val documents and answers with eight wordings per attribute
    instead of three. It was meant to fix the evidence lookup on held-out wordings (57% exact
    with three) and did not measurably (56%); see the adapters' BUILD.md."""
    ctx = make_context(kb, split, seed, INTRINSIC, paraphrases=paraphrases)
    return [build_example(ctx, explain=explain) for _ in range(n)]
