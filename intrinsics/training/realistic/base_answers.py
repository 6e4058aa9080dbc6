"""The base model's own answers to the uncertainty cases: what the uncertainty intrinsic rates.

    python -m intrinsics.training.realistic.base_answers [--limit N]

Each case is asked with the RAG prompt of ``alora_flows/demo/flow.yaml`` (system "Answer only from
the documents.", user "<documents joined by newline>\\n\\nQuestion: <q>") and answered greedily with
the flow's 64-token budget. The answer is judged against the case's gold by the documented rule
(:func:`judge.answer_correct`), and both are stored in ``cases/base_answers.jsonl`` so the labels can
be reviewed and the evaluation does not regenerate them. Lines are appended as they are made, and a
rerun skips answers whose case, prompt and model are unchanged: an interruption loses nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from intrinsics.training.realistic.judge import answer_correct
from intrinsics.training.realistic.loader import CASES_DIR, Case, CaseSet, load_cases

ANSWERS_FILE = CASES_DIR / "base_answers.jsonl"
#: ``max_new_tokens`` of the demo flow's ``answer`` node.
ANSWER_TOKENS = 64


def answer_key(case: Case, case_set: CaseSet, model_id: str) -> str:
    """Changes when the prompt or the model changes (the stored answer is then stale). Editing a
    case's gold or aliases does not: the label is recomputed from the answer at every use."""
    payload = json.dumps([model_id, case_set.messages(case), ANSWER_TOKENS])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def read_answers(path: str | Path = ANSWERS_FILE) -> dict[str, dict[str, Any]]:
    """Stored answers by case id (the last line of an id wins); empty when the file is absent."""
    path = Path(path)
    out: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                out[record["id"]] = record
    return out


def current_answers(
    case_set: CaseSet, model_id: str, path: str | Path = ANSWERS_FILE
) -> dict[str, dict[str, Any]]:
    """Stored answers that still match their prompt and model, labelled by the current rule."""
    stored = read_answers(path)
    return {
        c.id: {**stored[c.id], "correct": answer_correct(stored[c.id]["answer"], c.data)}
        for c in case_set.cases["uncertainty"]
        if c.id in stored and stored[c.id]["key"] == answer_key(c, case_set, model_id)
    }


def write_answers(
    case_set: CaseSet, answers: dict[str, dict[str, Any]], path: str | Path = ANSWERS_FILE
) -> None:
    """Rewrite the file with one line per case, in case order, with current labels (drops
    stale and duplicate lines that appends and edits leave behind)."""
    order = [c.id for c in case_set.cases["uncertainty"] if c.id in answers]
    Path(path).write_text("".join(json.dumps(answers[i]) + "\n" for i in order), encoding="utf-8")


def generate_answers(
    backend,
    case_set: CaseSet,
    path: str | Path = ANSWERS_FILE,
    *,
    limit: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Answer every uncertainty case that has no current stored answer; returns all current ones."""
    from alora_flows.core.session import Session

    path = Path(path)
    done = current_answers(case_set, backend.model_id, path)
    todo = [c for c in case_set.cases["uncertainty"][:limit] if c.id not in done]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        for i, case in enumerate(todo):
            session = Session(backend, messages=case_set.messages(case))
            answer = session.generate(ANSWER_TOKENS).text
            record = {
                "id": case.id,
                "key": answer_key(case, case_set, backend.model_id),
                "model": backend.model_id,
                "answer": answer,
                "correct": answer_correct(answer, case.data),
            }
            out.write(json.dumps(record) + "\n")
            out.flush()
            done[case.id] = record
            if on_progress:
                on_progress(i + 1, len(todo))
    return done


def progress_printer(what: str) -> Callable[[int, int], None]:
    """``on_progress`` that prints a line every 10 items with an ETA (works in log files)."""
    start = time.perf_counter()

    def report(done: int, total: int) -> None:
        if done % 10 and done != total:
            return
        elapsed = time.perf_counter() - start
        eta = elapsed / done * (total - done)
        print(
            f"[{what}] {done}/{total}  {elapsed:.0f}s elapsed, ~{eta:.0f}s left", file=sys.stderr, flush=True
        )

    return report


def load_embedded(device: str = "cpu", threads: int | None = None) -> Any:
    """The embedded model for the realistic evaluations, set up as ``alora-flows`` commands set it
    up (``alora_flows.app.load_backend``, which this layer may not import): on the CPU in float32
    with the project's thread policy (``threads``, else ``ALORA_FLOWS_THREADS``, else
    ``OMP_NUM_THREADS``, else a load-aware default) and its long-context tuning; on a GPU in
    ``Backend.load``'s bfloat16, so scores there differ slightly from the CPU's published ones:
    compare systems run on the same device."""
    from alora_flows.core.backend import Backend
    from alora_flows.core.tuning import apply_cpu_tuning, choose_threads, set_torch_threads

    if device.startswith("cpu"):
        set_torch_threads(choose_threads(threads).threads)
        apply_cpu_tuning()
    return Backend.load("embedded", device=device)


def add_device_options(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--threads``, the same for every realistic evaluation."""
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads on the CPU (default: the project's policy)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="first N uncertainty cases")
    parser.add_argument("--out", type=Path, default=ANSWERS_FILE)
    add_device_options(parser)
    args = parser.parse_args(argv)

    backend = load_embedded(args.device, args.threads)
    case_set = load_cases()
    generate_answers(
        backend, case_set, args.out, limit=args.limit, on_progress=progress_printer("base answers")
    )
    answers = current_answers(case_set, backend.model_id, args.out)
    write_answers(case_set, answers, args.out)
    right = sum(a["correct"] for a in answers.values())
    print(json.dumps({"answers": len(answers), "correct": right, "file": str(args.out)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
