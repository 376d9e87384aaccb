"""What one EM iteration does with the statistics of a pass, for each algorithm (pure NumPy).

The driver (:mod:`pipeline.em`) only needs, of an algorithm: the E-step
constants of its current state, the M-step from merged statistics, and the
numbers it reports and tests for convergence.  Maximum likelihood and MAP EM
(:class:`EMStep`) keep :class:`~pipeline.kernels.params.Params` as their
state; the variational mixture (:mod:`pipeline.kernels.variational`) keeps
more.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.kernels.estep import Prepared, prepare
from pipeline.kernels.mstep import m_step
from pipeline.kernels.params import PARAM_ARRAYS, Params, dense_covariances
from pipeline.kernels.prior import Prior, log_prior
from pipeline.kernels.stats import Stats


@dataclass(frozen=True)
class Scores:
    """What an iteration reports: ``lower_bound`` (as scikit-learn's ``lower_bound_``) and the objective
    whose change is tested against ``tol`` (the same, or the log-posterior under a prior)."""

    lower_bound: float
    objective: float


@dataclass(frozen=True)
class EMStep:
    """Maximum-likelihood EM, or MAP EM under mclust's conjugate prior.

    ``lower_bound`` is the mean log-likelihood per unit weight at the E-step
    (scikit-learn's); with a prior the convergence test uses the mean
    log-posterior instead, which MAP EM never decreases.
    """

    covariance_type: str
    reg_covar: float
    prior: Prior | None = None
    missing: bool = False  # rows with NaN take part with their observed values (nan_policy: marginalize)

    def prepare(self, state: Params, dtype: str = "float64") -> Prepared:
        return prepare(state, dtype=dtype, with_missing=self.missing)

    def m_step(self, stats: Stats, shift: np.ndarray) -> Params:
        return m_step(stats, shift, self.covariance_type, self.reg_covar, self.prior)

    def scores(self, stats: Stats, state: Params, new_state: Params) -> Scores:
        mean = stats.log_likelihood / stats.weight_sum
        if self.prior is None:
            return Scores(mean, mean)
        return Scores(mean, mean + log_prior(state, self.prior) / stats.weight_sum)

    @staticmethod
    def params(state: Params) -> Params:
        return state

    @staticmethod
    def arrays(state: Params) -> dict[str, np.ndarray]:
        """The state as named arrays (for checkpoints)."""
        return {name: getattr(state, name) for name in PARAM_ARRAYS}

    def from_arrays(self, arrays: dict[str, np.ndarray]) -> Params:
        return Params(covariance_type=self.covariance_type, **{name: arrays[name] for name in PARAM_ARRAYS})

    def hyperparameters(self) -> dict | None:
        """The resolved prior's numbers (for model.yaml and checkpoints), or None."""
        return None if self.prior is None else self.prior.as_dict()


def collapsed_components(params: Params, reg_covar: float) -> np.ndarray:
    """Indices of components that reg_covar alone holds up: no variance of their own above it.

    A component on a single point (or on none) has an empirical covariance of
    zero; with ``reg_covar > 0`` its fitted variances are all ``reg_covar``.
    """
    if reg_covar <= 0:
        return np.empty(0, dtype=int)
    variances = np.diagonal(dense_covariances(params), axis1=1, axis2=2)
    return np.flatnonzero((variances <= 2 * reg_covar).all(axis=1) | (params.weights <= 0))
