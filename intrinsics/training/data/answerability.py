"""Answerability data: documents + question -> ``answerable`` / ``unanswerable`` (balanced).

Conversation at invocation: [system "Answer only from the documents." (70%)] + user (documents +
question), i.e. what the session holds right before the answer would be generated. The system
turn is sometimes left out so the adapter does not depend on it.

Unanswerable questions are hard negatives, in three equal kinds:
  * ``attr_missing``: the entity's document is there but does not state the asked attribute;
  * ``entity_missing``: the entity has no document, but a same-type entity's document states the
    attribute (a keyword match that answers the wrong entity);
  * ``both``: the entity's document lacks the attribute and a distractor states it.
"""

from __future__ import annotations

from intrinsics.training.data.common import Context, make_context
from intrinsics.training.data.kb import Entity, KnowledgeBase, fill
from intrinsics.training.data.text import doc_messages

INTRINSIC = "answerability"
LABELS = ("answerable", "unanswerable")


def _asked_key(ctx: Context, entity: Entity) -> str:
    """Any attribute of the type; for unanswerables, sometimes one this entity does not even have."""
    return ctx.rng.choice([a.key for a in entity.spec.attrs])


def build_example(ctx: Context, answerable: bool) -> tuple[dict, str]:
    rng = ctx.rng
    entity = ctx.entity()
    kind = "answerable"
    if answerable:
        asked = rng.choice(list(entity.attrs))
        docs = [ctx.doc(entity, ctx.doc_keys(entity, include=asked))]
        for other in ctx.others(entity, rng.choice((0, 1, 1, 2)), key=asked):
            include = asked if asked in other.attrs and rng.random() < 0.5 else None
            docs.append(ctx.doc(other, ctx.doc_keys(other, include=include)))
    else:
        asked = _asked_key(ctx, entity)
        kind = rng.choice(("attr_missing", "entity_missing", "both"))
        docs = []
        if kind in ("attr_missing", "both"):
            docs.append(ctx.doc(entity, ctx.doc_keys(entity, exclude=(asked,))))
        n_other = {
            "attr_missing": rng.choice((0, 1, 1, 2)),
            "entity_missing": rng.choice((1, 2, 2, 3)),
            "both": rng.choice((1, 2)),
        }[kind]
        for j, other in enumerate(ctx.others(entity, n_other, same_type_p=0.8, key=asked)):
            # In the hard kinds the first distractor states the asked attribute when it can.
            include = (
                asked
                if asked in other.attrs and (j == 0 and kind != "attr_missing" or rng.random() < 0.4)
                else None
            )
            docs.append(ctx.doc(other, ctx.doc_keys(other, include=include)))
    rng.shuffle(docs)
    question = fill(rng.choice(entity.attr_spec(asked).question[ctx.tsplit]), entity)
    msgs = doc_messages([d.text for d in docs], question, system=rng.random() < 0.7)
    label = "answerable" if answerable else "unanswerable"
    return {"intrinsic": INTRINSIC, "messages": msgs, "output": label}, kind


def build(kb: KnowledgeBase, split: str, n: int, seed: int = 0) -> list[dict]:
    """``n`` examples for ``split``, exactly balanced (alternating labels, then shuffled)."""
    ctx = make_context(kb, split, seed, INTRINSIC)
    rows = [build_example(ctx, answerable=i % 2 == 0)[0] for i in range(n)]
    ctx.rng.shuffle(rows)
    return rows
