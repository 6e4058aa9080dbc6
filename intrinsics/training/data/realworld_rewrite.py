"""Query-rewrite data about real-world subjects: realistic chats, five kinds of follow-up.

Why: a rewrite adapter trained on :mod:`.rewrite` alone sees short invented one-word names,
one ellipsis shape ("And its population?") and no follow-up that names its subject by a
description. On hand-written realistic conversations it got 56% right, with elliptical
follow-ups at 0.33 and descriptions ("the company", "the second one") at 0.18, and in ~39% of
the cases it left out the entity (fine-tuned on this module's rows as well: 0.70,
``BUILD.md``). This module builds chats about the subjects of :mod:`.realworld` (real
countries and cities, template subjects in seven domains; multi-word names such as "Democratic
Republic of the Congo") with the target conventions of :mod:`.rewrite`:

* ``standalone`` (~20%): a full question naming its subject (sometimes not the chat's) -> itself;
* ``pronoun`` (~25%): "How many people live there?", "When was she born?" -> the same question
  with the name, in the fact's own wording;
* ``ellipsis`` (~25%): the subject is not mentioned at all ("And the side effects?", "what is
  the population", "when was it founded, roughly") -> a full question about that fact, in one of
  the fact's question wordings;
* ``reference`` (~15%): a description instead of a pronoun ("that company", "the drug you
  mentioned", "the second one" after two subjects) -> the question with the name;
* ``switch`` (~15%): "What about France?" -> the previous question's own wording about France.

The referent is always the most recently named subject (the last turn's two, for "the first
one"), and some chats first talk about another subject, so recency, not position, decides. The
turn before a pronoun or description never asks a fact whose value is a place or a person
("Lyon lies in France." then "How many people live there?" would be ambiguous). Targets are
normalised and always contain the subject's name; follow-ups get the surface noise of
:func:`.rewrite.sloppy`. Besides :mod:`.rewrite`'s keys, rows carry ``kind``, ``domain``,
``source``, ``subject`` (the target's), ``subjects`` (every subject of the chat) and, for a switch,
``earlier`` (the subject switched from; never in the target): training ignores them (``meta``).

Splits use :mod:`.realworld`'s subject split and its held-out question wordings for ``eval``; its
held-out domains never appear, and no text comes from the realistic evaluation (a test checks).
Deterministic for a seed.
"""

from __future__ import annotations

import json
import random
import re

from intrinsics.training.data.realworld import Fact, Subject, _Pools, _pools, _statement, asks_of
from intrinsics.training.data.rewrite import sloppy
from intrinsics.training.data.text import normalize_question

