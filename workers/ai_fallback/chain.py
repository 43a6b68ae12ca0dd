"""The configured models: loaded from settings or a YAML file, keys resolved by reference."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from common.config import AiFallbackSettings, AiModelSettings
from common.errors import ConfigError

__all__ = ["Model", "load_models"]


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

    @property
    def exact_tokens(self) -> bool:
        """True when cl100k counts this model's tokens exactly."""
        tokenizer = self.spec.tokenizer or ("cl100k" if self.spec.provider == "openai" else None)
        return tokenizer == "cl100k"

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
