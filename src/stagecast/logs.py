"""Logging set-up: plain text for people, JSON lines for log collectors.

Every line is redacted on its way out: the value of any query parameter that can carry a
secret (``token``, ``key``, ``secret``, ``password``, ``sig`` … and any name containing one of
them) becomes ``***``. That covers uvicorn's access log and its WebSocket lines, which print
the request path with its query string (playback tokens, VOD link keys).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from urllib.parse import unquote

REDACTED = "***"
# A query string: from "?" to whitespace, a quote or an angle bracket.
_QUERY = re.compile(r"\?[^\s\"'<>]+")
_PARAM = re.compile(r"([^&;=#]+)=([^&;#]*)")
_SECRET_WORDS = ("token", "key", "secret", "pass", "sig", "auth", "credential", "invite")


def _is_secret(name: str) -> bool:
    name = unquote(name).lower()
    return any(word in name for word in _SECRET_WORDS)


def _redact_query(match: re.Match[str]) -> str:
    return _PARAM.sub(
        lambda p: f"{p.group(1)}={REDACTED}" if _is_secret(p.group(1)) else p.group(0),
        match.group(0),
    )


def redact(text: str) -> str:
    """Return ``text`` with the value of every secret query parameter replaced by ``***``."""
    return _QUERY.sub(_redact_query, text) if "?" in text else text


class TextFormatter(logging.Formatter):
    """``time level logger: message``, redacted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception), redacted."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_info:
            data["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(data)


def configure(level: str, fmt: str) -> None:
    """Send logs to stderr at ``level`` in ``fmt`` ("text" or "json"), every line redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Migrations log every step at INFO; only problems are worth a line at start-up.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
