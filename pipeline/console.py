"""Rendering on stderr and stdout: the jobs' events and error lines, as text lines or JSON objects (logging is set
up in :mod:`jsonlog`), and the text of ``gmm inspect``."""

from __future__ import annotations

import json
import math
import sys
import traceback
from typing import Any

import click

from pipeline.choices import covariance_in_words
from pipeline.secrets import scrub


def strict_json(value: Any) -> str:
    """JSON text without Infinity or NaN, which strict parsers refuse: such numbers become null (the first
    iteration's change from -inf, a model's bound before any iteration), at any depth."""
    return json.dumps(_finite_or_none(value), default=str, allow_nan=False)


def _finite_or_none(value: Any) -> Any:
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
        + (f" extrapolation={event['extrapolation']}" if "extrapolation" in event else "")
    )


def _data(event: dict[str, Any]) -> str:
    why = {"drop": "with NaN/inf", "marginalize": "with every value missing"}.get(str(event.get("nan_policy")), "")
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
            record: dict[str, Any] = {"event": "error", "message": message}
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


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The lines ``gmm inspect`` prints for a model's summary.

    Parameters
    ----------
    summary : dict
        The model's summary, as :func:`pipeline.job.inspect` returns it: ``weights`` (n_components,), ``means``
        (n_components, n_features), ``feature_names`` (n_features,), ``path``, ``covariance_type``,
        ``algorithm``; the others (iterations, history, criteria, prior, effective components, missing values,
        collapsed components, parameters, data fingerprint) are shown when present.

    Returns
    -------
    list of str
        A headline, then indented details; the table of weights and means shows the first 6 features.
    """
    lines = [
        f"model {summary['path']}: {summary['n_components']} components x {summary['n_features']} features, "
        f"covariance {covariance_in_words(summary['covariance_type'])}"
        + (", variational" if summary["algorithm"] == "variational" else "")
    ]
    if summary.get("n_iter") is not None and summary.get("converged") is not None:
        state = "converged" if summary["converged"] else "not converged"
        lines.append(f"  {state} after {summary['n_iter']} iterations, lower bound {summary['lower_bound']:.6f}")
    history = summary.get("history") or []
    if history:
        shown = ", ".join(f"{h:.6f}" for h in history[-5:])
        lines.append(f"  history ({len(history)} iterations): {'..., ' if len(history) > 5 else ''}{shown}")
    if summary.get("bic") is not None:
        icl = f"  ICL {summary['icl']:.6g}" if summary.get("icl") is not None else ""
        lines.append(f"  BIC {summary['bic']:.6g}  AIC {summary['aic']:.6g}{icl}  on {summary['n_samples']} rows")
    if summary.get("prior"):
        prior = summary["prior"]
        lines.append(
            f"  prior: shrinkage {prior['shrinkage']:g}, dof {prior['dof']:g} (mclust's conjugate prior; "
            "--json for its mean and scale)"
        )
    if summary.get("effective_components") is not None:
        lines.append(
            f"  effective components: {summary['effective_components']} (weight above "
            f"{summary['effective_threshold']:g})"
        )
    if summary.get("missing"):
        m = summary["missing"]
        lines.append(
            f"  nan_policy {m['nan_policy']}: {m['n_missing_values']} missing values in {m['n_incomplete_rows']} "
            f"rows used, {m['n_dropped_rows']} rows dropped"
        )
    if summary.get("collapsed_components"):
        lines.append(f"  collapsed components (held up by reg_covar alone): {summary['collapsed_components']}")
    if summary.get("parameters"):
        lines.append(f"  fitted with {_parameters_text(summary['parameters'])}")
    names = summary["feature_names"]
    lines.append("  component  weight    mean[" + ", ".join(names[:6]) + (", ..." if len(names) > 6 else "") + "]")
    for k, (w, mean) in enumerate(zip(summary["weights"], summary["means"])):
        values = ", ".join(f"{v:.4g}" for v in mean[:6])
        lines.append(f"  {k:>9}  {w:.4f}    [{values}{', ...' if len(mean) > 6 else ''}]")
    if summary.get("data_fingerprint"):
        lines.append(f"  data fingerprint {summary['data_fingerprint'][:16]}")
    return lines


def _parameters_text(parameters: dict[str, Any]) -> str:
    """The estimator's parameters on one line: numbers and names as they are, arrays by their shape."""

    def shape(value: Any) -> list[int]:
        return [len(value), *shape(value[0])] if isinstance(value, list) and value else []

    def text(value: Any) -> str:
        if isinstance(value, list):
            return f"<array {'x'.join(map(str, shape(value)))}>" if value else "[]"
        if isinstance(value, dict):
            return "{" + ", ".join(f"{key}: {text(item)}" for key, item in value.items()) + "}"
        return f"{value:g}" if isinstance(value, float) else str(value)

    return ", ".join(f"{name}={text(value)}" for name, value in parameters.items())
