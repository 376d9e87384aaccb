"""Logging set-up: Dask's and our loggers as text or JSON lines on stderr, also in Dask worker processes.

Kept free of heavy imports: Dask workers import it while configuring logging.
Every record passes through :func:`pipeline.secrets.scrub` in this process.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import sys

LOGGERS = ("distributed", "dask", "py.warnings", "pipeline")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``{"event": "log", "level", "logger", "message"}``."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:  # formatted (and scrubbed) already by a filter
            message += "\n" + record.exc_text
        return json.dumps(
            {"event": "log", "level": record.levelname, "logger": record.name, "message": _scrub(message)}
        )


class TextFormatter(logging.Formatter):
    """``LEVEL logger: message``, secrets scrubbed."""

    def format(self, record: logging.LogRecord) -> str:
        return _scrub(super().format(record))


class _ScrubFilter(logging.Filter):
    """Scrubs a record's message and traceback before any formatter sees it (for handlers not set up here)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = _scrub(record.getMessage()), ()
        if record.exc_info:
            record.exc_text = _scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def scrub_handlers() -> None:
    """Add the scrubbing filter to every handler of the root logger and of Dask's and our loggers (once)."""
    for name in ("", *LOGGERS):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, _ScrubFilter) for f in handler.filters):
                handler.addFilter(_ScrubFilter())


def _scrub(text: str) -> str:
    from pipeline.secrets import scrub  # light, but only needed once a record is written

    return scrub(text)


def dask_logging_config(level: str = "WARNING") -> dict:
    """A ``logging`` dict-config for Dask that writes JSON lines to stderr."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "loggers": {name: {"handlers": ["stderr"], "level": level, "propagate": False} for name in LOGGERS},
    }


def configure(log_format: str) -> None:
    """Route Dask's log records and Python warnings to stderr as text lines or JSON objects.

    With JSON, LocalCluster workers started from this process log JSON too
    (Dask reads its logging config from ``DASK_LOGGING`` when a worker imports it).
    """
    logging.captureWarnings(True)
    if log_format == "json":
        os.environ["DASK_LOGGING"] = repr(dask_logging_config())
        logging.config.dictConfig(dask_logging_config())
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter("%(levelname)s %(name)s: %(message)s"))
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)
