"""Training checkpoints are plain data: loaded with ``weights_only=True``, never unpickling code."""

from __future__ import annotations

import random

import pytest
import torch

from intrinsics.training.train import STATE_FILE, TrainError, _load_checkpoint, _save_checkpoint

EXECUTED: list[str] = []


def _record(what: str) -> None:
    EXECUTED.append(what)


class Payload:
    """Unpickling this calls ``_record``: what a hostile checkpoint would do with ``os.system``."""

    def __reduce__(self):
        return (_record, ("unpickled code ran",))


def test_a_checkpoint_holding_code_is_refused_not_run(tmp_path):
    torch.save({"adapter": {}, "step": 1, "evil": Payload()}, tmp_path / STATE_FILE)
    with pytest.raises(TrainError, match="not loaded"):
        _load_checkpoint(tmp_path, None, None, None, {})
    assert EXECUTED == []


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    from peft import LoraConfig, get_peft_model

    from alora_flows.testing import tiny_model, tiny_tokenizer

    def build():
        torch.manual_seed(0)
        model = get_peft_model(tiny_model(tiny_tokenizer()), LoraConfig(r=4, target_modules=["q_proj"]))
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-3)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (s + 1))
        return model, params, optimizer, scheduler

    model, params, optimizer, scheduler = build()
    for _ in range(2):  # some optimizer state (exp_avg tensors, step counts) and a moved schedule
        sum(p.sum() for p in params).backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    random.seed(7)
    torch.manual_seed(7)
    state = {"step": 2, "best_val": 0.5, "val_losses": [(1, 0.7), (2, 0.5)], "train_losses": [1.0, 0.9]}
    _save_checkpoint(tmp_path, model, optimizer, scheduler, state)
    expected_random, expected_torch = random.random(), torch.rand(3)

    torch.load(tmp_path / STATE_FILE, weights_only=True)  # loads without unpickling any object
    fresh, fresh_params, fresh_opt, fresh_sched = build()
    payload = _load_checkpoint(tmp_path, fresh, fresh_opt, fresh_sched, {"step": 2})
    assert payload["val_losses"] == state["val_losses"] and payload["best_val"] == 0.5
    assert all(torch.equal(a, b) for a, b in zip(params, fresh_params))
    assert fresh_sched.last_epoch == scheduler.last_epoch == 2
    assert torch.equal(
        fresh_opt.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"]
    )
    assert random.random() == expected_random and torch.equal(torch.rand(3), expected_torch)
