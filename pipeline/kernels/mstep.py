"""The M-step: new parameters from merged statistics (maximum likelihood, or MAP under a prior)."""

from __future__ import annotations

import numpy as np

from pipeline.kernels import covtypes
from pipeline.kernels.arrays import Array
from pipeline.kernels.covtypes import layout_of
from pipeline.kernels.params import Params, compute_precision_cholesky
from pipeline.kernels.prior import Prior, map_covariances, map_means
from pipeline.kernels.stats import Stats

# scikit-learn adds 10 eps to every nk so that an empty component does not divide by 0; here in units of the mean
# row weight, so that weights scaled uniformly give the same fit (unweighted, the unit is 1: scikit-learn's floor).
NK_FLOOR = 10 * np.finfo(np.float64).eps


def component_moments(stats: Stats, shift: Array, covariance_type: str) -> tuple[Array, Array, Array]:
    """Each component's weight, data mean and scatter about that mean.

    Returns
    -------
    nk : ndarray of shape (n_components,)
        With the empty-component floor added.
    data_means : ndarray of shape (n_components, n_features)
    scatter : ndarray, shape by covariance type
        ``sum_i s_i r_ik (x_i - xbar_k)(x_i - xbar_k)^T`` reduced to the type's shape.
    """
    layout = layout_of(covariance_type)
    nk = stats.nk + NK_FLOOR * (stats.weight_sum / max(stats.n_rows, 1))
    offset = stats.s1 / nk[:, None]
    if layout.dense:
        correction = stats.s1[:, :, None] * offset[:, None, :]
    else:
        correction = stats.s1 * offset
    return nk, shift + offset, stats.s2 - layout.reduce(correction)


def m_step(stats: Stats, shift: Array, covariance_type: str, reg_covar: float, prior: Prior | None = None) -> Params:
    """New parameters from merged statistics.

    Parameters
    ----------
    stats : Stats
        Statistics of all rows, shifted by ``shift``.
    shift : ndarray of shape (n_components, n_features)
    covariance_type : str
    reg_covar : float
        Added to the diagonal of every covariance.
    prior : Prior, optional
        mclust's conjugate prior: the MAP M-step instead of maximum likelihood.

    Returns
    -------
    Params

    Raises
    ------
    ComponentCollapseError
        If a covariance is not positive definite even with ``reg_covar``.
    """
    nk, data_means, scatter = component_moments(stats, shift, covariance_type)
    k, d = data_means.shape
    if prior is None:
        means = data_means
        cov = ml_covariances(nk, scatter, covariance_type, d)
    else:
        means = map_means(nk, data_means, prior)
        cov = map_covariances(nk, data_means - prior.mean, scatter, covariance_type, prior)
    cov = add_to_diagonal(cov, reg_covar, covariance_type)
    return Params(nk / nk.sum(), means, cov, compute_precision_cholesky(cov, covariance_type), covariance_type)


def ml_covariances(nk: Array, scatter: Array, covariance_type: str, n_features: int) -> Array:
    """Maximum-likelihood covariances (:meth:`~pipeline.kernels.covtypes.CovarianceType.ml_covariances`)."""
    return covtypes.get(covariance_type).ml_covariances(nk, scatter, n_features)


def add_to_diagonal(cov: Array, value: float, covariance_type: str) -> Array:
    """``cov`` with ``value`` added to every variance (the diagonal of each matrix, or every entry)."""
    if layout_of(covariance_type).dense:
        d = cov.shape[-1]
        cov = np.array(cov)
        cov[..., np.arange(d), np.arange(d)] += value
        return cov
    return cov + value
