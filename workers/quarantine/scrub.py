"""Credentials never reach Redis: a dead message is redacted before it is recorded.

Events never carry a credential (docs/actors.md), but a dead letter is by definition a message
that broke the rules, and the quarantine keeps what it records for operators to read. So,
before a record is written:

* a JSON body is redacted structurally: the string value under a secret field name
  (``EVENTGUARD_QUARANTINE__SECRET_FIELDS``: ``token``, ``password``, ``api_key``, ``secret``,
  ``authorization``, ``cookie`` ...; a name matches a whole key or one word of it) is
  replaced, and inside every string JWTs, ``Bearer``/``Basic`` credentials, EventGuard API
  keys, URL passwords, PEM private keys and ``key=value`` secrets are;
* any other body (text or bytes) has the same patterns replaced in place;
* headers (``Authorization``, ``Cookie`` ...), AMQP properties and the error detail get the
  same treatment.

The stored body is then the redacted copy; the record keeps the SHA-256 and the length of the
original (``body_sha256``, ``body_size``) and says ``redacted: "1"``, so an operator can tell,
and match the original against a copy held elsewhere, without ever seeing the secret. A
redacted record is released as its redacted copy: the credential is gone for good.

Every pattern starts with a literal or a short alternation and bounds its repetitions, so a
multi-megabyte body is scanned in linear time.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
from collections.abc import Collection
from typing import Any

from common.security.redaction import REDACTED
from workers.quarantine.records import DeadMessage, encode_headers

__all__ = ["scrub", "scrub_body", "scrub_text"]

_MAX_JSON = 4 * 1024 * 1024  # larger bodies are redacted as text only
_MAX_DEPTH = 64  # deeper JSON is redacted as text only
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORDS = re.compile(r"[^a-z0-9]+")
_WORDS_RE = (  # the words that announce a ``key=value`` secret in free text
    r"(?:password|passwd|pwd|secret|token|api[_-]?key|authorization|credentials?|cookie|jwt)"
)
_KV_ANCHORS = (
    "pass", "pwd", "secret", "token", "apikey", "api_key", "api-key", "authorization",
    "credential", "cookie", "jwt",
)  # fmt: skip
# (pattern, replacement, anchors): a pattern runs only when one of its anchors (lower case) is
# in the text, which keeps the common case (no credential at all) a few substring searches.
_PATTERNS: tuple[tuple[re.Pattern[str], str, tuple[str, ...]], ...] = (
    (
        re.compile(
            r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----.{0,20000}?"
            r"(?:-----END [A-Z0-9 ]{0,40}PRIVATE KEY-----|\Z)",
            re.S,
        ),
        REDACTED,
        ("private key",),
    ),
    (
        re.compile(r"eyJ[A-Za-z0-9_-]{2,8192}\.[A-Za-z0-9_-]{2,8192}\.[A-Za-z0-9_-]{0,8192}"),
        REDACTED,
        ("eyj",),
    ),
    (
        re.compile(r"(?i)\b(bearer|basic)\s{1,16}[A-Za-z0-9._~+/=-]{6,8192}"),
        r"\1 " + REDACTED,
        ("bearer", "basic"),
    ),
    (re.compile(r"\b(egk_[0-9a-f]{1,32})_[A-Za-z0-9_-]{1,512}"), r"\1_" + REDACTED, ("egk_",)),
    (re.compile(r"(://[^:/?#@\s]{0,256}):[^@\s/]{1,1024}@"), r"\1:" + REDACTED + "@", ("://",)),
    (
        re.compile(
            r"(?i)(" + _WORDS_RE + r")([\"']?\s{0,16}[=:]\s{0,16})"
            r"(\"[^\"]{0,8192}\"|'[^']{0,8192}'|[^\s&,;\"'{}\[\]]{1,8192})"
        ),
        r"\1\2" + REDACTED,
        _KV_ANCHORS,
    ),
)


def scrub_text(text: str) -> str:
    """``text`` with every credential-looking substring replaced."""
    lowered = text.lower()
    for pattern, replacement, anchors in _PATTERNS:
        if any(anchor in lowered for anchor in anchors):
            text = pattern.sub(replacement, text)
    return text


def _secret_key(key: str, names: frozenset[str]) -> bool:
    lowered = _CAMEL.sub("_", key).lower()
    if lowered.replace("-", "_") in names:
        return True
    return any(word in names for word in _WORDS.split(lowered) if word)


def _harmless(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float)


def _value(value: Any, names: frozenset[str], depth: int) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("latin-1")
        cleaned = scrub_text(text)
        return value if cleaned == text else cleaned.encode("latin-1")
    if isinstance(value, dict):
        return {
            k: REDACTED
            if isinstance(k, str) and _secret_key(k, names) and not _harmless(v)
            else _value(v, names, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_value(v, names, depth + 1) for v in value)
    return value  # numbers, datetimes, decimals: no credential fits in them


def _depth(value: Any) -> int:
    depth, level = 0, [value]
    while level and depth <= _MAX_DEPTH:
        nested = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        level = [child for child in nested if isinstance(child, dict | list)]
        depth += 1
    return depth


def _text_of(dead: DeadMessage) -> bytes:
    """The headers (as their JSON), properties and detail as one text, for the first look. A
    header holding bytes is JSON'd as base64, which hides what it says: then the text is a
    marker that sends the message down the full walk."""
    headers_json = dead.headers_json or encode_headers(dead.headers)
    if '"$b64"' in headers_json:
        return b"token"  # anything the first look flags: look at every value
    props = json.dumps(dead.properties, default=str)
    return "\n".join((headers_json, props, dead.detail)).encode("utf-8", "replace")


def _names(secret_fields: Collection[str]) -> frozenset[str]:
    return frozenset(name.lower().replace("-", "_") for name in secret_fields)


@functools.lru_cache(maxsize=8)
def _needles(names: frozenset[str]) -> re.Pattern[bytes]:
    """One search for every pattern anchor and secret field name without ``_``/``-``."""
    words = {a.replace("_", "").replace("-", "") for _, _, anchors in _PATTERNS for a in anchors}
    words |= {name.replace("_", "") for name in names}
    return re.compile(b"|".join(re.escape(w.encode()) for w in sorted(words) if w))


def _may_hold_secret(body: bytes, names: frozenset[str]) -> bool:
    """False only when no pattern anchor and no secret field name occurs anywhere in ``body``,
    ignoring case, ``_`` and ``-``: a cheap first look that lets most dead letters through."""
    bare = body.lower().replace(b"_", b"").replace(b"-", b"")
    return _needles(names).search(bare) is not None


def scrub_body(body: bytes, secret_fields: Collection[str] = ()) -> bytes:
    """``body`` with credentials replaced (the same bytes when there were none)."""
    return _scrub_body(body, _names(secret_fields))


def _scrub_body(body: bytes, names: frozenset[str]) -> bytes:
    if not _may_hold_secret(body, names):
        return body
    if body[:1] in {b"{", b"["} and len(body) <= _MAX_JSON:
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            parsed = None
        if parsed is not None and _depth(parsed) <= _MAX_DEPTH:
            cleaned = _value(parsed, names, 0)
            if cleaned == parsed:
                return body
            return json.dumps(cleaned, separators=(",", ":"), ensure_ascii=False).encode()
    # Not JSON: the patterns are ASCII, and latin-1 maps every byte to one character and back.
    scrubbed: bytes = _value(body, names, 0)
    return scrubbed


def scrub(dead: DeadMessage, secret_fields: Collection[str] = ()) -> DeadMessage:
    """``dead`` with its body, headers, properties and detail redacted, and the original body's
    digest and size kept."""
    names = _names(secret_fields)
    body = _scrub_body(dead.body, names)
    headers, properties, detail = dead.headers, dead.properties, dead.detail
    if _may_hold_secret(_text_of(dead), names):
        headers = _value(headers, names, 0)
        properties = _value(properties, names, 0)
        detail = scrub_text(detail)
    changed = (body, headers, properties, detail) != (
        dead.body,
        dead.headers,
        dead.properties,
        dead.detail,
    )
    return dataclasses.replace(
        dead,
        body=body,
        headers=headers,
        headers_json=encode_headers(headers) if headers != dead.headers else dead.headers_json,
        properties=properties,
        detail=detail,
        original_sha256=hashlib.sha256(dead.body).hexdigest(),
        original_size=len(dead.body),
        redacted=changed,
    )
