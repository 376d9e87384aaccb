"""The jobs as plain functions that a test or an orchestrator can call.

Each takes a validated :class:`~pipeline.config.Config` and an ``emit``
callback that receives progress events as dicts (the CLI prints them as text
or JSON lines).  Everything that can be checked before a cluster starts is:
the config, the data's footers, and the output (:mod:`pipeline.outputs`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import cluster, data, fitting, outputs, storage
from pipeline.checkpoint import Checkpoint
from pipeline.choices import INIT_METHODS
from pipeline.config import Config, fit_identity, validate
from pipeline.errors import InputError
from pipeline.fitting import Candidate, Emit
from pipeline.model import (
    SELECTION_FILE,
    ModelInfo,
    SelectionRef,
    is_model_directory,
    load_saved_model,
    save_model,
)

SELECTION_COLUMNS = ("n_components", "covariance_type", "log_likelihood", "bic", "aic", "icl", "n_iter", "converged")


def _ignore(event: dict[str, Any]) -> None:
    pass


@dataclass(frozen=True)
class FitOutcome:
    """What ``fit`` did: where the model is and how the fit ended."""

    path: str
    converged: bool
    n_iter: int
    lower_bound: float
    skipped: bool = False


@dataclass(frozen=True)
class SelectOutcome:
    """The candidates' table (one dict per candidate) and the chosen one."""

    path: str
    table: list[dict[str, Any]]
    best: int


def _open(config: Config) -> data.ParquetDataset:
    d = config.data
    return data.open_dataset(d.path, d.columns, d.weight_column, d.storage_options, d.nan_policy)


def _init_directory(config: Config) -> str | None:
    return None if config.model.init in INIT_METHODS else config.model.init


def _previous_identity(path: str, storage_options: dict) -> tuple[dict[str, Any], ModelInfo] | None:
    """The identity and model.yaml of a readable model already at ``path``."""
    try:
        info = load_saved_model(path, storage_options).info
        # through the schema, so that a key added since (at its default) does not make the model look different
        return fit_identity(validate(info.config, path), info.data_fingerprint), info
    except InputError:  # unreadable, or a config this version cannot read: not the same fit
        return None


def _warm_start(config: Config, dataset: data.ParquetDataset):
    """The parameters of the model directory named by ``model.init``, checked against the data and the config."""
    m = config.model
    path = _init_directory(config)
    if path is None:
        return None
    if not storage.exists(path, config.data.storage_options):
        raise InputError(f"model.init {path!r} is neither one of {', '.join(INIT_METHODS)} nor a model directory")
    saved = load_saved_model(path, config.data.storage_options)
    if saved.info.feature_names != dataset.feature_names:
        raise InputError(
            f"model.init {path!r}: its features {saved.info.feature_names} do not match the data's "
            f"{dataset.feature_names}"
        )
    p = saved.params
    if (p.n_components, p.covariance_type) != (m.n_components, m.covariance_type):
        raise InputError(
            f"model.init {path!r} has n_components={p.n_components}, covariance_type="
            f"{p.covariance_type}; the config asks for {m.n_components}, {m.covariance_type}"
        )
    return p


def fit(config: Config, *, scheduler: str | None = None, force: bool = False, emit: Emit = _ignore) -> FitOutcome:
    """Fit a mixture to the configured Parquet data and write the model directory.

    Parameters
    ----------
    config : Config
    scheduler : str, optional
        Address of a Dask scheduler (wins over DASK_SCHEDULER_ADDRESS and cluster.address).
    force : bool
        Refit even if the output already holds this fit.
    emit : callable
        Receives progress events (dicts with an ``event`` key).

    Returns
    -------
    FitOutcome
    """
    started = time.perf_counter()
    m, output, options = config.model, config.output.path, config.output_storage_options
    cluster.check(config.cluster, scheduler)
    dataset = _open(config)
    candidates = [Candidate(m.n_components, m.covariance_type)]
    fitting.check_given_priors(m, candidates, len(dataset.feature_names))
    identity = fit_identity(config, dataset.fingerprint)
    inputs = {"data.path": config.data.path, "model.init": _init_directory(config)}
    with outputs.writing(output, "output.path", "model", lambda p: is_model_directory(p, options), inputs, options):
        previous = None if force else _previous_identity(output, options)
        if previous is not None and previous[0] == identity:
            info = previous[1]
            emit({"event": "skipped", "model": output, "reason": "the model for this config and data exists"})
            return FitOutcome(output, bool(info.converged), info.n_iter or 0, info.lower_bound, skipped=True)
        warm = _warm_start(config, dataset)
        checkpoint = Checkpoint(output, identity, options)
        if force:
            checkpoint.remove()
        with cluster.session(config.cluster, scheduler, emit) as client:
            fitted = fitting.fit_candidates(
                config,
                dataset,
                candidates,
                client=client,
                emit=emit,
                checkpoint=checkpoint,
                warm=warm,
            )
        (outcome,) = fitted.outcomes
        save_model(
            output,
            outcome.run.params,
            fitting.model_info(config, dataset, fitted, outcome),
            options,
            extra_arrays=outcome.extra_arrays,
        )
        checkpoint.remove()
    fitting.warn_collapsed(outcome, emit)
    run = outcome.run
    emit(
        {
            "event": "done",
            "model": output,
            "converged": run.converged,
            "n_iter": run.n_iter,
            "lower_bound": run.lower_bound,
            "bic": outcome.bic,
            "seconds": time.perf_counter() - started,
        }
    )
    return FitOutcome(output, run.converged, run.n_iter, run.lower_bound)


