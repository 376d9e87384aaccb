"""Parameters of a Gaussian mixture and their Cholesky factors (pure NumPy).

The shapes of covariance-like arrays are their type's layout's (:mod:`~pipeline.kernels.covtypes`): every type is a
reduction of ``full``, and :func:`dense_covariances` expands any of them back to (n_components, D, D).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import numpy.typing as npt
from scipy.linalg import solve_triangular

from pipeline.errors import ComponentCollapseError
from pipeline.kernels import covtypes
from pipeline.kernels.arrays import Array
from pipeline.kernels.covtypes import layout_of

# The arrays of Params, in the order model.npz and checkpoints store them.
PARAM_ARRAYS = ("weights", "means", "covariances", "precisions_cholesky")


@dataclass(frozen=True)
class Params:
    """Parameters of a Gaussian mixture.

    Attributes
    ----------
    weights : ndarray of shape (n_components,)
    means : ndarray of shape (n_components, n_features)
    covariances : ndarray, shape by covariance type (its layout's, see :mod:`~pipeline.kernels.covtypes`)
    precisions_cholesky : ndarray, same shape as ``covariances``
        Upper-triangular ``U`` with ``U @ U.T`` the precision, as scikit-learn's.
    covariance_type : {"full", "tied", "diag", "spherical"}
    """

    weights: Array
    means: Array
    covariances: Array
    precisions_cholesky: Array
    covariance_type: str

    @property
    def n_components(self) -> int:
        return int(self.means.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.means.shape[1])


def is_dense(covariance_type: str) -> bool:
    """Whether a type's covariances are matrices (full, tied) rather than per-feature variances (diag, spherical)."""
    return layout_of(covariance_type).dense


def covariance_shape(covariance_type: str, n_components: int, n_features: int) -> tuple[int, ...]:
    """Shape of the covariances (and of ``Stats.s2``) for a covariance type."""
    return layout_of(covariance_type).shape(n_components, n_features)


def reduce_components(per_component: Array, covariance_type: str) -> Array:
    """A type's own shape from per-component quantities (see :meth:`~pipeline.kernels.covtypes.Layout.reduce`)."""
    return layout_of(covariance_type).reduce(per_component)


def per_component(values: Array, covariance_type: str, n_components: int, n_features: int) -> Array:
    """A type's array broadcast to per-component shape: (K, D, D) for full/tied, (K, D) for diag/spherical."""
    return layout_of(covariance_type).per_component(values, n_components, n_features)


def dense_covariances(params: Params) -> Array:
    """Every component's covariance as a (D, D) matrix.

    Returns
    -------
    ndarray of shape (n_components, n_features, n_features)
    """
    return layout_of(params.covariance_type).dense_form(params.covariances, params.n_components, params.n_features)


# Cholesky factors of the precisions
COLLAPSE_HINT = (
    "ill-defined empirical covariance (the component collapsed onto too few distinct points); "
    "increase reg_covar (model.reg_covar), use the conjugate prior (model.prior: default, prior='default'), "
    "or reduce n_components"
)


def _chol_lower(matrix: Array, what: str) -> Array:
    try:
        return cast(Array, np.linalg.cholesky(matrix))  # float64 in, float64 out
    except np.linalg.LinAlgError:
        raise ComponentCollapseError(f"{what} is not positive definite: {COLLAPSE_HINT}") from None


def _precision_chol_from_cov(cov: Array, what: str) -> Array:
    lower = _chol_lower(cov, what)
    inverse: Array = solve_triangular(lower, np.eye(cov.shape[0]), lower=True)
    return inverse.T


def compute_precision_cholesky(covariances: Array, covariance_type: str) -> Array:
    """Upper Cholesky factor of the precisions, from the covariances.

    Parameters
    ----------
    covariances : ndarray, shape by covariance type

    Returns
    -------
    precisions_cholesky : ndarray, same shape

    Raises
    ------
    ComponentCollapseError
        If a covariance is not positive definite (or not finite).
    """
    if not np.isfinite(covariances).all():
        raise ComponentCollapseError(f"a covariance is not finite: {COLLAPSE_HINT}")
    layout = layout_of(covariance_type)
    if layout.dense and layout.shared:
        return _precision_chol_from_cov(covariances, "tied covariance")
    if layout.dense:
        return np.stack(
            [_precision_chol_from_cov(c, f"covariance of component {k}") for k, c in enumerate(covariances)]
        )
    bad = np.flatnonzero(np.reshape(covariances <= 0, (covariances.shape[0], -1)).any(axis=1))
    if bad.size:
        raise ComponentCollapseError(f"variance of component {int(bad[0])} is not positive: {COLLAPSE_HINT}")
    root: Array = 1.0 / np.sqrt(covariances)
    return root


def precision_cholesky_from_precisions(precisions: Array, covariance_type: str) -> Array:
    """Upper Cholesky factor ``U`` (``U @ U.T == precision``) of given precisions."""

    def upper(p: Array, what: str) -> Array:
        flipped = _chol_lower(p[::-1, ::-1], what)
        return flipped[::-1, ::-1]

    layout = layout_of(covariance_type)
    if layout.dense and layout.shared:
        return upper(precisions, "tied precision")
    if layout.dense:
        return np.stack([upper(p, f"precision of component {k}") for k, p in enumerate(precisions)])
    if np.any(precisions <= 0):
        raise ComponentCollapseError("precisions must be positive")
    return np.sqrt(precisions)


def covariances_from_precision_cholesky(prec_chol: Array, covariance_type: str) -> Array:
    """Covariances ``(U U^T)^{-1}`` from upper Cholesky factors of the precisions."""
    if not is_dense(covariance_type):
        variances: Array = 1.0 / prec_chol**2
        return variances
    inverse = solve_triangular_stack(prec_chol)  # U^{-1}
    return np.swapaxes(inverse, -1, -2) @ inverse  # U^{-T} U^{-1}


def solve_triangular_stack(upper: Array) -> Array:
    """``U^{-1}`` of an upper-triangular (D, D) matrix or of each of a stack (K, D, D)."""
    if upper.ndim == 2:
        inverse: Array = solve_triangular(upper, np.eye(upper.shape[0]), lower=False)
        return inverse
    return np.stack([solve_triangular(u, np.eye(u.shape[0]), lower=False) for u in upper])


def precisions_from_cholesky(prec_chol: Array, covariance_type: str) -> Array:
    """Precisions ``U U^T`` (full, tied) or ``U**2`` (diag, spherical)."""
    if is_dense(covariance_type):
        return prec_chol @ np.swapaxes(prec_chol, -1, -2)
    return prec_chol**2


def n_parameters(covariance_type: str, n_components: int, n_features: int) -> int:
    """Number of free parameters of a mixture (for BIC and AIC)."""
    return covtypes.get(covariance_type).n_parameters(n_components, n_features)


def make_params(
    weights: npt.ArrayLike, means: npt.ArrayLike, covariances: npt.ArrayLike, covariance_type: str
) -> Params:
    """Params from weights, means and covariances (the precision factor is derived)."""
    covariances = np.asarray(covariances, dtype=np.float64)
    return Params(
        np.asarray(weights, dtype=np.float64),
        np.asarray(means, dtype=np.float64),
        covariances,
        compute_precision_cholesky(covariances, covariance_type),
        covariance_type,
    )


def unit_params(centres: Array, covariance_type: str) -> Params:
    """Equal weights, the given means, identity covariances: whitening is just ``x - c_k``."""
    k, d = centres.shape
    eye = layout_of(covariance_type).identity(k, d)
    return Params(np.full(k, 1.0 / k), np.asarray(centres, dtype=np.float64), eye, eye, covariance_type)


def check_params(params: Params, rtol: float = 1e-6) -> None:
    """Check that ``params`` is a valid mixture; ValueError naming what is wrong.

    Weights non-negative and summing to 1, every array finite and of its
    type's shape, covariances positive definite, and the precision factors
    upper triangular with a positive diagonal and consistent with the
    covariances (to ``rtol``, relative to each component's own scale).
    """
    k, d = params.means.shape if params.means.ndim == 2 else (0, 0)
    if params.means.ndim != 2 or k == 0 or d == 0:
        raise ValueError(f"means has shape {params.means.shape}, expected (n_components, n_features)")
    expected = {
        "weights": (k,),
        "means": (k, d),
        "covariances": covariance_shape(params.covariance_type, k, d),
        "precisions_cholesky": covariance_shape(params.covariance_type, k, d),
    }
    for name, shape in expected.items():
        value = getattr(params, name)
        if value.shape != shape:
            raise ValueError(f"{name} has shape {value.shape}, expected {shape}")
        if not np.isfinite(value).all():
            raise ValueError(f"{name} holds NaN or infinite values")
    w = params.weights
    if (w < 0).any() or abs(w.sum() - 1.0) > 1e-6:
        raise ValueError(f"weights must be >= 0 and sum to 1 (min {w.min():.6g}, sum {w.sum():.10g})")
    u = per_component(params.precisions_cholesky, params.covariance_type, k, d)
    if is_dense(params.covariance_type):
        if (np.tril(u, -1) != 0).any() or (np.diagonal(u, axis1=1, axis2=2) <= 0).any():
            raise ValueError("precisions_cholesky must be upper triangular with a positive diagonal")
    elif (u <= 0).any():
        raise ValueError("precisions_cholesky must be positive")
    try:
        compute_precision_cholesky(params.covariances, params.covariance_type)
    except ComponentCollapseError:
        raise ValueError("covariances are not positive definite") from None
    # U^T Sigma U is the identity when U is Sigma's precision factor: compare in each component's own units.
    dense = dense_covariances(params)
    if is_dense(params.covariance_type):
        whitened = np.swapaxes(u, 1, 2) @ dense @ u
    else:
        whitened = dense * (u[:, :, None] * u[:, None, :])
    if np.abs(whitened - np.eye(d)).max() > rtol * max(1.0, d):
        raise ValueError("precisions_cholesky does not match covariances")
