"""``eventguard ai ...``: inspect the model chain, count tokens, re-enable a model."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from common.clitools import add_json_flag, print_rows
from common.config import Settings
from common.errors import ConfigError
from common.store import Store
from workers.ai_fallback import keys
from workers.ai_fallback.chain import load_models
from workers.ai_fallback.tokens import TokenCounter

__all__ = ["add_commands"]


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``ai`` command group."""
    group = subparsers.add_parser("ai", help="the AI fallback worker")
    sub = group.add_subparsers(dest="ai_command", required=True)
    models = sub.add_parser("models", help="the configured chain (and, with Redis, its state)")
    add_json_flag(models)
    models.set_defaults(func=_models)
    tokens = sub.add_parser("tokens", help="count tokens of TEXT (offline; cl100k or o200k)")
    tokens.add_argument("text", help="the text to count")
    tokens.add_argument(
        "--encoding", choices=["cl100k", "o200k"], default="cl100k", help="the tokenizer"
    )
    tokens.set_defaults(func=_tokens)
    enable = sub.add_parser(
        "enable", help="lift a model's disables (operator, auth) and cool-down in Redis"
    )
    enable.add_argument("model", help="a model name of the chain (`eventguard ai models`)")
    enable.set_defaults(func=_enable)


async def _models(args: argparse.Namespace, settings: Settings) -> int:
    try:
        models = load_models(settings.ai_fallback)
    except ConfigError as error:
        print(f"eventguard ai: {error}", file=sys.stderr)
        return 2
    state: dict[str, dict[str, object]] = {name: {} for name in models}
    if settings.redis_url is not None:
        store = Store.from_settings(settings)
        names = list(models)

        async def read(r: Any) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            for name in names:
                pipe.pttl(keys.cooldown(store, name))
                pipe.get(keys.disabled(store, name))
                pipe.exists(keys.off(store, name))
            return list(await pipe.execute())

        try:
            replies = await store.execute(read)
            for i, name in enumerate(names):
                ttl_ms, fingerprint, off = replies[3 * i : 3 * i + 3]
                state[name]["cooldown_s"] = int(ttl_ms) / 1000 if int(ttl_ms) > 0 else 0
                state[name]["off"] = bool(off)  # switched off by an operator
                state[name]["disabled"] = (
                    fingerprint is not None and fingerprint.decode() == models[name].fingerprint
                )
        finally:
            await store.close()
    rows = [
        {
            "name": name,
            "provider": model.spec.provider,
            "endpoint": model.spec.endpoint,
            "key_ref": model.spec.key_ref,
            "priority": model.spec.priority,
            "context_window": model.spec.context_window,
            "max_output": model.spec.max_output,
            "usd_per_mtok": [model.spec.input_usd_per_mtok, model.spec.output_usd_per_mtok],
            **state[name],
        }
        for name, model in models.items()
    ]
    columns = ["name", "provider", "priority", "context_window", "max_output", "endpoint"]
    if settings.redis_url is not None:
        columns += ["cooldown_s", "disabled", "off"]
    print_rows(rows, columns, as_json=args.json, empty="no models configured")
    return 0


async def _tokens(args: argparse.Namespace, settings: Settings) -> int:
    print(TokenCounter().count_text(args.text, args.encoding))
    return 0


async def _enable(args: argparse.Namespace, settings: Settings) -> int:
    try:
        models = load_models(settings.ai_fallback)
    except ConfigError as error:
        print(f"eventguard ai: {error}", file=sys.stderr)
        return 2
    if args.model not in models:
        known = ", ".join(sorted(models)) or "none configured"
        print(f"eventguard ai: unknown model {args.model!r} (known: {known})", file=sys.stderr)
        return 2
    store = Store.from_settings(settings, needed_for="model cool-downs")
    try:
        gone = [f(store, args.model) for f in (keys.cooldown, keys.disabled, keys.off)]
        removed = await store.execute(lambda r: r.delete(*gone))
    finally:
        await store.close()
    print(
        f"{args.model}: cleared {int(removed)} marker(s); running workers keep their memory "
        "until restart or the cool-down ends"
    )
    return 0
