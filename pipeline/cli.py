"""The ``gmm`` command: thin click commands over :mod:`pipeline.job`.

Exit codes: 0 done (or already done), 2 bad usage/config/data (one ``error:``
line), 3 not converged with ``--require-convergence``, 1 anything else (one
``error:`` line for a fault of the environment or a SIGTERM/SIGINT; a traceback
only for a bug).
Options shared by several commands are defined once, below.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import click

from pipeline import job, jsonlog, scoring, selection, synthetic
from pipeline.choices import COVARIANCE_TYPES, CRITERIA
from pipeline.config import ClusterConfig, apply_override, load_config, validate
from pipeline.console import Console, echo, strict_json
from pipeline.errors import EnvironmentFault, InputError
from pipeline.model import SELECTION_FILE

EXIT_INPUT = 2
EXIT_NOT_CONVERGED = 3

# --------------------------------------------------------------------------- #
# Shared options: one definition each
# --------------------------------------------------------------------------- #
SET = click.Option(
    ["--set", "overrides"],
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config key (dotted path), typed as YAML.",
)
SCHEDULER = click.Option(
    ["--scheduler"],
    default=None,
    metavar="ADDRESS",
    help="Address of a running Dask scheduler (wins over DASK_SCHEDULER_ADDRESS and cluster.address).",
)
LOG_FORMAT = click.Option(
    ["--log-format"],
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Progress and errors on stderr as text lines or JSON objects.",
)
CONFIG = click.Argument(["config_path"], metavar="CONFIG")
CONFIG_OPTION = click.Option(
    ["--config", "config_path"],
    default=None,
    metavar="CONFIG",
    help="A config (the fit's will do): its cluster section sets where and how this runs; the other sections "
    "are checked but not used.",
)
MODEL_DIR = click.Argument(["model_dir"], metavar="DIR")


def _environment_faults() -> tuple[type[BaseException], ...]:
    """Failures of the surroundings (no traceback): our own, and the system's and Dask's of that kind."""
    from concurrent.futures import CancelledError

    from distributed.scheduler import KilledWorker

    return EnvironmentFault, OSError, MemoryError, TimeoutError, KilledWorker, CancelledError


def _run(console: Console, fn, *args, **kwargs):
    """Call a job function; map user mistakes to exit 2, faults of the environment to exit 1."""
    try:
        return fn(*args, **kwargs)
    except InputError as exc:
        console.error(str(exc))
        sys.exit(EXIT_INPUT)
    except _environment_faults() as exc:
        message = str(exc) if isinstance(exc, EnvironmentFault) else f"{type(exc).__name__}: {exc}"
        console.error(message)
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - the top level reports every failure; an unexpected one is a bug
        console.error(
            f"{type(exc).__name__}: {exc} (an unexpected failure: please report it with the traceback above)", exc
        )
        sys.exit(1)


def _setup(log_format: str = "text") -> Console:
    jsonlog.configure(log_format)
    return _Console(log_format)


def _version() -> str:
    try:
        return version("gmm-pipeline")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without installing
        return "unknown"


class _Stopped(BaseException):
    """A SIGTERM or SIGINT, raised in the main thread so that every ``with`` and ``finally`` on the way out runs:
    the cluster is closed, a half-written output removed, an earlier one left in place, the lock released."""


_STOP_SIGNALS: list[str] = []  # the signal that came, if one did: see _Console


@contextmanager
def _stopped_by_signals() -> Iterator[None]:
    def stop(signum, frame):
        for each in previous:  # another signal while cleaning up does not interrupt the clean-up
            signal.signal(each, signal.SIG_IGN)
        _STOP_SIGNALS.append(signal.Signals(signum).name)
        raise _Stopped(_STOP_SIGNALS[0])

    def unraisable(hook_args) -> None:  # raised in a destructor: Python drops it (it is raised again at the next
        if not isinstance(hook_args.exc_value, _Stopped):  # event, see _Console) and would print a traceback
            previous_hook(hook_args)

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    previous_hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sys.unraisablehook = previous_hook
        _STOP_SIGNALS.clear()


class _Console(Console):
    """The console, which also stops the command at its next event (an iteration, at least) if a stop signal's
    exception was swallowed where it was raised: Python ignores exceptions raised in a destructor, for one."""

    def __call__(self, event: dict[str, Any]) -> None:
        super().__call__(event)
        if _STOP_SIGNALS:
            raise _Stopped(_STOP_SIGNALS[0])


class _Group(click.Group):
    """click's group, but a usage mistake is one ``error:`` line and exit 2, like every other mistake, and a
    SIGTERM or SIGINT stops the command cleanly with one ``error:`` line and exit 1."""

    def main(self, *args: Any, **kwargs: Any):
        kwargs["standalone_mode"] = False
        argv = kwargs.get("args", args[0] if args else None)
        argv = sys.argv[1:] if argv is None else list(argv)
        try:
            with _stopped_by_signals():
                return super().main(*args, **kwargs)
        except _Stopped as stopped:
            _requested_console(argv).error(f"stopped by {stopped} before finishing")
            sys.exit(1)
        except click.exceptions.Abort:
            _requested_console(argv).error("aborted")
            sys.exit(1)
        except click.ClickException as exc:
            context = f"{exc.ctx.command_path}: " if getattr(exc, "ctx", None) is not None else ""
            _requested_console(argv).error(f"{context}{' '.join(exc.format_message().split())}")
            sys.exit(EXIT_INPUT if isinstance(exc, click.UsageError) else exc.exit_code)


def _requested_console(argv: list[str]) -> Console:
    """The console the command line asked for, read from the raw arguments (click could not parse them)."""
    pairs = zip(argv, [*argv[1:], None])
    wants_json = any(a == "--log-format=json" or (a == "--log-format" and b == "json") for a, b in pairs)
    return Console("json" if wants_json else "text")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", prog_name="gmm")
def main() -> None:
    """Distributed Gaussian-mixture EM on partitioned Parquet with Dask."""


@main.command(params=[CONFIG, SET, SCHEDULER, LOG_FORMAT])
@click.option("--force", is_flag=True, help="Refit even if the output already holds this fit.")
@click.option("--require-convergence", is_flag=True, help="Exit 3 if EM stops at max_iter without converging.")
def fit(config_path, overrides, scheduler, log_format, force, require_convergence):
    """Fit a Gaussian mixture and write the model directory."""
    console = _setup(log_format)
    config = _run(console, load_config, config_path, overrides)
    outcome = _run(console, job.fit, config, scheduler=scheduler, force=force, emit=console)
    if require_convergence and not outcome.converged:
        console.error(f"EM did not converge in {outcome.n_iter} iterations (model written to {outcome.path})")
        sys.exit(EXIT_NOT_CONVERGED)


def _parse_ks(text: str) -> list[int]:
    """``2..12`` (a range), ``2,4,8`` (a list) or ``5``."""
    try:
        if ".." in text:
            low, high = (int(v) for v in text.split(".."))
            count = high - low + 1  # counted before it is built: 1..10**12 must not take the machine's memory
            ks = list(range(low, high + 1)) if 0 < count <= 1000 else []
        else:
            ks = [int(v) for v in text.split(",")]
            count = len(set(ks))
    except ValueError:
        raise InputError(f"--k {text!r}: expected a range like 2..12 or a list like 2,4,8") from None
    if count > 1000:
        raise InputError(f"--k {text!r}: {count} candidates; at most 1000")
    if not ks or min(ks) < 1:
        raise InputError(f"--k {text!r}: needs at least one K, each >= 1")
    return sorted(set(ks))


def _parse_types(text: str) -> list[str]:
    types = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    unknown = [t for t in types if t not in COVARIANCE_TYPES]
    if unknown or not types:
        raise InputError(
            f"--covariance-types: {unknown[0] if unknown else text!r} is not one of {', '.join(COVARIANCE_TYPES)}"
        )
    return types


@main.command(params=[CONFIG, SET, SCHEDULER, LOG_FORMAT])
@click.option("--k", "k_text", required=True, metavar="2..12", help="Candidate numbers of components.")
@click.option(
    "--criterion",
    type=click.Choice(CRITERIA),
    default="bic",
    show_default=True,
    help="How the best candidate is chosen (each lower is better; ICL is BIC plus the classification "
    "entropy term, as mclust's).",
)
@click.option(
    "--covariance-types",
    default=None,
    metavar="full,diag,...",
    help="Candidate covariance types (default: model.covariance_type of the config).",
)
@click.option("--force", is_flag=True, help="Fit every candidate even if the output already holds this selection.")
def select(config_path, overrides, scheduler, log_format, k_text, criterion, covariance_types, force):
    """Fit every candidate in shared passes, print the BIC/AIC/ICL table, write the best model.

    If the output already holds this selection (same data, settings and candidates), the best is chosen again
    from its table by --criterion, without a refit.
    """
    console = _setup(log_format)
    config = _run(console, load_config, config_path, overrides)
    ks = _run(console, _parse_ks, k_text)
    types = _run(console, _parse_types, covariance_types or config.model.covariance_type)
    outcome = _run(console, job.select, config, ks, types, criterion, scheduler=scheduler, force=force, emit=console)
    below = {i: outcome.table[j] for i, j in selection.falling_likelihoods(outcome.table)}
    echo(
        f"{'K':>3}  {'covariance':<10} {'log_likelihood':>16} {'BIC':>14} {'AIC':>14} {'ICL':>14} {'iter':>5}"
        "  converged"
    )
    for i, row in enumerate(outcome.table):
        marks = (["<- best"] if i == outcome.best else []) + (
            [f"! log-likelihood below K={below[i]['n_components']} (local optimum?)"] if i in below else []
        )
        echo(
            f"{row['n_components']:>3}  {row['covariance_type']:<10} {row['log_likelihood']:>16.6g} "
            f"{row['bic']:>14.6g} {row['aic']:>14.6g} {row['icl']:>14.6g} {row['n_iter']:>5}  "
            f"{str(row['converged']):<9}" + "".join(f"  {mark}" for mark in marks)
        )
    best = outcome.table[outcome.best]
    how = (
        f"; re-chosen from the table at {outcome.rechosen_from}, no refit"
        if outcome.rechosen_from
        else "; already written, nothing refitted"
        if outcome.skipped
        else ""
    )
    echo(
        f"best by {criterion.upper()}: K={best['n_components']} {best['covariance_type']}{how}; model and "
        f"{SELECTION_FILE} in {outcome.path}"
    )


def _score_cluster(config_path: str | None, overrides: tuple[str, ...]) -> ClusterConfig | None:
    """The cluster settings of ``gmm score``: a config's cluster section and ``--set cluster.*`` (None: defaults)."""
    for assignment in overrides:
        key = assignment.partition("=")[0].strip()
        if key != "cluster" and not key.startswith("cluster."):
            raise InputError(
                f"--set {key}: gmm score takes only cluster.* settings (the model comes from --model, the data "
                "from --input)"
            )
    if config_path is not None:
        return load_config(config_path, overrides).cluster
    if not overrides:
        return None
    raw: dict[str, Any] = {"data": {"path": "(not used by gmm score)"}}
    for assignment in overrides:
        apply_override(raw, assignment)
    return validate(raw, "--set").cluster


