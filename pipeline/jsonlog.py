"""Logging set-up: Dask's and our loggers as text or JSON lines on stderr, also in Dask worker processes.

Kept free of heavy imports (Dask workers import it while configuring logging; the
``gmm`` command sets up its logging before it knows whether it needs Dask).
Every record passes through :func:`pipeline.secrets.scrub` in this process, and
is one line: an exception it carries is summarised as ``(Type: message)``, not a
traceback (Dask logs its own recoverable failures, such as a heartbeat that
meets a closing scheduler, with tracebacks that tell a user nothing).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

# Every record of WARNING or above is printed, through the root logger's one handler (Dask sets its own loggers to
# INFO); tornado and bokeh (under Dask's servers) as quiet as Dask itself sets them.
LEVELS = {
    "": "WARNING",
    "distributed": "WARNING",
    "dask": "WARNING",
    "tornado": "CRITICAL",
    "tornado.application": "ERROR",
    "bokeh": "ERROR",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``{"event": "log", "level", "logger", "message"}``."""

    def format(self, record: logging.LogRecord) -> str:
        message = _scrub(_one_line(record))
        return json.dumps({"event": "log", "level": record.levelname, "logger": record.name, "message": message})


class TextFormatter(logging.Formatter):
    """``LEVEL logger: message``, secrets scrubbed."""

    def format(self, record: logging.LogRecord) -> str:
        _one_line(record)
        return _scrub(super().format(record))


class _ScrubFilter(logging.Filter):
    """Makes a record one line and scrubs it before any formatter sees it (for handlers not set up here)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = _scrub(_one_line(record)), ()
        return True


def _one_line(record: logging.LogRecord) -> str:
    """The record's message on one line, its exception (if any) summarised after it; the record then carries no
    traceback."""
    message = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        message = f"{message} ({type(exc).__name__}: {exc})"
    message = " ".join(line.strip() for line in message.splitlines() if line.strip())
    record.msg, record.args, record.exc_info, record.exc_text, record.stack_info = message, (), None, None, None
    return message


def scrub_handlers() -> None:
    """Add the scrubbing filter to every handler of every logger there is (once each)."""
    for logger in _every_logger():
        for handler in logger.handlers:
            if not any(isinstance(f, _ScrubFilter) for f in handler.filters):
                handler.addFilter(_ScrubFilter())


def _every_logger() -> list[logging.Logger]:
    known = logging.root.manager.loggerDict.values()
    return [logging.getLogger(), *(logger for logger in known if isinstance(logger, logging.Logger))]


def _scrub(text: str) -> str:
    from pipeline.secrets import scrub  # light, but only needed once a record is written

    return scrub(text)


def route_warnings() -> None:
    """Print Python warnings (NumPy's RuntimeWarnings among them) as log records of ``py.warnings``, one line each
    through the root handler, instead of the raw two lines Python writes to stderr; in a worker process too, where
    the LocalCluster's plugin calls it (Dask's logging config cannot)."""
    logging.captureWarnings(True)


TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"


def dask_logging_config(log_format: str) -> dict[str, Any]:
    """A ``logging`` dict-config for Dask's worker processes: the same one handler, on the root, as here."""
    formatter = (
        {"()": f"{__name__}.JsonFormatter"}
        if log_format == "json"
        else {"()": f"{__name__}.TextFormatter", "fmt": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"line": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "line", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": LEVELS[""]},
        "loggers": {name: {"level": level} for name, level in LEVELS.items() if name},
    }


def configure(log_format: str) -> None:
    """Route every log record (Dask's, asyncio's, fsspec's, ours) and Python warnings to stderr as text lines or
    JSON objects, one line a record.

    The one handler is the root logger's: loggers Dask gave handlers of their
    own (``distributed.client``, ``tornado.application``, ...) hand their
    records up to it instead.  Dask reads its logging config from
    ``DASK_LOGGING`` when it is imported: LocalCluster workers started from
    this process log the same way, and so does this process if it imports Dask
    only later (``gmm`` does, for a command that gets as far as its job).

    Parameters
    ----------
    log_format : {"text", "json"}
        ``LEVEL logger: message`` lines, or one JSON object a record.
    """
    if "dask" in sys.modules:  # Dask read its config without ours: its loggers are set up when distributed is
        import distributed  # noqa: F401 - imported, and this set-up has to come after

    route_warnings()
    os.environ["DASK_LOGGING"] = repr(dask_logging_config(log_format))
    formatter = JsonFormatter() if log_format == "json" else TextFormatter(TEXT_FORMAT)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root, *others = _every_logger()
    for logger in others:
        logger.handlers, logger.propagate = [], True
    root.handlers = [handler]
    for name, level in LEVELS.items():
        logging.getLogger(name).setLevel(level)
