"""How the flow engine knows intrinsics: two small protocols and a discovery function.

The engine never imports an intrinsics library. A flow is validated and run against an
:class:`IntrinsicCatalog` that it is handed; with none, installed libraries are discovered through
the ``alora_flows.intrinsics`` entry point group, as pytest and hatch find their plugins. The
shipped ``intrinsics`` package registers itself there (``pyproject.toml``); another library does
the same with its own name.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

from alora_flows.errors import AloraFlowsError, UnknownIntrinsicError

ENTRY_POINT_GROUP = "alora_flows.intrinsics"


@runtime_checkable
class Intrinsic(Protocol):
    """What a flow needs of one intrinsic: its output type (for validation) and a way to run it."""

    name: str
    output_model: type[BaseModel]

    def run(
        self, session: Any, adapter_name: str, state: Any = None, input_override: Any = None
    ) -> tuple[BaseModel, Any]:
        """Invoke the adapter on the session (rolled back afterwards); (typed output, CallStats)."""
        ...


class ResolvedAdapter(Protocol):
    """An intrinsic ready to load: its spec and the adapter directory for one base model."""

    spec: Intrinsic
    path: Path


@runtime_checkable
class IntrinsicCatalog(Protocol):
    """A library of intrinsics (the shipped ``intrinsics`` package is one)."""

    def spec(self, name: str, source: str | None = None, base_dir: Path | None = None) -> Intrinsic:
        """The spec of ``name`` as the flow declares it (``source``: ``builtin`` or a directory).

        Raises :class:`~alora_flows.errors.UnknownIntrinsicError` (or another
        ``AloraFlowsError``) when it cannot.
        """
        ...

    def resolve(
        self, name: str, source: str, model_id: str, *, base_dir: Path | None, tokenizer: Any
    ) -> ResolvedAdapter:
        """Spec and adapter weights of ``name: source`` for the model ``model_id``."""
        ...


class MappingCatalog:
    """A catalog over a plain ``name -> spec`` mapping: for tests and flows built in Python."""

    def __init__(self, specs: Mapping[str, Intrinsic]) -> None:
        self.specs = dict(specs)

    def spec(self, name: str, source: str | None = None, base_dir: Path | None = None) -> Intrinsic:
        if name not in self.specs:
            raise UnknownIntrinsicError(
                f"unknown intrinsic '{name}' (known: {', '.join(sorted(self.specs)) or 'none'})"
            )
        return self.specs[name]

    def resolve(
        self, name: str, source: str, model_id: str, *, base_dir: Path | None, tokenizer: Any
    ) -> ResolvedAdapter:
        raise AloraFlowsError(
            f"intrinsic '{name}': this catalog holds specs only; load its "
            "adapter with backend.add_adapter(name, path)"
        )


class ChainCatalog:
    """Several catalogs asked in order; the first that knows a name answers."""

    def __init__(self, catalogs: list[IntrinsicCatalog]) -> None:
        self.catalogs = catalogs

    def _first(self, name: str, call: Any) -> Any:
        error: AloraFlowsError | None = None
        for catalog in self.catalogs:
            try:
                return call(catalog)
            except UnknownIntrinsicError as exc:
                error = error or exc
        raise error or UnknownIntrinsicError(
            f"unknown intrinsic '{name}': no intrinsics library is installed (pip install "
            "alora-flows provides the built-in 'intrinsics' package)"
        )

    def spec(self, name: str, source: str | None = None, base_dir: Path | None = None) -> Intrinsic:
        return self._first(name, lambda c: c.spec(name, source, base_dir))

    def resolve(
        self, name: str, source: str, model_id: str, *, base_dir: Path | None, tokenizer: Any
    ) -> ResolvedAdapter:
        return self._first(
            name,
            lambda c: c.resolve(name, source, model_id, base_dir=base_dir, tokenizer=tokenizer),
        )


CatalogLike = IntrinsicCatalog | Mapping[str, Intrinsic] | None


@lru_cache(maxsize=1)
def discovered_catalog() -> ChainCatalog:
    """Every catalog installed under the ``alora_flows.intrinsics`` entry point group."""
    found: list[IntrinsicCatalog] = []
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        catalog = point.load()
        found.append(catalog() if isinstance(catalog, type) else catalog)
    return ChainCatalog(found)


def as_catalog(specs: CatalogLike) -> IntrinsicCatalog:
    """A catalog from what a caller hands the engine (None: the installed libraries)."""
    if specs is None:
        return discovered_catalog()
    if isinstance(specs, Mapping):
        return MappingCatalog(specs)
    return specs