def _parameters_text(parameters: dict[str, Any]) -> str:
    """The estimator's parameters on one line: numbers and names as they are, arrays by their shape."""

    def shape(value) -> list[int]:
        return [len(value), *shape(value[0])] if isinstance(value, list) and value else []

    def text(value) -> str:
        if isinstance(value, list):
            return f"<array {'x'.join(map(str, shape(value)))}>" if value else "[]"
        if isinstance(value, dict):
            return "{" + ", ".join(f"{key}: {text(item)}" for key, item in value.items()) + "}"
        return f"{value:g}" if isinstance(value, float) else str(value)

    return ", ".join(f"{name}={text(value)}" for name, value in parameters.items())


@main.command(params=[CONFIG_OPTION, SET, SCHEDULER, LOG_FORMAT])
@click.option("--model", "model_dir", required=True, metavar="DIR", help="A fitted model directory.")
@click.option("--input", "input_path", required=True, metavar="DATA", help="Parquet file, directory or glob.")
@click.option("--output", "output_dir", required=True, metavar="DIR", help="Directory to write.")
@click.option("--keep", default="", metavar="COL,...", help="Input columns to pass through.")
@click.option("--probabilities", is_flag=True, help="Also write prob_0 .. prob_{K-1}.")
@click.option(
    "--uncertainty",
    is_flag=True,
    help="Also write uncertainty (1 - the largest probability) and entropy (of the probabilities).",
)
@click.option(
    "--impute",
    is_flag=True,
    help="Also write imputed_<feature>: the features with each missing value replaced by its conditional mean "
    "under the mixture (for a model fitted with data.nan_policy: marginalize).",
)
def score(
    config_path,
    overrides,
    scheduler,
    log_format,
    model_dir,
    input_path,
    output_dir,
    keep,
    probabilities,
    uncertainty,
    impute,
):
    """Write label, log_likelihood (and probabilities) for every row, one Parquet file per input file.

    The cluster is set as for fit (cluster.* of --config and --set cluster.KEY=VALUE, --scheduler).
    """
    console = _setup(log_format)
    settings = _run(console, _score_cluster, config_path, overrides)
    columns = [c.strip() for c in keep.split(",") if c.strip()]
    _run(
        console,
        scoring.score,
        model_dir,
        input_path,
        output_dir,
        columns,
        probabilities,
        uncertainty,
        impute,
        scheduler=scheduler,
        settings=settings,
        emit=console,
    )


