"""The ``gmm`` command: click commands over the jobs (:mod:`pipeline.job`, :mod:`pipeline.scoring`,
:mod:`pipeline.report`, :mod:`pipeline.synthetic`, :mod:`pipeline.export`).

Exit codes: 0 done (or already done), 2 bad usage/config/data (one ``error:``
line), 3 not converged with ``--require-convergence``, 1 anything else (one
``error:`` line for a fault of the environment or a SIGTERM/SIGINT, see
:mod:`pipeline.stopping`; a traceback only for a bug).
Options shared by several commands are defined once, below.  Each command
imports its job when it runs: ``gmm --help``, ``gmm --version`` and a mistake in
a config load neither Dask nor SciPy.
"""

from __future__ import annotations

import sys
import warnings
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import click

from pipeline import jsonlog, selection
from pipeline.choices import COVARIANCE_TYPES, CRITERIA, DTYPES, MCLUST_MODELS
from pipeline.console import Console, echo, strict_json, summary_lines
from pipeline.errors import EnvironmentFault, InputError
from pipeline.stopping import Stopped, StoppingConsole, stopped_by_signals

if TYPE_CHECKING:
    from pipeline.config import ClusterConfig, Config

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
MODEL_OPTION = click.Option(
    ["--model", "model_dir"], required=True, metavar="DIR", help="A fitted model directory (read, never changed)."
)
INPUT = click.Option(["--input", "input_path"], required=True, metavar="DATA", help="Parquet file, directory or glob.")
OUTPUT_DIR = click.Option(["--output", "output_dir"], required=True, metavar="DIR", help="Directory to write.")
REQUIRE_CONVERGENCE = click.Option(
    ["--require-convergence"], is_flag=True, help="Exit 3 if EM stops at max_iter without converging."
)


class _OptionValueError(click.BadParameter):
    """A bad value of an option whose message is the whole error line, as the jobs' are
    (``--k '0..3': needs at least one K, each >= 1``): click adds neither the command nor "Invalid value for"."""

    def format_message(self) -> str:
        return self.message


class KsParamType(click.ParamType):
    """``--k``: ``2..12`` (a range), ``2,4,8`` (a list) or ``5``, as the sorted distinct numbers of components
    (at most 1000, each >= 1)."""

    name = "ks"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[int]:
        if isinstance(value, list):
            return value
        text = str(value)
        try:
            if ".." in text:
                low, high = (int(v) for v in text.split(".."))
                count = high - low + 1  # counted before it is built: 1..10**12 must not take the machine's memory
                ks = list(range(low, high + 1)) if 0 < count <= 1000 else []
            else:
                ks = [int(v) for v in text.split(",")]
                count = len(set(ks))
        except ValueError:
            raise _OptionValueError(
                f"--k {text!r}: expected a range like 2..12 or a list like 2,4,8", ctx, param
            ) from None
        if count > 1000:
            raise _OptionValueError(f"--k {text!r}: {count} candidates; at most 1000", ctx, param)
        if not ks or min(ks) < 1:
            raise _OptionValueError(f"--k {text!r}: needs at least one K, each >= 1", ctx, param)
        return sorted(set(ks))


class CovarianceTypesParamType(click.ParamType):
    """``--covariance-types``: ``full,diag,...`` as a list of distinct covariance types, in the order given, where
    ``all`` stands for mclust's models; an empty value is the empty list (the config's ``model.covariance_type``
    then, as without the option)."""

    name = "covariance_types"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[str]:
        if isinstance(value, list) or not value:
            return list(value or [])
        named = [t.strip() for t in value.split(",") if t.strip()]
        types = list(dict.fromkeys(m for t in named for m in (MCLUST_MODELS if t == "all" else (t,))))
        unknown = [t for t in types if t not in COVARIANCE_TYPES]
        if unknown or not types:
            raise _OptionValueError(
                f"--covariance-types: {unknown[0] if unknown else value!r} is not one of "
                f"{', '.join(COVARIANCE_TYPES)} (or all: mclust's models)",
                ctx,
                param,
            )
        return types


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


def _load_config(console: Console, config_path: str, overrides: tuple[str, ...]) -> Config:
    """The config, validated; a key under its old name is a ``warning:`` line (a RenamedKeyWarning in Python), also
    before the ``error:`` line of another mistake in the config."""
    from pipeline.config import load_config
    from pipeline.errors import RenamedKeyWarning

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RenamedKeyWarning)
            return load_config(config_path, overrides)
    finally:
        for warning in caught:
            if issubclass(warning.category, RenamedKeyWarning):
                console({"event": "warning", "category": warning.category.__name__, "message": str(warning.message)})
            else:
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def _setup(log_format: str = "text") -> Console:
    jsonlog.configure(log_format)
    return StoppingConsole(log_format)


