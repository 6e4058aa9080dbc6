"""Query-rewrite data: a short chat about fictional entities, then a context-dependent follow-up.

Output ``{"rewritten_question": "..."}`` (Granite shape). Targets are the *minimal*
decontextualisation of the follow-up, so that exactly one rewrite is right and it keeps the
user's own words (what retrieval should search for):
  * pronoun follow-ups ("Who first described it?") -> the same question with the entity's name
    ("Who first described Monrorite?");
  * attribute ellipsis ("And its population?") -> "What is <name>'s <attribute noun>?";
  * entity switches ("And Korveth?") -> the previous question, in its own words, about the new
    entity ("Which lake does Meissi flow into?" -> "And for Korveth?" -> "Which lake does
    Korveth flow into?");
  * ~25% already-standalone questions -> the question itself.
Every target is normalised (:func:`~intrinsics.training.data.text.normalize_question`); inputs are sometimes
sloppy (lower-case start, missing "?", double spaces) so the adapter learns the normalisation.
Pronouns always refer to the most recently named entity; some chats first talk about another
entity so that recency, not position, decides the referent.

(Until 0.1 the targets were each attribute's one canonical phrasing. That is not determined by
the input on held-out question templates: right rewrites in other words counted as misses.)
"""

from __future__ import annotations

import json
import random

from intrinsics.training.data.common import Context, make_context
from intrinsics.training.data.kb import Entity, KnowledgeBase, fill, question_templates, render_fact
from intrinsics.training.data.schema import NOUN_FOLLOWUPS, SWITCH_FOLLOWUPS, UNSURE_REPLIES
from intrinsics.training.data.text import normalize_question

INTRINSIC = "rewrite"
CHAT_SYSTEM = "You are a helpful assistant."
ELLIPSIS_TARGET = "What is {P} {noun}?"


def _followup_templates(entity: Entity, key: str, tsplit: str) -> list[str]:
    """Question templates that read naturally with a pronoun ("the population of it" does not)."""
    return [t for t in question_templates(entity, key, tsplit, followup=True) if "of {O}" not in t]


def _ask(ctx: Context, entity: Entity, key: str, *, pronoun: bool) -> tuple[str, str, bool]:
    """A question about ``key``: (text, template, whether it refers to ``entity`` by pronoun)."""
    templates = _followup_templates(entity, key, ctx.tsplit) if pronoun else []
    if not templates:
        templates = list(question_templates(entity, key, ctx.tsplit))
        pronoun = False
    template = ctx.rng.choice(templates)
    return fill(template, entity, pronoun=pronoun), template, pronoun


def _reply(ctx: Context, entity: Entity, key: str, *, pronoun: bool) -> str:
    if ctx.rng.random() < 0.08:
        return ctx.rng.choice(UNSURE_REPLIES)
    templates = entity.attr_spec(key).doc[ctx.tsplit]
    if pronoun:
        templates = tuple(t for t in templates if t.startswith(("{S}", "{P}"))) or templates
    template = ctx.rng.choice(templates)
    return render_fact(entity, key, template, pronoun=pronoun and template.startswith(("{S}", "{P}")))


def _history(ctx: Context, entity: Entity, n_turns: int) -> tuple[list[dict], list[tuple[str, str]]]:
    """``n_turns`` user/assistant pairs ending on ``entity``; returns the messages and the
    (key, question template) pairs asked about ``entity``, in order (empty when no turns)."""
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
    asked: list[tuple[str, str]] = []
    prev: Entity | None = None
    for subject, key in turns:
        by_pronoun = prev is subject and rng.random() < 0.6
        question, template, _ = _ask(ctx, subject, key, pronoun=by_pronoun)
        msgs.append({"role": "user", "content": question})
        msgs.append({"role": "assistant", "content": _reply(ctx, subject, key, pronoun=rng.random() < 0.4)})
        prev = subject
        if subject is entity:
            asked.append((key, template))
    return msgs, asked


def sloppy(rng: random.Random, question: str, rate: float) -> str:
    """Adds the surface noise users type; the target stays normalised (also used by
    :mod:`.realworld_rewrite`)."""
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
        follow_up = sloppy(rng, question, 0.3)
        target = normalize_question(question)
    else:
        msgs, asked = _history(ctx, entity, rng.randint(1, 3))
        asked_keys = [key for key, _ in asked]
        if r < 0.82 or not asked:
            fresh = [a.key for a in spec.attrs if a.key not in asked_keys]
            key = rng.choice(fresh if fresh and rng.random() < 0.85 else [a.key for a in spec.attrs])
            noun = spec.attr(key).noun
            follow_up, template, by_pronoun = _ask(ctx, entity, key, pronoun=True)
            if r < 0.60 and by_pronoun:  # pronoun follow-up: the same words, with the name
                target = fill(template, entity)
            else:  # attribute ellipsis ("How about its height?")
                follow_up = fill(rng.choice(NOUN_FOLLOWUPS[ctx.tsplit]), entity, pronoun=True, noun=noun)
                target = fill(ELLIPSIS_TARGET, entity, noun=noun)
        else:  # entity switch: the previous question, about another entity of the same type
            _, last_template = asked[-1]
            other = ctx.others(entity, 1, same_type_p=1.0)[0]
            follow_up = fill(rng.choice(SWITCH_FOLLOWUPS[ctx.tsplit]), other)
            target = fill(last_template, other)
        target = normalize_question(target)
        follow_up = sloppy(rng, follow_up, 0.08)
    msgs.append({"role": "user", "content": follow_up})
    return {
        "intrinsic": INTRINSIC,
        "messages": msgs,
        "output": json.dumps({"rewritten_question": target}, ensure_ascii=False),
    }


def build(kb: KnowledgeBase, split: str, n: int, seed: int = 0) -> list[dict]:
    """``n`` rewrite examples for ``split`` (train / val / eval)."""
    ctx = make_context(kb, split, seed, INTRINSIC)
    return [build_example(ctx) for _ in range(n)]