@main.command(params=[MODEL_DIR])
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def inspect(model_dir, as_json):
    """Print a fitted model's summary."""
    summary = _run(_setup(), job.inspect, model_dir)
    if as_json:
        echo(strict_json(summary))
        return
    echo(
        f"model {summary['path']}: {summary['n_components']} components x {summary['n_features']} features, "
        f"covariance {summary['covariance_type']}" + (", variational" if summary["algorithm"] == "variational" else "")
    )
    if summary.get("n_iter") is not None and summary.get("converged") is not None:
        state = "converged" if summary["converged"] else "not converged"
        echo(f"  {state} after {summary['n_iter']} iterations, lower bound {summary['lower_bound']:.6f}")
    history = summary.get("history") or []
    if history:
        shown = ", ".join(f"{h:.6f}" for h in history[-5:])
        echo(f"  history ({len(history)} iterations): {'..., ' if len(history) > 5 else ''}{shown}")
    if summary.get("bic") is not None:
        icl = f"  ICL {summary['icl']:.6g}" if summary.get("icl") is not None else ""
        echo(f"  BIC {summary['bic']:.6g}  AIC {summary['aic']:.6g}{icl}  on {summary['n_samples']} rows")
    if summary.get("prior"):
        prior = summary["prior"]
        echo(
            f"  prior: shrinkage {prior['shrinkage']:g}, dof {prior['dof']:g} (mclust's conjugate prior; "
            "--json for its mean and scale)"
        )
    if summary.get("effective_components") is not None:
        echo(
            f"  effective components: {summary['effective_components']} (weight above "
            f"{summary['effective_threshold']:g})"
        )
    if summary.get("missing"):
        m = summary["missing"]
        echo(
            f"  nan_policy {m['nan_policy']}: {m['n_missing_values']} missing values in {m['n_incomplete_rows']} "
            f"rows used, {m['n_dropped_rows']} rows dropped"
        )
    if summary.get("collapsed_components"):
        echo(f"  collapsed components (held up by reg_covar alone): {summary['collapsed_components']}")
    if summary.get("parameters"):
        echo(f"  fitted with {_parameters_text(summary['parameters'])}")
    names = summary["feature_names"]
    echo("  component  weight    mean[" + ", ".join(names[:6]) + (", ..." if len(names) > 6 else "") + "]")
    for k, (w, mean) in enumerate(zip(summary["weights"], summary["means"])):
        values = ", ".join(f"{v:.4g}" for v in mean[:6])
        echo(f"  {k:>9}  {w:.4f}    [{values}{', ...' if len(mean) > 6 else ''}]")
    if summary.get("data_fingerprint"):
        echo(f"  data fingerprint {summary['data_fingerprint'][:16]}")


