"""Deterministic fictional knowledge base: entities, value generation, documents and questions.

Why: every intrinsic dataset is built from these facts, so that labels are exact (we know which
facts a document states) and the tiny model cannot answer from world knowledge. The same seed
always gives the same knowledge base (``random.Random`` seeded with strings is stable across runs
and Python versions >= 3.2, unaffected by PYTHONHASHSEED).

Pools: entities are split into disjoint ``train`` / ``val`` / ``eval`` / ``rag`` pools. ``val``
is an addition to the brief: in-distribution validation on unseen entities with train templates,
while ``eval`` changes both entities and templates.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from intrinsics.training.data.names import NameGenerator
from intrinsics.training.data.schema import CHOICES, TYPES, AttrSpec, TypeSpec, doc_templates

POOLS = ("train", "val", "eval", "rag")
DEFAULT_POOL_SIZES: dict[str, int] = {"train": 420, "val": 84, "eval": 140, "rag": 84}

_PRONOUNS = {  # subject -> (object, possessive)
    "it": ("it", "its"),
    "she": ("her", "her"),
    "he": ("him", "his"),
}
_ENTITY_SUFFIX = {
    "company": ("Trading", "Foundry", "Mill", "Company", "Forge", "Workshop"),
    "festival": ("Fair", "Feast", "Gathering", "Parade", "Carnival", "Festival"),
}


@dataclass
class Entity:
    """One fictional entity. ``attrs`` maps attribute key -> rendered value (e.g. "52,400")."""

    id: str
    etype: str
    name: str
    pronoun: str
    attrs: dict[str, str]
    pool: str = ""

    @property
    def spec(self) -> TypeSpec:
        return TYPES[self.etype]

    def attr_spec(self, key: str) -> AttrSpec:
        return self.spec.attr(key)

    def missing_keys(self) -> list[str]:
        """Attributes of the entity's type that this entity does not have (for unanswerables)."""
        return [a.key for a in self.spec.attrs if a.key not in self.attrs]


@dataclass
class Doc:
    """A rendered document and exactly the facts it states (attribute key -> value)."""

    entity_id: str
    name: str
    text: str
    facts: dict[str, str] = field(default_factory=dict)


@dataclass
class KnowledgeBase:
    seed: int
    entities: list[Entity]
    names: NameGenerator

    def pool(self, name: str) -> list[Entity]:
        return [e for e in self.entities if e.pool == name]

    def by_id(self, entity_id: str) -> Entity:
        for e in self.entities:
            if e.id == entity_id:
                return e
        raise KeyError(entity_id)


# --------------------------------------------------------------------------------------- values


def gold(value: str) -> str:
    """The short gold answer for a stored value: drop a leading article ("the salt harvest")."""
    return value[4:] if value.startswith("the ") else value


def _format_number(kind: str, n: int) -> str:
    return f"{n:,}" if kind == "count" else str(n)


def _parse_number(value: str) -> int:
    return int(value.replace(",", ""))


def make_value(spec: AttrSpec, rng: random.Random, names: NameGenerator) -> str:
    """Draws a fresh value of the attribute's kind."""
    kind = spec.kind
    if kind in ("year", "count", "small"):
        if kind == "count" and spec.hi > 10_000:
            # Log-uniform so small and large numbers both occur; round to look like a census.
            n = int(math.exp(rng.uniform(math.log(spec.lo), math.log(spec.hi))))
            n = max(spec.lo, round(n, -2) if n >= 10_000 else round(n, -1) if n >= 1_000 else n)
        else:
            n = rng.randint(spec.lo, spec.hi)
        return _format_number(kind, n)
    if kind.startswith("choice:"):
        return rng.choice(CHOICES[kind.split(":", 1)[1]])
    if kind == "person":
        return names.person()
    if kind == "place":
        return names.place()
    if kind == "lake":
        return f"Lake {names.place()}"
    if kind == "mount":
        return f"Mount {names.place()}"
    if kind == "range":
        return f"{names.place()} Range"
    if kind == "award":
        return f"{names.word()} {rng.choice(CHOICES['award_kind'])}"
    if kind == "device":
        return f"{rng.choice(CHOICES['device_adj'])} {rng.choice(CHOICES['device_noun'])}"
    raise ValueError(f"unknown value kind {kind!r}")


def perturb_value(spec: AttrSpec, value: str, rng: random.Random, names: NameGenerator) -> str:
    """A different value of the same kind, used to write contradicting (unfaithful) answers.

    Numbers get either a near miss (one digit changed / a few years off: hard cases) or a fresh
    draw; categorical values get another member of the list; names get a fresh invented name.
    """
    if spec.kind in ("year", "count", "small"):
        n = _parse_number(value)
        for _ in range(100):
            if rng.random() < 0.5:
                if spec.kind == "year":
                    m = n + rng.choice((-1, 1)) * rng.randint(1, 40)
                elif spec.kind == "small":
                    m = n + rng.choice((-2, -1, 1, 2))
                else:
                    digits = list(str(n))
                    i = rng.randrange(len(digits))
                    lo = 1 if i == 0 else 0
                    digits[i] = str(rng.choice([d for d in range(lo, 10) if str(d) != digits[i]]))
                    m = int("".join(digits))
            else:
                m = _parse_number(make_value(spec, rng, names))
            if m != n and spec.lo <= m <= max(spec.hi, m if spec.kind == "count" else spec.hi):
                return _format_number(spec.kind, m)
        return _format_number(spec.kind, n + 1)
    if spec.kind.startswith("choice:"):
        options = [c for c in CHOICES[spec.kind.split(":", 1)[1]] if c != value]
        return rng.choice(options)
    if spec.kind == "device":
        for _ in range(100):
            v = make_value(spec, rng, names)
            if v != value:
                return v
    return make_value(spec, rng, names)


