"""Logging: structlog events (JSON lines, console on a TTY) with secrets redacted.

The stdlib loggers of apscheduler, httpx, uvicorn and sqlalchemy go through the
same processors, so one redactor sees every line syncd writes.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Any

import structlog

_URL_PASSWORD = re.compile(r"(?P<pre>[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+(?=@)", re.I)
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
_SECRET_KEYS = ("secret", "password", "token", "authorization", "signature", "passwd")


class Redactor:
    """A structlog processor hiding known secrets, URL passwords and bearer tokens."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for s in self.secrets:
            if s in text:
                text = text.replace(s, "***")
        text = _URL_PASSWORD.sub(r"\g<pre>***", text)
        return _BEARER.sub(r"\1***", text)

    def __call__(self, _logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
        for key, value in list(event.items()):
            if any(w in key.lower() for w in _SECRET_KEYS) and value:
                event[key] = "***"
            elif isinstance(value, str):
                event[key] = self.scrub(value)
            elif value is not None and not isinstance(value, int | float | bool):
                event[key] = self.scrub(str(value))
        return event


def configure(*, secrets: Iterable[str] = (), level: str = "INFO", json: bool | None = None,
              stream: Any = None) -> Redactor:
    """Set up structlog and route the stdlib loggers through it; returns the redactor."""
    stream = stream or sys.stderr
    redactor = Redactor(secrets)
    use_json = not stream.isatty() if json is None else json
    renderer: Any = (structlog.processors.JSONRenderer(ensure_ascii=False) if use_json
                     else structlog.dev.ConsoleRenderer(colors=False))
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redactor,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared], processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "sqlalchemy", "apscheduler", "uvicorn.access",
                  "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return redactor
