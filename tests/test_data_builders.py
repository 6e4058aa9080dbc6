"""Per-intrinsic builders: format, determinism, balance, length, and train/eval separation."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run without installing the package

from intrinsics import get_spec, hallucination_spec
from intrinsics.parsers import parse_hallucination
from intrinsics.spec import RawOutput
from intrinsics.training.data import answerability, build, hallucination, rewrite, uncertainty
from intrinsics.training.data.kb import fill, generate_kb
from intrinsics.training.data.schema import NOUN_FOLLOWUPS, SWITCH_FOLLOWUPS, doc_templates
from intrinsics.training.data.text import SYSTEM_DOCS, estimate_tokens, normalize_question, split_sentences

N = 160
BUILDERS = {
    "rewrite": rewrite.build,
    "hallucination": hallucination.build,
    "answerability": answerability.build,
}


@pytest.fixture(scope="module")
def kb():
    return generate_kb(0)


@pytest.fixture(scope="module")
def data(kb):
    return {
        (name, split): fn(kb, split, N, 0) for name, fn in BUILDERS.items() for split in ("train", "eval")
    }


def _docs_and_question(row):
    user = next(m for m in row["messages"] if m["role"] == "user")["content"]
    docs, question = user.split("\n\nQuestion: ")
    return docs.split("\n"), question


def _answer(row) -> str:
    """The assistant answer a hallucination row judges (before the intrinsic's input turn)."""
    return next(m for m in reversed(row["messages"]) if m["role"] == "assistant")["content"]


def test_builders_are_deterministic(kb, data):
    for name, fn in BUILDERS.items():
        assert fn(kb, "train", N, 0) == data[(name, "train")]
        assert fn(kb, "train", N, 1) != data[(name, "train")]
    assert uncertainty.build_prompts(kb, "val", 50, 0) == uncertainty.build_prompts(kb, "val", 50, 0)


def test_rows_follow_the_training_contract(data):
    last_role = {"rewrite": "user", "hallucination": "user", "answerability": "user"}
    for (name, _), rows in data.items():
        assert len(rows) == N
        for row in rows:
            assert set(row) == {"intrinsic", "messages", "output"} and row["intrinsic"] == name
            assert all(set(m) == {"role", "content"} and m["content"] for m in row["messages"])
            assert row["messages"][-1]["role"] == last_role[name]
            if name == "hallucination":  # the conversation, then the spec's own input turn
                assert get_spec("hallucination").training_messages(row["messages"][:-1]) == row["messages"]
            # hallucination repeats the answer in its input turn and quotes evidence
            assert estimate_tokens(row["messages"], row["output"]) < (400 if name == "hallucination" else 300)


def test_rewrite_outputs(data):
    standalone = 0
    for split in ("train", "eval"):
        for row in data[("rewrite", split)]:
            target = json.loads(row["output"])["rewritten_question"]
            assert set(json.loads(row["output"])) == {"rewritten_question"}
            assert normalize_question(target) == target
            follow_up = row["messages"][-1]["content"]
            standalone += normalize_question(follow_up) == target
            roles = [m["role"] for m in row["messages"] if m["role"] != "system"]
            assert roles == ["user", "assistant"] * (len(roles) // 2) + ["user"]
    assert 0.15 < standalone / (2 * N) < 0.40


def test_rewrite_contextual_targets_name_an_entity(kb, data):
    names = {e.name for e in kb.entities}
    for row in data[("rewrite", "train")]:
        target = json.loads(row["output"])["rewritten_question"]
        assert any(n in target for n in names), target


def test_hallucination_outputs(data):
    with_bad, labels = 0, set()
    for split in ("train", "eval"):
        for row in data[("hallucination", split)]:
            assert row["messages"][0] == {"role": "system", "content": SYSTEM_DOCS}
            out = json.loads(row["output"])
            answer = _answer(row)
            assert [s["r"] for s in out] == list(range(len(split_sentences(answer))))
            assert 1 <= len(out) <= 3
            assert all(list(s) == ["r", "e", "f"] and s["f"] in hallucination.LABELS for s in out)
            labels |= {s["f"] for s in out}
            with_bad += any(s["f"] != "faithful" for s in out)
    assert labels == set(hallucination.LABELS)
    assert 0.40 < with_bad / (2 * N) < 0.60


def test_hallucination_faithful_first_sentence_uses_document_value(kb, data):
    """A faithful answer sentence only states values that the documents contain."""
    for row in data[("hallucination", "train")]:
        out = json.loads(row["output"])
        docs, _ = _docs_and_question(row)
        first = split_sentences(_answer(row))[0]
        if out[0]["f"] == "faithful" and not first.startswith("The documents"):
            numbers = re.findall(r"\d+(?:,\d{3})*", first)
            assert all(n in "\n".join(docs) for n in numbers), (first, docs)


def test_hallucination_evidence_quotes_the_documents(kb, data):
    """The "e" field gives, per fact, the documents' value (or "not stated"): the values are in
    the documents, and a faithful sentence that asserts something states exactly them."""
    rows = hallucination.build(kb, "eval", 100, 0)
    quoted = 0
    for row in rows:
        docs, _ = _docs_and_question(row)
        sentences = split_sentences(_answer(row))
        for item in json.loads(row["output"]):
            assert item["e"].startswith(hallucination.EVIDENCE_PREFIX), item
            values = item["e"][len(hallucination.EVIDENCE_PREFIX) :].split("; ")
            for value in values:
                assert value == hallucination.NOT_STATED or value in "\n".join(docs), (value, docs)
            stated = [v for v in values if v != hallucination.NOT_STATED]
            if item["f"] == "faithful" and stated:
                assert all(v in sentences[item["r"]] for v in stated), (item, sentences)
                quoted += 1
    assert quoted > 50
    # so the label the parser takes from the evidence is the gold label
    spec = hallucination_spec()
    for row in rows + data[("hallucination", "train")]:
        _, context = spec.example_context(row["messages"])  # documents read from the data's layout
        assert context["source_documents"] and context["last_assistant"] == _answer(row)
        parsed = parse_hallucination(RawOutput(text=row["output"], context=context))
        assert [(s.f, s.unverified) for s in parsed.sentences] == [
            (s["f"], []) for s in json.loads(row["output"])
        ]
    assert hallucination.build(kb, "eval", 100, 0, paraphrases=False) == rows  # eval never widens
    plain = hallucination.build(kb, "eval", 20, 0, explain=False)
    assert not any("e" in s for r in plain for s in json.loads(r["output"]))
    assert [[s["f"] for s in json.loads(r["output"])] for r in plain] == [
        [s["f"] for s in json.loads(r["output"])] for r in rows[:20]
    ]


def test_answerability_is_balanced_and_grounded(data):
    for split in ("train", "eval"):
        rows = data[("answerability", split)]
        outs = [r["output"] for r in rows]
        assert outs.count("answerable") == outs.count("unanswerable") == N // 2
        assert set(outs) == set(answerability.LABELS)


def test_uncertainty_prompts_have_gold_in_docs_unless_missing(kb):
    records = uncertainty.build_prompts(kb, "train", 200, 0)
    assert {r["variant"] for r in records} == set(uncertainty.VARIANTS)
    assert len({r["id"] for r in records}) == len(records)
    missing_hits = []
    for r in records:
        user = r["messages"][-1]["content"]
        if r["variant"] == "missing":
            missing_hits.append(uncertainty.is_correct(user, r["gold"]))
        else:
            assert uncertainty.is_correct(user, r["gold"]), r
    assert sum(missing_hits) < 0.3 * len(missing_hits)


def test_hallucination_training_uses_the_paraphrased_wordings(kb, data):
    """The train split's documents draw on all eight wordings per attribute (the shipped data),
    and ``paraphrases=False`` gives back documents in the three original wordings."""

    def doc_sentences(rows):
        return {s for row in rows for doc in _docs_and_question(row)[0] for s in split_sentences(doc)}

    _, base = _renderings(kb, "train", "train", paraphrases=False)
    wide = doc_sentences(data[("hallucination", "train")])
    assert len(wide - base) > 0.3 * len(wide)
    assert doc_sentences(hallucination.build(kb, "train", N, 0, paraphrases=False)) <= base


# ------------------------------------------------------------------ train / eval separation


def _renderings(kb, pool: str, tsplit: str, *, paraphrases: bool = True):
    """Every question / follow-up / document sentence the templates of ``tsplit`` (with the
    train-only paraphrases) can produce for the entities of ``pool`` (exact strings)."""
    questions, sentences = set(), set()
    entities = kb.pool(pool)
    for e in entities:
        for a in e.spec.attrs:
            for t in a.question[tsplit]:
                for pronoun in (False, True):
                    questions.add(fill(t, e, pronoun=pronoun).lower())
            for t in NOUN_FOLLOWUPS[tsplit]:  # some end in "." ("Tell me its height.")
                questions.add(normalize_question(fill(t, e, pronoun=True, noun=a.noun)).lower())
            if a.key in e.attrs:
                for t in doc_templates(a, tsplit, paraphrases=paraphrases):
                    for pronoun in (False, True):
                        sentences.add(fill(t, e, e.attrs[a.key], pronoun=pronoun))
        for t in SWITCH_FOLLOWUPS[tsplit]:
            questions.add(normalize_question(fill(t, e)).lower())
    return questions, sentences


def _names_in(kb, pool):
    return [e.name for e in kb.pool(pool)]


@pytest.mark.parametrize("split,other", [("train", "eval"), ("eval", "train")])
def test_questions_and_documents_come_from_their_own_split(kb, data, split, other):
    tsplit_own = "eval" if split == "eval" else "train"
    tsplit_other = "train" if split == "eval" else "eval"
    own_q, own_s = _renderings(kb, split, tsplit_own)
    other_q, other_s = _renderings(kb, split, tsplit_other)
    for name in ("hallucination", "answerability"):
        for row in data[(name, split)]:
            docs, question = _docs_and_question(row)
            assert question.lower() in own_q and question.lower() not in other_q, question
            for doc in docs:
                for sent in split_sentences(doc):
                    assert sent not in other_s, sent
                    assert sent in own_s, sent
    for row in data[("rewrite", split)]:
        follow_up = normalize_question(row["messages"][-1]["content"]).lower()
        assert follow_up in own_q and follow_up not in other_q, follow_up


@pytest.mark.parametrize("split,other", [("train", "eval"), ("eval", "train"), ("train", "rag")])
def test_no_entity_crosses_pools(kb, data, split, other):
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, _names_in(kb, other))) + r")\b")
    for name in BUILDERS:
        for row in data[(name, split)]:
            text = json.dumps(row)
            assert not pattern.search(text), (name, pattern.search(text))


