"""JSON lines for log records, also in Dask worker processes (``--log-format json``).

Kept free of heavy imports: Dask workers import it while configuring logging.
"""

from __future__ import annotations

import json
import logging
import os

LOGGERS = ("distributed", "dask", "py.warnings", "pipeline")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``{"event": "log", "level", "logger", "message"}``."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        return json.dumps({"event": "log", "level": record.levelname, "logger": record.name, "message": message})


def dask_logging_config(level: str = "WARNING") -> dict:
    """A ``logging`` dict-config for Dask that writes JSON lines to stderr."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "loggers": {name: {"handlers": ["stderr"], "level": level, "propagate": False} for name in LOGGERS},
    }


def export_to_workers() -> None:
    """Make Dask processes started from here (LocalCluster workers) log JSON too.

    Dask reads its config from ``DASK_*`` variables when a worker imports it.
    """
    os.environ["DASK_LOGGING"] = repr(dask_logging_config())