# ----------------------------------------------------------------------------------- generation


def _entity_name(etype: str, rng: random.Random, names: NameGenerator) -> str:
    if etype == "inventor":
        return names.person()
    if etype in _ENTITY_SUFFIX:
        return f"{names.word()} {rng.choice(_ENTITY_SUFFIX[etype])}"
    if etype == "mineral":
        return names.stem((2, 2), ("ite",), max_len=9)
    if etype == "mountain":
        return f"Mount {names.place()}"
    return names.place()


def generate_kb(seed: int = 0, pool_sizes: dict[str, int] | None = None) -> KnowledgeBase:
    """Builds the knowledge base: entities cycle through the types, get 4-6 attributes each, and
    are dealt into pools in a seeded shuffle so that every pool holds every type."""
    sizes = dict(DEFAULT_POOL_SIZES if pool_sizes is None else pool_sizes)
    rng = random.Random(f"kb:{seed}")
    names = NameGenerator(random.Random(f"names:{seed}"))
    type_names = list(TYPES)
    entities: list[Entity] = []
    total = sum(sizes.values())
    for i in range(total):
        spec = TYPES[type_names[i % len(type_names)]]
        name = _entity_name(spec.name, rng, names)
        pronoun = rng.choice(spec.pronouns)
        n_attrs = rng.randint(4, min(6, len(spec.attrs)))
        keys = sorted(rng.sample([a.key for a in spec.attrs], n_attrs), key=[a.key for a in spec.attrs].index)
        attrs = {k: make_value(spec.attr(k), rng, names) for k in keys}
        entities.append(Entity(f"e{i:04d}", spec.name, name, pronoun, attrs))
    # Deal per type so every pool has a balanced mix.
    order = {t: [e for e in entities if e.etype == t] for t in type_names}
    for t in type_names:
        rng.shuffle(order[t])
    dealt = [e for group in zip(*order.values()) for e in group]
    dealt += [e for e in entities if e not in dealt]
    start = 0
    for pool in POOLS:
        for e in dealt[start : start + sizes.get(pool, 0)]:
            e.pool = pool
        start += sizes.get(pool, 0)
    return KnowledgeBase(seed, entities, names)


# ------------------------------------------------------------------------------------ rendering


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def fill(template: str, entity: Entity, value: str = "", *, pronoun: bool = False, noun: str = "") -> str:
    """Fills a template for ``entity``: with the name, or (``pronoun=True``) with pronouns."""
    obj, poss = _PRONOUNS[entity.pronoun]
    if pronoun:
        s, o, p = entity.pronoun, obj, poss
    else:
        s = o = entity.name
        p = f"{entity.name}'s"
    text = template.format(S=s, O=o, P=p, pp=poss, name=entity.name, v=value, noun=noun)
    return _capitalise(text)


def render_fact(
    entity: Entity, key: str, template: str, value: str | None = None, *, pronoun: bool = False
) -> str:
    """One sentence stating ``key`` of ``entity`` (``value`` overrides the true value)."""
    return fill(template, entity, entity.attrs[key] if value is None else value, pronoun=pronoun)


def render_doc(
    entity: Entity,
    keys: list[str],
    rng: random.Random,
    tsplit: str,
    *,
    pronoun_rate: float = 0.5,
    paraphrases: bool = False,
) -> Doc:
    """A short document: one sentence per key, the first naming the entity, later ones opening
    with a pronoun at ``pronoun_rate`` (only templates that start with {S}/{P} can);
    ``paraphrases``: see :func:`~intrinsics.training.data.schema.doc_templates`."""
    sentences = []
    for i, key in enumerate(keys):
        template = rng.choice(doc_templates(entity.attr_spec(key), tsplit, paraphrases=paraphrases))
        use_pronoun = i > 0 and template.startswith(("{S}", "{P}")) and rng.random() < pronoun_rate
        sentences.append(render_fact(entity, key, template, pronoun=use_pronoun))
    return Doc(entity.id, entity.name, " ".join(sentences), {k: entity.attrs[k] for k in keys})


def render_question(entity: Entity, key: str, template: str, *, pronoun: bool = False) -> str:
    return fill(template, entity, pronoun=pronoun)


def question_templates(entity: Entity, key: str, tsplit: str, *, followup: bool = False) -> tuple[str, ...]:
    """Question templates; with ``followup`` only those that mention the entity by a
    pronoun-able slot (so that replacing it with a pronoun leaves no name behind)."""
    templates = entity.attr_spec(key).question[tsplit]
    if followup:
        templates = tuple(t for t in templates if "{name}" not in t)
    return templates