INTRINSIC = "rewrite"
KINDS = {"standalone": 0.20, "pronoun": 0.25, "ellipsis": 0.25, "reference": 0.15, "switch": 0.15}
SYSTEMS = (
    "You are a helpful assistant.",
    "You are a concise assistant. Answer in one or two sentences.",
    "You answer questions about places, science, medicine, history, people, companies and products.",
)
_PREFIXES = ("", "", "", "", "", "Hi! ", "Quick question: ", "Hey, ", "I was wondering, ")
_UNSURE = ("I'm not sure about that.", "I don't have that information, sorry.")
#: Facts whose value names a place or a person: a pronoun or description after them is ambiguous.
_AMBIGUOUS = frozenset({"capital", "neighbours", "country", "headquarters", "spouse", "birthplace"})
_PLACES = frozenset({"country", "city"})
_NOUNS = {
    "country": ("country",),
    "city": ("city",),
    "compound": ("compound", "substance", "chemical"),
    "species": ("species",),
    "mission": ("mission", "spacecraft"),
    "drug": ("drug", "medicine", "medication"),
    "disease": ("disease", "illness"),
    "event": ("event",),
    "person": ("woman",),
    "company": ("company", "firm"),
    "product": ("device",),
    "appliance": ("appliance",),
    "software": ("program", "app"),
}
_DESCRIPTIONS = ("the {n}", "the {n}", "that {n}", "this {n}", "the {n} we talked about")
_MENTIONED = "the {n} you mentioned"  # only after the assistant named the subject
_PAIR_TURNS = (
    "What can you tell me about {a} and {b}?",
    "I'm comparing {a} and {b}.",
    "Tell me a bit about {a} and {b}.",
    "Could you give me a quick overview of {a} and {b}?",
)
_ORDINALS = (
    ("the first one", "the first {n}", "the former"),
    ("the second one", "the second {n}", "the latter"),
)
_NOUN_FOLLOWUPS = (
    "And {P} {noun}?",
    "What about {P} {noun}?",
    "And the {noun}?",
    "what about the {noun}",
    "The {noun}?",
    "{P} {noun}?",
    "How about {P} {noun}?",
    "Okay, and {P} {noun}?",
)
_ELLIPSIS_SHAPES = {"noun": 0.45, "dropped": 0.3, "loose": 0.25}
_TAILS = (", do you know?", ", by any chance?", ", if you know?")
_SWITCHES = (
    "What about {name}?",
    "And for {name}?",
    "Same question for {name}.",
    "How about {name} then?",
    "And {name}?",
    "what about {name}",
    "Now {name}?",
    "And what about {name}?",
    "Same for {name}?",
    "Okay, and {name}?",
)
#: "the capital of {s}", "{s}'s head office": the attribute noun and its place in the template.
_OF_SLOT = re.compile(r"\bthe ([\w' -]+?) of \{s\}")
_POSSESSIVE_SLOT = re.compile(r"\{s\}'s ([\w' -]+?)(?=[?.,])")
#: A subject position (the template's start, or after an auxiliary): "she" rather than "her".
_SUBJECT_SLOT = re.compile(r"(^|\b(?:is|was|does|did|do|can|has|should|will) )\{s\}")
#: "About about 2.1 million people live in ...": a hedged template around a hedged value.
_HEDGE_TWICE = re.compile(r"\b(about|roughly|around) (?:about|roughly|around) ", re.IGNORECASE)
_PLURAL_AUX = {"is": "are", "was": "were", "does": "do", "has": "have"}


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _fill(template: str, subject: Subject) -> str:
    return _cap(template.replace("{s}", subject.name))


def _slotted(template: str) -> str | None:
    """The template with one ``{s}`` slot for a pronoun or description ("the {s}" of products
    included), or None for keyword forms such as "{s} population?" that only read with a name."""
    t = template.replace("the {s}", "{s}")
    if t.startswith("{s} ") and t.split()[1] not in ("is", "shows"):
        return None
    return t


def _pronoun_form(template: str, subject: Subject, plural: bool) -> str | None:
    """``template`` with the subject as a pronoun where that reads naturally ("What is its
    capital?", "How many people live there?", "When were they founded?"), else None."""
    t = _slotted(template)
    if t is None:
        return None
    person = subject.kind == "person"
    subj, obj, poss = (
        ("she", "her", "her") if person else ("they", "them", "their") if plural else ("it", "it", "its")
    )
    t = _OF_SLOT.sub(lambda m: f"{poss} {m.group(1)}", t).replace("{s}'s ", poss + " ")
    if subject.kind in _PLACES:
        t = re.sub(r"\b(in|to|at) \{s\}", "there", t)
    elif subject.kind == "company":
        t = t.replace("at {s}", "there")  # "How many people work there?"
    if re.search(r"\b(of|much|a|an|at) \{s\}", t):  # "a mole of it", "how much it"
        return None
    if plural:
        t = re.sub(r"\b(is|was|does|has) \{s\}", lambda m: f"{_PLURAL_AUX[m.group(1)]} {{s}}", t)
        t = re.sub(r"^\{s\} is\b", "{s} are", t)
    t = _SUBJECT_SLOT.sub(lambda m: m.group(1) + subj, t).replace("{s}", obj)
    return _cap(t)


def _described(template: str, phrase: str) -> str | None:
    """``template`` with ``phrase`` ("that company", "the first one") in place of the subject."""
    t = _slotted(template)
    if t is None or re.search(r"\b(much|many) \{s\}", t):  # "How much the drug should..."
        return None
    if "{s}'s" in t and phrase.endswith((" mentioned", " about")):  # "the drug you mentioned's"
        return None
    return _cap(t.replace("{s}", phrase))


