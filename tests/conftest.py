import os

import pytest
import torch
from hypothesis import settings

# CI must be reproducible: same examples on every run (local runs keep exploring at random).
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

from alora_flows.testing import tiny_backend

torch.set_num_threads(1)  # the tiny model is too small to gain from threads
# Commands run in-process apply the CLI's thread policy; keep it at one thread for the whole session.
os.environ.setdefault("ALORA_FLOWS_THREADS", "1")

INVOCATIONS = {"alpha": "<|im_start|>certainty\n", "beta": "<|im_start|>rewrite\n"}


@pytest.fixture(scope="session")
def backend(tmp_path_factory):
    """A tiny random Llama with two random aLoRA adapters, shared by the fast tests."""
    return tiny_backend(tmp_path_factory.mktemp("adapters"), INVOCATIONS)


@pytest.fixture()
def fresh_backend(tmp_path):
    """A backend of its own, for tests that add adapters."""
    return tiny_backend(tmp_path, {})
