"""The base model's own answers to many prompts, batched: the raw material of uncertainty labels.

Why batched HF ``generate`` rather than sessions: labelling needs thousands of independent short
answers (greedy, plus samples for a probability of being right); there is no shared conversation
to reuse, and batching is what makes it take seconds on a GPU. Prompts are rendered by the same
``ChatRenderer`` as sessions (escaping included), so the answers are the ones a flow would get.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from alora_flows.core.chat import ChatRenderer


def answer_all(
    model,
    tokenizer,
    conversations: Sequence[Sequence[Mapping[str, str]]],
    *,
    max_new_tokens: int = 48,
    batch_size: int = 32,
    samples: int = 0,
    temperature: float = 0.7,
    seed: int = 0,
    progress: bool = True,
) -> list[list[str]]:
    """For each conversation: ``[greedy answer] + samples`` sampled answers (base model)."""
    from rich.progress import track

    renderer = ChatRenderer(tokenizer)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prompts = [renderer.ids(list(c), add_generation_prompt=True) for c in conversations]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # less padding per batch
    answers: list[list[str]] = [[] for _ in prompts]
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    torch.manual_seed(seed)
    for batch in track(batches, description="base answers", disable=not progress):
        width = max(len(prompts[i]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):  # left padding: generation continues at the right edge
            ids[row, width - len(prompts[i]) :] = torch.tensor(prompts[i])
            mask[row, width - len(prompts[i]) :] = 1
        ids, mask = ids.to(device), mask.to(device)
        runs: list[dict[str, Any]] = [dict(do_sample=False)]
        if samples:
            runs.append(
                dict(do_sample=True, temperature=temperature, top_p=1.0, num_return_sequences=samples)
            )
        for run in runs:
            with torch.inference_mode():
                out = model.generate(
                    input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, pad_token_id=pad, **run
                )
            texts = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
            per = run.get("num_return_sequences", 1)
            for row, i in enumerate(batch):
                answers[i].extend(t.strip() for t in texts[row * per : (row + 1) * per])
    return answers
