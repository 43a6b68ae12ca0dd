"""Token counting from the verified bundled encoding, Retry-After parsing, chain loading."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from common.config.workers import AiFallbackSettings, AiModelSettings
from common.errors import ConfigError
from schemas.ai import Message
from workers.ai_fallback.chain import load_models
from workers.ai_fallback.providers import parse_retry_after
from workers.ai_fallback.tokens import (
    O200K_SHA256,
    EncodingName,
    TokenCounter,
    load_cl100k,
    load_o200k,
    parse_ranks,
)


def test_cl100k_counts_known_text() -> None:
    """The bundled cl100k_base gives tiktoken's published token ids for a known string."""
    counter = TokenCounter()
    assert counter.count_text("hello world") == 2
    assert counter.count_text("<|endoftext|>") > 1  # special text is ordinary text here


def test_prompt_count_uses_the_chat_formula() -> None:
    """A chat prompt costs 3 per message plus its role and content, and 3 priming the reply."""
    counter = TokenCounter()
    prompt = counter.count_prompt([Message(role="user", content="hello world")], "be brief")
    role = counter.count_text("user")
    assert prompt == 3 + (3 + role + 2) + (3 + counter.count_text("system") + 2)


@pytest.mark.parametrize("encoding", ["cl100k", "o200k"])
def test_prompt_count_matches_the_provider(encoding: EncodingName) -> None:
    """OpenAI's documented example (system + "Hello!") is 19 prompt tokens in both encodings."""
    counter = TokenCounter()
    messages = [Message(role="user", content="Hello!")]
    assert counter.count_prompt(messages, "You are a helpful assistant.", encoding=encoding) == 19


def test_o200k_counts_known_text() -> None:
    """The bundled, verified o200k_base gives tiktoken's published ids, unlike cl100k."""
    assert load_o200k().encode_ordinary("hello world") == [24912, 2375]
    assert load_cl100k().encode_ordinary("hello world") == [15339, 1917]
    text = "Ünïcödé 日本語 and code: def f(x): return x**2"
    counter = TokenCounter()
    assert counter.count_text(text, "o200k") != counter.count_text(text, "cl100k")


def test_o200k_digest_is_checked() -> None:
    """The o200k file is refused under any digest but the one tiktoken publishes."""
    with pytest.raises(ConfigError, match="digest"):
        parse_ranks(b"aGVsbG8= 0\n", O200K_SHA256)


@pytest.mark.parametrize(
    ("model_id", "encoding"),
    [("gpt-4o", "o200k"), ("gpt-4o-mini", "o200k"), ("o3-mini", "o200k"), ("gpt-4", "cl100k")],
)
def test_openai_models_use_their_real_encoding(model_id: str, encoding: str) -> None:
    """The gpt-4o family (and o-series, gpt-5) counts with o200k; gpt-4 with cl100k."""
    models = load_models(AiFallbackSettings(models=(_spec(name="m", model_id=model_id),)))
    assert models["m"].encoding == encoding
    assert models["m"].exact_tokens


def test_wrong_digest_is_refused() -> None:
    """An encoding file whose SHA-256 differs from the published one is refused."""
    with pytest.raises(ConfigError, match="digest"):
        parse_ranks(b"aGVsbG8= 0\n")


def test_estimate_uses_safety_factor_then_calibrates() -> None:
    """Non-cl100k models get cl100k x safety factor, then learn the provider's ratio."""
    counter = TokenCounter(safety_factor=1.2, alpha=1.0)
    assert counter.for_model("claude", 100, exact=False) == 120
    assert counter.for_model("gpt", 100, exact=True) == 100
    counter.observe("claude", 100, 150)
    assert counter.for_model("claude", 100, exact=False) == 180


def test_retry_after_forms() -> None:
    """Retry-After as seconds or an HTTP date; junk is ignored, the past is zero."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now=now) == 30
    assert parse_retry_after("Wed, 31 Dec 2025 00:00:00 GMT", now=now) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def _spec(**kw: object) -> AiModelSettings:
    values: dict[str, object] = {
        "name": "m",
        "provider": "openai",
        "endpoint": "http://x/v1",
        "context_window": 100,
        "max_output": 10,
    }
    values.update(kw)
    return AiModelSettings.model_validate(values)


def test_missing_key_reference_names_the_variable() -> None:
    """A model whose key reference has no secret stops start-up naming the setting."""
    with pytest.raises(ConfigError, match="EVENTGUARD_AI_FALLBACK__PROVIDER_KEYS"):
        load_models(AiFallbackSettings(models=(_spec(key_ref="openai"),)))


def test_models_from_yaml_in_priority_order(tmp_path: Path) -> None:
    """A YAML chain file replaces the inline models; priority orders them."""
    path = tmp_path / "chain.yaml"
    path.write_text(
        "models:\n"
        "  - {name: late, provider: anthropic, endpoint: 'http://x/v1', context_window: 9,"
        " max_output: 1, priority: 5, key_ref: k}\n"
        "  - {name: early, provider: openai, endpoint: 'http://y/v1', context_window: 9,"
        " max_output: 1, priority: 1}\n",
        encoding="utf-8",
    )
    settings = AiFallbackSettings(
        models_file=str(path), provider_keys={"k": SecretStr("t-" + "x" * 6)}
    )
    models = load_models(settings)
    assert list(models) == ["early", "late"]
    assert models["late"].key is not None
    assert not models["late"].exact_tokens


def test_bad_yaml_is_a_config_error(tmp_path: Path) -> None:
    """A chain file without a models list is refused with its path."""
    path = tmp_path / "chain.yaml"
    path.write_text("nope: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"chain\.yaml"):
        load_models(AiFallbackSettings(models_file=str(path)))
