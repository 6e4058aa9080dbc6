"""Where intrinsic specs and adapter weights are found.

Specs live in a process-wide registry (the four built-ins are registered on import; users add
their own with :func:`register_spec`). Adapter weights come from a *source*: ``"builtin"`` (the
adapters shipped in ``intrinsics/adapters/<model_key>/<name>/`` for a given base model) or a local
directory — an adapter directory, or an intrinsic's folder of a Granite library (one aLoRA per
base model, :func:`intrinsics.granite.resolve_in_library`). :func:`load_intrinsic` puts both
together for the engine, preferring a spec file that travels with the adapter (``intrinsic.yaml``,
or a Granite ``io.yaml``/``invocation_string``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from alora_flows.core.adapters import ADAPTER_CONFIG, activation, is_activated, read_adapter_config
from alora_flows.core.models import model_key as model_key  # the one normalisation, re-exported
from alora_flows.errors import (
    AdapterError,
    AdapterMismatchError,
)
from intrinsics.known import (
    canonical_name,
    get_spec,
)
from intrinsics.spec import IntrinsicSpec
from intrinsics.specfile import SPEC_FILE, read_spec_file

ADAPTER_ROOT = Path(__file__).resolve().parent / "adapters"


#: Other names people use for the built-ins (Granite's names among them).
# ---------------------------------------------------------------------------------- adapters
def available_builtin() -> dict[str, list[str]]:
    """Shipped adapters: model key -> intrinsic names (directories with an adapter_config.json)."""
    if not ADAPTER_ROOT.is_dir():
        return {}
    found = {}
    for model_dir in sorted(p for p in ADAPTER_ROOT.iterdir() if p.is_dir()):
        names = sorted(p.name for p in model_dir.iterdir() if (p / "adapter_config.json").is_file())
        if names:
            found[model_dir.name] = names
    return found


def resolve_adapter(
    name: str, source: str | Path, model_id: str, *, base_dir: str | Path | None = None
) -> Path:
    """Directory of the adapter for intrinsic ``name``: ``source`` is ``"builtin"`` or a path
    (an adapter directory, or an intrinsic's folder in a Granite library, resolved for ``model_id``).

    Relative paths are taken from ``base_dir`` (the flow file's folder) when given.
    """
    if str(source) == "builtin":
        key, canon = model_key(model_id), canonical_name(name)
        path = ADAPTER_ROOT / key / canon
        if (path / "adapter_config.json").is_file():
            return path
        shipped = available_builtin()
        listing = "; ".join(f"{k}: {', '.join(v)}" for k, v in shipped.items()) or "none"
        raise AdapterError(
            f"no built-in '{canon}' adapter for model '{key}' (shipped: {listing}). Train one with "
            f"`alora-flows train --intrinsic {canon} --data DATA.jsonl --model <your model> --out DIR` "
            f"and set `intrinsics: {{{name}: DIR}}` in the flow"
        )
    path = Path(source).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if not path.is_dir():
        raise AdapterError(
            f"intrinsic '{name}': adapter directory {path} does not exist "
            "(use 'builtin' or a directory written by `alora-flows train`)"
        )
    if not (path / ADAPTER_CONFIG).is_file():
        from intrinsics.granite import resolve_in_library

        found = resolve_in_library(path, model_id)
        if found is None:
            raise AdapterError(
                f"intrinsic '{name}': {path} has no adapter_config.json; it is neither a PEFT adapter "
                "directory nor an intrinsic's folder of a Granite library (alora/<model>/ or <model>/alora/)"
            )
        return found
    return path


class ResolvedIntrinsic(BaseModel):
    """An intrinsic ready for the engine: the flow's name for it, its spec and adapter directory."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    name: str
    spec: IntrinsicSpec
    path: Path
    adapter_type: Literal["alora", "lora"]
    invocation_tokens: list[int] | None = None


def spec_for_adapter(name: str, path: Path, *, tokenizer=None) -> IntrinsicSpec:
    """The spec for an adapter directory: its intrinsic.yaml, else Granite metadata, else the registry."""
    if (path / SPEC_FILE).is_file():
        return read_spec_file(path / SPEC_FILE)
    from intrinsics.granite import is_granite_dir, load_granite_spec

    if is_granite_dir(path):
        return load_granite_spec(path, name=name, tokenizer=tokenizer)
    return get_spec(name)


def load_intrinsic(
    name: str, source: str | Path, model_id: str, *, base_dir: str | Path | None = None, tokenizer=None
) -> ResolvedIntrinsic:
    """Resolve weights and spec for the flow entry ``name: source``.

    With a ``tokenizer``, the spec's invocation is checked against the tokens the adapter is
    called with (:func:`alora_flows.core.adapters.activation`, both config formats): a mismatch
    means the spec and weights do not belong together.
    """
    path = resolve_adapter(name, source, model_id, base_dir=base_dir)
    spec = spec_for_adapter(name, path, tokenizer=tokenizer)
    config = read_adapter_config(path, name=name)
    adapter_type: Literal["alora", "lora"] = "alora" if is_activated(config) else "lora"
    tokens = None
    if tokenizer is not None:
        act = activation(config, tokenizer, name=name, path=path)
        tokens = act.tokens if act else None
    if tokens and tokenizer is not None:
        expected = spec.invocation_ids(tokenizer)
        if list(tokens) != expected:
            raise AdapterMismatchError(
                f"intrinsic '{name}': the adapter in {path} is invoked by tokens {list(tokens)} "
                f"({tokenizer.decode(tokens)!r}) but its spec's invocation {spec.invocation!r} tokenizes to "
                f"{expected}: fix the invocation in {SPEC_FILE} or use the spec the adapter was trained with"
            )
    return ResolvedIntrinsic(
        name=name,
        spec=spec,
        path=path,
        adapter_type=adapter_type,
        invocation_tokens=list(tokens) if tokens else None,
    )


class RegistryCatalog:
    """This library as the flow engine sees it (an ``alora_flows.intrinsics`` entry point):
    specs from the registry or from the files next to an adapter, and adapters resolved per model.
    """

    def spec(self, name: str, source: str | None = None, base_dir: Path | None = None) -> IntrinsicSpec:
        if source and source != "builtin":
            path = Path(source).expanduser()
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            if not path.is_dir():
                raise AdapterError(
                    f"the adapter directory {path} of intrinsic '{name}' does not exist: "
                    "fix the path under intrinsics:, or use 'builtin'"
                )
            if not (path / ADAPTER_CONFIG).is_file():
                from intrinsics.granite import resolve_in_library

                # before the model is known: any one base model's adapter gives the spec
                found = resolve_in_library(path, None) if _single_model(path) else _first_alora(path)
                path = found or path
            return spec_for_adapter(name, path)
        return get_spec(name)

    def resolve(
        self, name: str, source: str, model_id: str, *, base_dir: Path | None, tokenizer: Any
    ) -> ResolvedIntrinsic:
        return load_intrinsic(name, source, model_id, base_dir=base_dir, tokenizer=tokenizer)


#: The entry point ``alora_flows.intrinsics: builtin`` (pyproject.toml).
catalog = RegistryCatalog()


def _single_model(folder: Path) -> bool:
    from intrinsics.granite import scan_library

    return len([e for e in scan_library(folder, intrinsic=folder.name) if e.adapter_type != "lora"]) <= 1


def _first_alora(folder: Path) -> Path | None:
    from intrinsics.granite import scan_library

    for entry in scan_library(folder, intrinsic=folder.name):
        if entry.adapter_type == "alora" or (
            entry.adapter_type is None and is_activated(read_adapter_config(entry.path))
        ):
            return entry.path
    return None
