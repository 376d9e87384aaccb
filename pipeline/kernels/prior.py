"""mclust's conjugate prior on the components (Fraley & Raftery 2007), for MAP EM.

Each component's mean and covariance have a normal-inverse-Wishart prior (full;
tied shares one covariance) or a normal-inverse-gamma prior per variance
(diag, spherical)::

    mu_k | Sigma_k ~ N(mean, Sigma_k / shrinkage)
    Sigma_k ~ InvWishart(dof, scale)            (full, tied)
    sigma^2_kj ~ InvGamma(dof / 2, scale / 2)   (diag: each feature; spherical: one per component)

The mixing weights have none, as in mclust.  The hyperparameters of
:func:`default_prior` are mclust's ``defaultPrior``; the M-step is its MAP
(``msvvvp``, ``mseeep``, ``msvvip``, ``msviip`` in mclust's source).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.kernels import covtypes
from pipeline.kernels.arrays import Array
from pipeline.kernels.covtypes import layout_of
from pipeline.kernels.mclust_prior import UNSHRUNK_MEANS
from pipeline.kernels.moments import DataMoments
from pipeline.kernels.params import Params

PRIOR_KEYS = ("shrinkage", "mean", "dof", "scale")
DEFAULT_SHRINKAGE = 0.01
# The largest pseudo-count a prior may weigh (shrinkage, dof; the variational mixture's concentrations, mean
# precision and degrees of freedom): the fit multiplies them by row counts and logarithms, and a count near
# float64's limit (1.8e308) overflows there, ending the fit in NaN.
MAX_PRIOR_COUNT = 1e100


class NoSpreadError(ValueError):
    """The data have no spread, so a default prior scale taken from their variances would be 0.

    Attributes
    ----------
    columns : list of int
        The constant columns, by position (every column: with one varying, the default scale is > 0).
    """

    def __init__(self, message: str, columns: list[int]) -> None:
        super().__init__(message)
        self.columns = columns


@dataclass(frozen=True)
class Prior:
    """Hyperparameters of the conjugate prior.

    Attributes
    ----------
    shrinkage : float
        ``kappa >= 0``: how many rows' worth of weight the prior mean has (0: a flat prior on the means).
    mean : ndarray of shape (n_features,)
    dof : float
        Degrees of freedom ``nu > n_features - 1`` with a matrix scale, else ``> 0``.
    scale : ndarray
        (n_features, n_features) positive semi-definite (full, tied, mclust's ellipsoidal models); a scalar > 0
        (diag, spherical, mclust's axis-aligned models: ``CovarianceType.prior_scale_is_number``).
    """

    shrinkage: float
    mean: Array
    dof: float
    scale: Array

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Prior:
        """The Prior of :meth:`as_dict`'s numbers (from model.yaml or a checkpoint)."""
        return cls(
            float(values["shrinkage"]),
            np.asarray(values["mean"], dtype=float),
            float(values["dof"]),
            np.asarray(values["scale"], dtype=float),
        )

    def as_dict(self) -> dict[str, object]:
        """Plain numbers, for model.yaml and checkpoints."""
        return {
            "shrinkage": float(self.shrinkage),
            "mean": self.mean.tolist(),
            "dof": float(self.dof),
            "scale": self.scale.tolist(),
        }


def default_prior(
    moments: DataMoments,
    n_components: int,
    covariance_type: str,
    feature_names: list[str] | None = None,
    **given: Any,
) -> Prior:
    """mclust's ``defaultPrior``, with any hyperparameter in ``given`` taking the place of its default.

    shrinkage 0.01; mean the data's mean; dof ``d + 2``; scale
    ``(1/G)^(2/d) var(X)`` (full, tied, mclust's ellipsoidal models; its diagonal only when ``n <= d``)
    or ``(1/G)^(2/d) sum_j var(X_j) / d`` (diag, spherical, mclust's axis-aligned models: one number).

    Raises
    ------
    NoSpreadError
        When the default scale of diag or spherical would be 0: every column is constant (``feature_names``,
        if given, name them in the message; else their positions do).
    """
    d = moments.mean.shape[0]
    factor = (1.0 / n_components) ** (2.0 / d)
    if not covtypes.get(covariance_type).prior_scale_is_number:
        cov = moments.covariance if moments.weight_sum > d else np.diag(np.diag(moments.covariance))
        scale = factor * cov
    else:
        scale = np.asarray(factor * np.trace(moments.covariance) / d)
        if "scale" not in given and not scale > 0:
            labels: Sequence[object] = feature_names or range(d)
            names = ", ".join(repr(name) for name in labels[:4]) + (", ..." if d > 4 else "")
            which = f"column {names} is constant" if d == 1 else f"every column is constant: {names}"
            raise NoSpreadError(
                f"the data have no spread ({which}), so the default prior scale (their variance) is 0: "
                "set the prior's scale (> 0), or fit data whose rows differ",
                list(range(d)),
            )
    values = {"shrinkage": DEFAULT_SHRINKAGE, "mean": moments.mean, "dof": d + 2.0, "scale": scale, **given}
    return Prior(
        float(values["shrinkage"]),
        np.asarray(values["mean"], dtype=float),
        float(values["dof"]),
        np.asarray(values["scale"], dtype=float),
    )


def check_prior(prior: Prior, covariance_type: str, n_features: int) -> None:
    """ValueError naming the hyperparameter that is out of its range or of the wrong shape, or the covariance type
    that takes no prior."""
    entry = covtypes.get(covariance_type)
    if entry.map_covariances is None:
        raise ValueError(no_prior_for(covariance_type))
    d, matrix = n_features, not entry.prior_scale_is_number
    if not (math.isfinite(prior.shrinkage) and prior.shrinkage >= 0):
        raise ValueError(f"prior shrinkage must be a finite number >= 0, got {prior.shrinkage}")
    check_count("prior shrinkage", prior.shrinkage)
    if prior.mean.shape != (d,):
        raise ValueError(f"prior mean must be {d} numbers (one per feature), got shape {prior.mean.shape}")
    if not np.isfinite(prior.mean).all():
        raise ValueError(f"prior mean must be finite, got {brief(prior.mean)}")
    least = d - 1 if matrix else 0
    if not (math.isfinite(prior.dof) and prior.dof > least):
        raise ValueError(f"prior dof must be > {least} for covariance_type {covariance_type!r}, got {prior.dof}")
    check_count("prior dof", prior.dof)
    if matrix:
        scale = prior.scale
        if scale.shape != (d, d):
            raise ValueError(
                f"prior scale must be a {d} x {d} matrix for covariance_type {covariance_type!r}, "
                f"got shape {scale.shape}"
            )
        if not np.isfinite(scale).all():
            raise ValueError(f"prior scale must be finite, got {brief(scale)}")
        if not np.allclose(scale, scale.T):
            raise ValueError("prior scale must be symmetric")
        if np.linalg.eigvalsh(scale).min() < -1e-10 * max(1.0, np.abs(scale).max()):
            raise ValueError("prior scale must be positive semi-definite")
    elif prior.scale.shape != ():
        raise ValueError(
            f"prior scale must be one number for covariance_type {covariance_type!r}, got shape {prior.scale.shape}"
        )
    elif not (np.isfinite(prior.scale) and prior.scale > 0):
        raise ValueError(f"prior scale must be a finite number > 0, got {float(prior.scale)}")


def check_count(name: str, value: float) -> None:
    """ValueError unless the pseudo-count ``value`` is at most :data:`MAX_PRIOR_COUNT`."""
    if value > MAX_PRIOR_COUNT:
        raise ValueError(
            f"{name} must be at most {MAX_PRIOR_COUNT:g}, got {value:g}: a prior that weighs more rows than that "
            "overflows the fit's float64 arithmetic"
        )


def brief(values: Array) -> str:
    """The first few values, for a message."""
    flat = values.ravel()
    return np.array2string(flat[:4], precision=4) + (" ..." if flat.size > 4 else "")


def map_covariances(nk: Array, centred: Array, scatter: Array, covariance_type: str, prior: Prior) -> Array:
    """MAP covariances from the components' statistics.

    Parameters
    ----------
    nk : ndarray of shape (n_components,)
    centred : ndarray of shape (n_components, n_features)
        ``xbar_k - prior.mean``: each component's data mean from the prior's.
    scatter : ndarray, shape by covariance type
        ``W_k``, the weighted scatter about each component's data mean, reduced to the type's shape.

    Returns
    -------
    ndarray, shape by covariance type
        The type's own formula (:attr:`~pipeline.kernels.covtypes.CovarianceType.map_covariances`).
    """
    kappa = prior.shrinkage
    flat = 1.0 if kappa > 0 else 0.0  # a flat prior on the means has no log-determinant term of its own
    gain = nk * kappa / (nk + kappa) if kappa > 0 else np.zeros_like(nk)
    entry = covtypes.get(covariance_type)
    if entry.map_covariances is None:  # refused before any work by check_prior
        raise ValueError(no_prior_for(covariance_type))
    if entry.layout.dense:
        pull = gain[:, None, None] * centred[:, :, None] * centred[:, None, :]  # C_k
    else:
        pull = gain[:, None] * np.square(centred)
    return entry.map_covariances(nk, scatter, pull, flat, prior.scale, prior.dof)


def no_prior_for(covariance_type: str) -> str:
    """Why a covariance type takes no prior."""
    with_prior = [name for name, entry in covtypes.COVARIANCE_TYPES.items() if entry.map_covariances is not None]
    return (
        f"the conjugate prior is not available with covariance_type {covariance_type!r} (mclust has none for it); "
        f"it is with {', '.join(with_prior)}"
    )


def map_means(nk: Array, data_means: Array, prior: Prior, covariance_type: str) -> Array:
    """``(n_k xbar_k + kappa mean) / (n_k + kappa)``; mclust's ``EEI`` keeps the data means ``xbar_k``
    (:data:`~pipeline.kernels.mclust_prior.UNSHRUNK_MEANS`)."""
    if covariance_type in UNSHRUNK_MEANS:
        return data_means
    means: Array = (nk[:, None] * data_means + prior.shrinkage * prior.mean) / (nk + prior.shrinkage)[:, None]
    return means


def log_prior(params: Params, prior: Prior) -> float:
    """Log prior density of the components' means and covariances, up to an additive constant.

    Terms that do not depend on the parameters (the normalising constants, which
    involve ``log |scale|`` and are infinite for a singular scale) are left out,
    so only differences between values are meaningful.
    """
    layout, k, d = layout_of(params.covariance_type), params.n_components, params.n_features
    u = layout.per_component(params.precisions_cholesky, k, d)
    own = covtypes.get(params.covariance_type).log_prior
    if own is not None:  # mclust's models: what their MAP update raises
        log_dets = -2.0 * np.log(np.diagonal(u, axis1=1, axis2=2)).sum(axis=1)
        precisions = u @ np.swapaxes(u, 1, 2)
        return own(params.means, precisions, log_dets, prior.mean, prior.shrinkage, prior.scale, prior.dof)
    nu = prior.dof
    if layout.dense:
        log_det = -2.0 * np.log(np.diagonal(u, axis1=1, axis2=2)).sum(axis=1)  # log |Sigma_k|
        precision = u @ np.swapaxes(u, 1, 2)
        trace = np.einsum("ij,kji->k", prior.scale, precision)  # tr(scale Sigma_k^{-1})
        covariance_term = -0.5 * (nu + d + 1) * log_det - 0.5 * trace
        if layout.shared:  # one covariance for all components
            covariance_term = covariance_term[:1]
        mahalanobis = np.square(np.einsum("kd,kde->ke", params.means - prior.mean, u)).sum(axis=1)
    else:
        variances = 1.0 / np.square(u)  # (K, D): sigma^2_kj
        inverse_gamma = -(nu / 2 + 1) * np.log(variances) - prior.scale / (2 * variances)
        covariance_term = inverse_gamma[:, 0] if layout.isotropic else inverse_gamma.sum(axis=1)
        log_det = np.log(variances).sum(axis=1)
        mahalanobis = (np.square(params.means - prior.mean) / variances).sum(axis=1)
    total = float(covariance_term.sum())
    if prior.shrinkage > 0:
        total += float((-0.5 * log_det - 0.5 * prior.shrinkage * mahalanobis).sum())
    return total
