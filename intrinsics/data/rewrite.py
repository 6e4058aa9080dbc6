"""Query-rewrite data: a short chat about fictional entities, then a context-dependent follow-up.

Output ``{"rewritten_question": "..."}`` (Granite shape). Targets are deterministic:
  * follow-ups with a pronoun ("When was it founded?") or an attribute ellipsis ("And its
    population?") -> the attribute's *canonical* question with the entity's name;
  * entity switches ("And Korveth?") after a question about attribute A -> canonical(A, Korveth);
  * ~25% already-standalone questions -> the question itself, normalised
    (:func:`~intrinsics.data.text.normalize_question`); their inputs are sometimes sloppy
    (lower-case start, missing "?", double spaces) so the adapter learns the normalisation.
Pronouns always refer to the most recently named entity; some chats first talk about another
entity so that recency, not position, decides the referent.
"""

from __future__ import annotations

import json

from .common import Context, make_context
from .kb import Entity, KnowledgeBase, canonical_question, fill, question_templates, render_fact
from .schema import NOUN_FOLLOWUPS, SWITCH_FOLLOWUPS, UNSURE_REPLIES
from .text import normalize_question

INTRINSIC = "rewrite"
CHAT_SYSTEM = "You are a helpful assistant."


def _followup_templates(entity: Entity, key: str, tsplit: str) -> list[str]:
    """Question templates that read naturally with a pronoun ("the population of it" does not)."""
    return [t for t in question_templates(entity, key, tsplit, followup=True) if "of {O}" not in t]


def _ask(ctx: Context, entity: Entity, key: str, *, pronoun: bool) -> str:
    templates = _followup_templates(entity, key, ctx.tsplit) if pronoun else []
    if not templates:
        templates = list(question_templates(entity, key, ctx.tsplit))
        pronoun = False
    return fill(ctx.rng.choice(templates), entity, pronoun=pronoun)


def _reply(ctx: Context, entity: Entity, key: str, *, pronoun: bool) -> str:
    if ctx.rng.random() < 0.08:
        return ctx.rng.choice(UNSURE_REPLIES)
    templates = entity.attr_spec(key).doc[ctx.tsplit]
    if pronoun:
        templates = tuple(t for t in templates if t.startswith(("{S}", "{P}"))) or templates
    template = ctx.rng.choice(templates)
    return render_fact(entity, key, template, pronoun=pronoun and template.startswith(("{S}", "{P}")))


def _history(ctx: Context, entity: Entity, n_turns: int) -> tuple[list[dict], list[str]]:
    """``n_turns`` user/assistant pairs ending on ``entity``; returns the messages and the keys
    asked about ``entity``, in order (empty when there are no turns)."""
    rng = ctx.rng
    msgs: list[dict] = []
    if rng.random() < 0.35:
        msgs.append({"role": "system", "content": CHAT_SYSTEM})
    turns: list[tuple[Entity, str]] = []
    if n_turns >= 2 and rng.random() < 0.35:
        other = ctx.others(entity, 1)[0]
        turns.append((other, rng.choice(list(other.attrs))))
    keys = rng.sample(list(entity.attrs), min(n_turns - len(turns), len(entity.attrs)))
    turns += [(entity, k) for k in keys]
    asked: list[str] = []
    prev: Entity | None = None
    for subject, key in turns:
        by_pronoun = prev is subject and rng.random() < 0.6
        msgs.append({"role": "user", "content": _ask(ctx, subject, key, pronoun=by_pronoun)})
        msgs.append({"role": "assistant",
                     "content": _reply(ctx, subject, key, pronoun=rng.random() < 0.4)})
        prev = subject
        if subject is entity:
            asked.append(key)
    return msgs, asked


def _sloppy(ctx: Context, question: str, rate: float) -> str:
    """Adds the surface noise users type; the target stays normalised."""
    rng = ctx.rng
    if rng.random() < rate:
        question = question[:1].lower() + question[1:]
    if rng.random() < rate:
        question = question.rstrip("?")
    if rng.random() < rate / 2:
        question = question.replace(" ", "  ", 1)
    return question


def build_example(ctx: Context) -> dict:
    rng = ctx.rng
    entity = ctx.entity()
    spec = entity.spec
    r = rng.random()
    if r < 0.25:  # already standalone
        msgs, _ = _history(ctx, entity, rng.randint(0, 2))
        target_entity = entity if rng.random() < 0.5 else ctx.others(entity, 1)[0]
        key = rng.choice([a.key for a in target_entity.spec.attrs])
        question = fill(rng.choice(question_templates(target_entity, key, ctx.tsplit)), target_entity)
        follow_up = _sloppy(ctx, question, 0.3)
        target = normalize_question(question)
    else:
        msgs, asked = _history(ctx, entity, rng.randint(1, 3))
        last_key = asked[-1] if asked else None
        if r < 0.82 or last_key is None:
            fresh = [a.key for a in spec.attrs if a.key not in asked]
            key = rng.choice(fresh if fresh and rng.random() < 0.85 else [a.key for a in spec.attrs])
            if r < 0.60 or last_key is None:  # pronoun follow-up
                follow_up = _ask(ctx, entity, key, pronoun=True)
                if entity.name in follow_up:  # no pronoun-able template: ask the attribute by noun
                    follow_up = fill(rng.choice(NOUN_FOLLOWUPS[ctx.tsplit]), entity, pronoun=True,
                                     noun=spec.attr(key).noun)
            else:  # attribute ellipsis
                follow_up = fill(rng.choice(NOUN_FOLLOWUPS[ctx.tsplit]), entity, pronoun=True,
                                 noun=spec.attr(key).noun)
            target = canonical_question(entity, key)
        else:  # entity switch: same question, another entity of the same type
            other = ctx.others(entity, 1, same_type_p=1.0)[0]
            follow_up = fill(rng.choice(SWITCH_FOLLOWUPS[ctx.tsplit]), other)
            target = canonical_question(other, last_key)
        follow_up = _sloppy(ctx, follow_up, 0.08)
    msgs.append({"role": "user", "content": follow_up})
    return {"intrinsic": INTRINSIC, "messages": msgs,
            "output": json.dumps({"rewritten_question": target}, ensure_ascii=False)}


def build(kb: KnowledgeBase, split: str, n: int, seed: int = 0) -> list[dict]:
    """``n`` rewrite examples for ``split`` (train / val / eval)."""
    ctx = make_context(kb, split, seed, INTRINSIC)
    return [build_example(ctx) for _ in range(n)]
