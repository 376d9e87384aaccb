"""The jobs as plain functions that a test or an orchestrator can call.

Each takes a validated :class:`~pipeline.config.Config` and an ``emit``
callback that receives progress events as dicts (the CLI prints them as text
or JSON lines).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipeline import cluster, data, em, init, kernels, passes, storage
from pipeline.checkpoint import checkpoint_path, load_checkpoint, remove_checkpoint, save_checkpoint
from pipeline.config import Config
from pipeline.errors import InputError
from pipeline.model import fit_info, load_saved_model, save_model

Emit = Callable[[dict[str, Any]], None]


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


def _fit_identity(config: Config, fingerprint: str) -> dict[str, Any]:
    """What decides the fitted arrays: the data and the model settings (not where it runs)."""
    resolved = config.model_dump(mode="json")
    return {"data": resolved["data"], "model": resolved["model"], "data_fingerprint": fingerprint}


def _previous_identity(path: str, storage_options: dict) -> dict[str, Any] | None:
    try:
        info = load_saved_model(path, storage_options).info
    except InputError:
        return None
    config = info.get("config") or {}
    return {"data": config.get("data"), "model": config.get("model"), "data_fingerprint": info.get("data_fingerprint")}


def _warm_start(config: Config, dataset: data.ParquetDataset) -> kernels.Params | None:
    """The parameters of the model directory named by ``model.init``, checked against the data."""
    m = config.model
    if m.init in init.INIT_METHODS:
        return None
    if not storage.exists(m.init, config.data.storage_options):
        raise InputError(f"model.init {m.init!r} is neither one of {', '.join(init.INIT_METHODS)} nor a model directory")
    saved = load_saved_model(m.init, config.data.storage_options)
    params = saved.params
    names = saved.info.get("feature_names")
    if names != dataset.feature_names:
        raise InputError(f"model.init {m.init!r}: its features {names} do not match the data's {dataset.feature_names}")
    if (params.n_components, params.covariance_type) != (m.n_components, m.covariance_type):
        raise InputError(
            f"model.init {m.init!r} has n_components={params.n_components}, covariance_type={params.covariance_type}; "
            f"the config asks for {m.n_components}, {m.covariance_type}"
        )
    return params


def _check_summary(summary: kernels.Summary, dataset: data.ParquetDataset, config: Config) -> None:
    n_rows = sum(summary.n_rows)
    where = config.data.path
    if n_rows == 0:
        raise InputError(f"{where}: the dataset has no rows")
    if summary.weight_sum <= 0:
        raise InputError(f"{where}: weight column {dataset.weight_column!r} sums to 0; no row would count")
    if n_rows < config.model.n_components:
        raise InputError(f"{where}: {n_rows} rows is fewer than model.n_components={config.model.n_components}")
    if config.model.reg_covar == 0:
        constant = [n for n, lo, hi in zip(dataset.feature_names, summary.minimum, summary.maximum) if lo == hi]
        if constant:
            raise InputError(f"{where}: column {constant[0]!r} is constant; set model.reg_covar > 0 or drop the column")


def _resume_or_start(config, source, warm, checkpoint, identity, emit) -> list[em.EMRun]:
    """The runs saved in a checkpoint ``(path, storage_options)`` of this very fit, or fresh starts."""
    path, options = checkpoint
    if storage.exists(path, options):
        runs, reason = load_checkpoint(path, identity, options)
        if runs is not None:
            emit({"event": "resume", "iteration": max(r.n_iter for r in runs), "checkpoint": path})
            return runs
        emit({"event": "restart", "checkpoint": path, "reason": f"checkpoint not used: {reason}"})
    m = config.model
    if warm is not None:
        return [em.EMRun(warm)]
    starts = init.initial_params(
        source, n_components=m.n_components, covariance_type=m.covariance_type, reg_covar=m.reg_covar,
        init_params=m.init, n_init=m.n_init, rng=np.random.default_rng(m.random_state),
    )
    return [em.EMRun(p) for p in starts]


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
    d, m, c = config.data, config.model, config.cluster
    dataset = data.open_dataset(d.path, d.columns, d.weight_column, d.storage_options, d.nan_policy)
    output = config.output.path
    out_options = d.storage_options if config.output.storage_options is None else config.output.storage_options
    identity = _fit_identity(config, dataset.fingerprint)
    if not force and _previous_identity(output, out_options) == identity:
        info = load_saved_model(output, out_options).info
        emit({"event": "skipped", "model": output, "reason": "the model for this config and data exists"})
        return FitOutcome(output, info["converged"], info["n_iter"], info["lower_bound"], skipped=True)
    warm = _warm_start(config, dataset)
    checkpoint = checkpoint_path(output)
    if force:
        remove_checkpoint(checkpoint, out_options)

    address = cluster.resolve_address(scheduler, c.address)
    with cluster.connect(address, c.n_workers, c.threads_per_worker, c.memory_limit) as client:
        emit({"event": "start", "scheduler": client.scheduler.address, "dashboard": client.dashboard_link,
              "n_workers": len(client.scheduler_info(n_workers=-1)["workers"])})
        source = passes.blocks_from_parquet(dataset)
        n_columns = len(dataset.feature_names) + (dataset.weight_column is not None)
        persisted = cluster.should_persist(c.persist, dataset.n_rows * n_columns * 8, client)
        if persisted:
            source = source.persist()
        source, summary = passes.scan(source)
        _check_summary(summary, dataset, config)
        n_rows = sum(summary.n_rows)
        emit({"event": "data", "path": d.path, "n_rows": n_rows, "n_features": len(dataset.feature_names),
              "n_partitions": len(dataset.partitions), "dropped_rows": dataset.n_rows - n_rows, "persisted": persisted})

        runs = _resume_or_start(config, source, warm, (checkpoint, out_options), identity, emit)

        def report(rep: em.IterationReport) -> None:
            save_checkpoint(checkpoint, identity, runs, out_options)
            best = max(range(len(rep.runs)), key=lambda i: rep.runs[i].lower_bound)
            emit({"event": "iteration", "iteration": rep.iteration, "lower_bound": rep.runs[best].lower_bound,
                  "change": rep.changes[best], "seconds": rep.seconds, "active_starts": len(rep.runs)})

        em.run_em(source, runs, reg_covar=m.reg_covar, tol=m.tol, max_iter=m.max_iter, on_iteration=report)
        best = em.best_run(runs)
        log_likelihood, weight_sum = em.log_likelihood(source, best.params)

    n_params = kernels.n_parameters(m.covariance_type, m.n_components, len(dataset.feature_names))
    info = fit_info(
        feature_names=dataset.feature_names,
        converged=best.converged,
        n_iter=best.n_iter,
        lower_bound=best.lower_bound,
        history=best.history,
        n_samples=n_rows,
        weight_sum=weight_sum,
        bic=-2.0 * log_likelihood + n_params * math.log(weight_sum),
        aic=-2.0 * log_likelihood + 2.0 * n_params,
        config=config.model_dump(mode="json"),
        data_fingerprint=dataset.fingerprint,
    )
    save_model(output, best.params, info, out_options)
    remove_checkpoint(checkpoint, out_options)
    emit({"event": "done", "model": output, "converged": best.converged, "n_iter": best.n_iter,
          "lower_bound": best.lower_bound, "bic": info["bic"], "seconds": time.perf_counter() - started})
    return FitOutcome(output, best.converged, best.n_iter, best.lower_bound)


def inspect(path: str | Path) -> dict[str, Any]:
    """A fitted model's summary as plain data (what ``gmm inspect --json`` prints)."""
    saved = load_saved_model(path)
    p = saved.params
    return {
        "path": str(path),
        "n_components": p.n_components,
        "n_features": p.n_features,
        "covariance_type": p.covariance_type,
        "weights": p.weights.tolist(),
        "means": p.means.tolist(),
        **{k: v for k, v in saved.info.items() if k != "config"},
    }
