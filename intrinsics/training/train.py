"""Train an intrinsic's adapter: PEFT-native aLoRA (or, for comparison, a standard LoRA).

What makes aLoRA training different from LoRA training, and how it is handled here:

- The adapter must only be active from the invocation tokens on. PEFT's forward takes
  ``alora_offsets`` (per row: adapter on the last ``n`` positions). We pass them explicitly —
  PEFT's own search for the invocation would also match invocation-like text inside data.
- Rows are **left**-padded, so every row ends at the same position: the offset of row ``i`` is
  then simply ``real_len_i - invocation_start_i``, and the target tokens sit in the last few
  positions, so only those positions need logits (``logits_to_keep``: far less memory and ~20% less
  compute on a 49k vocabulary). Position ids are passed from the attention mask, so padding never
  shifts positions.
- Loss only on the output tokens and the end-of-turn token (labels -100 elsewhere).
- **Prefix caching** (aLoRA only, on by default): positions before the batch's earliest invocation
  are computed by the frozen base model, so they carry no gradient. They are run once under
  ``no_grad`` into a KV cache, and only the invocation + output positions run forward and backward
  through the adapter, attending to that cache: the training-time twin of the cache reuse at
  inference. Loss and gradients equal the full forward's (tested); on the built-in intrinsics
  (5-21 % of each example adapted) a step is 1.6-1.8x faster (``benchmarks/train_prefix_cache.py``).

The same data and budget with ``lora=True`` trains a standard LoRA (adapter on every position):
the baseline for the parity comparison. Training is resumable: a checkpoint (adapter weights,
optimizer, scheduler, RNG, position in the epoch) is written every ``save_every`` optimizer steps.
"""

from __future__ import annotations

import copy
import math
import pickle
import random
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from alora_flows.core.backend import cache_kwarg
from alora_flows.errors import AloraFlowsError
from intrinsics.known import canonical_name, get_spec
from intrinsics.spec import IntrinsicSpec
from intrinsics.specfile import read_spec_file, write_spec_file
from intrinsics.training.data_format import DataError, Encoded, Encoder, Example, read_jsonl

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "trainer_state.pt"


class TrainError(AloraFlowsError):
    """Training cannot start or continue (bad options, nothing to resume, incompatible checkpoint)."""


