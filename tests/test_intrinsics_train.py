"""Training: exact token layout, aLoRA offsets under padding, saved adapters, resume, CLI."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from typer.testing import CliRunner

from alora_flows.core.backend import Backend
from alora_flows.core.chat import ChatRenderer
from alora_flows.core.session import Session
from alora_flows.testing import tiny_model, tiny_tokenizer
from intrinsics import UncertaintyOutput, get_spec, read_spec_file
from intrinsics.training.data_format import Encoder, end_token_id, read_jsonl, write_jsonl
from intrinsics.training.train import (
    TrainConfig,
    TrainError,
    batch_loss,
    collate,
    make_peft_model,
    train_intrinsic,
)

SPEC = get_spec("uncertainty")


@pytest.fixture(scope="module")
def tiny():
    tok = tiny_tokenizer()
    return tok, tiny_model(tok)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Toy certainty data: right answers -> 9, wrong ones -> 0 (20 lines, 2 held out)."""
    rows = []
    for i in range(20):
        good = i % 2 == 0
        answer = "The capital of France is Paris." if good else "The capital of France is Velmora."
        rows.append(
            {
                "intrinsic": "uncertainty",
                "messages": [
                    {"role": "user", "content": "What is the capital of France?"},
                    {"role": "assistant", "content": answer},
                ],
                "output": "9" if good else "0",
            }
        )
    rows.append({"intrinsic": "rewrite", "messages": [{"role": "user", "content": "x"}], "output": "{}"})
    return write_jsonl(tmp_path_factory.mktemp("data") / "train.jsonl", rows)


def config(data, out, **kw):
    base = dict(
        data=data,
        out=out,
        intrinsic="uncertainty",
        r=4,
        alpha=8,
        dropout=0.0,
        lr=5e-3,
        batch_size=4,
        max_steps=3,
        progress=False,
        device="cpu",
        val_fraction=0.1,
    )
    return TrainConfig(**{**base, **kw})


def test_encoding_is_render_plus_invocation_plus_output_plus_end(tiny, data):
    tok, _ = tiny
    example = read_jsonl(data, intrinsic="uncertainty")[0]
    enc = Encoder(tok, SPEC.invocation_ids(tok)).encode(example.message_dicts(), example.output)
    conv = ChatRenderer(tok).ids(example.message_dicts())
    inv = SPEC.invocation_ids(tok)
    out = tok("9", add_special_tokens=False)["input_ids"] + [end_token_id(tok)]
    assert enc.input_ids == conv + inv + out
    assert enc.labels == [-100] * (len(conv) + len(inv)) + out
    assert enc.invocation_start == len(conv)
    assert end_token_id(tok) == tok.convert_tokens_to_ids("<|im_end|>")


