"""Sampling context shared by the per-intrinsic builders.

Why: each builder draws entities, distractor documents and templates the same way; one context
object pins the split's entity pool and template split so that no builder can mix eval entities
into training data or train templates into eval data by accident.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from intrinsics.training.data.kb import Doc, Entity, KnowledgeBase, render_doc
from intrinsics.training.data.names import NameGenerator
from intrinsics.training.data.schema import doc_templates, template_split

DATA_SPLITS = ("train", "val", "eval")


@dataclass
class Context:
    kb: KnowledgeBase
    split: str
    rng: random.Random
    names: NameGenerator  # fresh invented names (perturbations), never a KB name
    pool: list[Entity] = field(default_factory=list)
    by_type: dict[str, list[Entity]] = field(default_factory=dict)
    paraphrases: bool = False  # widen train-split document wordings (see doc_templates)

    @property
    def tsplit(self) -> str:
        return template_split(self.split)

    def entity(self) -> Entity:
        return self.rng.choice(self.pool)

    def others(
        self, exclude: Entity | list[Entity], n: int, *, same_type_p: float = 0.6, key: str | None = None
    ) -> list[Entity]:
        """``n`` distinct entities other than ``exclude``; each of the same type with probability
        ``same_type_p`` (hard distractors), and, if ``key`` is given, of those same-type ones only
        entities that have ``key`` (so the distractor states the asked attribute)."""
        excluded = {e.id for e in (exclude if isinstance(exclude, list) else [exclude])}
        ref = exclude[0] if isinstance(exclude, list) else exclude
        chosen: list[Entity] = []
        for _ in range(n):
            if self.rng.random() < same_type_p:
                cands = [
                    e
                    for e in self.by_type[ref.etype]
                    if e.id not in excluded and (key is None or key in e.attrs)
                ]
            else:
                cands = [e for e in self.pool if e.id not in excluded]
            if not cands:
                cands = [e for e in self.pool if e.id not in excluded]
            pick = self.rng.choice(cands)
            excluded.add(pick.id)
            chosen.append(pick)
        return chosen

    def doc(self, entity: Entity, keys: list[str]) -> Doc:
        return render_doc(entity, keys, self.rng, self.tsplit, paraphrases=self.paraphrases)

    def doc_templates(self, entity: Entity, key: str) -> tuple[str, ...]:
        return doc_templates(entity.attr_spec(key), self.tsplit, paraphrases=self.paraphrases)

    def doc_keys(
        self, entity: Entity, *, include: str | None = None, exclude: tuple[str, ...] = (), k_max: int = 3
    ) -> list[str]:
        """1..k_max attribute keys for a document (a short 1-3 sentence document), containing
        ``include`` if given and none of ``exclude``, in the entity's attribute order."""
        pool = [k for k in entity.attrs if k not in exclude and k != include]
        k = self.rng.randint(1, k_max) - (1 if include else 0)
        keys = self.rng.sample(pool, min(max(k, 0), len(pool)))
        if include:
            keys.append(include)
        if not keys:  # every attribute excluded: fall back to any one attribute
            keys = [self.rng.choice(list(entity.attrs))]
        self.rng.shuffle(keys)
        return keys


def make_context(
    kb: KnowledgeBase, split: str, seed: int, intrinsic: str, *, paraphrases: bool = False
) -> Context:
    """A fresh RNG per (seed, intrinsic, split): datasets do not shift when another builder or
    another split changes size. ``paraphrases`` is opt-in per builder, so that widening one
    intrinsic's wordings leaves every other dataset (and its shipped adapter) byte-identical."""
    if split not in DATA_SPLITS:
        raise ValueError(f"split must be one of {DATA_SPLITS}, got {split!r}")
    pool = kb.pool(split)
    by_type: dict[str, list[Entity]] = {}
    for e in pool:
        by_type.setdefault(e.etype, []).append(e)
    names = NameGenerator(random.Random(f"names:{intrinsic}:{split}:{seed}"), kb.names.used)
    return Context(kb, split, random.Random(f"{intrinsic}:{split}:{seed}"), names, pool, by_type, paraphrases)
