"""The M-step: new parameters from merged statistics (maximum likelihood, or MAP under a prior)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

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


@dataclass(frozen=True)
class ComponentMoments:
    """What the M-step needs of some rows, about no shift: each component's weight, data mean and scatter.

    The statistics a model keeps of the data it learned from: they combine exactly (``+``, the pairwise update of
    Chan, Golub and LeVeque), scale (``scaled``: a weighted or a forgetting combination), and give the M-step
    (:func:`m_step_moments`).  Float64 throughout.

    Attributes
    ----------
    covariance_type : str
    n_rows : float
        Rows seen (scaled with the rest: the unit of the empty-component floor is ``weight_sum / n_rows``).
    weight_sum : float
        Sum of the rows' weights.
    nk : ndarray of shape (n_components,)
        ``sum_i s_i r_ik``, with the empty-component floor added.
    means : ndarray of shape (n_components, n_features)
        Each component's weighted data mean.
    scatter : ndarray, shape by covariance type
        ``sum_i s_i r_ik (x_i - means_k)(x_i - means_k)^T`` reduced to the type's layout.
    """

    covariance_type: str
    n_rows: float
    weight_sum: float
    nk: Array
    means: Array
    scatter: Array

    @classmethod
    def of(cls, stats: Stats, shift: Array, covariance_type: str) -> ComponentMoments:
        """The moments of merged statistics taken about ``shift`` (n_components, n_features)."""
        layout = layout_of(covariance_type)
        nk = stats.nk + NK_FLOOR * (stats.weight_sum / max(stats.n_rows, 1))
        offset = stats.s1 / nk[:, None]
        if layout.dense:
            correction = stats.s1[:, :, None] * offset[:, None, :]
        else:
            correction = stats.s1 * offset
        scatter = stats.s2 - layout.reduce(correction)
        return cls(covariance_type, float(stats.n_rows), stats.weight_sum, nk, shift + offset, scatter)

    def scaled(self, factor: float) -> ComponentMoments:
        """These rows counted ``factor`` times (weights, counts and scatter scale; means stay)."""
        return replace(
            self,
            n_rows=self.n_rows * factor,
            weight_sum=self.weight_sum * factor,
            nk=self.nk * factor,
            scatter=self.scatter * factor,
        )

    def __add__(self, other: ComponentMoments) -> ComponentMoments:
        """The moments of both sets of rows together."""
        layout = layout_of(self.covariance_type)
        nk = self.nk + other.nk
        delta = other.means - self.means
        pooled = self.nk * other.nk / nk
        if layout.dense:
            correction = pooled[:, None, None] * delta[:, :, None] * delta[:, None, :]
        else:
            correction = pooled[:, None] * delta * delta
        return ComponentMoments(
            self.covariance_type,
            self.n_rows + other.n_rows,
            self.weight_sum + other.weight_sum,
            nk,
            self.means + delta * (other.nk / nk)[:, None],
            self.scatter + other.scatter + layout.reduce(correction),
        )


def component_moments(stats: Stats, shift: Array, covariance_type: str) -> tuple[Array, Array, Array]:
    """Each component's weight (floored), data mean and scatter about that mean (see :class:`ComponentMoments`)."""
    moments = ComponentMoments.of(stats, shift, covariance_type)
    return moments.nk, moments.means, moments.scatter


def m_step(
    stats: Stats,
    shift: Array,
    covariance_type: str,
    reg_covar: float,
    prior: Prior | None = None,
    previous: Array | None = None,
) -> Params:
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
    return m_step_moments(ComponentMoments.of(stats, shift, covariance_type), reg_covar, prior, previous)


def m_step_moments(
    moments: ComponentMoments, reg_covar: float, prior: Prior | None = None, previous: Array | None = None
) -> Params:
    """New parameters from component moments (:func:`m_step`'s, after the statistics' shift is taken out);
    ``previous``, the covariances the E-step used (None at a start), is a start for the maximum-likelihood
    estimates that search (mclust's ``EVE``, ``VVE``: :class:`~pipeline.kernels.mclust.Estimator`)."""
    nk, data_means, scatter, covariance_type = moments.nk, moments.means, moments.scatter, moments.covariance_type
    k, d = data_means.shape
    if prior is None:
        means = data_means
        cov = ml_covariances(nk, scatter, covariance_type, d, reg_covar, previous)
    else:
        means = map_means(nk, data_means, prior, covariance_type)
        centred = data_means - prior.mean
        cov = _regularised(
            lambda s: map_covariances(nk, centred, s, covariance_type, prior), nk, scatter, covariance_type, reg_covar
        )
    return Params(nk / nk.sum(), means, cov, compute_precision_cholesky(cov, covariance_type), covariance_type)


def ml_covariances(
    nk: Array,
    scatter: Array,
    covariance_type: str,
    n_features: int,
    reg_covar: float,
    previous: Array | None = None,
) -> Array:
    """Maximum-likelihood covariances (:meth:`~pipeline.kernels.covtypes.CovarianceType.ml_covariances`) with
    ``reg_covar`` (:func:`_regularised`)."""
    entry = covtypes.get(covariance_type)
    return _regularised(
        lambda s: entry.ml_covariances(nk, s, n_features, previous), nk, scatter, covariance_type, reg_covar
    )


def _regularised(
    estimate: Callable[[Array], Array], nk: Array, scatter: Array, covariance_type: str, reg_covar: float
) -> Array:
    """``estimate(scatter)`` with ``reg_covar`` added to each covariance's diagonal; for a type with constraints of
    its own (mclust's models), added to each scatter ``W_k`` as ``n_k reg_covar I`` before the estimate instead, so
    that the constraints hold exactly and a singular scatter is no obstacle (for an unconstrained type the two are
    the same)."""
    entry = covtypes.get(covariance_type)
    if entry.ml is None:
        return add_to_diagonal(estimate(scatter), reg_covar, covariance_type)
    per_row = (reg_covar * nk)[:, None]  # each component's n_k reg_covar on its variances
    if entry.layout.dense:
        regularised = np.array(scatter)
        idx = np.arange(scatter.shape[-1])
        regularised[:, idx, idx] += per_row
    else:
        regularised = scatter + per_row
    with np.errstate(divide="ignore", invalid="ignore"):  # a singular scatter without reg_covar: not finite, which
        return estimate(regularised)  # the precisions' check reports as a collapse


def add_to_diagonal(cov: Array, value: float, covariance_type: str) -> Array:
    """``cov`` with ``value`` added to every variance (the diagonal of each matrix, or every entry)."""
    if layout_of(covariance_type).dense:
        d = cov.shape[-1]
        cov = np.array(cov)
        cov[..., np.arange(d), np.arange(d)] += value
        return cov
    return cov + value