def test_batch_loss_matches_peft_and_is_padding_invariant(tiny):
    """Explicit left-pad offsets == PEFT's own invocation search; padding changes nothing."""
    tok, model = tiny
    torch.manual_seed(0)
    peft_model = make_peft_model(copy.deepcopy(model), config("x", "y"), SPEC.invocation_ids(tok))
    with torch.no_grad():  # non-zero B so the adapter matters
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    peft_model.eval()
    encoder = Encoder(tok, SPEC.invocation_ids(tok))
    short = encoder.encode([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo."}], "3")
    long = encoder.encode(
        [
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "The capital of France is Paris, I think."},
        ],
        "8",
    )
    with torch.no_grad():
        singles = []
        for item in (short, long):
            loss, n = batch_loss(
                peft_model, collate([item], tok.pad_token_id, torch.device("cpu"), alora=True)
            )
            ids = torch.tensor([item.input_ids])
            reference = peft_model(
                input_ids=ids, labels=torch.tensor([item.labels])
            ).loss  # PEFT finds offsets
            assert float(loss) / n == pytest.approx(float(reference), rel=1e-5)
            singles.append(float(loss))
        both, n = batch_loss(
            peft_model, collate([short, long], tok.pad_token_id, torch.device("cpu"), alora=True)
        )
        assert float(both) == pytest.approx(sum(singles), rel=1e-4) and n == 4
        with peft_model.disable_adapter():
            base_loss, _ = batch_loss(
                peft_model, collate([short], tok.pad_token_id, torch.device("cpu"), alora=True)
            )
        assert float(base_loss) != pytest.approx(singles[0], rel=1e-3)  # the adapter is really active


@pytest.mark.parametrize("adapted_input", [False, True], ids=["invocation-only", "adapted-input"])
def test_prefix_cache_gives_the_full_forwards_loss_and_gradients(tiny, adapted_input):
    """Training through a no-grad prefix cache is exact: same loss, same gradient on every LoRA
    weight, for a padded batch whose rows start their invocations at different positions, with
    and without an adapted input (the re-read answer) between the invocation and the output."""
    tok, model = tiny
    torch.manual_seed(0)
    peft_model = make_peft_model(copy.deepcopy(model), config("x", "y"), SPEC.invocation_ids(tok))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    encoder = Encoder.for_spec(tok, SPEC) if adapted_input else Encoder(tok, SPEC.invocation_ids(tok))
    items = [
        encoder.encode(
            [
                {"role": "user", "content": "What is the capital of France? " * k},
                {"role": "assistant", "content": "Paris, I think." * (3 - k)},
            ],
            out,
        )
        for k, out in ((1, "3"), (2, "87"), (3, "9"))
    ]
    batch = collate(items, tok.pad_token_id, torch.device("cpu"), alora=True)
    results = []
    for prefix_cache in (False, True):
        peft_model.zero_grad()
        loss, n = batch_loss(peft_model, batch, prefix_cache=prefix_cache)
        loss.backward()
        grads = {k: p.grad.clone() for k, p in peft_model.named_parameters() if p.requires_grad}
        results.append((float(loss.detach()), n, grads))
    (full, n_full, g_full), (cached, n_cached, g_cached) = results
    assert n_full == n_cached == 7 and cached == pytest.approx(full, rel=1e-5)
    assert g_full.keys() == g_cached.keys() and any(float(g.abs().sum()) > 0 for g in g_full.values())
    for key, grad in g_full.items():
        torch.testing.assert_close(g_cached[key], grad, rtol=1e-4, atol=1e-6)


def test_training_writes_a_loadable_alora_adapter(tiny, data, tmp_path):
    tok, model = tiny
    before = copy.deepcopy(model.state_dict())
    result = train_intrinsic(config(data, tmp_path / "unc"), model=model, tokenizer=tok, model_id="tiny")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # caller's model untouched
    assert result.steps == 3 and result.n_train == 18 and result.n_val == 2  # the rewrite line is ignored
    cfg = json.loads((tmp_path / "unc" / "adapter_config.json").read_text())
    assert cfg["alora_invocation_tokens"] == SPEC.invocation_ids(tok) == result.invocation_tokens
    assert cfg["base_model_name_or_path"] == "tiny" and cfg["r"] == 4
    assert sorted(cfg["target_modules"]) == ["k_proj", "q_proj", "v_proj"]
    assert read_spec_file(tmp_path / "unc") == SPEC
    assert not (tmp_path / "unc" / "checkpoint").exists()

    backend = Backend(tiny_model(tok), tok, model_id="tiny")
    backend.add_adapter("certainty", tmp_path / "unc")
    session = Session(backend, messages=read_jsonl(data)[0].message_dicts())
    out, stats = SPEC.run(session, "certainty", {})
    assert isinstance(out, UncertaintyOutput) and stats.generated_tokens == 1


def test_loss_decreases_on_a_toy_task(tiny, data, tmp_path):
    tok, model = tiny
    result = train_intrinsic(
        config(data, tmp_path / "toy", max_steps=10, lr=5e-2, alpha=16, eval_every=5),
        model=model,
        tokenizer=tok,
        model_id="tiny",
    )
    assert [s for s, _ in result.val_losses] == [0, 5, 10]
    assert result.best_val_loss < result.val_losses[0][1] * 0.7
    assert result.best_step == 10
    assert sum(result.train_losses[-3:]) < sum(result.train_losses[:3]) * 0.7


@pytest.mark.parametrize("keep", ["best", "last"])
def test_keep_writes_the_best_or_the_final_weights(tiny, data, tmp_path, keep):
    """A learning rate far too high: validation loss is lowest after step 1 (4.6, then 7.7, 7.5,
    5.8), so "best" writes step 1's weights and "last" the final ones (the checkpoint's)."""
    from safetensors.torch import load_file

    tok, model = tiny
    out = tmp_path / keep
    result = train_intrinsic(
        config(data, out, max_steps=4, lr=5.0, eval_every=1, keep=keep, keep_checkpoint=True),
        model=model,
        tokenizer=tok,
        model_id="tiny",
    )
    assert result.best_step == 1 and result.steps == 4
    saved = load_file(str(out / "adapter_model.safetensors"))
    final = torch.load(out / "checkpoint" / "trainer_state.pt", weights_only=True)["adapter"]
    assert saved.keys() == final.keys()
    assert all(torch.equal(saved[k], final[k]) for k in saved) == (keep == "last")
    assert f"kept: {keep}" in (out / "intrinsic.yaml").read_text()


def test_standard_lora_for_the_parity_comparison(tiny, data, tmp_path):
    tok, model = tiny
    result = train_intrinsic(
        config(data, tmp_path / "lora", lora=True, max_steps=2, val_fraction=0.0),
        model=model,
        tokenizer=tok,
        model_id="tiny",
    )
    cfg = json.loads((tmp_path / "lora" / "adapter_config.json").read_text())
    assert cfg.get("alora_invocation_tokens") is None and result.adapter_type == "lora" and result.n_val == 0
    assert "type: lora" in (tmp_path / "lora" / "intrinsic.yaml").read_text()


def test_resume_continues_exactly(tiny, data, tmp_path, monkeypatch):
    tok, model = tiny
    opts = dict(max_steps=4, save_every=2, batch_size=2, val_fraction=0.0)
    straight = train_intrinsic(
        config(data, tmp_path / "a", **opts), model=model, tokenizer=tok, model_id="tiny"
    )

    import intrinsics.training.train as train_mod

    calls = {"n": 0}
    real = train_mod.batch_loss

    def crash_on_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "batch_loss", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        train_intrinsic(config(data, tmp_path / "b", **opts), model=model, tokenizer=tok, model_id="tiny")
    assert (tmp_path / "b" / "checkpoint" / "trainer_state.pt").is_file()
    monkeypatch.setattr(train_mod, "batch_loss", real)
    resumed = train_intrinsic(
        config(data, tmp_path / "b", resume=True, **opts), model=model, tokenizer=tok, model_id="tiny"
    )
    assert resumed.steps == 4
    assert resumed.train_losses == pytest.approx(straight.train_losses, rel=1e-5)
    with pytest.raises(TrainError, match="nothing to resume"):
        train_intrinsic(config(data, tmp_path / "b", resume=True, **opts), model=model, tokenizer=tok)
    with pytest.raises(TrainError, match="r=8"):
        (tmp_path / "c").mkdir()
        train_intrinsic(
            config(data, tmp_path / "c", keep_checkpoint=True, **opts), model=model, tokenizer=tok
        )
        train_intrinsic(
            config(data, tmp_path / "c", resume=True, **{**opts, "r": 8}), model=model, tokenizer=tok
        )


def test_cli_train_and_errors(tiny, data, tmp_path):
    from alora_flows.cli import app as cli_app

    tok, model = tiny
    model.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    app = cli_app
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "out"),
            "--intrinsic",
            "certainty",
            "--model",
            str(tmp_path / "base"),
            "--max-steps",
            "1",
            "--r",
            "2",
            "--batch-size",
            "4",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    cfg = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str((tmp_path / "base").resolve())
    bad = runner.invoke(
        app,
        ["train", "--data", str(data), "--out", str(tmp_path / "o2"), "--intrinsic", "certainty", "--r", "0"],
    )
    assert bad.exit_code == 1 and "--r" in bad.output and "Traceback" not in bad.output
    missing = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(tmp_path / "none.jsonl"),
            "--out",
            str(tmp_path / "o3"),
            "--intrinsic",
            "certainty",
            "--model",
            str(tmp_path / "base"),
        ],
    )
    assert missing.exit_code == 1 and "no such data file" in missing.output
