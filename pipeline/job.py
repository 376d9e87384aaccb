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

import dask
import numpy as np

from pipeline import cluster, data, em, init, kernels, passes, scoring, storage
from pipeline.checkpoint import checkpoint_path, load_checkpoint, remove_checkpoint, save_checkpoint
from pipeline.config import ClusterConfig, Config, validate
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


def _previous_fit(path: str, storage_options: dict) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The identity and model.yaml of the model already at ``path``, if there is a readable one."""
    try:
        info = load_saved_model(path, storage_options).info
    except InputError:
        return None
    try:  # through the schema, so that a key added since (at its default) does not make the model look different
        resolved = validate(info.get("config"), path).model_dump(mode="json")
    except InputError:  # a config this version cannot read: not the same fit
        return None
    identity = {"data": resolved["data"], "model": resolved["model"], "data_fingerprint": info.get("data_fingerprint")}
    return identity, info


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


def _check_summary(summary: kernels.Summary, dataset: data.ParquetDataset, config: Config, n_components: int) -> None:
    n_rows = sum(summary.n_rows)
    where = config.data.path
    if n_rows == 0:
        raise InputError(f"{where}: the dataset has no rows")
    if summary.weight_sum <= 0:
        raise InputError(f"{where}: weight column {dataset.weight_column!r} sums to 0; no row would count")
    if n_rows < n_components:
        raise InputError(f"{where}: {n_rows} rows is fewer than model.n_components={n_components}")
    if config.model.reg_covar == 0:
        constant = [n for n, lo, hi in zip(dataset.feature_names, summary.minimum, summary.maximum) if lo == hi]
        if constant:
            raise InputError(f"{where}: column {constant[0]!r} is constant; set model.reg_covar > 0 or drop the column")


def _open(config: Config) -> tuple[data.ParquetDataset, str, dict]:
    """The configured dataset (footers read and checked), the output path and its storage options."""
    d, out = config.data, config.output
    dataset = data.open_dataset(d.path, d.columns, d.weight_column, d.storage_options, d.nan_policy)
    return dataset, out.path, d.storage_options if out.storage_options is None else out.storage_options


def _load(dataset, config: Config, client, n_components: int, emit: Emit) -> tuple[passes.BlockSource, int]:
    """The dataset as a BlockSource (persisted if the policy says so), scanned and checked."""
    source = passes.blocks_from_parquet(dataset)
    n_columns = len(dataset.feature_names) + (dataset.weight_column is not None)
    persisted = cluster.should_persist(config.cluster.persist, dataset.n_rows * n_columns * 8, client)
    if persisted:
        source = source.persist()
    source, summary = passes.scan(source)
    _check_summary(summary, dataset, config, n_components)
    n_rows = sum(summary.n_rows)
    emit({"event": "data", "path": config.data.path, "n_rows": n_rows, "n_features": len(dataset.feature_names),
          "n_partitions": len(dataset.partitions), "dropped_rows": dataset.n_rows - n_rows, "persisted": persisted})
    return source, n_rows


def _dtype_field(requested: str, dtypes: list[str]) -> dict:
    """With ``model.dtype: float32``, what the iteration ran in: float64 when a component was too far from the
    mixture's mean for float32's accuracy (see ``kernels.MAX_SHIFT_DISTANCE2_FLOAT32``)."""
    if requested == "float64":
        return {}
    return {"dtype": "float32" if all(d == "float32" for d in dtypes) else "float64"}


def _criteria(log_likelihood: float, weight_sum: float, covariance_type: str, k: int, d: int) -> tuple[float, float]:
    """BIC and AIC of a model from its total log-likelihood (frequency weights count as rows)."""
    n_params = kernels.n_parameters(covariance_type, k, d)
    return -2.0 * log_likelihood + n_params * math.log(weight_sum), -2.0 * log_likelihood + 2.0 * n_params


def _connect(c: ClusterConfig, scheduler: str | None, emit: Emit):
    """A Client per the cluster settings (``scheduler`` wins), announcing itself through ``emit``."""
    return cluster.connect(cluster.resolve_address(scheduler, c.address), c.n_workers, c.threads_per_worker,
                           c.memory_limit, on_connect=lambda client: emit(_start_event(client)))


def _start_event(client) -> dict[str, Any]:
    return {"event": "start", "scheduler": client.scheduler.address, "dashboard": client.dashboard_link,
            "n_workers": len(client.scheduler_info(n_workers=-1)["workers"])}


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
    m = config.model
    dataset, output, out_options = _open(config)
    identity = _fit_identity(config, dataset.fingerprint)
    previous = None if force else _previous_fit(output, out_options)
    if previous is not None and previous[0] == identity:
        info = previous[1]
        emit({"event": "skipped", "model": output, "reason": "the model for this config and data exists"})
        return FitOutcome(output, info["converged"], info["n_iter"], info["lower_bound"], skipped=True)
    warm = _warm_start(config, dataset)
    checkpoint = checkpoint_path(output)
    if force:
        remove_checkpoint(checkpoint, out_options)

    with _connect(config.cluster, scheduler, emit) as client:
        source, n_rows = _load(dataset, config, client, m.n_components, emit)

        runs = _resume_or_start(config, source, warm, (checkpoint, out_options), identity, emit)

        def report(rep: em.IterationReport) -> None:
            save_checkpoint(checkpoint, identity, runs, out_options)
            best = max(range(len(rep.runs)), key=lambda i: rep.runs[i].lower_bound)
            emit({"event": "iteration", "iteration": rep.iteration, "lower_bound": rep.runs[best].lower_bound,
                  "change": rep.changes[best], "seconds": rep.seconds, "active_starts": len(rep.runs),
                  **_dtype_field(m.dtype, rep.dtypes)})

        em.run_em(source, runs, reg_covar=m.reg_covar, tol=m.tol, max_iter=m.max_iter, dtype=m.dtype,
                  on_iteration=report)
        best = em.best_run(runs)
        ((log_likelihood, weight_sum),) = em.log_likelihoods(source, [best.params])

    bic, aic = _criteria(log_likelihood, weight_sum, m.covariance_type, m.n_components, len(dataset.feature_names))
    info = fit_info(
        feature_names=dataset.feature_names,
        converged=best.converged,
        n_iter=best.n_iter,
        lower_bound=best.lower_bound,
        history=best.history,
        n_samples=n_rows,
        weight_sum=weight_sum,
        bic=bic,
        aic=aic,
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


# --------------------------------------------------------------------------- #
# select
# --------------------------------------------------------------------------- #
SELECTION_FILE = "selection.csv"
SELECTION_COLUMNS = ("n_components", "covariance_type", "log_likelihood", "bic", "aic", "n_iter", "converged")


@dataclass(frozen=True)
class SelectOutcome:
    """The candidates' table (one dict per candidate) and the chosen one."""

    path: str
    table: list[dict[str, Any]]
    best: int