def _nouns(subject: Subject) -> tuple[str, ...]:
    """What a description calls ``subject``: its kind's nouns plus what its name or facts say
    ("the battle", "the dishwasher", "the architect")."""
    extra: tuple[str, ...] = ()
    if subject.kind == "event":
        extra = (subject.name.split()[1].lower(),)
    elif subject.kind == "appliance":
        extra = (subject.name.split(" ", 2)[2],)
    elif subject.kind == "person" and "occupation" in subject.facts:
        extra = (subject.facts["occupation"].value.split(" ", 1)[1],)
    return _NOUNS[subject.kind] + extra


def _short(fact: Fact) -> str:
    """A terse reply: "In 1985.", "On 3 May 2004.", "About 2.1 million people.", "Euro."."""
    value = fact.value
    if re.fullmatch(r"\d{4}|[A-Z][a-z]+ \d{4}", value):
        return f"In {value}."
    if re.fullmatch(r"\d{1,2} [A-Z][a-z]+ \d{4}", value):
        return f"On {value}."
    if fact.key == "temperature":
        return f"Between {value}."
    return _cap(value) + (" people." if fact.key in ("population", "employees", "casualties") else ".")


def _answer(subject: Subject, fact: Fact, rng: random.Random) -> tuple[str, bool]:
    """The assistant's reply (a statement of the fact, sometimes short like "In 1985.") and
    whether it names the subject."""
    r = rng.random()
    if r < 0.05:
        return rng.choice(_UNSURE), False
    value = fact.value
    if r < 0.35 and value not in ("yes", "no"):
        return _short(fact), False
    text = _HEDGE_TWICE.sub(r"\1 ", _statement(subject, fact, rng, first=r < 0.75))
    return text, subject.name.lower() in text.lower()


def _ask(subject: Subject, fact: Fact, rng: random.Random, split: str, *, pronoun: bool) -> tuple[str, str]:
    """A user question about ``fact`` (by pronoun when asked and possible): (text, template)."""
    template = rng.choice(asks_of(fact, split))
    text = (_pronoun_form(template, subject, plural=False) if pronoun else None) or _fill(template, subject)
    prefix = rng.choice(_PREFIXES)
    if prefix.endswith((", ", ": ")) and not template.startswith(("{s}", "the {s}")):
        text = text[:1].lower() + text[1:]  # "Hey, what is..." (a name keeps its capital)
    return prefix + text, template


class _Chat:
    """The earlier turns, and what a follow-up may refer to."""

    def __init__(self, rng: random.Random) -> None:
        self.messages: list[dict] = (
            [{"role": "system", "content": rng.choice(SYSTEMS)}] if rng.random() < 0.3 else []
        )
        self.asked: list[str] = []  # keys asked about the chat's subject
        self.last_template = ""  # the last user question's template
        self.named_by_assistant = False
        self.subjects: list[str] = []  # every subject talked about, for the split check

    def turn(self, user: str, assistant: str, *about: Subject) -> None:
        self.messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        self.subjects += [s.name for s in about if s.name not in self.subjects]


def _distinct(a: Subject, b: Subject) -> bool:
    """Neither name contains the other ("Congo" / "Democratic Republic of the Congo")."""
    x, y = a.name.lower(), b.name.lower()
    return x not in y and y not in x


def _other(
    pools: _Pools, rng: random.Random, subject: Subject, *, same_kind: bool, key: str | None = None
) -> Subject | None:
    cands = [
        s
        for s in pools.by_split[subject.split]
        if _distinct(s, subject)
        and (not same_kind or s.kind == subject.kind)
        and (key is None or key in s.facts)
    ]
    return rng.choice(cands) if cands else None


