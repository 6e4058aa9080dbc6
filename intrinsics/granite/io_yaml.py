"""``io.yaml``: how a Granite intrinsic's requests are built and its outputs processed.

IBM ships one next to each adapter of its intrinsic libraries; granite-common and mellea read it.
Keys (all optional here; unknown keys are errors, as in granite-common):

- ``model``: a model name for the request (ignored: we call the adapter directly).
- ``response_format``: JSON schema of the adapter's raw output, as a JSON string; decoding is
  constrained to it (:mod:`intrinsics.granite.decoding`).
- ``transformations``: output rules applied in order (:mod:`intrinsics.granite.transformations`).
- ``instruction``: a Python ``str.format`` template appended as a user turn; ``{last_message}``
  is the last turn's content, other placeholders come from the call's arguments.
- ``parameters``: decoding parameters (``max_completion_tokens``, ``temperature``, ``top_p``,
  ``top_k``, ...).
- ``sentence_boundaries``: ``{last_message|documents|all_but_last_message: tag}``: sentences
  there are tagged ``<tag0> ...`` before the call.
- ``docs_as_message``: ``string | json | roles``: documents as turns instead of template input.
- ``logprobs_workaround``, ``name``: accepted; the first only matters behind servers that
  rewrite message content (not here).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from alora_flows.errors import IntrinsicSpecError

IO_FILE = "io.yaml"
SENTENCE_LOCATIONS = ("last_message", "documents", "all_but_last_message")
#: Decoding parameters we honour; any other ``parameters`` key is refused (it would be ignored).
KNOWN_PARAMETERS = {
    "max_completion_tokens",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "logprobs",
    "top_logprobs",
}


class IoConfig(BaseModel):
    """A parsed ``io.yaml`` (``response_format`` decoded from its JSON string)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = None
    response_format: dict[str, Any] | None = None
    transformations: list[dict[str, Any]] | None = None
    instruction: str | None = None
    parameters: dict[str, Any] | None = None
    sentence_boundaries: dict[str, str] | None = None
    docs_as_message: Literal["string", "json", "roles"] | None = None
    logprobs_workaround: bool | None = None
    name: str | None = None

    @field_validator("response_format", mode="before")
    @classmethod
    def _json(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON ({exc})") from None
        return value

    @field_validator("sentence_boundaries")
    @classmethod
    def _locations(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key in value or {}:
            if key not in SENTENCE_LOCATIONS:
                raise ValueError(f"unknown location '{key}' (known: {', '.join(SENTENCE_LOCATIONS)})")
        return value

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        unknown = sorted(set(value or {}) - KNOWN_PARAMETERS)
        if unknown:
            raise ValueError(
                f"unsupported decoding parameter(s) {unknown} (supported: {', '.join(sorted(KNOWN_PARAMETERS))})"
            )
        return value

    @field_validator("transformations")
    @classmethod
    def _rules(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for i, rule in enumerate(value or []):
            if not isinstance(rule, dict) or "type" not in rule:
                raise ValueError(f"rule {i} needs a 'type'")
        return value

    # ------------------------------------------------------------------ decoding parameters
    @property
    def max_new_tokens(self) -> int | None:
        params = self.parameters or {}
        value = params.get("max_completion_tokens", params.get("max_tokens"))
        return int(value) if value is not None else None

    @property
    def temperature(self) -> float:
        return float((self.parameters or {}).get("temperature") or 0.0)

    @property
    def needs_logprobs(self) -> bool:
        return any(rule.get("type") == "likelihood" for rule in self.transformations or [])


def io_file(path: str | Path) -> Path | None:
    """The ``io.yaml`` of an adapter directory: in it, else in a parent up to two levels (a
    library may keep one per intrinsic rather than per model)."""
    path = Path(path)
    for folder in (path, path.parent, path.parent.parent):
        if (folder / IO_FILE).is_file():
            return folder / IO_FILE
    return None


def parse_io(data: Any, *, file: str | Path = IO_FILE) -> IoConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise IntrinsicSpecError(f"{file}: expected a mapping of io.yaml keys")
    try:
        return IoConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'io.yaml'}: {e['msg']}" for e in exc.errors())
        raise IntrinsicSpecError(f"{file}: {problems}") from None


def read_io_yaml(path: str | Path) -> IoConfig | None:
    """The :class:`IoConfig` of an adapter directory (or of an ``io.yaml`` file), or None."""
    path = Path(path)
    file = path if path.is_file() else io_file(path)
    if file is None:
        return None
    from ruamel.yaml import YAML

    try:
        data = YAML(typ="safe", pure=True).load(file.read_text(encoding="utf-8"))
    except Exception as exc:  # ruamel's YAMLError family
        raise IntrinsicSpecError(f"{file}: invalid YAML: {exc}") from exc
    return parse_io(data, file=file)