def _selection_csv(table: list[dict[str, Any]]) -> bytes:
    lines = [",".join(SELECTION_COLUMNS)]
    lines += [",".join(repr(row[c]) if isinstance(row[c], float) else str(row[c]) for c in SELECTION_COLUMNS)
              for row in table]
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
    (and every restart) still running.  The best model's directory holds
    ``selection.csv`` (the table) beside model.yaml and model.npz.

    Returns
    -------
    SelectOutcome
    """
    started = time.perf_counter()
    m = config.model
    if m.init not in init.INIT_METHODS:
        raise InputError(f"model.init {m.init!r}: gmm select starts every candidate afresh; "
                         f"use one of {', '.join(init.INIT_METHODS)}")
    dataset, output, out_options = _open(config)
    candidates = [(k, ct) for ct in covariance_types for k in ks]
    n_features = len(dataset.feature_names)
    with _connect(config.cluster, scheduler, emit) as client:
        source, n_rows = _load(dataset, config, client, max(ks), emit)
        starts = init.candidate_starts(source, candidates, reg_covar=m.reg_covar, init_params=m.init,
                                       n_init=m.n_init, rng=np.random.default_rng(m.random_state))
        groups = [[em.EMRun(p) for p in group] for group in starts]

        def report(rep: em.IterationReport) -> None:
            emit({"event": "iteration", "iteration": rep.iteration, "lower_bound": max(r.lower_bound for r in rep.runs),
                  "change": max(abs(c) for c in rep.changes), "seconds": rep.seconds, "active_starts": len(rep.runs),
                  **_dtype_field(m.dtype, rep.dtypes)})

        em.run_em(source, [r for g in groups for r in g], reg_covar=m.reg_covar, tol=m.tol, max_iter=m.max_iter,
                  dtype=m.dtype, on_iteration=report)
        bests = [em.best_run(g) for g in groups]
        totals = em.log_likelihoods(source, [b.params for b in bests])
    table = []
    for (k, ct), run, (log_likelihood, weight_sum) in zip(candidates, bests, totals):
        bic, aic = _criteria(log_likelihood, weight_sum, ct, k, n_features)
        table.append({"n_components": k, "covariance_type": ct, "log_likelihood": log_likelihood, "bic": bic,
                      "aic": aic, "n_iter": run.n_iter, "converged": run.converged})
    chosen = min(range(len(table)), key=lambda i: table[i][criterion])
    row, run, (_, weight_sum) = table[chosen], bests[chosen], totals[chosen]
    info = fit_info(
        feature_names=dataset.feature_names, converged=run.converged, n_iter=run.n_iter,
        lower_bound=run.lower_bound, history=run.history, n_samples=n_rows, weight_sum=weight_sum,
        bic=row["bic"], aic=row["aic"], data_fingerprint=dataset.fingerprint,
        config=config.model_copy(update={"model": m.model_copy(update={
            "n_components": row["n_components"], "covariance_type": row["covariance_type"]})}).model_dump(mode="json"),
    )
    info["selection"] = {"criterion": criterion, "file": SELECTION_FILE}
    save_model(output, run.params, info, out_options, extra_files={SELECTION_FILE: _selection_csv(table)})
    emit({"event": "done", "model": output, "converged": run.converged, "n_iter": run.n_iter,
          "lower_bound": run.lower_bound, "bic": row["bic"], "seconds": time.perf_counter() - started,
          "n_components": row["n_components"], "covariance_type": row["covariance_type"]})
    return SelectOutcome(output, table, chosen)


# --------------------------------------------------------------------------- #
# score
# --------------------------------------------------------------------------- #
def _input_root(path: str, fs) -> str:
    """The directory that output paths are made relative to: the dataset's root."""
    root = fs._strip_protocol(path).rstrip("/")
    magic = min((root.find(ch) for ch in "*?[" if ch in root), default=-1)
    if magic >= 0:
        return root[:magic].rsplit("/", 1)[0]
    return root if fs.isdir(root) else root.rsplit("/", 1)[0]


