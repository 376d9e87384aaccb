"""Maximum-likelihood and MAP EM as a :class:`~pipeline.kernels.steps.Step`, and the collapse checks of a fit.

The variational mixture's step is :class:`~pipeline.kernels.variational.VariationalStep`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from pipeline.errors import ComponentCollapseError
from pipeline.kernels.arrays import Array, IntArray
from pipeline.kernels.covtypes import layout_of
from pipeline.kernels.estep import Prepared, prepare
from pipeline.kernels.mstep import m_step
from pipeline.kernels.params import COLLAPSE_HINT, PARAM_ARRAYS, Params
from pipeline.kernels.prior import Prior, log_prior
from pipeline.kernels.stats import Stats

# Re-exported: the seam is declared in its own module (pipeline.kernels.steps), imported from here too.
from pipeline.kernels.steps import Advances, Hyperparameters, Scores
from pipeline.kernels.steps import Step as Step


@dataclass(frozen=True)
class EMStep(Advances):
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

    def m_step(self, stats: Stats, shift: Array, previous: Params | None = None) -> Params:
        previous_covariances = None if previous is None else previous.covariances
        return m_step(stats, shift, self.covariance_type, self.reg_covar, self.prior, previous_covariances)

    def scores(self, stats: Stats, state: Params, new_state: Params) -> Scores:
        mean = stats.log_likelihood / stats.weight_sum
        if self.prior is None:
            return Scores(mean, mean)
        return Scores(mean, mean + log_prior(state, self.prior) / stats.weight_sum)

    @staticmethod
    def params(state: Params) -> Params:
        return state

    @staticmethod
    def arrays(state: Params) -> dict[str, Array]:
        """The state as named arrays (for checkpoints)."""
        return {name: getattr(state, name) for name in PARAM_ARRAYS}

    def from_arrays(self, arrays: Mapping[str, Array]) -> Params:
        return Params(covariance_type=self.covariance_type, **{name: arrays[name] for name in PARAM_ARRAYS})

    def hyperparameters(self) -> Hyperparameters | None:
        """The resolved prior's numbers (for model.yaml and checkpoints), or None."""
        return None if self.prior is None else self.prior.as_dict()


# A component's variance, in some direction, below this fraction of the data's own variance (feature by feature) is
# one the data cannot support: float64 sums cannot tell it from 0.  The same test for every covariance type.
COLLAPSE_RTOL = 1e-13


def _standardised_variances(params: Params, data_variance: Array, subtract: float) -> Array:
    """Each component's covariance less ``subtract`` on the diagonal, in units of the data's variance per feature.

    Columns without spread (or without an observed value) are left out: no component can be narrower than them.

    Returns
    -------
    ndarray of shape (n_components, d, d) for full and tied, (n_components, d) for diag and spherical
    """
    data_variance = np.asarray(data_variance, dtype=np.float64)
    spread = np.isfinite(data_variance) & (data_variance > 0)
    scale = 1.0 / np.sqrt(data_variance[spread])
    layout, k, d = layout_of(params.covariance_type), params.n_components, params.n_features
    cov = layout.per_component(params.covariances, k, d)
    if layout.dense:
        cov = np.array(cov[:, spread][:, :, spread])
        idx = np.arange(cov.shape[-1])
        cov[:, idx, idx] -= subtract
        return cov * scale[:, None] * scale[None, :]
    return (cov[:, spread] - subtract) * np.square(scale)


def unsupported_components(params: Params, data_variance: Array, reg_covar: float) -> IntArray:
    """Indices of components whose covariance (``reg_covar`` included) is degenerate at the data's scale.

    A component is degenerate when, in some direction, its variance is at most
    :data:`COLLAPSE_RTOL` of the data's own variance: the smallest eigenvalue of
    its covariance standardised by the data's per-feature variances (its
    smallest standardised variance for diag and spherical).  Nothing can be
    degenerate while ``reg_covar`` alone exceeds that bound in every feature, so
    the test then costs nothing.
    """
    data_variance = np.asarray(data_variance, dtype=np.float64)
    spread = np.isfinite(data_variance) & (data_variance > 0)
    if not spread.any() or reg_covar > COLLAPSE_RTOL * data_variance[spread].max():
        return np.empty(0, dtype=int)
    scaled = _standardised_variances(params, data_variance, 0.0)
    if layout_of(params.covariance_type).dense:
        smallest = np.linalg.eigvalsh(scaled)[:, 0]
    else:
        smallest = scaled.min(axis=1)
    return np.flatnonzero(~(smallest > COLLAPSE_RTOL))


def collapsed_components(params: Params, reg_covar: float, data_variance: Array) -> IntArray:
    """Indices of components that ``reg_covar`` alone holds up: no variance of their own at the data's scale.

    A component on a single point (or on none) has an empirical covariance of
    zero: each of its variances, less ``reg_covar``, is at most
    :data:`COLLAPSE_RTOL` of the data's variance in that feature (the same test
    for every covariance type).  An empty component (weight 0) is collapsed too.
    """
    own = _standardised_variances(params, data_variance, reg_covar)
    if own.shape[-1] == 0:
        return np.flatnonzero(params.weights <= 0)
    if layout_of(params.covariance_type).dense:
        own = np.diagonal(own, axis1=1, axis2=2)
    return np.flatnonzero((own <= COLLAPSE_RTOL).all(axis=1) | (params.weights <= 0))


def check_supported(params: Params, data_variance: Array, reg_covar: float) -> None:
    """Raise :class:`ComponentCollapseError` if a component is degenerate at the data's scale.

    Raises
    ------
    ComponentCollapseError
        Naming the components, as a covariance that is not positive definite does, with the same advice.
    """
    bad = unsupported_components(params, data_variance, reg_covar)
    if bad.size:
        raise ComponentCollapseError(
            f"the covariance of component(s) {bad.tolist()} has a variance of at most {COLLAPSE_RTOL:g} of the "
            f"data's own variance in some direction: {COLLAPSE_HINT}"
        )
