"""Parameters of a Gaussian mixture and their Cholesky factors (pure NumPy).

Shapes of covariance-like arrays depend on the covariance type:

=========  =====================
full       (n_components, D, D)
tied       (D, D)
diag       (n_components, D)
spherical  (n_components,)
=========  =====================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_triangular

from pipeline.errors import ComponentCollapseError

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


@dataclass(frozen=True)
class Params:
    """Parameters of a Gaussian mixture.

    Attributes
    ----------
    weights : ndarray of shape (n_components,)
    means : ndarray of shape (n_components, n_features)
    covariances : ndarray, shape by covariance type (see module docstring)
    precisions_cholesky : ndarray, same shape as ``covariances``
        Upper-triangular ``U`` with ``U @ U.T`` the precision, as scikit-learn's.
    covariance_type : {"full", "tied", "diag", "spherical"}
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray
    covariance_type: str

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def n_features(self) -> int:
        return self.means.shape[1]


def second_moment_shape(covariance_type: str, n_components: int, n_features: int) -> tuple:
    """Shape of ``Stats.s2`` (and of the covariances) for a covariance type."""
    return {
        "full": (n_components, n_features, n_features),
        "tied": (n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components,),
    }[covariance_type]


# Cholesky factors of the precisions
_COLLAPSE_HINT = (
    "the component collapsed onto too few distinct points; "
    "increase model.reg_covar, reduce model.n_components, or scale the data"
)


def _chol_lower(matrix: np.ndarray, what: str) -> np.ndarray:
    try:
        return np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        raise ComponentCollapseError(f"{what} is not positive definite: {_COLLAPSE_HINT}") from None


def _precision_chol_from_cov(cov: np.ndarray, what: str) -> np.ndarray:
    lower = _chol_lower(cov, what)
    return solve_triangular(lower, np.eye(cov.shape[0]), lower=True).T


def compute_precision_cholesky(covariances: np.ndarray, covariance_type: str) -> np.ndarray:
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
        If a covariance is not positive definite.
    """
    if covariance_type == "full":
        return np.stack(
            [_precision_chol_from_cov(c, f"covariance of component {k}") for k, c in enumerate(covariances)]
        )
    if covariance_type == "tied":
        return _precision_chol_from_cov(covariances, "tied covariance")
    bad = np.flatnonzero(np.reshape(covariances <= 0, (covariances.shape[0], -1)).any(axis=1))
    if bad.size:
        raise ComponentCollapseError(f"variance of component {int(bad[0])} is not positive: {_COLLAPSE_HINT}")
    return 1.0 / np.sqrt(covariances)


def precision_cholesky_from_precisions(precisions: np.ndarray, covariance_type: str) -> np.ndarray:
    """Upper Cholesky factor ``U`` (``U @ U.T == precision``) of given precisions."""

    def upper(p, what):
        flipped = _chol_lower(p[::-1, ::-1], what)
        return flipped[::-1, ::-1]

    if covariance_type == "full":
        return np.stack([upper(p, f"precision of component {k}") for k, p in enumerate(precisions)])
    if covariance_type == "tied":
        return upper(precisions, "tied precision")
    if np.any(precisions <= 0):
        raise ComponentCollapseError("precisions must be positive")
    return np.sqrt(precisions)


def covariances_from_precision_cholesky(prec_chol: np.ndarray, covariance_type: str) -> np.ndarray:
    """Covariances ``(U U^T)^{-1}`` from upper Cholesky factors of the precisions."""

    def cov(u):
        lower = solve_triangular(u, np.eye(u.shape[0]), lower=False).T  # U^{-T}
        return lower @ lower.T

    if covariance_type == "full":
        return np.stack([cov(u) for u in prec_chol])
    if covariance_type == "tied":
        return cov(prec_chol)
    return 1.0 / prec_chol**2


def precisions_from_cholesky(prec_chol: np.ndarray, covariance_type: str) -> np.ndarray:
    """Precisions ``U U^T`` (full, tied) or ``U**2`` (diag, spherical)."""
    if covariance_type == "full":
        return prec_chol @ np.swapaxes(prec_chol, 1, 2)
    if covariance_type == "tied":
        return prec_chol @ prec_chol.T
    return prec_chol**2


def n_parameters(covariance_type: str, n_components: int, n_features: int) -> int:
    """Number of free parameters of a mixture (for BIC and AIC)."""
    d = n_features
    cov = {
        "full": n_components * d * (d + 1) / 2.0,
        "tied": d * (d + 1) / 2.0,
        "diag": n_components * d,
        "spherical": n_components,
    }[covariance_type]
    return int(cov + n_components * d + n_components - 1)


def make_params(weights, means, covariances, covariance_type: str) -> Params:
    """Params from weights, means and covariances (the precision factor is derived)."""
    covariances = np.asarray(covariances, dtype=np.float64)
    return Params(
        np.asarray(weights, dtype=np.float64),
        np.asarray(means, dtype=np.float64),
        covariances,
        compute_precision_cholesky(covariances, covariance_type),
        covariance_type,
    )
