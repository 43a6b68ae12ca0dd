"""A structlog processor that removes secrets from log events."""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

__all__ = ["redact_secrets"]

_SECRET_KEYS = re.compile(r"(pass|secret|token|authorization|api[_-]?key|cookie)", re.I)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_URL_PASSWORD = re.compile(r"(\w+://[^:/@\s]+:)[^@\s]+@")
_REDACTED = "[REDACTED]"


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return _URL_PASSWORD.sub(r"\1" + _REDACTED + "@", _JWT.sub(_REDACTED, value))
    if isinstance(value, dict):
        return {
            k: _REDACTED if _SECRET_KEYS.search(str(k)) else _clean(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def redact_secrets(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """Replace secret-looking keys' values and secret-looking substrings with a marker."""
    for key in list(event_dict):
        value = event_dict[key]
        event_dict[key] = _REDACTED if _SECRET_KEYS.search(key) else _clean(value)
    return event_dict
