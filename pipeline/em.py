"""The EM driver: starts -> loop { one pass -> M-step -> converged? } -> runs.

Several runs (``n_init`` restarts) advance together: one pass over the data per
iteration computes the statistics of every run still going.  The driver only
orchestrates; the arithmetic is in :mod:`pipeline.kernels`, the Dask work in
:mod:`pipeline.passes`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

from threadpoolctl import threadpool_limits

from pipeline import kernels
from pipeline.errors import InputError
from pipeline.passes import BlockSource, add_tuples


@dataclass
class EMRun:
    """State and outcome of one EM run.

    Attributes
    ----------
    params : Params
        Current parameters (after the last M-step).
    lower_bound : float
        Mean log-likelihood per unit weight at the last E-step.
    history : list of float
        ``lower_bound`` after each iteration.
    n_iter : int
    converged : bool
    """

    params: kernels.Params
    lower_bound: float = -math.inf
    history: list[float] = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False


@dataclass(frozen=True)
class IterationReport:
    """What one iteration did, for progress output and checkpoints."""

    iteration: int
    runs: list[EMRun]
    changes: list[float]
    seconds: float
    dtypes: list[str]  # the arithmetic of each run's E-step: float64 where float32 was asked but not accurate enough


def _em_block(X, sample_weight, row_offset, preps):
    return tuple(kernels.block_statistics(X, sample_weight, p) for p in preps)


def _score_block(X, sample_weight, row_offset, preps):
    return tuple(kernels.block_log_likelihood(X, sample_weight, p) for p in preps)


def _add_pair_tuples(a, b):
    return tuple((x[0] + y[0], x[1] + y[1]) for x, y in zip(a, b))


def run_em(
    source: BlockSource,
    runs: list[EMRun],
    *,
    reg_covar: float,
    tol: float,
    max_iter: int,
    dtype: str = "float64",
    on_iteration: Callable[[IterationReport], None] | None = None,
) -> list[EMRun]:
    """Advance every run until its lower bound changes by less than ``tol`` or ``max_iter``.

    Runs resumed from a checkpoint keep their ``n_iter`` and ``history``.
    ``dtype`` is the E-step's arithmetic (see :func:`pipeline.kernels.prepare`).
    The runs are updated in place and returned.
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
            preps = tuple(kernels.prepare(r.params, dtype=dtype) for r in active)  # once, here, not on every block
            all_stats = source.run(_em_block, preps, combine=add_tuples)
            changes = []
            for run, prep, stats in zip(active, preps, all_stats):
                if stats.weight_sum <= 0:
                    raise InputError("the data has no rows with positive weight")
                lower_bound = stats.log_likelihood / stats.weight_sum
                run.params = kernels.m_step(stats, prep.shift, run.params.covariance_type, reg_covar)
                changes.append(lower_bound - run.lower_bound)
                run.lower_bound = lower_bound
                run.history.append(lower_bound)
                run.n_iter += 1
                run.converged = abs(changes[-1]) < tol
            if on_iteration is not None:
                iteration = max(r.n_iter for r in active)
                dtypes = [prep.dtype.name for prep in preps]
                on_iteration(IterationReport(iteration, active, changes, time.perf_counter() - started, dtypes))


def best_run(runs: list[EMRun]) -> EMRun:
    """The run with the highest lower bound (the first among equals), as scikit-learn picks."""
    return max(runs, key=lambda r: r.lower_bound)


def log_likelihoods(source: BlockSource, params_list: list[kernels.Params]) -> list[tuple[float, float]]:
    """Total weighted log-likelihood of the data under each model, with the weight sum (one pass)."""
    preps = tuple(kernels.prepare(p) for p in params_list)
    return list(source.run(_score_block, preps, combine=_add_pair_tuples))