class TrainConfig(BaseModel):
    """Options of ``alora-flows train`` (see ``docs/intrinsics.md``)."""

    model_config = ConfigDict(extra="forbid")

    data: Path
    out: Path
    intrinsic: str | None = None
    spec_file: Path | None = None
    model: str = "embedded"
    base_model_id: str | None = None
    val_data: Path | None = None
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    lora: bool = False
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj"])
    r: int = Field(32, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    lr: float = Field(2e-4, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    warmup_ratio: float = Field(0.05, ge=0.0, lt=1.0)
    max_grad_norm: float = Field(1.0, gt=0.0)
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1)
    max_length: int = Field(2048, ge=8)
    eval_every: int | None = Field(None, ge=1)
    save_every: int = Field(25, ge=1)
    seed: int = 0
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    resume: bool = False
    keep_checkpoint: bool = False
    # Which weights the adapter directory gets: those of the lowest validation loss ("best"), or
    # the final ones ("last"). Validation loss is a proxy: a fine-tune can raise it while the
    # metric a flow uses (say AUROC) does not move, and then "last" is the candidate to measure.
    keep: Literal["best", "last"] = "best"
    limit: int | None = Field(None, ge=1)
    progress: bool = True
    prefix_cache: bool = True  # aLoRA: no-grad KV cache for the pre-invocation positions (exact)
    # Start from this adapter's weights instead of a fresh initialisation (fine-tuning a shipped
    # adapter on new data costs a fraction of a full run on a CPU). Same rank and targets required.
    init_adapter: Path | None = None


class TrainResult(BaseModel):
    """What a training run did; also stored (without the loss curves) in ``intrinsic.yaml``."""

    out: Path
    adapter_type: Literal["alora", "lora"]
    steps: int
    total_steps: int
    best_step: int | None = None
    best_val_loss: float | None = None
    train_losses: list[float] = Field(default_factory=list)
    val_losses: list[tuple[int, float]] = Field(default_factory=list)
    n_train: int
    n_val: int
    skipped: int = 0
    seconds: float
    invocation_tokens: list[int] | None = None


# ---------------------------------------------------------------------------------- setup
def resolve_spec(config: TrainConfig) -> IntrinsicSpec:
    if config.spec_file is not None:
        return read_spec_file(config.spec_file)
    if not config.intrinsic:
        raise TrainError("give --intrinsic NAME (a registered intrinsic) or --spec-file intrinsic.yaml")
    return get_spec(config.intrinsic)


def split_data(config: TrainConfig, spec: IntrinsicSpec) -> tuple[list[Example], list[Example]]:
    """Train/validation examples: ``val_data`` if given, else a seeded ``val_fraction`` split."""
    names = {spec.name, canonical_name(spec.name)} | ({config.intrinsic} if config.intrinsic else set())
    examples = read_jsonl(config.data, intrinsic=names)
    if config.limit:
        examples = examples[: config.limit]
    if not examples:
        raise DataError(f"{config.data}: no examples for intrinsic '{spec.name}'")
    if config.val_data is not None:
        return examples, read_jsonl(config.val_data, intrinsic=names)
    if config.val_fraction <= 0 or len(examples) < 10:
        return examples, []
    order = list(range(len(examples)))
    random.Random(config.seed).shuffle(order)
    n_val = max(1, round(len(examples) * config.val_fraction))
    val = [examples[i] for i in order[:n_val]]
    return [examples[i] for i in order[n_val:]], val


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def load_base(config: TrainConfig, device: torch.device) -> tuple[Any, Any, str]:
    """Base model, tokenizer and the id to record in ``adapter_config.json``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alora_flows.core.models import resolve_model  # lazy: may convert the embedded model on first use

    resolved = resolve_model(config.model, progress=config.progress)
    tokenizer = AutoTokenizer.from_pretrained(resolved.path)
    model = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=pick_dtype(config.dtype, device))
    return model.to(device), tokenizer, config.base_model_id or resolved.model_id  # type: ignore[arg-type]


def make_peft_model(model, config: TrainConfig, invocation_ids: Sequence[int]):
    from peft import LoraConfig, get_peft_model

    lora_config = LoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
        task_type="CAUSAL_LM",
        alora_invocation_tokens=None if config.lora else list(invocation_ids),
    )
    try:
        return get_peft_model(model, lora_config)
    except ValueError as exc:  # e.g. target modules not found
        raise TrainError(f"cannot attach the adapter: {exc}") from exc


def load_initial_weights(peft_model, adapter_dir: Path) -> None:
    """Copy a saved adapter's weights into ``peft_model`` (every adapter tensor must match)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    file = Path(adapter_dir) / "adapter_model.safetensors"
    if not file.is_file():
        raise TrainError(f"--init-adapter: no adapter_model.safetensors in {adapter_dir}")
    try:
        result: Any = set_peft_model_state_dict(peft_model, load_file(str(file)))
    except RuntimeError as exc:  # tensor shapes differ (another rank)
        raise TrainError(f"--init-adapter {adapter_dir} does not fit this adapter: {exc}") from exc
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing or result.unexpected_keys:
        raise TrainError(
            f"--init-adapter {adapter_dir} does not fit this adapter (rank, targets): missing "
            f"{missing[:3]}, unexpected {list(result.unexpected_keys)[:3]}"
        )


def encode_all(encoder: Encoder, examples: Sequence[Example], max_length: int) -> tuple[list[Encoded], int]:
    """Encode examples, skipping (and counting) those longer than ``max_length`` tokens.

    Long examples are skipped, not truncated: cutting the left would drop the system turn the
    session always renders, and cutting the right would drop the target.
    """
    items, skipped = [], 0
    for ex in examples:
        item = encoder.encode(ex.message_dicts(), ex.output, ex.meta)
        if len(item.input_ids) > max_length:
            skipped += 1
        else:
            items.append(item)
    return items, skipped


def collate(items: Sequence[Encoded], pad_id: int, device: torch.device, *, alora: bool) -> dict[str, Any]:
    """Left-pad a batch; return model inputs, labels and the number of positions needing logits."""
    width = max(len(it.input_ids) for it in items)
    ids, mask, labels, offsets = [], [], [], []
    for it in items:
        pad = width - len(it.input_ids)
        ids.append([pad_id] * pad + it.input_ids)
        mask.append([0] * pad + [1] * len(it.input_ids))
        labels.append([-100] * pad + it.labels)
        offsets.append(len(it.input_ids) - it.invocation_start)
    mask_t = torch.tensor(mask, dtype=torch.long, device=device)
    batch = {
        "input_ids": torch.tensor(ids, dtype=torch.long, device=device),
        "attention_mask": mask_t,
        "position_ids": (mask_t.cumsum(-1) - 1).clamp(min=0),
        "labels": torch.tensor(labels, dtype=torch.long, device=device),
        # predict every label token: from the position before the earliest target to the end
        "keep": min(width, max(len(it.labels) - it.prompt_length for it in items) + 1),
    }
    if alora:
        batch["alora_offsets"] = offsets
    return batch


def batch_loss(model, batch: dict[str, Any], *, prefix_cache: bool = False) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over target tokens, and their count.

    ``prefix_cache`` (aLoRA batches only): run the positions before the earliest invocation under
    ``no_grad`` with the adapter off, then only the rest with gradients, attending to that cache.
    Exact, because aLoRA leaves those positions to the frozen base model.
    """
    kwargs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}
    keep = batch["keep"]
    if "alora_offsets" in batch:
        kwargs["alora_offsets"] = batch["alora_offsets"]
        split = batch["input_ids"].shape[1] - max(max(batch["alora_offsets"]), keep)
        if prefix_cache and split > 0:
            from transformers import DynamicCache

            cache = DynamicCache()
            base = model.get_base_model()
            with torch.no_grad(), model.disable_adapter():
                base(
                    input_ids=kwargs["input_ids"][:, :split],
                    attention_mask=kwargs["attention_mask"][:, :split],
                    position_ids=kwargs["position_ids"][:, :split],
                    use_cache=True,
                    logits_to_keep=1,
                    **{cache_kwarg(base): cache},
                )
            kwargs = {
                "input_ids": kwargs["input_ids"][:, split:],
                "attention_mask": kwargs["attention_mask"],
                "position_ids": kwargs["position_ids"][:, split:],
                "alora_offsets": kwargs["alora_offsets"],
                cache_kwarg(base): cache,
                "use_cache": True,
            }
    kwargs.setdefault("use_cache", False)
    logits = model(**kwargs, logits_to_keep=keep).logits
    targets = batch["labels"][:, -keep + 1 :] if keep > 1 else batch["labels"][:, :0]
    logits = logits[:, :-1, :].float()
    count = int((targets != -100).sum())
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum"
    )
    return loss, count


@torch.no_grad()
def evaluate_loss(
    model,
    items: Sequence[Encoded],
    pad_id: int,
    device: torch.device,
    *,
    alora: bool,
    batch_size: int,
    prefix_cache: bool = False,
) -> float:
    """Token-weighted mean loss over ``items`` (the keep-best criterion)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(items), batch_size):
        loss, n = batch_loss(
            model,
            collate(items[start : start + batch_size], pad_id, device, alora=alora),
            prefix_cache=prefix_cache,
        )
        total, count = total + float(loss), count + n
    model.train(was_training)
    return total / max(count, 1)


