"""The ``gmm`` command: thin click commands over :mod:`pipeline.job`.

Exit codes: 0 done (or already done), 2 bad usage/config/data (one ``error:``
line), 3 not converged with ``--require-convergence``, 1 anything else.
"""

from __future__ import annotations

import json
import logging
import logging.config
import math
import sys
import traceback
from typing import Any

import click

from pipeline import job, jsonlog, synthetic
from pipeline.config import load_config
from pipeline.errors import InputError

EXIT_INPUT = 2
EXIT_NOT_CONVERGED = 3


class Output:
    """Writes events and log records to stderr, as text lines or JSON objects."""

    def __init__(self, log_format: str = "text"):
        self.json = log_format == "json"
        logging.captureWarnings(True)
        if self.json:
            jsonlog.export_to_workers()
            logging.config.dictConfig(jsonlog.dask_logging_config())
            return
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        for name in jsonlog.LOGGERS:
            logger = logging.getLogger(name)
            logger.handlers = [handler]
            logger.propagate = False
            if logger.level == logging.NOTSET:
                logger.setLevel(logging.WARNING)

    def __call__(self, event: dict[str, Any]) -> None:
        if self.json:
            line = json.dumps({k: _finite_or_none(v) for k, v in event.items()}, default=str)
        else:
            line = _text(event)
        if line:
            click.echo(line, err=True)

    def error(self, message: str, exc: BaseException | None = None) -> None:
        if self.json:
            record = {"event": "error", "message": message}
            if exc is not None:
                record["traceback"] = traceback.format_exception(exc)
            click.echo(json.dumps(record), err=True)
        else:
            if exc is not None:
                traceback.print_exception(exc, file=sys.stderr)
            click.echo(f"error: {message}", err=True)


def _finite_or_none(value):
    """Strict JSON has no Infinity/NaN: the first iteration's change (from -inf) becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _text(event: dict[str, Any]) -> str:
    kind = event["event"]
    if kind == "iteration":
        return (f"iteration {event['iteration']}: lower_bound={event['lower_bound']:.6f} "
                f"change={event['change']:.3g} seconds={event['seconds']:.3f}"
                + (f" dtype={event['dtype']}" if "dtype" in event else ""))
    if kind == "start":
        return f"scheduler {event['scheduler']} with {event['n_workers']} workers; dashboard: {event['dashboard']}"
    if kind == "data":
        dropped = f", dropped {event['dropped_rows']} rows with NaN/inf" if event["dropped_rows"] else ""
        where = "held in cluster memory" if event["persisted"] else "re-read every iteration"
        return (f"data {event['path']}: {event['n_rows']} rows x {event['n_features']} features "
                f"in {event['n_partitions']} partitions ({where}){dropped}")
    if kind == "done":
        state = "converged" if event["converged"] else "did NOT converge"
        return (f"{state} after {event['n_iter']} iterations: lower_bound={event['lower_bound']:.6f} "
                f"bic={event['bic']:.6g}; model written to {event['model']} ({event['seconds']:.1f} s)")
    if kind == "resume":
        return f"resuming from iteration {event['iteration']} ({event['checkpoint']})"
    if kind == "restart":
        return f"starting over: {event['reason']} ({event['checkpoint']})"
    if kind == "scored":
        return f"scored {event['rows']} rows of {event['files']} files into {event['output']}"
    if kind == "skipped":
        return f"nothing to do: {event['reason']} at {event['model']} (use --force to refit)"
    return json.dumps(event, default=str)


def _run(output: Output, fn, *args, **kwargs):
    """Call a job function; map user mistakes to exit 2 and anything else to exit 1."""
    try:
        return fn(*args, **kwargs)
    except InputError as exc:
        output.error(str(exc))
        sys.exit(EXIT_INPUT)
    except Exception as exc:  # noqa: BLE001 - the top level reports every failure
        output.error(f"{type(exc).__name__}: {exc}", exc)
        sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Distributed Gaussian-mixture EM on partitioned Parquet with Dask."""


