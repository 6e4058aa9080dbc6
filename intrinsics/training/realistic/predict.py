"""Run an intrinsic adapter on the realistic cases the way a flow runs it, with a checkpoint.

Each case becomes a :class:`~alora_flows.core.session.Session` holding the conversation a flow
would have at that point (:meth:`CaseSet.messages`, plus the stored base answer for uncertainty),
and the intrinsic is called with ``spec.run(session, adapter_name, state)``, the same call the
flow's intrinsic node makes (rewrite gets ``state={"question": ...}``). Its parsed output is
appended to a JSONL checkpoint, one line per case, keyed by the case, the adapter's files and the
rated answer: a rerun skips what is done and recomputes what changed, so an interruption of a
long CPU run loses at most one case.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from alora_flows.core.documents import as_documents
from alora_flows.errors import IntrinsicOutputError
from intrinsics.outputs import AnswerabilityOutput, HallucinationOutput, RewriteOutput, UncertaintyOutput
from intrinsics.training.realistic.loader import Case, CaseSet, RewriteCase


def adapter_fingerprint(path: str | Path) -> str:
    """Hash of an adapter directory's files (weights, config, intrinsic.yaml)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in Path(path).iterdir() if p.is_file()):
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)``: worker I of N runs every N-th case from the I-th into a shared
    :class:`Checkpoint`. An argparse ``type``: its error is the usage error argparse prints."""
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N, got {text!r}") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"expected 0 <= I < N, got {text!r}")
    return index, count


class Checkpoint:
    """Append-only JSONL of per-case records; the last record of an id wins."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.records: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            text = self.path.read_text(encoding="utf-8")
            if text and not text.endswith("\n"):  # a line cut short by a kill: end it, skip it
                with self.path.open("a", encoding="utf-8") as out:
                    out.write("\n")
            for line in text.splitlines():
                if line.strip():
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut short by a kill: recompute that case
                    self.records[record["id"]] = record

    def get(self, case_id: str, key: str) -> dict[str, Any] | None:
        record = self.records.get(case_id)
        return record if record is not None and record.get("key") == key else None

    def add(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
        self.records[record["id"]] = record


def conversation(case: Case, case_set: CaseSet, answer: str | None = None) -> list[dict[str, str]]:
    """The messages of the session the intrinsic is invoked on."""
    messages = case_set.messages(case)
    if case.intrinsic == "uncertainty":
        if answer is None:
            raise ValueError(f"uncertainty case '{case.id}' needs its base answer")
        messages.append({"role": "assistant", "content": answer})
    return messages


def state_for(case: Case) -> dict[str, Any]:
    """The flow state the intrinsic node would pass (``question`` for rewrite)."""
    return {"question": case.data.question} if isinstance(case.data, RewriteCase) else {}


def output_record(output: Any) -> dict[str, Any]:
    """The parts of a parsed output the scores need (and a reader wants to see)."""
    if isinstance(output, UncertaintyOutput):
        return {"score": output.score, "digit": output.digit}
    if isinstance(output, HallucinationOutput):
        return {
            "labels": {str(s.r): s.f for s in output.sentences},
            "adapter_labels": {str(s.r): s.adapter_f or s.f for s in output.sentences},
            "evidence": {str(s.r): s.e for s in output.sentences},
        }
    if isinstance(output, AnswerabilityOutput):
        return {"label": output.label, "probability": output.probability}
    if isinstance(output, RewriteOutput):
        return {"rewritten_question": output.rewritten_question, "fallback": output.fallback}
    raise TypeError(f"unexpected output {type(output).__name__}")


def case_session(backend, case: Case, case_set: CaseSet, answer: str | None = None, *, reuse: bool = True):
    """A fresh Session holding the case's conversation, its documents handed over as documents.

    The RAG prompt's user turn (``"<documents>\n\nQuestion: <q>"``) becomes the turn
    ``"Question: <q>"`` with the documents rendered ``inline``: the same tokens, and the session
    (so the hallucination evidence check) knows which text is documents.
    """
    from alora_flows.core.documents import DocumentSet, split_inline
    from alora_flows.core.session import Session

    messages = conversation(case, case_set, answer)
    docs = case_set.doc_texts(case)
    at = next((i for i, m in enumerate(messages) if m["role"] == "user"), None)
    parts = split_inline(messages[at]["content"]) if docs and at is not None else None
    if at is None or parts is None or parts[0] != "\n".join(docs):
        return Session(backend, messages=messages, reuse=reuse)
    session = Session(backend, messages=messages[:at], reuse=reuse)
    documents = DocumentSet(documents=tuple(as_documents(docs)), render_as="inline")
    session.extend([{"role": "user", "content": parts[1]}], documents=documents)
    session.extend(messages[at + 1 :])
    return session


def predict_case(
    backend, spec, adapter_name: str, case: Case, case_set: CaseSet, answer: str | None, *, session=None
):
    """``(record fields, malformed)`` for one case through ``spec.run`` on ``session`` (the case's
    :func:`case_session`, built here when not given)."""
    session = session or case_session(backend, case, case_set, answer)
    try:
        output, stats = spec.run(session, adapter_name, state_for(case))
    except IntrinsicOutputError as exc:
        return {"error": str(exc)}, True
    return {**output_record(output), "prefill_tokens": stats.prefill_tokens}, False


class System(NamedTuple):
    """One system of an evaluation: the adapter it calls, the key naming its weights (part of each
    record's key), its checkpoint, and ``predict`` (the arguments of :func:`predict_case` but the
    backend and the session) when it is not the engine's ``spec.run`` on the case's session, e.g. a
    standard-LoRA twin (:mod:`.twin`) or the base model's token probability."""

    adapter_name: str
    adapter_key: str
    checkpoint: Checkpoint
    predict: Callable[..., tuple[dict[str, Any], bool]] | None = None


def run_systems(
    backend,
    spec,
    systems: Mapping[str, System],
    cases: Sequence[Case],
    case_set: CaseSet,
    *,
    answers: Mapping[str, str] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Records of each system for ``cases`` by id, computing only what the checkpoints lack.

    Case by case: the systems that call ``spec.run`` share one Session per case. ``spec.run``
    leaves a session as it found it (``Session.invoke`` rolls back), so the case's conversation is
    prefilled once and every further adapter costs only its own tokens: the reuse a flow gets
    when it runs two intrinsics on one answer, and what makes comparing a candidate with the
    shipped adapter cost less than two runs. Each record's ``seconds`` is that system's call, so
    the first engine system of a case also carries the prefill."""
    out: dict[str, dict[str, dict[str, Any]]] = {label: {} for label in systems}
    todo: list[tuple[Case, str | None, dict[str, str]]] = []
    for case in cases:
        answer = (answers or {}).get(case.id)
        missing = {}
        for label, system in systems.items():
            key = hashlib.sha256(
                json.dumps([case.fingerprint(), system.adapter_key, answer]).encode()
            ).hexdigest()[:16]
            record = system.checkpoint.get(case.id, key)
            if record is None:
                missing[label] = key
            else:
                out[label][case.id] = record
        if missing:
            todo.append((case, answer, missing))
    for i, (case, answer, missing) in enumerate(todo):
        session = None
        for label, key in missing.items():
            system = systems[label]
            start = time.perf_counter()
            if system.predict is None:
                session = session or case_session(backend, case, case_set, answer)
                fields, malformed = predict_case(
                    backend, spec, system.adapter_name, case, case_set, answer, session=session
                )
            else:
                fields, malformed = system.predict(spec, system.adapter_name, case, case_set, answer)
            record = {
                "id": case.id,
                "key": key,
                "malformed": malformed,
                "seconds": round(time.perf_counter() - start, 3),
                **fields,
            }
            system.checkpoint.add(record)
            out[label][case.id] = record
        if on_progress:
            on_progress(i + 1, len(todo))
    return out
