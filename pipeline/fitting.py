"""The one fitting path: data -> checks -> starts (or a checkpoint) -> EM for every candidate -> criteria.

``gmm fit`` is its one-candidate case (with a warm start and the "already
done" check around it, in :mod:`pipeline.job`); ``gmm select`` passes every
(K, covariance type) candidate.  All candidates and their restarts share each
pass over the data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pipeline import cluster, data, em, init, kernels, passes
from pipeline.checkpoint import Checkpoint, SavedRun
from pipeline.choices import INIT_METHODS, VARIATIONAL_PRIOR_KEYS
from pipeline.config import Config, ModelConfig, recorded
from pipeline.errors import InputError
from pipeline.kernels.algorithms import EMStep, collapsed_components
from pipeline.kernels.prior import PRIOR_KEYS, Prior, check_prior, default_prior
from pipeline.kernels.variational import VariationalPriors, VariationalStep, resolve_priors
from pipeline.model import MissingValues, ModelInfo, describe

Emit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Candidate:
    """One model to fit: a number of components and a covariance type."""

    n_components: int
    covariance_type: str

    @property
    def label(self) -> str:
        return f"K={self.n_components} {self.covariance_type}"


@dataclass(frozen=True)
class Outcome:
    """How one candidate ended: its best run, and the criteria of its parameters on the data."""

    candidate: Candidate
    run: em.EMRun
    fit: kernels.Fit
    bic: float | None
    aic: float | None
    icl: float | None
    collapsed: list[int]
    hyperparameters: dict | None

    @property
    def extra_arrays(self) -> dict:
        """The arrays of the run's state besides the mixture's own (the variational posterior's)."""
        arrays = self.run.algorithm.arrays(self.run.state)
        return {name: value for name, value in arrays.items() if name not in kernels.params.PARAM_ARRAYS}


@dataclass(frozen=True)
class Fitted:
    """Every candidate's outcome, and what the scan learnt of the data."""

    outcomes: list[Outcome]
    summary: kernels.Summary
    n_rows: int


def seed_of(random_state: int | None) -> int:
    """The seed of every start: ``random_state``, or fresh entropy when it is None."""
    return int(np.random.SeedSequence().entropy) if random_state is None else random_state


def criteria(fit: kernels.Fit, candidate: Candidate, n_features: int) -> tuple[float, float, float]:
    """BIC, AIC and ICL (lower is better) from the total log-likelihood; frequency weights count as rows.

    ICL is mclust's, in BIC's sign here: ``BIC - 2 sum_i s_i log max_k r_ik`` (never below BIC).
    """
    n_params = kernels.n_parameters(candidate.covariance_type, candidate.n_components, n_features)
    bic = -2.0 * fit.log_likelihood + n_params * math.log(fit.weight_sum)
    return bic, -2.0 * fit.log_likelihood + 2.0 * n_params, bic - 2.0 * fit.log_max_resp


def estimator_parameters(config: Config, weight_sum: float, hyperparameters: dict | None) -> dict[str, Any]:
    """The estimator's parameters that fit as this config did (model.yaml's ``parameters``, ``load_model``'s).

    Priors are the numbers actually used (resolved from the data).  The variational mixture's ``tol`` is per
    row here and on its total bound in the estimator (scikit-learn's), so it is recorded times the weight sum.  A
    warm start from a model directory is not a parameter: ``init_params`` is then the default, ``kmeans``.
    """
    m = config.model
    variational = m.algorithm == "variational"
    parameters: dict[str, Any] = {
        "n_components": m.n_components,
        "covariance_type": m.covariance_type,
        "tol": m.tol * weight_sum if variational else m.tol,
        "reg_covar": m.reg_covar,
        "max_iter": m.max_iter,
        "n_init": m.n_init,
        "init_params": m.init if m.init in INIT_METHODS else "kmeans",
        "random_state": m.random_state,
        "dtype": m.dtype,
    }
    if variational:
        parameters.update(hyperparameters or {})
    else:
        parameters.update(prior=hyperparameters, nan_policy=config.data.nan_policy)
    return parameters


def _needs_moments(m: ModelConfig) -> bool:
    return m.prior is not None or m.algorithm == "variational"


def make_algorithm(
    m: ModelConfig,
    candidate: Candidate,
    moments: kernels.DataMoments | None,
    hyperparameters: dict | None = None,
    missing: bool = False,
    feature_names: list[str] | None = None,
):
    """The algorithm of a candidate: EM, MAP EM under the prior, or the variational mixture (priors resolved from
    the data's moments, or as a checkpoint recorded them)."""
    ct = candidate.covariance_type
    if m.algorithm == "variational":
        if hyperparameters is not None:
            return VariationalStep(ct, m.reg_covar, VariationalPriors.from_dict(hyperparameters))
        given = {key: getattr(m, key) for key in VARIATIONAL_PRIOR_KEYS}
        try:
            priors = resolve_priors(moments, candidate.n_components, ct, m.weight_concentration_prior_type, **given)
        except ValueError as exc:
            raise InputError(f"model: {exc}") from None
        return VariationalStep(ct, m.reg_covar, priors)
    if m.prior is None:
        return EMStep(ct, m.reg_covar, missing=missing)
    try:
        if hyperparameters is not None:  # resolved before (a checkpoint)
            prior = Prior.from_dict(hyperparameters)
        else:
            given = (
                {}
                if m.prior == "default"
                else {k: getattr(m.prior, k) for k in PRIOR_KEYS if getattr(m.prior, k) is not None}
            )
            prior = default_prior(moments, candidate.n_components, ct, feature_names, **given)
        check_prior(prior, ct, moments.mean.shape[0] if moments is not None else prior.mean.shape[0])
    except ValueError as exc:  # a ragged matrix, a value out of range
        raise InputError(f"model.prior: {exc}") from None
    return EMStep(ct, m.reg_covar, prior, missing=missing)


def check_given_priors(m: ModelConfig, candidates: list[Candidate], n_features: int) -> None:
    """InputError for a prior the config gives that data of this width cannot take, before any work is started.

    The defaults a prior leaves to the data need the data's moments: they are checked once those are known.
    """
    stand_in = kernels.DataMoments(math.inf, np.zeros(n_features), np.eye(n_features))
    for candidate in candidates:
        make_algorithm(m, candidate, stand_in)


def check_summary(summary: kernels.Summary, dataset: data.ParquetDataset, config: Config, n_components: int) -> None:
    """The scan's findings that stop a fit before it starts: no rows, weights or values float64 cannot carry."""
    n_rows = sum(summary.n_rows)
    where = config.data.path
    if n_rows == 0:
        raise InputError(f"{where}: the dataset has no rows")
    if n_rows < n_components:
        raise InputError(f"{where}: {n_rows} rows is fewer than model.n_components={n_components}")
    weights = f"weight column {dataset.weight_column!r}" if dataset.weight_column else "the weights"
    float32 = "model.dtype: float32" if config.model.dtype == "float32" else None
    problem = summary.problem([f"column {name!r}" for name in dataset.feature_names], weights, float32)
    if problem:
        raise InputError(f"{where}: {problem}")
    if config.model.reg_covar == 0:
        constant = [n for n, lo, hi in zip(dataset.feature_names, summary.minimum, summary.maximum) if lo == hi]
        if constant:
            raise InputError(f"{where}: column {constant[0]!r} is constant; set model.reg_covar > 0 or drop the column")


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
) -> Fitted:
    """Fit every candidate on the configured data, sharing every pass; resume from ``checkpoint`` if it is this fit's.

    ``warm`` (one candidate only) replaces the computed start.
    """
    m = config.model
    source = data.block_source(dataset)
    source = replace(source, worker_timeout=config.cluster.worker_timeout)
    n_columns = len(dataset.feature_names) + (dataset.weight_column is not None)
    persisted = cluster.should_persist(config.cluster.persist, dataset.n_rows * n_columns * 8, client)
    if persisted:
        source = source.persist()
    source, summary = passes.scan(source)
    check_summary(summary, dataset, config, max(c.n_components for c in candidates))
    n_rows = sum(summary.n_rows)
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

    groups = _resume(config, candidates, checkpoint, emit) if checkpoint is not None else None
    if groups is None:
        groups = _start(config, source, candidates, warm, dataset.feature_names)
    hyper = [g[0].algorithm.hyperparameters() for g in groups]

    def report(rep: em.IterationReport) -> None:
        if checkpoint is not None:
            checkpoint.save(
                [
                    SavedRun(
                        c, r.algorithm.arrays(r.state), r.lower_bound, r.objective, r.history, r.n_iter, r.converged
                    )
                    for c, g in enumerate(groups)
                    for r in g
                ],
                hyper,
            )
        changes = {id(r): c for r, c in zip(rep.runs, rep.changes)}
        for candidate, group in zip(candidates, groups):
            active = [r for r in group if id(r) in changes]
            if active:
                emit(_iteration_event(candidate if len(candidates) > 1 else None, active, changes, rep, m.dtype))

    em.run_em(
        source,
        [r for g in groups for r in g],
        # the variational bound is a total: model.tol is per row, as for EM's mean log-likelihood
        tol=m.tol * summary.weight_sum if m.algorithm == "variational" else m.tol,
        max_iter=m.max_iter,
        dtype=m.dtype,
        data_variance=summary.variance,
        on_iteration=report,
    )
    bests = [em.best_run(g) for g in groups]
    fits = em.final_fits(source, bests)
    outcomes = []
    for candidate, run, fit, h in zip(candidates, bests, fits, hyper):
        # the criteria count the parameters of a mixture fitted by maximum likelihood: not the variational one's
        bic, aic, icl = (
            (None, None, None) if m.algorithm == "variational" else criteria(fit, candidate, len(dataset.feature_names))
        )
        collapsed = collapsed_components(run.params, m.reg_covar, summary.variance).tolist()
        outcomes.append(Outcome(candidate, run, fit, bic, aic, icl, collapsed, h))
    return Fitted(outcomes, summary, n_rows)


