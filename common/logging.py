"""structlog, configured once at start-up (never at import).

JSON lines when stderr is not a terminal (containers) or ``EVENTGUARD_LOG_FORMAT=json``, a
console renderer on a TTY. Every line, structlog's and the standard library's loggers' alike
(aiohttp, asyncio), carries the context bound with :func:`bind_message` (event_id,
correlation_id, worker, type) through contextvars, and passes a redaction processor last, so
tokens, keys and passwords never reach a log.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor

from common.security.redaction import redact_secrets
from common.tracing import add_trace_ids

__all__ = ["bind_message", "configure_logging", "get_logger", "merge_message"]

# The identity of the message being handled: one context variable for all its fields, so
# binding a message costs one set and one reset.
_message: ContextVar[dict[str, Any] | None] = ContextVar("eventguard_message", default=None)


def configure_logging(
    *, level: str = "INFO", fmt: str = "auto", stream: TextIO | None = None, instance: str = ""
) -> None:
    """Configure structlog and the standard library's root logger (call once, from the CLI);
    every line carries ``instance`` (the replica's name) when given.

    Records of standard-library loggers (aiohttp, asyncio, aiormq, warnings) go through the same
    processors as structlog's own: the same context, the same renderer (a JSON line in
    containers) and the redaction processor last before rendering, so a token that aiohttp
    quotes in a warning or a traceback is removed like any other.
    """
    stream = stream if stream is not None else sys.stderr
    as_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        merge_message,
        add_trace_ids,  # trace_id and span_id while a span is current (tracing on)
        *([_add_instance(instance)] if instance else []),
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    processors: list[Processor] = [
        *shared,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact_secrets,  # last before rendering: tracebacks are text by now and get redacted too
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.StackInfoRenderer(),
                structlog.processors.format_exc_info,
                redact_secrets,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)
    for noisy in ("aiormq", "aio_pika", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _add_instance(instance: str) -> Processor:
    def add(_logger: Any, _method: str, event: Any) -> Any:
        event.setdefault("instance", instance)
        return event

    return add


def get_logger(name: str | None = None, **initial: Any) -> Any:
    """A structlog logger (bound to ``initial``)."""
    return structlog.get_logger(name, **initial)


class bind_message:  # noqa: N801 - used as a function: ``with bind_message(...):``
    """Bind one message's identity to every log line written while handling it."""

    __slots__ = ("_fields", "_token")

    def __init__(
        self,
        *,
        worker: str,
        event_id: str | None,
        correlation_id: str | None,
        event_type: str | None,
    ) -> None:
        self._fields = {
            "worker": worker,
            "event_id": event_id,
            "correlation_id": correlation_id,
            "event_type": event_type,
        }
        self._token: Token[dict[str, Any] | None] | None = None

    def __enter__(self) -> None:
        self._token = _message.set(self._fields)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _message.reset(self._token)


def merge_message(_logger: Any, _method: str, event: EventDict) -> EventDict:
    """A processor: the fields :func:`bind_message` bound, under the line's own."""
    fields = _message.get()
    if fields:
        for key, value in fields.items():
            event.setdefault(key, value)
    return event