def _history(pools: _Pools, rng: random.Random, split: str, subject: Subject, *, final_clear: bool) -> _Chat:
    """1-3 turns ending on ``subject`` (named in its first turn, sometimes by pronoun later),
    sometimes after a turn about another subject; ``final_clear``: the last fact asked names
    no place or person that a pronoun or description could also mean."""
    chat = _Chat(rng)
    n_turns = rng.choice((1, 1, 2, 2, 3))
    if n_turns >= 2 and rng.random() < 0.35:
        other = _other(pools, rng, subject, same_kind=rng.random() < 0.5)
        if other is not None:
            fact = other.facts[rng.choice(list(other.facts))]
            chat.turn(_ask(other, fact, rng, split, pronoun=False)[0], _answer(other, fact, rng)[0], other)
            n_turns -= 1
    keys = rng.sample(list(subject.facts), min(n_turns, len(subject.facts)))
    clear = [k for k in subject.facts if k not in _AMBIGUOUS]
    if final_clear and keys[-1] in _AMBIGUOUS:
        keys[-1] = rng.choice([k for k in clear if k not in keys[:-1]] or clear)
    for i, key in enumerate(keys):
        question, chat.last_template = _ask(
            subject, subject.facts[key], rng, split, pronoun=i > 0 and rng.random() < 0.5
        )
        reply, named = _answer(subject, subject.facts[key], rng)
        chat.turn(question, reply, subject)
        chat.asked.append(key)
        chat.named_by_assistant = chat.named_by_assistant or named
    return chat


def _fresh_key(subject: Subject, chat: _Chat, rng: random.Random) -> str:
    """A fact to ask next: mostly one not asked yet."""
    fresh = [k for k in subject.facts if k not in chat.asked]
    return rng.choice(fresh if fresh and rng.random() < 0.85 else list(subject.facts))


def _pronoun(subject: Subject, fact: Fact, rng: random.Random, split: str) -> tuple[str, str] | None:
    plural = subject.kind == "company" and rng.random() < 0.4
    forms = [(f, t) for t in asks_of(fact, split) if (f := _pronoun_form(t, subject, plural))]
    return rng.choice(forms) if forms else None


def _ellipsis(subject: Subject, fact: Fact, rng: random.Random, split: str) -> tuple[str, str] | None:
    """A follow-up that leaves the subject out, and the wording its target uses. Shapes, by
    :data:`_ELLIPSIS_SHAPES`: the attribute alone ("And the side effects?"), the question without
    its subject ("What is the population?", "How many people died?"), or a loose question with a
    pronoun ("when was it founded, roughly")."""
    poss = "her" if subject.kind == "person" else "its"
    shapes: dict[str, list[tuple[str, str]]] = {shape: [] for shape in _ELLIPSIS_SHAPES}
    for t in asks_of(fact, split):
        slotted = t.replace("the {s}", "{s}")
        for m in (*_OF_SLOT.finditer(slotted), *_POSSESSIVE_SLOT.finditer(slotted)):
            noun = m.group(1)
            shapes["noun"].append((rng.choice(_NOUN_FOLLOWUPS).format(P=poss, noun=noun), t))
            shapes["dropped"].append((_cap(slotted.replace(m.group(0), f"the {noun}")), t))
        dropped = re.sub(r"(?<=ed|en) (?:in|at) \{s\}(?=\?)", "", t)  # "How many people died?"
        if "{s}" not in dropped:
            shapes["dropped"].append((dropped, t))
        pronoun = _pronoun_form(t, subject, plural=False)
        if pronoun:
            tails = _TAILS + ((", roughly?",) if re.search(r"\d", fact.value) else ())
            shapes["loose"].append((pronoun.rstrip("?.") + rng.choice(tails), t))
    available = [shape for shape, forms in shapes.items() if forms]
    if not available:
        return None
    shape = rng.choices(available, [_ELLIPSIS_SHAPES[a] for a in available])[0]
    return rng.choice(shapes[shape])


def _reference(
    subject: Subject, fact: Fact, rng: random.Random, split: str, chat: _Chat
) -> tuple[str, str] | None:
    phrases = [*_DESCRIPTIONS, _MENTIONED] if chat.named_by_assistant else list(_DESCRIPTIONS)
    phrase = rng.choice(phrases).format(n=rng.choice(_nouns(subject)))
    forms = [(f, t) for t in asks_of(fact, split) if (f := _described(t, phrase))]
    return rng.choice(forms) if forms else None


