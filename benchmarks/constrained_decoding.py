"""What a Granite ``response_format`` constraint costs per generated token (embedded model, CPU).

An intrinsic call on a 512-token conversation decodes ``--tokens`` tokens greedily with a random
aLoRA three ways, interleaved: unconstrained; constrained to a JSON schema (llguidance mask every
step); constrained and recording the top-10 log-probabilities (what a ``likelihood`` rule needs).
Also times the one-time costs: llguidance's view of the 49k-token tokenizer and the schema's
grammar. Per-step processor time is measured inside the call. Writes
``benchmarks/results/constrained_decoding.{json,md}``.

Usage:
    python benchmarks/constrained_decoding.py --tokens 48 --reps 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import RESULTS, conversation, embedded_backend, environment, quiet_cpu, write_results

#: Granite's hallucination-detection output schema: free text inside, so the mask never collapses
#: to one token and every step pays the full computation.
SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["r", "e", "f"],
        "properties": {
            "r": {"type": "integer", "minimum": 0},
            "f": {"type": "string", "enum": ["faithful", "partial", "unfaithful"]},
            "e": {"type": "string"},
        },
    },
}


class Timed:
    """Wraps a processor, adding up the seconds spent in it."""

    def __init__(self, inner) -> None:
        self.inner, self.seconds, self.calls = inner, 0.0, 0

    def __call__(self, tokens, scores):
        start = time.perf_counter()
        out = self.inner(tokens, scores)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    quiet_cpu(args.threads)

    from alora_flows.core.session import Session
    from intrinsics.granite.decoding import DecodeProcessor, compile_schema, ll_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        backend = embedded_backend(tmp)
    tok, stops = backend.tokenizer, backend.stop_token_ids
    start = time.perf_counter()
    ll_tokenizer(tok, stops)
    tokenizer_s = time.perf_counter() - start
    start = time.perf_counter()
    grammar = compile_schema(SCHEMA, adapter="bench")
    grammar_s = time.perf_counter() - start

    session = Session(backend, messages=conversation(tok, args.context))
    modes = {
        "unconstrained": lambda: None,
        "constrained": lambda: DecodeProcessor(tok, stop_ids=stops, grammar=grammar),
        "constrained + logprobs": lambda: DecodeProcessor(
            tok, stop_ids=stops, grammar=grammar, record_logprobs=True
        ),
    }
    per_token = {m: [] for m in modes}
    in_processor = {m: [] for m in modes}
    generated = {m: [] for m in modes}
    for rep in range(args.reps + 1):
        for mode, make in modes.items():
            inner = make()
            proc = Timed(inner) if inner is not None else None
            result = session.invoke(
                "certainty", max_new_tokens=args.tokens, logits_processor=proc, allowed_token_ids=None
            )
            n = result.stats.generated_tokens
            if rep == 0:
                continue  # warm-up
            per_token[mode].append(result.stats.seconds / n)
            generated[mode].append(n)
            in_processor[mode].append((proc.seconds / proc.calls) if proc else 0.0)

    base = statistics.median(per_token["unconstrained"])
    rows = []
    for mode in modes:
        t = statistics.median(per_token[mode])
        p = statistics.median(in_processor[mode])
        rows.append(
            {
                "mode": mode,
                "ms_per_token": t * 1e3,
                "processor_ms_per_step": p * 1e3,
                "ratio": t / base,
                "generated": statistics.median(generated[mode]),
            }
        )
    md = [
        f"# Constrained decoding cost (embedded model, {args.context}-token conversation, "
        f"{args.tokens} tokens, {args.reps} reps, {args.threads} thread(s))",
        "",
        f"One-time: llguidance tokenizer view {tokenizer_s * 1e3:.0f} ms; schema grammar {grammar_s * 1e3:.1f} ms.",
        "",
        "| mode | ms / token | in the processor, ms / step | vs unconstrained |",
        "| --- | ---: | ---: | ---: |",
    ]
    md += [
        f"| {r['mode']} | {r['ms_per_token']:.1f} | {r['processor_ms_per_step']:.2f} | {r['ratio']:.2f}x |"
        for r in rows
    ]
    write_results(
        args.out,
        "constrained_decoding",
        {
            "environment": environment(),
            "args": vars(args) | {"out": str(args.out)},
            "one_time_ms": {"tokenizer": tokenizer_s * 1e3, "grammar": grammar_s * 1e3},
            "rows": rows,
        },
        md,
    )


if __name__ == "__main__":
    main()