# ---------------------------------------------------------------------------------- checkpoints
def _embedding_mode(peft_model) -> bool | str:
    """PEFT's default ("auto") looks the base model id up on the hub, which fails slowly offline;
    embeddings only need saving when they are adapter targets."""
    targets = peft_model.peft_config["default"].target_modules
    names = " ".join(targets) if isinstance(targets, (list, set, tuple)) else str(targets)
    return "auto" if ("embed" in names or "lm_head" in names) else False


def _save_checkpoint(ckpt: Path, peft_model, optimizer, scheduler, state: dict[str, Any]) -> None:
    """Write the resumable state as plain data (tensors, numbers, lists, tuples, dicts), which
    :func:`_load_checkpoint` reads with ``torch.load(weights_only=True)``."""
    from peft import get_peft_model_state_dict

    ckpt.mkdir(parents=True, exist_ok=True)
    payload = {
        "adapter": {
            k: v.detach().cpu()
            for k, v in get_peft_model_state_dict(
                peft_model,
                save_embedding_layers=_embedding_mode(peft_model),  # type: ignore[arg-type]
            ).items()
        },
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        },
        **state,
    }
    tmp = ckpt / (STATE_FILE + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(ckpt / STATE_FILE)  # atomic: an interrupted save never leaves a broken checkpoint


def _load_checkpoint(ckpt: Path, peft_model, optimizer, scheduler, expect: dict[str, Any]) -> dict[str, Any]:
    from peft import set_peft_model_state_dict

    file = ckpt / STATE_FILE
    if not file.is_file():
        raise TrainError(f"nothing to resume: no {STATE_FILE} in {ckpt} (run without --resume to start)")
    try:
        # Plain data only (tensors, numbers, strings, lists, tuples, dicts): unpickling a checkpoint
        # someone handed us must never run code.
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise TrainError(
            f"checkpoint {file} holds more than plain tensors and numbers, so it was not loaded "
            "(it was not written by this trainer): start over without --resume"
        ) from exc
    for key, value in expect.items():
        if payload.get(key) != value:
            raise TrainError(
                f"checkpoint {ckpt} was made with {key}={payload.get(key)!r}, this run has "
                f"{key}={value!r}: resume with the same options or start over without --resume"
            )
    set_peft_model_state_dict(peft_model, payload["adapter"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    torch.set_rng_state(payload["rng"]["torch"])
    random.setstate(payload["rng"]["python"])
    if payload["rng"].get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["rng"]["cuda"])
    return payload


def save_adapter(
    peft_model,
    out: Path,
    spec: IntrinsicSpec,
    *,
    base_model_id: str,
    lora: bool,
    invocation_ids: Sequence[int],
    meta: dict[str, Any],
) -> None:
    """A standard PEFT adapter directory plus ``intrinsic.yaml``."""
    cfg = peft_model.peft_config["default"]
    cfg.base_model_name_or_path = base_model_id
    out.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(out), save_embedding_layers=_embedding_mode(peft_model))
    write_spec_file(
        spec,
        out,
        adapter={
            "type": "lora" if lora else "alora",
            "base_model": base_model_id,
            "invocation_tokens": None if lora else list(invocation_ids),
            **meta,
        },
    )


# ---------------------------------------------------------------------------------- the loop
def _progress(enabled: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


def train_intrinsic(
    config: TrainConfig,
    *,
    model=None,
    tokenizer=None,
    spec: IntrinsicSpec | None = None,
    model_id: str | None = None,
) -> TrainResult:
    """Train and save an adapter for one intrinsic. Returns a :class:`TrainResult`.

    ``model``/``tokenizer`` (in-memory objects, e.g. the tiny test model) replace ``config.model``;
    the model is copied, never modified. ``model_id`` is then recorded as the base model.
    """
    started = time.perf_counter()
    spec = spec or resolve_spec(config)
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    device = pick_device(config.device)
    train_ex, val_ex = split_data(config, spec)
    if model is not None:
        if tokenizer is None:
            raise TrainError("pass the tokenizer together with an in-memory model")
        model = copy.deepcopy(model).to(device)
        base_id = config.base_model_id or model_id or getattr(model.config, "_name_or_path", "") or "unknown"
    else:
        model, tokenizer, base_id = load_base(config, device)
    encoder = Encoder.for_spec(tokenizer, spec)
    invocation = encoder.invocation_ids
    train_items, skipped = encode_all(encoder, train_ex, config.max_length)
    val_items, skipped_val = encode_all(encoder, val_ex, config.max_length)
    if not train_items:
        raise DataError(
            f"{config.data}: all {len(train_ex)} examples are longer than --max-length {config.max_length}"
        )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else encoder.end_id
    alora = not config.lora

    peft_model = make_peft_model(model, config, invocation)
    if config.init_adapter is not None and not config.resume:
        load_initial_weights(peft_model, config.init_adapter)
    peft_model.train()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    micro_per_epoch = math.ceil(len(train_items) / config.batch_size)
    steps_per_epoch = math.ceil(micro_per_epoch / config.grad_accum)
    total_steps = config.max_steps or steps_per_epoch * config.epochs  # max_steps overrides epochs
    epochs = math.ceil(total_steps / steps_per_epoch)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    warmup = int(total_steps * config.warmup_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (
            (s + 1) / max(warmup, 1)
            if s < warmup
            else max(0.0, (total_steps - s) / max(total_steps - warmup, 1))
        ),
    )

    ckpt = config.out / CHECKPOINT_DIR
    identity = {
        "intrinsic": spec.name,
        "lora": config.lora,
        "r": config.r,
        "n_train": len(train_items),
        "batch_size": config.batch_size,
        "grad_accum": config.grad_accum,
        "seed": config.seed,
    }
    step, epoch, micro_done = 0, 0, 0
    best_val, best_step = None, None
    train_losses: list[float] = []
    val_losses: list[tuple[int, float]] = []
    if config.resume:
        state = _load_checkpoint(ckpt, peft_model, optimizer, scheduler, identity)
        step, epoch, micro_done = state["step"], state["epoch"], state["micro_done"]
        best_val, best_step = state["best_val"], state["best_step"]
        train_losses, val_losses = list(state["train_losses"]), [tuple(v) for v in state["val_losses"]]

    def meta() -> dict[str, Any]:
        return {
            "trained": {
                "steps": step,
                "best_step": best_step,
                "best_val_loss": None if best_val is None else round(best_val, 5),
                "kept": config.keep,
                "n_train": len(train_items),
                "n_val": len(val_items),
                "epochs": epochs,
                "r": config.r,
                "alpha": config.alpha,
                "lr": config.lr,
                "target_modules": list(config.target_modules),
                "data": str(config.data),
            }
        }

    def save() -> None:
        save_adapter(
            peft_model,
            config.out,
            spec,
            base_model_id=base_id,
            lora=config.lora,
            invocation_ids=invocation,
            meta=meta(),
        )

    def validate() -> None:
        nonlocal best_val, best_step
        if not val_items:
            return
        loss = evaluate_loss(
            peft_model,
            val_items,
            pad_id,
            device,
            alora=alora,
            batch_size=config.batch_size,
            prefix_cache=config.prefix_cache,
        )
        val_losses.append((step, loss))
        if best_val is None or loss < best_val:
            best_val, best_step = loss, step
            if config.keep == "best":
                save()

    def checkpoint() -> None:
        _save_checkpoint(
            ckpt,
            peft_model,
            optimizer,
            scheduler,
            {
                **identity,
                "step": step,
                "epoch": epoch,
                "micro_done": micro_done,
                "best_val": best_val,
                "best_step": best_step,
                "train_losses": train_losses,
                "val_losses": val_losses,
            },
        )

    kind = "LoRA" if config.lora else "aLoRA"
    with _progress(config.progress) as progress:
        task = progress.add_task(f"{kind} {spec.name}", total=total_steps, completed=step, info="")
        if not config.resume and val_items:
            validate()  # step 0: the untrained adapter is the first "best"
        while step < total_steps:
            order = list(range(len(train_items)))
            random.Random(config.seed + epoch).shuffle(order)
            batches = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
            accum_loss, accum_tokens, in_accum = 0.0, 0, 0
            while micro_done < len(batches) and step < total_steps:
                batch = collate([train_items[i] for i in batches[micro_done]], pad_id, device, alora=alora)
                loss_sum, count = batch_loss(peft_model, batch, prefix_cache=config.prefix_cache)
                (loss_sum / max(count, 1) / config.grad_accum).backward()
                accum_loss, accum_tokens, in_accum = (
                    accum_loss + float(loss_sum.detach()),
                    accum_tokens + count,
                    in_accum + 1,
                )
                micro_done += 1
                if in_accum < config.grad_accum and micro_done < len(batches):
                    continue
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                train_losses.append(accum_loss / max(accum_tokens, 1))
                accum_loss, accum_tokens, in_accum = 0.0, 0, 0
                info = f"loss {train_losses[-1]:.4f}" + (
                    f"  best val {best_val:.4f}" if best_val is not None else ""
                )
                progress.update(task, completed=step, info=info)
                if config.eval_every and step % config.eval_every == 0 and step < total_steps:
                    validate()
                if step % config.save_every == 0 and step < total_steps:
                    checkpoint()
            if micro_done >= len(batches):
                epoch, micro_done = epoch + 1, 0
                if step < total_steps:
                    if not config.eval_every:
                        validate()
                    checkpoint()
        validate()
        if config.keep == "last" or not val_items:
            save()
    if config.keep_checkpoint:
        checkpoint()
    else:
        shutil.rmtree(ckpt, ignore_errors=True)
    return TrainResult(
        out=config.out,
        adapter_type="lora" if config.lora else "alora",
        steps=step,
        total_steps=total_steps,
        best_step=best_step,
        best_val_loss=best_val,
        train_losses=train_losses,
        val_losses=val_losses,
        n_train=len(train_items),
        n_val=len(val_items),
        skipped=skipped + skipped_val,
        seconds=time.perf_counter() - started,
        invocation_tokens=None if config.lora else invocation,
    )