def _version() -> str:
    try:
        return version("gmm-pipeline")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without installing
        return "unknown"


class _Group(click.Group):
    """click's group, but a usage mistake is one ``error:`` line and exit 2, like every other mistake, and a
    SIGTERM or SIGINT stops the command cleanly with one ``error:`` line and exit 1."""

    def main(self, *args: Any, **kwargs: Any):
        kwargs["standalone_mode"] = False
        argv = kwargs.get("args", args[0] if args else None)
        argv = sys.argv[1:] if argv is None else list(argv)
        try:
            with stopped_by_signals():
                return super().main(*args, **kwargs)
        except Stopped as stopped:
            _requested_console(argv).error(f"stopped by {stopped} before finishing")
            sys.exit(1)
        except click.exceptions.Abort:
            _requested_console(argv).error("aborted")
            sys.exit(1)
        except click.ClickException as exc:
            ctx = None if isinstance(exc, _OptionValueError) else getattr(exc, "ctx", None)
            context = f"{ctx.command_path}: " if ctx is not None else ""
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


@main.command(params=[CONFIG, SET, SCHEDULER, LOG_FORMAT, REQUIRE_CONVERGENCE])
@click.option("--force", is_flag=True, help="Refit even if the output already holds this fit.")
def fit(config_path, overrides, scheduler, log_format, force, require_convergence):
    """Fit a Gaussian mixture and write the model directory."""
    console = _setup(log_format)
    config = _run(console, _load_config, console, config_path, overrides)
    from pipeline import job  # once the config is read: a mistake in it is found without loading Dask

    outcome = _run(console, job.fit, config, scheduler=scheduler, force=force, emit=console)
    if require_convergence and not outcome.converged:
        console.error(f"EM did not converge in {outcome.n_iter} iterations (model written to {outcome.path})")
        sys.exit(EXIT_NOT_CONVERGED)


@main.command(params=[CONFIG, SET, SCHEDULER, LOG_FORMAT])
@click.option("--k", "ks", type=KsParamType(), required=True, metavar="2..12", help="Candidate numbers of components.")
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
    type=CovarianceTypesParamType(),
    default=None,
    metavar="full,diag,...",
    help="Candidate covariance types; all: mclust's models, EII to VVV (default: model.covariance_type of the config).",
)
@click.option("--force", is_flag=True, help="Fit every candidate even if the output already holds this selection.")
def select(config_path, overrides, scheduler, log_format, ks, criterion, covariance_types, force):
    """Fit every candidate in shared passes, print the BIC/AIC/ICL table, write the best model.

    If the output already holds this selection (same data, settings and candidates), the best is chosen again
    from its table by --criterion, without a refit.
    """
    console = _setup(log_format)
    config = _run(console, _load_config, console, config_path, overrides)
    from pipeline import job  # once the config is read: a mistake in it is found without loading Dask
    from pipeline.model import SELECTION_FILE

    types = covariance_types or [config.model.covariance_type]
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


def _settings(console: Console, config_path: str | None, overrides: tuple[str, ...], command: str) -> Config | None:
    """The settings of a command that takes its model from ``--model`` and its data from ``--input`` (``gmm
    score``, ``gmm update``): a config (its cluster section and storage options apply) and ``--set cluster.*``
    (None: defaults)."""
    from pipeline.config import apply_override, validate

    for assignment in overrides:
        key = assignment.partition("=")[0].strip()
        if key != "cluster" and not key.startswith("cluster."):
            raise InputError(
                f"--set {key}: gmm {command} takes only cluster.* settings (the model comes from --model, the data "
                "from --input)"
            )
    if config_path is not None:
        return _load_config(console, config_path, overrides)
    if not overrides:
        return None
    raw: dict[str, Any] = {"data": {"path": f"(not used by gmm {command})"}}
    for assignment in overrides:
        apply_override(raw, assignment)
    return validate(raw, "--set")


def _score_cluster(console: Console, config_path: str | None, overrides: tuple[str, ...]) -> ClusterConfig | None:
    """The cluster settings of ``gmm score`` (None: defaults)."""
    settings = _settings(console, config_path, overrides, "score")
    return None if settings is None else settings.cluster


@main.command(params=[CONFIG_OPTION, SET, SCHEDULER, LOG_FORMAT, MODEL_OPTION, INPUT, OUTPUT_DIR])
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
    settings = _run(console, _score_cluster, console, config_path, overrides)
    from pipeline import scoring  # once the settings are read: a mistake in them is found without loading Dask

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