def _start(
    config: Config, source, candidates: list[Candidate], warm: kernels.Params | None, feature_names: list[str]
) -> list[list[em.EMRun]]:
    m = config.model
    seed = seed_of(m.random_state)
    missing = config.data.nan_policy == "marginalize"
    if warm is not None:
        moments = init.data_moments(source, warm.means.mean(axis=0)) if _needs_moments(m) else None
        algorithm = make_algorithm(m, candidates[0], moments, missing=missing, feature_names=feature_names)
        return [[em.EMRun(algorithm, warm)]]
    try:
        starts = init.start_statistics(
            source,
            [(c.n_components, c.covariance_type) for c in candidates],
            init_params=m.init,
            n_init=m.n_init,
            seed=seed,
            with_moments=_needs_moments(m),
        )
    except ValueError as exc:
        raise InputError(f"{config.data.path}: {exc}") from None
    groups = []
    for candidate, specs, stats in zip(candidates, starts.specs, starts.stats):
        algorithm = make_algorithm(m, candidate, starts.moments, missing=missing, feature_names=feature_names)
        groups.append([em.EMRun(algorithm, algorithm.m_step(s, spec.shift)) for spec, s in zip(specs, stats)])
    return groups


def _resume(
    config: Config, candidates: list[Candidate], checkpoint: Checkpoint, emit: Emit
) -> list[list[em.EMRun]] | None:
    resumed, reason = checkpoint.resume()
    if resumed is None:
        if reason:
            emit({"event": "restart", "checkpoint": checkpoint.path, "reason": f"checkpoint not used: {reason}"})
        return None
    try:
        algorithms = [
            make_algorithm(config.model, c, None, h, missing=config.data.nan_policy == "marginalize")
            for c, h in zip(candidates, resumed.hyperparameters, strict=True)
        ]
        groups: list[list[em.EMRun]] = [[] for _ in candidates]
        for saved in resumed.runs:
            algorithm = algorithms[saved.candidate]
            state = algorithm.from_arrays(saved.arrays)
            params = algorithm.params(state)
            kernels.check_params(params)
            if params.n_components != candidates[saved.candidate].n_components:
                raise ValueError("its runs have another number of components")
            groups[saved.candidate].append(
                em.EMRun(
                    algorithm, state, saved.lower_bound, saved.objective, saved.history, saved.n_iter, saved.converged
                )
            )
        if not all(groups):
            raise ValueError("a candidate has no run")
    except (KeyError, ValueError, TypeError, IndexError, InputError) as exc:
        emit(
            {
                "event": "restart",
                "checkpoint": checkpoint.path,
                "reason": f"checkpoint not used: it is damaged ({str(exc).splitlines()[0][:120]})",
            }
        )
        return None
    emit({"event": "resume", "iteration": max(r.n_iter for g in groups for r in g), "checkpoint": checkpoint.path})
    return groups


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
    missing = None
    if dataset.nan_policy != "error":
        missing = MissingValues(
            nan_policy=dataset.nan_policy,
            n_missing_values=summary.n_missing,
            n_incomplete_rows=summary.n_incomplete,
            n_dropped_rows=dataset.n_rows - fitted.n_rows,
        )
    variational = config.model.algorithm == "variational"
    return describe(
        run.params,
        dataset.feature_names,
        converged=run.converged,
        n_iter=run.n_iter,
        lower_bound=run.lower_bound,
        history=run.history,
        n_samples=fitted.n_rows,
        weight_sum=outcome.fit.weight_sum,
        bic=outcome.bic,
        aic=outcome.aic,
        icl=outcome.icl,
        config=recorded(chosen),
        data_fingerprint=dataset.fingerprint,
        algorithm=config.model.algorithm,
        prior=None if variational else outcome.hyperparameters,
        variational=outcome.hyperparameters if variational else None,
        missing=missing,
        collapsed_components=outcome.collapsed,
        parameters=estimator_parameters(chosen, summary.weight_sum, outcome.hyperparameters),
        **fields,
    )


def warn_collapsed(candidate: Candidate, collapsed: list[int], emit: Emit) -> None:
    """A warning event naming the components of ``candidate`` that ``reg_covar`` alone holds up (none: no event)."""
    if collapsed:
        emit(
            {
                "event": "warning",
                "category": "CollapsedComponentsWarning",
                "message": f"{len(collapsed)} of {candidate.n_components} components ({candidate.label}) collapsed "
                f"onto single points or none: {collapsed}; reg_covar alone keeps their covariances "
                "positive definite (set model.prior: default, or reduce model.n_components)",
            }
        )
