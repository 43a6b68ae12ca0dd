"""Kept for ``common.logging``'s import: the processor lives in ``common.security.redaction``."""

from __future__ import annotations

from common.security.redaction import redact_secrets

__all__ = ["redact_secrets"]
