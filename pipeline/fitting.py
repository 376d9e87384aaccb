"""The CLI's face of the fitting core: a config and a Parquet dataset in, the core's outcomes and model.yaml out.

``gmm fit`` is the one-candidate case (with a warm start and the "already done"
check around it, in :mod:`pipeline.job`); ``gmm select`` passes every (K,
covariance type) candidate.  What is fitted, and how, is :mod:`pipeline.engine`'s,
shared with the estimators; here: the spec and names from the config, whether
the data are held in memory, the progress events, and model.yaml's record.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pipeline import cluster, data, em, engine, kernels, passes
from pipeline.checkpoint import Checkpoint
from pipeline.choices import INIT_METHODS, VARIATIONAL_PRIOR_KEYS
from pipeline.config import Config, recorded
from pipeline.engine import Candidate, Emit, Fitted, Naming, Outcome, Warm
from pipeline.errors import InputError
from pipeline.kernels.online import MOMENT_ARRAYS
from pipeline.model import Learnt, ModelInfo, describe, learnt, what_nan_policy_did
from pipeline.secrets import scrub
from pipeline.spec import ModelSpec

__all__ = ["Candidate", "Emit", "Fitted", "Outcome", "fit_candidates", "model_info", "spec_of", "warn_collapsed"]


def spec_of(config: Config) -> ModelSpec:
    """The fit a config asks for (``model.init_params`` a model directory: the warm start is the job's, not the
    spec's)."""
    m = config.model
    prior = m.prior if m.prior is None or isinstance(m.prior, str) else m.prior.model_dump()
    return ModelSpec(
        n_components=m.n_components,
        covariance_type=m.covariance_type,
        tol=m.tol,
        reg_covar=m.reg_covar,
        max_iter=m.max_iter,
        n_init=m.n_init,
        init_params=m.init_params if m.init_params in INIT_METHODS else "kmeans",
        random_state=m.random_state,
        dtype=m.dtype,
        nan_policy=config.data.nan_policy,
        algorithm=m.algorithm,
        acceleration=m.acceleration,
        prior=prior,
        variational_priors={
            "weight_concentration_prior_type": m.weight_concentration_prior_type,
            **{key: getattr(m, key) for key in VARIATIONAL_PRIOR_KEYS},
        },
        tol_per_row=True,  # the variational bound's change per row, as model.tol means for EM's mean log-likelihood
    )


def naming_of(config: Config, feature_names: list[str], weight_column: str | None = None) -> Naming:
    """The config's words for the core's messages: the data path, column names, ``model.*`` keys."""
    return Naming(
        data=config.data.path,
        columns=[f"column {name!r}" for name in feature_names],
        weights=f"weight column {weight_column!r}" if weight_column else "the weights",
        section="model",
        float32="model.dtype: float32",
        prior_default="model.prior: default",
        too_few_rows=lambda n, k: f"{config.data.path}: {n} rows is fewer than model.n_components={k}",
    )


def check_given_priors(config: Config, candidates: list[Candidate], feature_names: list[str]) -> None:
    """InputError for a prior the config gives that data of this width cannot take, before a cluster starts."""
    engine.check_given_priors(spec_of(config), candidates, len(feature_names), naming_of(config, feature_names))


def estimator_parameters(config: Config, weight_sum: float, hyperparameters: dict | None) -> dict[str, Any]:
    """The estimator's parameters that fit as this config did (model.yaml's ``parameters``, ``load_model``'s).

    Priors are the numbers actually used (resolved from the data).  The variational mixture's ``tol`` is per
    row here and on its total bound in the estimator (scikit-learn's), so it is recorded times the weight sum.  A
    warm start from a model directory is not a parameter: ``init_params`` is then the default, ``kmeans``.
    """
    spec = spec_of(config)
    parameters: dict[str, Any] = {
        "n_components": spec.n_components,
        "covariance_type": spec.covariance_type,
        "tol": spec.tolerance(weight_sum),
        "reg_covar": spec.reg_covar,
        "max_iter": spec.max_iter,
        "n_init": spec.n_init,
        "init_params": spec.init_params,
        "random_state": spec.random_state,
        "dtype": spec.dtype,
    }
    if spec.variational:
        parameters.update(hyperparameters or {})
    else:
        parameters.update(prior=hyperparameters, nan_policy=spec.nan_policy, acceleration=spec.acceleration)
    return parameters


def _iteration_event(
    candidate: Candidate | None, runs: list[em.EMRun], changes: dict[int, float], rep: em.IterationReport, dtype: str
) -> dict[str, Any]:
    best = em.best_run(runs)
    event = {
        "event": "iteration",
        "iteration": rep.iteration,
        "lower_bound": best.lower_bound,
        "change": changes[id(best)],
        "seconds": rep.seconds,
        "active_starts": len(runs),
    }
    if candidate is not None:
        event.update(
            candidate=candidate.label, n_components=candidate.n_components, covariance_type=candidate.covariance_type
        )
    if dtype != "float64":  # what the iteration ran in: float64 where float32 is not accurate enough
        event["dtype"] = "float32" if all(d == "float32" for d in rep.dtypes) else "float64"
    kind = rep.kinds[[id(r) for r in rep.runs].index(id(best))]
    if kind != "em":  # a pass at an extrapolated point (model.acceleration), kept or not
        event["extrapolation"] = "kept" if kind == "extrapolated" else "rejected"
    return event


def fit_candidates(
    config: Config,
    dataset: data.ParquetDataset,
    candidates: list[Candidate],
    *,
    client,
    emit: Emit,
    checkpoint: Checkpoint | None = None,
    warm: kernels.Params | None = None,
    learning: engine.Learning | None = None,
) -> Fitted:
    """Fit every candidate on the configured data, sharing every pass; resume from ``checkpoint`` if it is this fit's.

    ``warm`` (one candidate only) replaces the computed start; with ``learning`` (``gmm update``), the model goes
    on learning from what it learnt before.
    """
    m = config.model
    source = replace(data.block_source(dataset), worker_timeout=config.cluster.worker_timeout)
    n_columns = len(dataset.feature_names) + (dataset.weight_column is not None)
    persisted = cluster.should_persist(config.cluster.persist, dataset.n_rows * n_columns * 8, client)
    if persisted:
        source = source.persist()
    source, summary = passes.scan(source)
    naming = naming_of(config, dataset.feature_names, dataset.weight_column)
    n_rows = sum(summary.n_rows)
    if n_rows and m.reg_covar == 0 and learning is None:  # learning goes on: the kept statistics hold the spread
        constant = [n for n, lo, hi in zip(dataset.feature_names, summary.minimum, summary.maximum) if lo == hi]
        if constant:
            raise InputError(
                f"{config.data.path}: column {constant[0]!r} is constant; set model.reg_covar > 0 or drop the column"
            )
    n_least = None if learning is not None else max(c.n_components for c in candidates)
    engine.check_summary(summary, spec_of(config), naming, n_least)
    emit(
        {
            "event": "data",
            "path": config.data.path,
            "n_rows": n_rows,
            "n_features": len(dataset.feature_names),
            "columns": list(dataset.feature_names),
            "n_partitions": len(dataset.partitions),
            "dropped_rows": dataset.n_rows - n_rows,
            "persisted": persisted,
            "nan_policy": dataset.nan_policy,
            "missing_values": summary.n_missing,
            "incomplete_rows": summary.n_incomplete,
        }
    )
    for message in dataset.column_warnings:
        emit({"event": "warning", "category": "ColumnWarning", "message": message})

    def report(rep: em.IterationReport, groups: list[list[em.EMRun]]) -> None:
        changes = {id(r): c for r, c in zip(rep.runs, rep.changes)}
        for candidate, group in zip(candidates, groups):
            active = [r for r in group if id(r) in changes]
            if active:
                emit(_iteration_event(candidate if len(candidates) > 1 else None, active, changes, rep, m.dtype))

    return engine.fit(
        source,
        summary,
        spec_of(config),
        candidates,
        naming,
        warm=None if warm is None else Warm(warm),
        learning=learning,
        with_criteria=learning is None,  # criteria of the new rows alone would mean nothing
        checkpoint=checkpoint,
        emit=emit,
        on_iteration=report,
        feature_names=dataset.feature_names,
    )


def model_info(
    config: Config, dataset: data.ParquetDataset, fitted: Fitted, outcome: Outcome, **fields: Any
) -> ModelInfo:
    run, summary = outcome.run, fitted.summary
    chosen = config.model_copy(
        update={
            "model": config.model.model_copy(
                update={
                    "n_components": outcome.candidate.n_components,
                    "covariance_type": outcome.candidate.covariance_type,
                }
            )
        }
    )
    missing = what_nan_policy_did(dataset.nan_policy, summary, dataset.n_rows - fitted.n_rows)
    variational = config.model.algorithm == "variational"
    lineage = None
    if MOMENT_ARRAYS[0] in outcome.extra_arrays:  # EM keeps what it learnt, to learn more (gmm update)
        lineage = [learnt_from(config, dataset, "fit", fitted.n_rows, summary.weight_sum)]
    recorded_fields: dict[str, Any] = {
        "converged": run.converged,
        "n_iter": run.n_iter,
        "lower_bound": run.lower_bound,
        "history": run.history,
        "n_samples": fitted.n_rows,
        "weight_sum": summary.weight_sum if outcome.fit is None else outcome.fit.weight_sum,
        "bic": outcome.bic,
        "aic": outcome.aic,
        "icl": outcome.icl,
        "config": recorded(chosen),
        "data_fingerprint": dataset.fingerprint,
        "algorithm": config.model.algorithm,
        "prior": None if variational else outcome.hyperparameters,
        "variational": outcome.hyperparameters if variational else None,
        "missing": missing,
        "collapsed_components": outcome.collapsed,
        "parameters": estimator_parameters(chosen, summary.weight_sum, outcome.hyperparameters),
        "lineage": lineage,
    }
    return describe(run.params, dataset.feature_names, **{**recorded_fields, **fields})


def learnt_from(
    config: Config, dataset: data.ParquetDataset, kind: str, n_rows: int, weight_sum: float, **fields: Any
) -> Learnt:
    """The lineage entry of a fit or update of ``dataset`` (its path without any password)."""
    return learnt(
        kind, n_rows, weight_sum, data=scrub(config.data.path), data_fingerprint=dataset.fingerprint, **fields
    )


def warn_collapsed(config: Config, candidate: Candidate, collapsed: list[int], emit: Emit) -> None:
    """A warning event naming the components of ``candidate`` that ``reg_covar`` alone holds up (none: no event)."""
    if collapsed:
        emit(engine.collapse_warning(candidate, collapsed, naming_of(config, [])))