@main.command()
@click.argument("config_path", metavar="CONFIG")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key (dotted path).")
@click.option("--scheduler", default=None, metavar="ADDRESS", help="Address of a running Dask scheduler.")
@click.option("--force", is_flag=True, help="Refit even if the output already holds this fit.")
@click.option("--require-convergence", is_flag=True, help="Exit 3 if EM stops at max_iter without converging.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
def fit(config_path, overrides, scheduler, force, require_convergence, log_format):
    """Fit a Gaussian mixture and write the model directory."""
    output = Output(log_format)
    config = _run(output, load_config, config_path, overrides)
    outcome = _run(output, job.fit, config, scheduler=scheduler, force=force, emit=output)
    if require_convergence and not outcome.converged:
        output.error(f"EM did not converge in {outcome.n_iter} iterations (model written to {outcome.path})")
        sys.exit(EXIT_NOT_CONVERGED)


def _parse_ks(text: str) -> list[int]:
    """``2..12`` (a range), ``2,4,8`` (a list) or ``5``."""
    try:
        if ".." in text:
            low, high = (int(v) for v in text.split(".."))
            ks = list(range(low, high + 1))
        else:
            ks = [int(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"--k {text!r}: expected a range like 2..12 or a list like 2,4,8") from None
    if not ks or min(ks) < 1:
        raise InputError(f"--k {text!r}: needs at least one K, each >= 1")
    return sorted(set(ks))


def _parse_types(text: str) -> list[str]:
    from pipeline.kernels import COVARIANCE_TYPES

    types = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in types if t not in COVARIANCE_TYPES]
    if unknown or not types:
        raise InputError(f"--covariance-types: {unknown[0] if unknown else text!r} is not one of "
                         f"{', '.join(COVARIANCE_TYPES)}")
    return types


@main.command()
@click.argument("config_path", metavar="CONFIG")
@click.option("--k", "k_text", required=True, metavar="2..12", help="Candidate numbers of components.")
@click.option("--criterion", type=click.Choice(["bic", "aic"]), default="bic", show_default=True)
@click.option("--covariance-types", default=None, metavar="full,diag,...",
              help="Candidate covariance types (default: model.covariance_type of the config).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key (dotted path).")
@click.option("--scheduler", default=None, metavar="ADDRESS", help="Address of a running Dask scheduler.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
def select(config_path, k_text, criterion, covariance_types, overrides, scheduler, log_format):
    """Fit every candidate in shared passes, print the BIC/AIC table, write the best model."""
    output = Output(log_format)
    config = _run(output, load_config, config_path, overrides)
    ks = _run(output, _parse_ks, k_text)
    types = _run(output, _parse_types, covariance_types or config.model.covariance_type)
    outcome = _run(output, job.select, config, ks, types, criterion, scheduler=scheduler, emit=output)
    click.echo(f"{'K':>3}  {'covariance':<10} {'log_likelihood':>16} {'BIC':>14} {'AIC':>14} {'iter':>5}  converged")
    for i, row in enumerate(outcome.table):
        mark = "  <- best" if i == outcome.best else ""
        click.echo(f"{row['n_components']:>3}  {row['covariance_type']:<10} {row['log_likelihood']:>16.6g} "
                   f"{row['bic']:>14.6g} {row['aic']:>14.6g} {row['n_iter']:>5}  {str(row['converged']):<9}{mark}")
    click.echo(f"best by {criterion.upper()}: K={outcome.table[outcome.best]['n_components']} "
               f"{outcome.table[outcome.best]['covariance_type']}; model and {job.SELECTION_FILE} in {outcome.path}")


@main.command()
@click.option("--model", "model_dir", required=True, metavar="DIR", help="A fitted model directory.")
@click.option("--input", "input_path", required=True, metavar="DATA", help="Parquet file, directory or glob.")
@click.option("--output", "output_dir", required=True, metavar="DIR", help="Directory to write.")
@click.option("--keep", default="", metavar="COL,...", help="Input columns to pass through.")
@click.option("--probabilities", is_flag=True, help="Also write prob_0 .. prob_{K-1}.")
@click.option("--scheduler", default=None, metavar="ADDRESS", help="Address of a running Dask scheduler.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
def score(model_dir, input_path, output_dir, keep, probabilities, scheduler, log_format):
    """Write label, log_likelihood (and probabilities) for every row, one Parquet file per input file."""
    output = Output(log_format)
    columns = [c.strip() for c in keep.split(",") if c.strip()]
    _run(output, job.score, model_dir, input_path, output_dir, columns, probabilities, scheduler=scheduler,
         emit=output)


@main.command()
@click.argument("model_dir", metavar="DIR")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def inspect(model_dir, as_json):
    """Print a fitted model's summary."""
    summary = _run(Output(), job.inspect, model_dir)
    if as_json:
        click.echo(json.dumps(summary, default=str))
        return
    click.echo(f"model {summary['path']}: {summary['n_components']} components x {summary['n_features']} features, "
               f"covariance {summary['covariance_type']}")
    if summary.get("n_iter") is not None and "converged" in summary:
        state = "converged" if summary["converged"] else "not converged"
        click.echo(f"  {state} after {summary['n_iter']} iterations, lower bound {summary['lower_bound']:.6f}")
    history = summary.get("history") or []
    if history:
        shown = ", ".join(f"{h:.6f}" for h in history[-5:])
        click.echo(f"  history ({len(history)} iterations): {'..., ' if len(history) > 5 else ''}{shown}")
    if summary.get("bic") is not None:
        click.echo(f"  BIC {summary['bic']:.6g}  AIC {summary['aic']:.6g}  on {summary['n_samples']} rows")
    names = summary.get("feature_names") or [f"x{j}" for j in range(summary["n_features"])]
    shown = names[:6]
    click.echo("  component  weight    mean[" + ", ".join(shown) + (", ..." if len(names) > 6 else "") + "]")
    for k, (w, mean) in enumerate(zip(summary["weights"], summary["means"])):
        values = ", ".join(f"{v:.4g}" for v in mean[:6])
        click.echo(f"  {k:>9}  {w:.4f}    [{values}{', ...' if len(mean) > 6 else ''}]")
    if summary.get("data_fingerprint"):
        click.echo(f"  data fingerprint {summary['data_fingerprint'][:16]}")


@main.command()
@click.argument("model_dir", metavar="DIR")
@click.option("--data", "data_path", default=None, metavar="DATA", help="Parquet data to draw a sample of.")
@click.option("--output", required=True, metavar="FILE.html|FILE.png")
def report(model_dir, data_path, output):
    """Draw the convergence curve, the BIC/AIC curve of a selection, and the components over the data."""
    from pipeline.report import write_report

    _run(Output(), write_report, model_dir, output, data_path)
    click.echo(f"report written to {output}")


@main.command()
@click.option("--output", required=True, help="Directory to create.")
@click.option("--n-samples", type=int, required=True)
@click.option("--n-features", type=int, required=True)
@click.option("--n-components", type=int, required=True)
@click.option("--partitions", type=int, default=4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def generate(output, n_samples, n_features, n_components, partitions, seed):
    """Write synthetic mixture data as partitioned Parquet, with the truth in DIR/_truth."""
    _run(Output(), synthetic.generate, output, n_samples, n_features, n_components, partitions, seed)
    click.echo(f"wrote {n_samples} rows x {n_features} features in {partitions} files to {output} "
               f"(true parameters in {output}/{synthetic.TRUTH_DIR})")


if __name__ == "__main__":  # pragma: no cover
    main()
