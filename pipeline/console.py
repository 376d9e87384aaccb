"""Rendering the jobs' events on stderr, as text lines or JSON objects (logging is set up in :mod:`jsonlog`)."""

from __future__ import annotations

import json
import math
import sys
import traceback
from typing import Any

import click

from pipeline.secrets import scrub


def strict_json(value) -> str:
    """JSON text without Infinity or NaN, which strict parsers refuse: such numbers become null (the first
    iteration's change from -inf, a model's bound before any iteration), at any depth."""
    return json.dumps(_finite_or_none(value), default=str, allow_nan=False)


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    return value


def _iteration(event: dict[str, Any]) -> str:
    candidate = f"[{event['candidate']}] " if "candidate" in event else ""
    return (
        f"iteration {event['iteration']}: {candidate}lower_bound={event['lower_bound']:.6f} "
        f"change={event['change']:.3g} seconds={event['seconds']:.3f}"
        + (f" dtype={event['dtype']}" if "dtype" in event else "")
    )


def _data(event: dict[str, Any]) -> str:
    why = {"drop": "with NaN/inf", "marginalize": "with every value missing"}.get(event.get("nan_policy"), "")
    dropped = f", dropped {event['dropped_rows']} rows {why}".rstrip() if event["dropped_rows"] else ""
    missing = (
        f", {event['missing_values']} missing values in {event['incomplete_rows']} rows (marginalized)"
        if event.get("missing_values")
        else ""
    )
    where = "held in cluster memory" if event["persisted"] else "re-read every iteration"
    columns = f"; columns: {', '.join(event['columns'])}" if event.get("columns") else ""
    return (
        f"data {event['path']}: {event['n_rows']} rows x {event['n_features']} features "
        f"in {event['n_partitions']} partitions ({where}){dropped}{missing}{columns}"
    )


def _done(event: dict[str, Any]) -> str:
    state = "converged" if event["converged"] else "did NOT converge"
    bic = f" bic={event['bic']:.6g}" if event.get("bic") is not None else ""
    where = f"re-chosen from the table at {event['rechosen_from']}, no refit; " if event.get("rechosen_from") else ""
    return (
        f"{state} after {event['n_iter']} iterations: lower_bound={event['lower_bound']:.6f}{bic}; "
        f"{where}model written to {event['model']} ({event['seconds']:.1f} s)"
    )


_TEXT = {
    "iteration": _iteration,
    "data": _data,
    "done": _done,
    "start": lambda e: (
        f"scheduler {e['scheduler']} with {e['n_workers']} workers; dashboard: {e['dashboard'] or 'off'}"
    ),
    "resume": lambda e: f"resuming from iteration {e['iteration']} ({e['checkpoint']})",
    "restart": lambda e: f"starting over: {e['reason']} ({e['checkpoint']})",
    "scored": lambda e: f"scored {e['rows']} rows of {e['files']} files into {e['output']}",
    "skipped": lambda e: f"nothing to do: {e['reason']} at {e['model']} (use --force to refit)",
    "warning": lambda e: f"warning: {e['message']}",
}


class Console:
    """Writes events and errors to stderr, as text lines or JSON objects, secrets scrubbed."""

    def __init__(self, log_format: str = "text"):
        self.json = log_format == "json"

    def _write(self, line: str) -> None:
        click.echo(scrub(line), err=True)

    def __call__(self, event: dict[str, Any]) -> None:
        if self.json:
            self._write(strict_json(event))
        else:
            render = _TEXT.get(event["event"])
            self._write(render(event) if render else json.dumps(event, default=str))

    def error(self, message: str, exc: BaseException | None = None) -> None:
        """One ``error:`` line (or an ``error`` record); the traceback of ``exc`` too, for a bug."""
        message = " ".join(message.split()) if "\n" in message else message
        if self.json:
            record = {"event": "error", "message": message}
            if exc is not None:
                record["traceback"] = traceback.format_exception(exc)
            self._write(json.dumps(record))
            return
        if exc is not None:
            self._write("".join(traceback.format_exception(exc)).rstrip())
        self._write(f"error: {message}")


def echo(line: str = "") -> None:
    """A line of a command's result on stdout."""
    click.echo(scrub(line), file=sys.stdout)
