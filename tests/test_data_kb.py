"""Knowledge base: determinism, disjoint pools, invented names, disjoint train/eval templates."""

from __future__ import annotations

import random
import re
import string
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run without installing the package

from intrinsics.training.data.kb import POOLS, fill, generate_kb, make_value, perturb_value, render_doc
from intrinsics.training.data.names import BLOCKLIST, NameGenerator
from intrinsics.training.data.paraphrases import PARAPHRASES
from intrinsics.training.data.schema import (
    ABSTAIN_SENTENCES,
    NOUN_FOLLOWUPS,
    SWITCH_FOLLOWUPS,
    TYPES,
    doc_templates,
)
from intrinsics.training.data.text import normalize_question, split_sentences

FIELDS = {"S", "O", "P", "pp", "name", "v", "noun"}


@pytest.fixture(scope="module")
def kb():
    return generate_kb(0)


def _snapshot(kb):
    return [(e.id, e.etype, e.name, e.pronoun, e.pool, tuple(e.attrs.items())) for e in kb.entities]


def test_kb_is_deterministic_by_seed(kb):
    assert _snapshot(generate_kb(0)) == _snapshot(kb)
    assert _snapshot(generate_kb(1)) != _snapshot(kb)


def test_pools_are_disjoint_and_balanced(kb):
    pools = {p: kb.pool(p) for p in POOLS}
    ids = [e.id for p in pools.values() for e in p]
    names = [e.name for p in pools.values() for e in p]
    assert len(ids) == len(set(ids)) == len(kb.entities)
    assert len(names) == len(set(names))
    for pool in pools.values():
        assert {e.etype for e in pool} == set(TYPES)
        assert all(4 <= len(e.attrs) <= 6 for e in pool)


def test_names_are_invented_and_never_share_a_word(kb):
    suffixes = {
        "Mount",
        "Trading",
        "Foundry",
        "Mill",
        "Company",
        "Forge",
        "Workshop",
        "Fair",
        "Feast",
        "Gathering",
        "Parade",
        "Carnival",
        "Festival",
    }
    words = [w for e in kb.entities for w in e.name.split() if w not in suffixes]
    assert len(words) == len(set(words)), "a name word is reused across entities"
    assert not {w.lower() for w in words} & BLOCKLIST
    assert all(re.fullmatch(r"[A-Z][a-z]{3,10}", w) for w in words)


def test_name_generator_respects_used_names():
    gen = NameGenerator(random.Random(0))
    first = [gen.place() for _ in range(50)]
    again = NameGenerator(random.Random(0), gen.used)
    assert not set(first) & {again.place() for _ in range(50)}


def _fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


def test_template_sets_are_disjoint_between_train_and_eval():
    for spec in TYPES.values():
        for a in spec.attrs:
            assert not set(a.doc["train"]) & set(a.doc["eval"]), (spec.name, a.key)
            assert not set(a.question["train"]) & set(a.question["eval"]), (spec.name, a.key)
            assert len(a.doc["train"]) >= 3 and len(a.doc["eval"]) >= 2
            assert len(a.question["train"]) >= 3 and len(a.question["eval"]) >= 2
    for table in (NOUN_FOLLOWUPS, SWITCH_FOLLOWUPS, ABSTAIN_SENTENCES):
        assert not set(table["train"]) & set(table["eval"])


def _words(template: str) -> set[str]:
    return set(re.findall(r"[a-z]+", re.sub(r"\{\w+\}", " ", template).lower()))


def test_paraphrases_are_train_only_and_keep_the_eval_wordings_unseen():
    """The extra wordings widen training without leaking the held-out ones: none equals an
    existing template, none uses a word that only the attribute's eval templates use ("its"
    included, which {pp} renders), and ``eval`` never gets them."""
    existing = {
        t.lower()
        for spec in TYPES.values()
        for a in spec.attrs
        for split in ("train", "eval")
        for t in a.doc[split] + a.question[split]
    }
    assert set(PARAPHRASES) == {(spec.name, a.key) for spec in TYPES.values() for a in spec.attrs}
    for spec in TYPES.values():
        for a in spec.attrs:
            extra = PARAPHRASES[(spec.name, a.key)]
            eval_only = (
                set().union(*map(_words, a.doc["eval"]))
                - set().union(*map(_words, a.doc["train"]))
                - _words(a.noun)
            )
            for t in extra:
                assert t.lower() not in existing, t
                rendered = t.replace("{pp}", "its her his")
                assert not _words(rendered) & eval_only, (a.key, t, _words(rendered) & eval_only)
            assert doc_templates(a, "train", paraphrases=True) == a.doc["train"] + extra
            assert doc_templates(a, "train") == a.doc["train"]
            assert doc_templates(a, "eval", paraphrases=True) == a.doc["eval"]


def _opener(template: str) -> str:
    """The words before a follow-up's first slot: "How about {P} {noun}?" -> "how about"."""
    return " ".join(re.findall(r"[a-z]+", template.split("{", 1)[0].lower()))


def test_follow_up_openers_of_the_eval_split_are_unseen_in_training():
    """The rewrite adapter must generalise to new openers, so no training opener may say what an
    eval opener says (stricter than distinct templates: "How about {name}, then?" would leak)."""
    for table in (NOUN_FOLLOWUPS, SWITCH_FOLLOWUPS):
        train = {_opener(t) for t in table["train"]}
        for t in table["eval"]:
            assert _opener(t) not in train, t
            assert not any(o.startswith(_opener(t)) for o in train), t


def test_every_template_renders_one_clean_sentence(kb):
    by_type = {t: next(e for e in kb.entities if e.etype == t) for t in TYPES}
    for spec in TYPES.values():
        entity = by_type[spec.name]
        for a in spec.attrs:
            for split in ("train", "eval"):
                # The hallucination builder joins two facts with a pronoun clause.
                assert any(t.startswith(("{S}", "{P}")) for t in a.doc[split]), (a.key, split)
                docs = doc_templates(a, split, paraphrases=True)
                for t in docs + a.question[split]:
                    assert _fields(t) <= FIELDS, t
                    for pronoun in (False, True):
                        text = fill(t, entity, "x", pronoun=pronoun)
                        assert "{" not in text and "  " not in text
                        assert len(split_sentences(text)) == 1, text
                        assert text[-1] in ".?"
                for t in a.question[split]:
                    q = fill(t, entity)
                    assert normalize_question(q) == q


def test_values_never_contain_sentence_breaks(kb):
    for e in kb.entities:
        for v in e.attrs.values():
            assert not re.search(r"[.!?]", v), v


def test_perturbed_values_differ(kb):
    rng = random.Random(0)
    gen = NameGenerator(random.Random(1), kb.names.used)
    for e in kb.pool("train")[:80]:
        for key, value in e.attrs.items():
            new = perturb_value(e.attr_spec(key), value, rng, gen)
            assert new != value and new


def test_make_value_respects_numeric_ranges(kb):
    rng = random.Random(0)
    for spec in TYPES.values():
        for a in spec.attrs:
            if a.kind in ("year", "small"):
                for _ in range(20):
                    assert a.lo <= int(make_value(a, rng, kb.names)) <= a.hi


def test_render_doc_states_exactly_its_facts(kb):
    rng = random.Random(0)
    e = kb.pool("train")[0]
    keys = list(e.attrs)[:3]
    doc = render_doc(e, keys, rng, "train")
    assert doc.facts == {k: e.attrs[k] for k in keys}
    assert len(split_sentences(doc.text)) == 3
    assert doc.text.startswith(e.name) or e.name in split_sentences(doc.text)[0]