def _selection_csv(table: list[dict[str, Any]]) -> bytes:
    lines = [",".join(SELECTION_COLUMNS)]
    lines += [
        ",".join(repr(row[c]) if isinstance(row[c], float) else str(row[c]) for c in SELECTION_COLUMNS) for row in table
    ]
    return ("\n".join(lines) + "\n").encode()


def select(
    config: Config,
    ks: list[int],
    covariance_types: list[str],
    criterion: str = "bic",
    *,
    scheduler: str | None = None,
    emit: Emit = _ignore,
) -> SelectOutcome:
    """Fit every candidate (K, covariance type) in shared passes and write the best model.

    Every EM iteration is one pass over the data that serves every candidate
    (and every restart) still running.  Each candidate starts as ``gmm fit``
    of it would, so it ends with the same numbers.  The best model's directory
    holds ``selection.csv`` (the table) beside model.yaml and model.npz.  A
    selection stopped midway resumes from its checkpoint.

    Returns
    -------
    SelectOutcome
    """
    started = time.perf_counter()
    output, options = config.output.path, config.output_storage_options
    if _init_directory(config) is not None:
        raise InputError(
            f"model.init {config.model.init!r}: gmm select starts every candidate afresh; "
            f"use one of {', '.join(INIT_METHODS)}"
        )
    if config.model.algorithm != "em":
        raise InputError(
            "model.algorithm: variational chooses its number of components itself; gmm select compares EM fits "
            "(use gmm fit with a generous model.n_components)"
        )
    cluster.check(config.cluster, scheduler)
    dataset = _open(config)
    candidates = [Candidate(k, ct) for ct in covariance_types for k in ks]
    fitting.check_given_priors(config.model, candidates, len(dataset.feature_names))
    identity = {**fit_identity(config, dataset.fingerprint), "candidates": [c.label for c in candidates]}
    with outputs.writing(
        output,
        "output.path",
        "model",
        lambda p: is_model_directory(p, options),
        {"data.path": config.data.path},
        options,
    ):
        checkpoint = Checkpoint(output, identity, options)
        with cluster.session(config.cluster, scheduler, emit) as client:
            fitted = fitting.fit_candidates(
                config, dataset, candidates, client=client, emit=emit, checkpoint=checkpoint
            )
        table = [
            {
                "n_components": o.candidate.n_components,
                "covariance_type": o.candidate.covariance_type,
                "log_likelihood": o.fit.log_likelihood,
                "bic": o.bic,
                "aic": o.aic,
                "icl": o.icl,
                "n_iter": o.run.n_iter,
                "converged": o.run.converged,
            }
            for o in fitted.outcomes
        ]
        chosen = min(range(len(table)), key=lambda i: table[i][criterion])
        outcome = fitted.outcomes[chosen]
        info = fitting.model_info(config, dataset, fitted, outcome, selection=SelectionRef(criterion=criterion))
        save_model(output, outcome.run.params, info, options, extra_files={SELECTION_FILE: _selection_csv(table)})
        checkpoint.remove()
    fitting.warn_collapsed(outcome, emit)
    emit(
        {
            "event": "done",
            "model": output,
            "converged": outcome.run.converged,
            "n_iter": outcome.run.n_iter,
            "lower_bound": outcome.run.lower_bound,
            "bic": outcome.bic,
            "seconds": time.perf_counter() - started,
            "n_components": outcome.candidate.n_components,
            "covariance_type": outcome.candidate.covariance_type,
        }
    )
    return SelectOutcome(output, table, chosen)


# A variational model's components with a weight above this are counted as the ones it uses.
EFFECTIVE_WEIGHT = 0.01


def inspect(path: str | Path) -> dict[str, Any]:
    """A fitted model's summary as plain data (what ``gmm inspect --json`` prints).

    A variational model's summary adds ``effective_components``: how many of its
    components have a weight above :data:`EFFECTIVE_WEIGHT`.
    """
    saved = load_saved_model(path)
    summary = {"path": str(path), **saved.info.model_dump(mode="json", exclude={"config", "arrays"})}
    if saved.info.algorithm == "variational":
        summary["effective_components"] = int((saved.params.weights > EFFECTIVE_WEIGHT).sum())
        summary["effective_threshold"] = EFFECTIVE_WEIGHT
    return summary
