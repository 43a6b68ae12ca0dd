"""The configured models: loaded from settings or a YAML file, keys resolved by reference."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import yaml
from pydantic import ValidationError
from tiktoken.model import encoding_name_for_model

from common.config.workers import AiFallbackSettings, AiModelSettings
from common.errors import ConfigError
from workers.ai_fallback.tokens import EncodingName

__all__ = ["Model", "load_models"]

_REASONING = re.compile(r"^(?:openai/)?(?:o\d|gpt-5)", re.IGNORECASE)


def _openai_encoding(model_id: str) -> EncodingName:
    """tiktoken's encoding for an OpenAI model name; cl100k for names it does not know."""
    try:
        name = encoding_name_for_model(model_id.removeprefix("openai/"))
    except KeyError:
        return "cl100k"
    return "o200k" if name == "o200k_base" else "cl100k"


@dataclass(frozen=True)
class Model:
    """One model of the chain, ready to call."""

    spec: AiModelSettings
    key: str | None
    fingerprint: str
    index: int

    @property
    def name(self) -> str:
        """The name requests and quarantine entries use."""
        return self.spec.name

    @property
    def provider_model(self) -> str:
        """The name the provider knows the model by."""
        return self.spec.model_id or self.spec.name

    @cached_property
    def encoding(self) -> EncodingName | None:
        """The tiktoken encoding that counts this model's tokens exactly, or None (estimated)."""
        tokenizer = self.spec.tokenizer
        if tokenizer is None and self.spec.provider == "openai":
            tokenizer = _openai_encoding(self.provider_model)
        if tokenizer is None or tokenizer == "estimate":
            return None
        return tokenizer

    @property
    def exact_tokens(self) -> bool:
        """True when a bundled encoding counts this model's tokens exactly."""
        return self.encoding is not None

    @cached_property
    def reasoning(self) -> bool:
        """True for a reasoning model (``max_completion_tokens``, no sampling knobs)."""
        if self.spec.reasoning is not None:
            return self.spec.reasoning
        return self.spec.provider == "openai" and bool(_REASONING.match(self.provider_model))

    @property
    def dependency(self) -> str:
        """The guard (breaker) name: one per provider, model and key."""
        return f"llm:{self.spec.provider}:{self.name}:{self.spec.key_ref or 'nokey'}"

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """US dollars for this many tokens."""
        return (
            input_tokens * self.spec.input_usd_per_mtok
            + output_tokens * self.spec.output_usd_per_mtok
        ) / 1_000_000


def _from_file(path: str) -> tuple[AiModelSettings, ...]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"ai_fallback.models_file {path!r}: {error}") from error
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise ConfigError(f"ai_fallback.models_file {path!r}: expected a mapping with 'models'")
    try:
        return tuple(AiModelSettings.model_validate(item) for item in data["models"])
    except ValidationError as error:
        raise ConfigError(f"ai_fallback.models_file {path!r}: {error}") from error


def _fingerprint(spec: AiModelSettings, key: str | None) -> str:
    digest = hashlib.sha256(json.dumps(spec.model_dump(mode="json"), sort_keys=True).encode())
    digest.update(b"\0" + (key or "").encode())
    return digest.hexdigest()[:32]


def load_models(settings: AiFallbackSettings) -> dict[str, Model]:
    """Name -> model, in priority order (ties keep configuration order)."""
    specs = _from_file(settings.models_file) if settings.models_file else settings.models
    models: dict[str, Model] = {}
    ordered = sorted(enumerate(specs), key=lambda pair: (pair[1].priority, pair[0]))
    for index, spec in ordered:
        if spec.name in models:
            raise ConfigError(f"ai_fallback: model {spec.name!r} is configured twice")
        key: str | None = None
        if spec.key_ref is not None:
            secret = settings.provider_keys.get(spec.key_ref)
            if secret is None:
                raise ConfigError(
                    f"ai_fallback: model {spec.name!r} needs key {spec.key_ref!r}: set "
                    f"EVENTGUARD_AI_FALLBACK__PROVIDER_KEYS with a {spec.key_ref!r} entry"
                )
            key = secret.get_secret_value()
        models[spec.name] = Model(spec, key, _fingerprint(spec, key), index)
    return models