@main.command(params=[MODEL_DIR])
@click.option("--data", "data_path", default=None, metavar="DATA", help="Parquet data to draw a sample of.")
@click.option("--output", required=True, metavar="FILE.html|FILE.png")
def report(model_dir, data_path, output):
    """Draw the convergence curve, the criteria of a selection, and the components over the data."""
    from pipeline.report import write_report

    _run(_setup(), write_report, model_dir, output, data_path)
    echo(f"report written to {output}")


@main.command()
@click.option("--output", required=True, help="Directory to create.")
@click.option("--n-samples", type=click.IntRange(min=1), required=True)
@click.option("--n-features", type=click.IntRange(min=1, max=10_000), required=True)
@click.option("--n-components", type=click.IntRange(min=1, max=100_000), required=True)
@click.option("--partitions", type=click.IntRange(min=1, max=100_000), default=4, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
def generate(output, n_samples, n_features, n_components, partitions, seed):
    """Write synthetic mixture data as partitioned Parquet, with the truth in DIR/_truth."""
    _run(_setup(), synthetic.generate, output, n_samples, n_features, n_components, partitions, seed)
    echo(
        f"wrote {n_samples} rows x {n_features} features in {partitions} files to {output} "
        f"(true parameters in {output}/{synthetic.TRUTH_DIR})"
    )


if __name__ == "__main__":  # pragma: no cover
    main()