PRONOUNS = {"it", "its", "he", "she", "him", "her", "his", "they", "them", "their"}


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def _template_match(template: str, text: str, names: str = ".+") -> bool:
    """Whether ``text`` (a normalised question) was written from a follow-up ``template``
    (``names``: a regex for the entity names)."""
    slots = {"{P}": "(its|his|her|their)", "{noun}": ".+", "{name}": names}
    parts = re.split(r"(\{\w+\})", template.rstrip("?."))  # questions are normalised to "?"
    pattern = "".join(slots.get(part, re.escape(part)) for part in parts)
    return re.fullmatch(pattern, text.rstrip("?"), flags=re.IGNORECASE) is not None


def test_rewrite_targets_are_minimal_decontextualisations(kb, data):
    """A pronoun follow-up keeps every one of the user's words, the pronoun replaced by a name;
    an entity switch repeats the previous question's words about the new entity. So there is one
    right rewrite, and a paraphrase of it is a miss for a reason."""
    kinds = {"pronoun": 0, "switch": 0, "ellipsis": 0}
    names = "(" + "|".join(re.escape(e.name) for e in kb.entities) + ")"
    for split in ("train", "eval"):
        for row in data[("rewrite", split)]:
            follow_up = normalize_question(row["messages"][-1]["content"])
            target = json.loads(row["output"])["rewritten_question"]
            if follow_up == target:
                continue
            words = _words(follow_up)
            ellipsis = any(_template_match(t, follow_up) for t in NOUN_FOLLOWUPS[split])
            if ellipsis or any(_template_match(t, follow_up, names) for t in SWITCH_FOLLOWUPS[split]):
                if ellipsis:  # "And its population?"
                    assert target.startswith("What is ") and words[-1] in _words(target), (follow_up, target)
                    kinds["ellipsis"] += 1
                else:  # "And Korveth?": the previous user question, about the new entity
                    previous = _words(row["messages"][-3]["content"])
                    shared = set(previous) & set(_words(target))
                    assert len(shared) >= len(set(_words(target))) // 2, (previous, target)
                    kinds["switch"] += 1
                continue
            kept = [w for w in words if w not in PRONOUNS]
            assert kept == [w for w in _words(target) if w in kept], (follow_up, target)
            assert len(_words(target)) > len(kept), (follow_up, target)
            kinds["pronoun"] += 1
    assert all(n > 10 for n in kinds.values()), kinds


def test_cli_writes_all_files(tmp_path):
    rc = build.main(["--out", str(tmp_path), "--seed", "3", "--train", "20", "--val", "6", "--eval", "8"])
    assert rc == 0
    for name in build.DATASETS:
        for split, n in (("train", 20), ("val", 6), ("eval", 8)):
            lines = (tmp_path / f"{name}.{split}.jsonl").read_text().splitlines()
            assert len(lines) == n and all(json.loads(line) for line in lines)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["seed"] == 3 and len(manifest["datasets"]) == 12


def test_cli_rejects_unknown_dataset(tmp_path, capsys):
    assert build.main(["--out", str(tmp_path), "--only", "nope"]) == 2
