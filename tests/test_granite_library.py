"""Local intrinsic libraries in IBM's layouts, and ``alora-flows intrinsics check``."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from alora_flows.cli import app
from alora_flows.errors import AdapterError
from intrinsics.granite import check_library, resolve_in_library, scan_library
from intrinsics.registry import RegistryCatalog
from tests.granite_support import build_library, granite_backend

runner = CliRunner()


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    backend = granite_backend()
    root = build_library(tmp_path_factory.mktemp("lib") / "lib", backend)
    model_dir = tmp_path_factory.mktemp("model") / "granite-tiny"
    backend.base_model.save_pretrained(model_dir)
    backend.tokenizer.save_pretrained(model_dir)
    return root, model_dir, backend


def test_both_layouts_are_read(library):
    root, _, _ = library
    entries = {(e.intrinsic, e.adapter_type, e.model) for e in scan_library(root)}
    assert ("uncertainty", "alora", "granite-tiny") in entries
    assert ("uncertainty", "lora", "granite-tiny") in entries
    assert ("requirement_check", "alora", "granite-tiny") in entries  # <intrinsic>/<model>/alora
    assert (
        resolve_in_library(root / "uncertainty", "org/Granite-Tiny")
        == root / "uncertainty/alora/granite-tiny"
    )
    assert (
        resolve_in_library(root / "requirement_check", None) == root / "requirement_check/granite-tiny/alora"
    )
    with pytest.raises(AdapterError, match="no aLoRA for base model 'granite-9b'.*granite-tiny"):
        resolve_in_library(root / "uncertainty", "granite-9b")


def test_a_flow_may_name_an_intrinsic_folder_before_the_model_loads(library):
    root, _, _ = library
    spec = RegistryCatalog().spec("uncertainty", "uncertainty", base_dir=root)
    assert spec.shape.name == "uncertainty" and "certainty" in spec.output_model.model_fields


def test_check_reports_what_loads_how_and_why_not(library):
    root, _, backend = library
    reports = {(r.intrinsic, r.adapter_type): r for r in check_library(root, backend.tokenizer)}
    old = reports[("certainty", "alora")]
    assert old.loads and old.activation_offset == 1 and "old alora package" in old.activation
    assert old.invocation == "<|start_of_role|>certainty<|end_of_role|>"
    converted = reports[("answerability", "alora")]
    assert converted.loads and converted.activation_offset == 1 and "they agree" in converted.activation
    new = reports[("uncertainty", "alora")]
    assert (
        new.loads
        and new.activation_offset == 0
        and new.output_fields == "GraniteUncertainty {certainty: number}"
    )
    assert reports[("requirement_check", "alora")].instruction_arguments == ["requirement"]
    assert "tagged in last_message <rN>, documents <cN>" in reports[("citations", "alora")].documents
    assert (
        not reports[("uncertainty", "lora")].loads
        and "plain LoRA" in reports[("uncertainty", "lora")].problem
    )
    broken = reports[("broken", "alora")]
    assert not broken.loads and "InvocationMismatchError" in broken.problem


def test_the_cli_prints_the_check_and_fails_on_a_broken_adapter(library):
    root, model_dir, _ = library
    result = runner.invoke(app, ["intrinsics", "check", str(root), "--model", str(model_dir)])
    assert result.exit_code == 1, result.output
    out = result.output
    assert "ok   certainty [alora, granite-tiny]" in out
    assert (
        "activation: invocation_string only (old alora package format): the adapter switches on after the first invocation token"
        in out
    )
    assert "FAIL broken [alora, granite-tiny]" in out and "different activation points" in out
    assert "5 loaded, 1 failed, 1 plain LoRA skipped" in out
    lines = runner.invoke(
        app, ["intrinsics", "check", str(root / "uncertainty"), "--json"]
    ).output.splitlines()
    data = [json.loads(line) for line in lines]
    assert {d["adapter_type"] for d in data} == {"alora", "lora"}


def test_the_cli_refuses_what_is_not_a_library(tmp_path):
    result = runner.invoke(app, ["intrinsics", "check", str(tmp_path)])
    assert result.exit_code == 2 and "no adapter directory" in result.output