@main.command(params=[CONFIG_OPTION, SET, SCHEDULER, LOG_FORMAT, MODEL_OPTION, INPUT, OUTPUT_DIR, REQUIRE_CONVERGENCE])
@click.option(
    "--decay",
    type=click.FloatRange(0, 1, min_open=True),
    default=1.0,
    show_default=True,
    help="Factor of what the model learnt before, in (0, 1]: 1 keeps all of it, below 1 forgets it geometrically.",
)
@click.option("--force", is_flag=True, help="Update even if the output already holds this update.")
def update(
    config_path,
    overrides,
    scheduler,
    log_format,
    model_dir,
    input_path,
    output_dir,
    decay,
    force,
    require_convergence,
):
    """Learn from new data without reading the old: EM over --input, the data the model learnt before counting
    through the statistics it kept of them (times --decay); the model's own settings.

    The cluster is set as for score (cluster.* of --config and --set cluster.KEY=VALUE, --scheduler); --config's
    storage options apply to --model, --input and --output.
    """
    console = _setup(log_format)
    settings = _run(console, _settings, console, config_path, overrides, "update")
    from pipeline import job  # once the settings are read: a mistake in them is found without loading Dask

    outcome = _run(
        console,
        job.update,
        model_dir,
        input_path,
        output_dir,
        decay,
        settings=settings,
        scheduler=scheduler,
        force=force,
        emit=console,
    )
    if require_convergence and not outcome.converged:
        console.error(f"EM did not converge in {outcome.n_iter} iterations (model written to {outcome.path})")
        sys.exit(EXIT_NOT_CONVERGED)


@main.command(params=[MODEL_DIR])
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def inspect(model_dir, as_json):
    """Print a fitted model's summary."""
    from pipeline import job

    summary = _run(_setup(), job.inspect, model_dir)
    for line in [strict_json(summary)] if as_json else summary_lines(summary):
        echo(line)


@main.command(params=[MODEL_DIR])
@click.option("--data", "data_path", default=None, metavar="DATA", help="Parquet data to draw a sample of.")
@click.option("--output", required=True, metavar="FILE.html|FILE.png")
def report(model_dir, data_path, output):
    """Draw the convergence curve, the criteria of a selection, and the components over the data."""
    from pipeline.report import write_report

    _run(_setup(), write_report, model_dir, output, data_path)
    echo(f"report written to {output}")


@main.command(params=[MODEL_DIR])
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["onnx"]),
    default="onnx",
    show_default=True,
    help="The file's format: ONNX, for onnxruntime (C++, C#, Java, JavaScript, Python) and other ONNX runtimes.",
)
@click.option(
    "--output",
    required=True,
    metavar="FILE.onnx",
    help="The file to write; an existing one is replaced only if gmm export wrote it.",
)
@click.option(
    "--outputs",
    "graph_outputs",
    default=None,
    metavar="NAME,...",
    help="The graph's outputs, comma-separated, among label, probabilities and log_likelihood (default: all three).",
)
@click.option(
    "--dtype",
    type=click.Choice(DTYPES),
    default="float64",
    show_default=True,
    help="The graph's input and arithmetic (float32: faster, about 6 digits; see the guide).",
)
def export(model_dir, file_format, output, graph_outputs, dtype):
    """Write the model as a graph that scores rows as gmm score does, to serve it elsewhere.

    The graph takes one tensor X of shape (N, n_features), the features in the model's order (feature_names in the
    graph's metadata), and gives label (int64), probabilities (N, n_components) and log_likelihood (N).
    """
    from pipeline.export import export as export_onnx

    names = None if graph_outputs is None else [name.strip() for name in graph_outputs.split(",") if name.strip()]
    chosen = _run(_setup(), export_onnx, model_dir, output, names, dtype)
    echo(f"model {model_dir} exported to {output} ({file_format}, {dtype}; outputs {', '.join(chosen)})")


@main.command()
@click.option("--output", required=True, help="Directory to create.")
@click.option("--n-samples", type=click.IntRange(min=1), required=True)
@click.option("--n-features", type=click.IntRange(min=1, max=10_000), required=True)
@click.option("--n-components", type=click.IntRange(min=1, max=100_000), required=True)
@click.option("--partitions", type=click.IntRange(min=1, max=100_000), default=4, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
def generate(output, n_samples, n_features, n_components, partitions, seed):
    """Write synthetic mixture data as partitioned Parquet, with the truth in DIR/_truth."""
    from pipeline import synthetic

    _run(_setup(), synthetic.generate, output, n_samples, n_features, n_components, partitions, seed)
    echo(
        f"wrote {n_samples} rows x {n_features} features in {partitions} files to {output} "
        f"(true parameters in {output}/{synthetic.TRUTH_DIR})"
    )


if __name__ == "__main__":  # pragma: no cover
    main()
