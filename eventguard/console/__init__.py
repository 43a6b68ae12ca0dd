"""The operators' web console (``eventguard console``; see docs/console.md).

Server-rendered pages (Jinja2, htmx vendored under ``static/``) over the state the workers keep
in Redis and the events they publish; it acts only by publishing events.
"""

from __future__ import annotations

from eventguard.console.app import ROUTES, build_app
from eventguard.console.auth import COOKIE, ConsoleAuth, Viewer
from eventguard.console.server import Serving, console_serving, serve_console
from eventguard.console.state import Console

__all__ = [
    "COOKIE",
    "ROUTES",
    "Console",
    "ConsoleAuth",
    "Serving",
    "Viewer",
    "build_app",
    "console_serving",
    "serve_console",
]
