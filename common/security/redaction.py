"""A structlog processor that removes secrets from log events, wherever they are.

Two rules, applied recursively through dicts, lists, tuples and sets (keys and values):

* a value under a secret-looking key (``password``, ``secret``, ``token``, ``authorization``,
  ``api_key``, ``cookie``, ``private_key``...) is replaced, unless it is a number, a bool or
  None: ``max_tokens=512`` is a count, not a secret;
* inside every string (the event message, values, dict keys, a formatted traceback): JWTs,
  ``Bearer``/``Basic`` credentials, EventGuard API keys, URL passwords
  (``amqp://user:[REDACTED]@host``), ``password=...``-style pairs and PEM private keys are
  replaced.

The processor never raises and never mutates the caller's nested objects. Place it after
``format_exc_info`` so tracebacks are cleaned too. Objects it does not know (pydantic models,
dataclasses) pass unchanged: log their fields, not the object.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

__all__ = ["REDACTED", "redact", "redact_secrets", "redact_text"]

REDACTED = "[REDACTED]"
_MAX_DEPTH = 12

# Whole words of a key that mark its value secret ("access_token", "X-API-Key", "dbPassword").
_SECRET_WORDS = frozenset(
    {
        "auth",
        "authorization",
        "apikey",
        "bearer",
        "cookie",
        "cookies",
        "credential",
        "credentials",
        "dsn",
        "jwt",
        "pass",
        "passphrase",
        "passwd",
        "password",
        "pwd",
        "secret",
        "secrets",
        "token",
    }
)
# Substrings that mark a key secret whatever surrounds them.
_SECRET_PARTS = ("password", "passwd", "secret", "apikey", "privatekey", "signingkey")
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM private keys, whole blocks (or to the end when truncated).
    (
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
            re.S,
        ),
        REDACTED,
    ),
    # JWTs (JWS compact form; the signature may be empty for alg "none").
    (re.compile(r"eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*"), REDACTED),
    # A token offered as a WebSocket subprotocol, JWT-shaped or not.
    (re.compile(r"(eventguard\.bearer\.)[^\s,'\"\]\)]+"), r"\1" + REDACTED),
    # HTTP credentials: "Bearer abc", "Basic dXNlcjpwYXNz".
    (re.compile(r"\b([Bb]earer|BEARER|Basic)\s+[A-Za-z0-9._~+/=-]{6,}"), r"\1 " + REDACTED),
    # EventGuard API keys: the id is a label and may stay, the secret may not.
    (re.compile(r"\b(egk_[0-9a-f]{1,32})_[A-Za-z0-9_-]+"), r"\1_" + REDACTED),
    # URL user info: the password between ':' and '@' after the scheme (the user may be empty).
    (re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@\s]*):[^@\s]*@"), r"\1:" + REDACTED + "@"),
    # key=value or key: value pairs in free text and query strings.
    (
        re.compile(
            r"(?i)\b((?:[a-z0-9]+[_-])*(?:password|passwd|pwd|secret|token|api[_-]?key|"
            r"authorization|credentials?|cookie))([\"']?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s&,;\"']+)"
        ),
        r"\1\2" + REDACTED,
    ),
)


def _secret_key(key: str) -> bool:
    lowered = _CAMEL.sub("_", key).lower()
    if any(part in lowered.replace("_", "").replace("-", "") for part in _SECRET_PARTS):
        return True
    return any(word in _SECRET_WORDS for word in _WORD_SPLIT.split(lowered))


def redact_text(text: str) -> str:
    """``text`` with every secret-looking substring replaced."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _harmless(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float)


def _value(value: Any, depth: int, seen: frozenset[int]) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("utf-8", "replace")
        cleaned = redact_text(text)
        return value if cleaned == text else cleaned
    if _harmless(value):
        return value
    if depth >= _MAX_DEPTH or id(value) in seen:
        return "[TRUNCATED]"
    inner = seen | {id(value)}
    if isinstance(value, Mapping):
        return _mapping(value, depth + 1, inner)
    if isinstance(value, list | tuple | set | frozenset):
        items = [_value(item, depth + 1, inner) for item in value]
        if isinstance(value, tuple):
            return tuple(items)
        return items if isinstance(value, list) else _set_of(items, value)
    return value


def _set_of(items: list[Any], original: set[Any] | frozenset[Any]) -> Any:
    try:
        return type(original)(items)
    except TypeError:  # an unhashable redacted item: a list says the same in a log
        return items


def _entry(key: Any, value: Any, depth: int, seen: frozenset[int]) -> tuple[Any, Any]:
    if isinstance(key, str):
        if _secret_key(key) and not _harmless(value):
            return redact_text(key), REDACTED
        return redact_text(key), _value(value, depth, seen)
    return key, _value(value, depth, seen)


def _mapping(value: Mapping[Any, Any], depth: int, seen: frozenset[int]) -> dict[Any, Any]:
    return dict(_entry(k, v, depth, seen) for k, v in value.items())


def redact(value: Any) -> Any:
    """A copy of ``value`` with secrets replaced (strings, mappings, sequences, sets)."""
    return _value(value, 0, frozenset())


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: replace secrets in the event dict's keys and values."""
    for key in list(event_dict):
        value = event_dict.pop(key)
        if key == "exc_info":  # format_exc_info needs the real exception; its text is cleaned
            event_dict[key] = value
            continue
        new_key, new_value = _entry(key, value, 0, frozenset())
        event_dict[new_key] = new_value
    return event_dict
