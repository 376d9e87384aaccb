"""The one fitting core: (scanned blocks, a spec, candidates) -> fitted runs, for the CLI and the estimators alike.

``gmm fit`` is its one-candidate case and ``gmm select`` passes every (K,
covariance type) candidate (through :mod:`pipeline.fitting`);
``GaussianMixture.fit`` and ``BayesianGaussianMixture.fit`` pass one.  Here
and only here: which algorithm a candidate runs (EM, MAP EM under the
prior, the variational mixture), its starts and their seed (or a warm or
explicit start, or a checkpoint), the checks of the scan's findings, the EM
loop (all candidates and restarts share each pass), the choice of the best
run, the criteria and the collapsed components.  A face names things its own
way (:class:`Naming`): the config's keys, or scikit-learn's parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline import em, init, kernels
from pipeline.checkpoint import Checkpoint, SavedRun
from pipeline.errors import InputError
from pipeline.kernels.acceleration import Cycle, Squarem
from pipeline.kernels.algorithms import EMStep, collapsed_components
from pipeline.kernels.online import IncrementalStep, Learned
from pipeline.kernels.prior import Prior, check_prior, default_prior
from pipeline.kernels.variational import VariationalPriors, VariationalStep, resolve_priors
from pipeline.passes import BlockSource
from pipeline.spec import ModelSpec

Emit = Callable[[dict[str, Any]], None]


def ignore(event: dict[str, Any]) -> None:
    """An ``emit`` that drops every event."""


@dataclass(frozen=True)
class Candidate:
    """One model to fit: a number of components and a covariance type."""

    n_components: int
    covariance_type: str

    @property
    def label(self) -> str:
        return f"K={self.n_components} {self.covariance_type}"


@dataclass(frozen=True)
class Naming:
    """How a face names what its user gave, for the core's messages.

    Attributes
    ----------
    data : str
        The data ("data/x.parquet"), or "" where the face names none (an array).
    columns : list of str
        Each feature, as "column 'x0'" or "column 0".
    weights : str
        The weights: "weight column 'w'", "the weights", "sample_weight".
    section : str
        Prefix of the model's keys: "model" (the config) or "" (the estimator's parameters).
    float32 : str
        How float32 arithmetic is asked for: "model.dtype: float32" or "dtype='float32'".
    prior_default : str
        How the default prior is asked for: "model.prior: default" or "prior='default'".
    too_few_rows : callable
        ``(n_rows, n_components) -> str``: the message for fewer rows than ``max(min_rows, n_components)``.
    min_rows : int
        The fewest rows a fit takes (scikit-learn's estimators: 2).
    """

    data: str
    columns: list[str]
    weights: str
    section: str
    float32: str
    prior_default: str
    too_few_rows: Callable[[int, int], str]
    min_rows: int = 1

    def key(self, name: str) -> str:
        return f"{self.section}.{name}" if self.section else name

    def where(self, message: str) -> str:
        return f"{self.data}: {message}" if self.data else message


@dataclass(frozen=True)
class Warm:
    """A given start (a model directory, the estimator's last fit): no start pass.

    ``state`` is the algorithm's state, or a function of the candidate's step that makes it (e.g. a first
    M-step from given responsibilities: a test's start).  ``lower_bound`` and ``objective`` are the run's before
    its first iteration (scikit-learn's warm start compares the first change with the last fit's bound).
    """

    state: Any
    lower_bound: float = -math.inf
    objective: float = -math.inf


@dataclass(frozen=True)
class Learning:
    """Learning on top of what was learnt before (with a warm start whose state is a
    :class:`~pipeline.kernels.online.Learned`): each M-step from ``past + weight * (the rows' moments)``, counted
    ``count`` times (:class:`~pipeline.kernels.online.IncrementalStep`), under the ``prior`` resolved when the
    learning began (kept: no pass for the data's moments)."""

    past: kernels.ComponentMoments | None
    weight: float = 1.0
    count: float = 1.0
    prior: dict | None = None


@dataclass(frozen=True)
class Outcome:
    """How one candidate ended: its best run, and (if asked) the criteria of its parameters on the data."""

    candidate: Candidate
    run: em.EMRun
    fit: kernels.Fit | None
    bic: float | None
    aic: float | None
    icl: float | None
    collapsed: list[int]
    hyperparameters: dict | None

    @property
    def extra_arrays(self) -> dict:
        """The arrays of the run's state besides the mixture's own (the variational posterior's, or the moments
        EM learnt from)."""
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


def make_step(
    spec: ModelSpec,
    candidate: Candidate,
    moments: kernels.DataMoments | None,
    naming: Naming,
    hyperparameters: dict | None = None,
    feature_names: list[str] | None = None,
):
    """The algorithm of a candidate: EM, MAP EM under the prior, or the variational mixture.

    Priors are resolved from the data's ``moments``, or taken as a checkpoint recorded them
    (``hyperparameters``).

    Raises
    ------
    InputError
        A prior the data cannot take, naming the key as the face names it.
    """
    ct = candidate.covariance_type
    if spec.variational:
        if hyperparameters is not None:
            return VariationalStep(ct, spec.reg_covar, VariationalPriors.from_dict(hyperparameters))
        try:
            priors = resolve_priors(
                moments,
                candidate.n_components,
                ct,
                spec.weight_concentration_prior_type,
                **spec.given_variational_priors(),
            )
        except ValueError as exc:
            if not naming.section:  # the estimators raise the kernels' own errors
                raise
            raise InputError(f"{naming.section}: {exc}") from None
        return VariationalStep(ct, spec.reg_covar, priors)
    if spec.prior is None and hyperparameters is None:
        return EMStep(ct, spec.reg_covar, missing=spec.marginalize)
    try:
        if hyperparameters is not None:  # resolved before (a checkpoint)
            prior = Prior.from_dict(hyperparameters)
        else:
            prior = default_prior(moments, candidate.n_components, ct, feature_names, **spec.given_prior())
        check_prior(prior, ct, moments.mean.shape[0] if moments is not None else prior.mean.shape[0])
    except ValueError as exc:  # a ragged matrix, a value out of range
        if not naming.section:
            raise
        raise InputError(f"{naming.key('prior')}: {exc}") from None
    return EMStep(ct, spec.reg_covar, prior, missing=spec.marginalize)


def check_given_priors(spec: ModelSpec, candidates: list[Candidate], n_features: int, naming: Naming) -> None:
    """InputError for a prior that data of this width cannot take, before any work is started.

    The defaults a prior leaves to the data need the data's moments: they are checked once those are known.
    """
    stand_in = kernels.DataMoments(math.inf, np.zeros(n_features), np.eye(n_features))
    for candidate in candidates:
        make_step(spec, candidate, stand_in, naming)


def check_summary(summary: kernels.Summary, spec: ModelSpec, naming: Naming, n_components: int | None) -> None:
    """The scan's findings that stop a fit before it starts: too few rows, weights or values the arithmetic
    cannot carry.  ``n_components`` None: learning goes on from what was learnt before (a batch of one row will
    do, and a column every row of the batch misses is filled in by the current parameters)."""
    n_rows = sum(summary.n_rows)
    if n_rows == 0:
        raise InputError(naming.where("the dataset has no rows"))
    if n_components is not None and n_rows < max(naming.min_rows, n_components):
        raise InputError(naming.too_few_rows(n_rows, n_components))
    float32 = naming.float32 if spec.dtype == "float32" else None
    problem = summary.problem(naming.columns, naming.weights, float32, every_column=n_components is not None)
    if problem:
        raise InputError(naming.where(problem))


def collapse_warning(candidate: Candidate, collapsed: list[int], naming: Naming) -> dict[str, Any]:
    """The warning event for components that ``reg_covar`` alone holds up, with the advice in the face's words."""
    return {
        "event": "warning",
        "category": "CollapsedComponentsWarning",
        "message": f"{len(collapsed)} of {candidate.n_components} components ({candidate.label}) collapsed onto "
        f"single points or none: {collapsed}; reg_covar alone keeps their covariances positive definite (set "
        f"{naming.prior_default}, or reduce {naming.key('n_components')})",
    }


def fit(
    source: BlockSource,
    summary: kernels.Summary,
    spec: ModelSpec,
    candidates: list[Candidate],
    naming: Naming,
    *,
    warm: Warm | None = None,
    learning: Learning | None = None,
    checkpoint: Checkpoint | None = None,
    emit: Emit = ignore,
    on_iteration: Callable[[em.IterationReport, list[list[em.EMRun]]], None] | None = None,
    with_criteria: bool = True,
    feature_names: list[str] | None = None,
) -> Fitted:
    """Fit every candidate on the scanned ``source``, sharing every pass; resume from ``checkpoint`` if it is this
    fit's.

    Parameters
    ----------
    source : BlockSource
        The rows, as :func:`pipeline.passes.scan` returned them (exact row counts per block).
    summary : Summary
        What that scan found.
    spec : ModelSpec
    candidates : list of Candidate
    naming : Naming
    warm : Warm, optional
        One candidate only: its start (no start pass).
    learning : Learning, optional
        With ``warm``: go on learning from what was learnt before (``partial_fit``, ``gmm update``).
    checkpoint : Checkpoint, optional
        Resumed from if it is this fit's, written after every iteration.
    emit : callable
        Receives the restart/resume events.
    on_iteration : callable, optional
        Receives each :class:`pipeline.em.IterationReport` and the runs of every candidate (a list per candidate).
    with_criteria : bool
        One more pass for each candidate's BIC, AIC and ICL (not for the variational mixture).
    feature_names : list of str, optional
        For messages about the data's columns.

    Returns
    -------
    Fitted
    """
    check_summary(summary, spec, naming, None if learning is not None else max(c.n_components for c in candidates))
    accelerated = _accelerated(spec, learning)
    groups = _resume(spec, candidates, checkpoint, naming, emit, learning) if checkpoint is not None else None
    if groups is None:
        groups = _start(source, spec, candidates, naming, warm, feature_names, summary.column_mean, learning)
        if accelerated:
            groups = [
                [em.EMRun(Squarem(r.algorithm), Cycle(r.state), r.lower_bound, r.objective) for r in g] for g in groups
            ]
    hyper = [g[0].algorithm.hyperparameters() for g in groups]

    def report(rep: em.IterationReport) -> None:
        if checkpoint is not None:
            saved = [
                SavedRun(c, r.algorithm.arrays(r.state), r.lower_bound, r.objective, r.history, r.n_iter, r.converged)
                for c, g in enumerate(groups)
                for r in g
            ]
            checkpoint.save(saved, hyper)
        if on_iteration is not None:
            on_iteration(rep, groups)

    em.run_em(
        source,
        [r for g in groups for r in g],
        tol=spec.tolerance(summary.weight_sum),
        max_iter=spec.max_iter,
        dtype=spec.dtype,
        data_variance=summary.variance,
        on_iteration=report,
    )
    for run in (r for g in groups for r in g):
        if isinstance(run.algorithm, Squarem):  # the model is what EM reached, not the cycle around it
            run.algorithm, run.state = run.algorithm.inner, run.state.state
    # with max_iter=0 no run has a bound: the last start stands, as scikit-learn's
    bests = [em.best_run(g) if any(r.n_iter for r in g) else g[-1] for g in groups]
    fits: list[kernels.Fit | None] = list(em.final_fits(source, bests)) if with_criteria else [None] * len(bests)
    outcomes = []
    for candidate, run, fit_, h in zip(candidates, bests, fits, hyper):
        # the criteria count the parameters of a mixture fitted by maximum likelihood: not the variational one's
        bic, aic, icl = (
            criteria(fit_, candidate, source.n_features)
            if fit_ is not None and not spec.variational
            else (None, None, None)
        )
        collapsed = collapsed_components(run.params, spec.reg_covar, summary.variance).tolist()
        outcomes.append(Outcome(candidate, run, fit_, bic, aic, icl, collapsed, h))
    return Fitted(outcomes, summary, sum(summary.n_rows))


def _means_of(state) -> np.ndarray:
    return getattr(state, "params", state).means


def _start(
    source: BlockSource,
    spec: ModelSpec,
    candidates: list[Candidate],
    naming: Naming,
    warm: Warm | None,
    feature_names: list[str] | None,
    data_mean: np.ndarray,
    learning: Learning | None = None,
) -> list[list[em.EMRun]]:
    d = source.n_features

    def moments_at(centre: np.ndarray) -> kernels.DataMoments | None:  # one pass, only when a prior needs them
        return init.data_moments(source, centre) if spec.needs_moments else None

    if warm is not None:
        made = callable(warm.state)
        centre = data_mean if made else np.asarray(_means_of(warm.state)).mean(axis=0)
        if learning is not None and learning.prior is not None:
            step = make_step(spec, candidates[0], None, naming, hyperparameters=learning.prior)
        else:
            step = make_step(spec, candidates[0], moments_at(centre), naming, feature_names=feature_names)
        step = _keeping_moments(step, learning)
        state = warm.state(step) if made else warm.state
        if isinstance(step, IncrementalStep) and not isinstance(state, Learned):
            state = Learned(state, None)  # parameters alone (a fitted estimator's, a model directory's)
        return [[em.EMRun(step, state, warm.lower_bound, warm.objective)]]
    (first,) = candidates if len(candidates) == 1 else (None,)
    explicit = (spec.weights_init, spec.means_init, spec.precisions_init)
    if first is not None and not spec.variational:
        whole = init.explicit_params(None, first.covariance_type, first.n_components, d, *explicit)
        if whole is not None:  # every part given: no start pass
            step = make_step(spec, first, moments_at(whole.means.mean(axis=0)), naming, feature_names=feature_names)
            return [[em.EMRun(_keeping_moments(step, None), Learned(whole, None))]]
    try:
        starts = init.start_statistics(
            source,
            [(c.n_components, c.covariance_type) for c in candidates],
            init_params=spec.init_params,
            n_init=spec.n_init,
            seed=seed_of(spec.random_state),
            with_moments=spec.needs_moments,
        )
    except ValueError as exc:
        raise InputError(naming.where(str(exc))) from None
    groups = []
    for candidate, specs, stats in zip(candidates, starts.specs, starts.stats):
        step = _keeping_moments(make_step(spec, candidate, starts.moments, naming, feature_names=feature_names), None)
        runs = []
        for start_spec, start_stats in zip(specs, stats):
            state = step.m_step(start_stats, start_spec.shift)
            if not spec.variational and any(part is not None for part in explicit):
                # the parts given take the place of the computed ones (and of the moments they came from)
                k, ct = candidate.n_components, candidate.covariance_type
                state = Learned(init.explicit_params(state.params, ct, k, d, *explicit), None)
            runs.append(em.EMRun(step, state))
        groups.append(runs)
    return groups


def _accelerated(spec: ModelSpec, learning: Learning | None) -> bool:
    """Whether the runs' EM is accelerated (SQUAREM): if asked, and not while learning from earlier moments."""
    return spec.acceleration == "squarem" and not spec.variational and learning is None


def _keeping_moments(step, learning: Learning | None):
    """EM (or MAP EM) whose state keeps the moments of its last M-step, so that the model can keep learning
    (:class:`~pipeline.kernels.online.IncrementalStep`: the same arithmetic as ``step`` when nothing was learnt
    before); the variational mixture as it is."""
    if not isinstance(step, EMStep):
        return step
    if learning is None:
        return IncrementalStep(step, None)
    return IncrementalStep(step, learning.past, learning.weight, learning.count)


def _resume(
    spec: ModelSpec,
    candidates: list[Candidate],
    checkpoint: Checkpoint,
    naming: Naming,
    emit: Emit,
    learning: Learning | None = None,
) -> list[list[em.EMRun]] | None:
    resumed, reason = checkpoint.resume()
    if resumed is None:
        if reason:
            emit({"event": "restart", "checkpoint": checkpoint.path, "reason": f"checkpoint not used: {reason}"})
        return None
    try:
        steps = [
            _keeping_moments(make_step(spec, c, None, naming, h), learning)
            for c, h in zip(candidates, resumed.hyperparameters, strict=True)
        ]
        if _accelerated(spec, learning):
            steps = [Squarem(step) for step in steps]
        groups: list[list[em.EMRun]] = [[] for _ in candidates]
        for saved in resumed.runs:
            step = steps[saved.candidate]
            state = step.from_arrays(saved.arrays)
            learned = state.state if isinstance(state, Cycle) else state
            if isinstance(learned, Learned) and learned.moments is None:
                raise ValueError("written by an earlier version, which kept no statistics")
            params = step.params(state)
            kernels.check_params(params)
            if params.n_components != candidates[saved.candidate].n_components:
                raise ValueError("its runs have another number of components")
            groups[saved.candidate].append(
                em.EMRun(step, state, saved.lower_bound, saved.objective, saved.history, saved.n_iter, saved.converged)
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
