"""The EM driver: starts -> loop { one pass -> M-step -> converged? } -> runs.

Several runs (``n_init`` restarts, and every candidate of a selection) advance
together: one pass over the data per iteration computes the statistics of
every run still going.  The driver only orchestrates; the arithmetic is in
:mod:`pipeline.kernels` (each run's algorithm: maximum likelihood, MAP or
variational), the Dask work in :mod:`pipeline.passes`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from pipeline import kernels
from pipeline.errors import InputError, NumericalError
from pipeline.kernels.algorithms import check_supported
from pipeline.passes import BlockSource, add_tuples


@dataclass
class EMRun:
    """State and outcome of one EM run.

    Attributes
    ----------
    algorithm : object
        What an iteration does (:class:`pipeline.kernels.algorithms.EMStep`, or the variational one).
    state : object
        The algorithm's current state (``Params`` for EM), after the last M-step.
    lower_bound : float
        As scikit-learn's ``lower_bound_``: the mean log-likelihood per unit weight at the last E-step (EM).
    objective : float
        What the convergence test compares (the lower bound, or the log-posterior under a prior).
    history : list of float
        ``lower_bound`` after each iteration.
    n_iter : int
    converged : bool
    """

    algorithm: Any
    state: Any
    lower_bound: float = -math.inf
    objective: float = -math.inf
    history: list[float] = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False

    @property
    def params(self) -> kernels.Params:
        return self.algorithm.params(self.state)


@dataclass(frozen=True)
class IterationReport:
    """What one iteration did, for progress output and checkpoints."""

    iteration: int
    runs: list[EMRun]
    changes: list[float]
    seconds: float
    dtypes: list[str]  # the arithmetic of each run's E-step: float64 where float32 was asked but not accurate enough
    kinds: list[str]  # what each run's pass was (:class:`pipeline.kernels.steps.Scores`' ``kind``)


def _em_block(X, sample_weight, row_offset, preps):
    return tuple(kernels.block_statistics(X, sample_weight, p) for p in preps)


def _fit_block(X, sample_weight, row_offset, preps):
    return tuple(kernels.block_fit(X, sample_weight, p) for p in preps)


def _check_finite(stats: kernels.Stats, iteration: int) -> None:
    if stats.weight_sum <= 0:
        raise InputError("the data has no rows with positive weight")
    finite = (
        math.isfinite(stats.log_likelihood)
        and np.isfinite(stats.nk).all()
        and np.isfinite(stats.s1).all()
        and np.isfinite(stats.s2).all()
    )
    if not finite:
        raise NumericalError(
            f"iteration {iteration}: the E-step gave a non-finite log-likelihood or moments "
            f"(log-likelihood {stats.log_likelihood!r}); values or weights too large for float64 arithmetic, "
            "or a degenerate start: rescale the data or the weights"
        )


def run_em(
    source: BlockSource,
    runs: list[EMRun],
    *,
    tol: float,
    max_iter: int,
    dtype: str = "float64",
    data_variance: np.ndarray | None = None,
    on_iteration: Callable[[IterationReport], None] | None = None,
) -> list[EMRun]:
    """Advance every run until its objective changes by less than ``tol`` or ``max_iter``.

    Runs resumed from a checkpoint keep their ``n_iter`` and ``history``.
    ``dtype`` is the E-step's arithmetic (see :func:`pipeline.kernels.prepare`).
    ``data_variance`` (n_features,), the data's variance per feature (``Summary.variance``), is the scale at which
    every M-step's covariances are checked for collapse, whatever the covariance type.
    The runs are updated in place and returned.

    Raises
    ------
    NumericalError
        If an iteration produced NaN or inf.
    ComponentCollapseError
        If an M-step left a component with a variance the data's scale cannot support.
    """
    # One BLAS thread here: the client's arithmetic is small, and an idle OpenBLAS thread spins for a while after
    # every call, on a core a worker needs (measured: 70 ms of CPU per iteration of shape A, half an iteration).
    # With Dask's local threaded scheduler the blocks run in this process too, one per core.
    with threadpool_limits(limits=1, user_api="blas"):
        while True:
            active = [r for r in runs if not r.converged and r.n_iter < max_iter]
            if not active:
                return runs
            started = time.perf_counter()
            preps = tuple(r.algorithm.prepare(r.state, dtype) for r in active)  # once, here, not on every block
            all_stats = source.run(_em_block, preps, combine=add_tuples)
            changes, kinds = [], []
            for run, prep, stats in zip(active, preps, all_stats):
                _check_finite(stats, run.n_iter + 1)
                new_state, scores = run.algorithm.advance(stats, prep.shift, run.state)
                if data_variance is not None:
                    check_supported(run.algorithm.params(new_state), data_variance, run.algorithm.reg_covar)
                if not (math.isfinite(scores.lower_bound) and math.isfinite(scores.objective)):
                    raise NumericalError(
                        f"iteration {run.n_iter + 1}: the lower bound is not finite "
                        f"({scores.lower_bound!r}); rescale the data or the weights"
                    )
                changes.append(scores.objective - run.objective)
                run.state, run.lower_bound, run.objective = new_state, scores.lower_bound, scores.objective
                run.history.append(scores.lower_bound)
                run.n_iter += 1
                run.converged = scores.kind == "em" and abs(changes[-1]) < tol
                kinds.append(scores.kind)
            if on_iteration is not None:
                iteration = max(r.n_iter for r in active)
                dtypes = [prep.dtype.name for prep in preps]
                seconds = time.perf_counter() - started
                on_iteration(IterationReport(iteration, active, changes, seconds, dtypes, kinds))


def best_run(runs: list[EMRun]) -> EMRun:
    """The run with the highest objective (the first among equals): the lower bound, as scikit-learn picks, or
    under a prior the log-posterior, which is what MAP EM maximises."""
    return max(runs, key=lambda r: r.objective)


def final_fits(source: BlockSource, runs: list[EMRun]) -> list[kernels.Fit]:
    """Total weighted log-likelihood (and ICL's classification term) of the data under each run's model, as
    its predictions score it: one pass."""
    preps = tuple(run.algorithm.prepare(run.state) for run in runs)
    return list(source.run(_fit_block, preps, combine=add_tuples))
