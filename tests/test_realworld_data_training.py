"""Fine-tuning from a saved adapter (``TrainConfig.init_adapter``, ``build_builtin --init-adapter``).

Why: retraining a shipped adapter on a new data mixture from its own weights costs a fraction of
a fresh run on a CPU. The run must really start from those weights (its step-0 validation loss is
the saved adapter's last one), and an adapter of another shape must be refused, not half-loaded.
"""

from __future__ import annotations

import pytest

from alora_flows.testing import tiny_model, tiny_tokenizer
from intrinsics.training.data_format import write_jsonl
from intrinsics.training.train import TrainConfig, TrainError, train_intrinsic


@pytest.fixture(scope="module")
def tiny():
    tok = tiny_tokenizer()
    return tok, tiny_model(tok)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rows = []
    for i in range(20):
        good = i % 2 == 0
        rows.append(
            {
                "intrinsic": "answerability",
                "messages": [
                    {
                        "role": "user",
                        "content": ("Paris is in France." if good else "Rome is old.")
                        + "\n\nQuestion: Where is Paris?",
                    }
                ],
                "output": "answerable" if good else "unanswerable",
            }
        )
    return write_jsonl(tmp_path_factory.mktemp("data") / "train.jsonl", rows)


def config(data, out, **kw):
    base = dict(
        data=data,
        out=out,
        intrinsic="answerability",
        r=4,
        alpha=8,
        dropout=0.0,
        lr=5e-2,
        batch_size=4,
        max_steps=8,
        eval_every=8,
        progress=False,
        device="cpu",
        val_fraction=0.2,
    )
    return TrainConfig(**{**base, **kw})


def test_training_starts_from_the_given_adapter(tiny, data, tmp_path):
    tok, model = tiny
    first = train_intrinsic(config(data, tmp_path / "a"), model=model, tokenizer=tok, model_id="tiny")
    fresh = train_intrinsic(
        config(data, tmp_path / "b", max_steps=1), model=model, tokenizer=tok, model_id="tiny"
    )
    warm = train_intrinsic(
        config(data, tmp_path / "c", max_steps=1, init_adapter=tmp_path / "a"),
        model=model,
        tokenizer=tok,
        model_id="tiny",
    )
    assert first.best_val_loss < fresh.val_losses[0][1] * 0.8  # the first run learned something
    assert warm.val_losses[0][1] == pytest.approx(first.val_losses[-1][1], rel=1e-4)
    assert warm.val_losses[0][1] < fresh.val_losses[0][1] * 0.8


def test_an_adapter_of_another_shape_is_refused(tiny, data, tmp_path):
    tok, model = tiny
    train_intrinsic(config(data, tmp_path / "a", max_steps=1), model=model, tokenizer=tok, model_id="tiny")
    with pytest.raises(TrainError, match="does not fit"):
        train_intrinsic(
            config(data, tmp_path / "b", r=8, init_adapter=tmp_path / "a"),
            model=model,
            tokenizer=tok,
            model_id="tiny",
        )
    with pytest.raises(TrainError, match="no adapter_model"):
        train_intrinsic(
            config(data, tmp_path / "c", init_adapter=tmp_path), model=model, tokenizer=tok, model_id="tiny"
        )