def _pair_chat(
    pools: _Pools, rng: random.Random, split: str, subject: Subject
) -> tuple[_Chat, Subject, Subject] | None:
    """A chat ending on a turn about two subjects of one kind (for "the first one")."""
    other = _other(pools, rng, subject, same_kind=True)
    if other is None:
        return None
    first, second = (subject, other) if rng.random() < 0.5 else (other, subject)
    chat = _Chat(rng)
    keys = [rng.choice([k for k in s.facts if k not in _AMBIGUOUS] or list(s.facts)) for s in (first, second)]
    reply = " ".join(_statement(s, s.facts[k], rng, first=True) for s, k in zip((first, second), keys))
    chat.turn(
        rng.choice(_PREFIXES) + rng.choice(_PAIR_TURNS).format(a=first.name, b=second.name),
        reply,
        first,
        second,
    )
    chat.asked = [keys[(first, second).index(subject)]]
    return chat, first, second


def _row(chat: _Chat, follow_up: str, target: str, kind: str, subject: Subject, **meta: str) -> dict:
    return {
        "intrinsic": INTRINSIC,
        "messages": [*chat.messages, {"role": "user", "content": follow_up}],
        "output": json.dumps({"rewritten_question": normalize_question(target)}, ensure_ascii=False),
        "kind": kind,
        "domain": subject.domain,
        "source": "realworld",
        "subject": subject.name,
        "subjects": sorted({*chat.subjects, subject.name}),
        **meta,
    }


def build_example(pools: _Pools, rng: random.Random, split: str, kind: str) -> dict | None:
    """One example of ``kind`` about a random subject of ``split``, or None when that subject
    offers no such follow-up (the caller draws again)."""
    domain = rng.choice(sorted({s.domain for s in pools.by_split[split]}))
    subject = rng.choice([s for s in pools.by_split[split] if s.domain == domain])
    if kind == "standalone":
        chat = _history(pools, rng, split, subject, final_clear=False)
        about = subject if rng.random() < 0.5 else _other(pools, rng, subject, same_kind=rng.random() < 0.5)
        if about is None:
            return None
        question = _fill(rng.choice(asks_of(about.facts[rng.choice(list(about.facts))], split)), about)
        return _row(chat, sloppy(rng, question, 0.3), question, kind, about)
    if kind == "switch":
        chat = _history(pools, rng, split, subject, final_clear=False)
        new = _other(pools, rng, subject, same_kind=True, key=chat.asked[-1])
        if new is None:
            return None
        target = _fill(chat.last_template, new)
        if subject.name.lower() in target.lower():
            return None
        follow_up = sloppy(rng, rng.choice(_SWITCHES).format(name=new.name), 0.1)
        return _row(chat, follow_up, target, kind, new, earlier=subject.name)
    if kind == "reference" and rng.random() < 0.3:
        pair = _pair_chat(pools, rng, split, subject)
        if pair is None:
            return None
        chat, first, second = pair
        nth = (first, second).index(subject)
        fact = subject.facts[_fresh_key(subject, chat, rng)]
        phrase = rng.choice(_ORDINALS[nth]).format(n=rng.choice(_nouns(subject)))
        forms = [(f, t) for t in asks_of(fact, split) if (f := _described(t, phrase))]
        made = rng.choice(forms) if forms else None
    else:
        chat = _history(pools, rng, split, subject, final_clear=True)
        fact = subject.facts[_fresh_key(subject, chat, rng)]
        if kind == "pronoun":
            made = _pronoun(subject, fact, rng, split)
        elif kind == "ellipsis":
            made = _ellipsis(subject, fact, rng, split)
        else:
            made = _reference(subject, fact, rng, split, chat)
    if made is None:
        return None
    follow_up, template = made
    return _row(chat, sloppy(rng, follow_up, 0.1), _fill(template, subject), kind, subject)


def build(split: str, n: int, seed: int = 0) -> list[dict]:
    """``n`` realistic-style rewrite examples for ``split``, kinds mixed as :data:`KINDS`."""
    if split not in ("train", "val", "eval"):
        raise ValueError(f"unknown split {split!r}")
    pools = _pools(seed)
    rng = random.Random(f"realworld:{INTRINSIC}:{split}:{seed}")
    rows: list[dict] = []
    while len(rows) < n:
        kind = rng.choices(list(KINDS), list(KINDS.values()))[0]
        row = None
        while row is None:
            row = build_example(pools, rng, split, kind)
        rows.append(row)
    return rows