def score(
    model_path: str,
    input_path: str,
    output_path: str,
    keep: list[str] = (),
    probabilities: bool = False,
    *,
    scheduler: str | None = None,
    emit: Emit = _ignore,
) -> int:
    """Score every row of a Parquet dataset; one output file per input file, rows in input order.

    Feature columns are matched by the names stored in the model.  The output
    directory appears complete, or not at all.

    Returns
    -------
    int
        Rows written.
    """
    if storage.is_url(output_path):
        raise InputError(f"--output {output_path!r}: gmm score writes to a local or shared directory, not a URL")
    saved = load_saved_model(model_path)
    names = saved.info.get("feature_names")
    clash = [c for c in keep if c in scoring.OUTPUT_COLUMNS or c.startswith("prob_")]
    if clash:
        raise InputError(f"--keep {clash[0]!r} would collide with an output column of the same name")
    dataset = data.open_dataset(input_path, columns=names, passthrough=list(keep))
    root = _input_root(input_path, dataset.fs)
    with storage.staged_directory(output_path) as staging, _connect(ClusterConfig(), scheduler, emit):
        params = dask.delayed(saved.params, pure=True)
        tasks = []
        for path in dataset.files:
            target = staging / path[len(root):].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            tasks.append(dask.delayed(scoring.score_file, pure=False)(
                dataset.fs, path, str(target), names, list(keep), params, probabilities))
        results = dask.compute(*tasks)
        errors = [r for r in results if isinstance(r, passes.BlockError)]
        if errors:
            raise InputError(errors[0].message)
    rows = int(sum(results))
    emit({"event": "scored", "output": output_path, "files": len(dataset.files), "rows": rows})
    return rows
