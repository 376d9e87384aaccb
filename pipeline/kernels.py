"""Pure NumPy kernels of Gaussian-mixture EM over one block of rows.

No Dask and no I/O here: every function takes arrays and returns arrays.  The
Dask layer (:mod:`pipeline.passes`) maps them over partitions and adds up their
results.

Notation follows scikit-learn: ``X`` is ``(n_samples, n_features)``, ``resp``
and ``log_resp`` are ``(n_samples, n_components)``, ``nk`` is
``(n_components,)``.  Shapes of covariance-like arrays depend on the
covariance type:

=========  =====================
full       (n_components, D, D)
tied       (D, D)
diag       (n_components, D)
spherical  (n_components,)
=========  =====================

Second moments are *shifted*: a block's statistics for component ``k`` are
taken about a shift ``c_k`` that every block shares (the current means), so
they add up exactly across blocks and never suffer the cancellation of
``E[xx^T] - mu mu^T`` on raw moments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy.linalg import solve_triangular

from pipeline.errors import ComponentCollapseError

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
_LOG_2PI = math.log(2.0 * math.pi)
# Temporaries of a chunk of rows stay around this many float64 values (2 MiB).
_CHUNK_VALUES = 1 << 18


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


@dataclass(frozen=True)
class Stats:
    """Additive sufficient statistics of some rows for one mixture.

    Attributes
    ----------
    n_rows : int
        Number of rows seen.
    weight_sum : float
        Sum of sample weights (``n_rows`` when unweighted).
    log_likelihood : float
        ``sum_i s_i log p(x_i)`` under the parameters of the E-step.
    nk : ndarray of shape (n_components,)
        ``sum_i s_i r_ik``.
    s1 : ndarray of shape (n_components, n_features)
        ``sum_i s_i r_ik (x_i - c_k)``.
    s2 : ndarray, shape by covariance type
        ``sum_i s_i r_ik (x_i - c_k)(x_i - c_k)^T`` (full), its sum over
        components (tied), its diagonal (diag) or its trace (spherical).
    """

    n_rows: int
    weight_sum: float
    log_likelihood: float
    nk: np.ndarray
    s1: np.ndarray
    s2: np.ndarray

    def __add__(self, other: Stats) -> Stats:
        return Stats(
            self.n_rows + other.n_rows,
            self.weight_sum + other.weight_sum,
            self.log_likelihood + other.log_likelihood,
            self.nk + other.nk,
            self.s1 + other.s1,
            self.s2 + other.s2,
        )


def second_moment_shape(covariance_type: str, n_components: int, n_features: int) -> tuple:
    """Shape of ``Stats.s2`` (and of the covariances) for a covariance type."""
    return {
        "full": (n_components, n_features, n_features),
        "tied": (n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components,),
    }[covariance_type]


def empty_stats(covariance_type: str, n_components: int, n_features: int) -> Stats:
    """Statistics of zero rows: the identity of ``+``."""
    return Stats(
        0,
        0.0,
        0.0,
        np.zeros(n_components),
        np.zeros((n_components, n_features)),
        np.zeros(second_moment_shape(covariance_type, n_components, n_features)),
    )


@dataclass(frozen=True)
class Summary:
    """What a validation scan learns of some blocks; ``+`` concatenates in block order.

    Attributes
    ----------
    n_rows : tuple of int
        Rows of each block, in order.
    weight_sum : float
    minimum, maximum : ndarray of shape (n_features,)
        Column extremes over rows of positive weight.
    """

    n_rows: tuple[int, ...]
    weight_sum: float
    minimum: np.ndarray
    maximum: np.ndarray

    def __add__(self, other: Summary) -> Summary:
        return Summary(
            self.n_rows + other.n_rows,
            self.weight_sum + other.weight_sum,
            np.minimum(self.minimum, other.minimum),
            np.maximum(self.maximum, other.maximum),
        )


def block_summary(X: np.ndarray, sample_weight: np.ndarray | None) -> Summary:
    """Row count, weight sum and column extremes of a block.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    sample_weight : ndarray of shape (n_samples,) or None
    """
    rows = X if sample_weight is None else X[sample_weight > 0]
    d = X.shape[1]
    minimum = rows.min(axis=0) if rows.shape[0] else np.full(d, np.inf)
    maximum = rows.max(axis=0) if rows.shape[0] else np.full(d, -np.inf)
    weight_sum = float(X.shape[0] if sample_weight is None else sample_weight.sum())
    return Summary((int(X.shape[0]),), weight_sum, minimum, maximum)


# --------------------------------------------------------------------------- #
# Cholesky factors of the precisions
# --------------------------------------------------------------------------- #
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


# --------------------------------------------------------------------------- #
# E-step
# --------------------------------------------------------------------------- #
# The E-step works on a chunk of rows in the layout of columns, ``xt`` of shape
# (n_features, n_rows): reductions then run along the long axis.  For every
# component it forms the whitened differences ``y_k = U_k^T (x - mu_k)``,
# shape (n_components, n_features, n_rows), whose squared norms are the
# Mahalanobis distances.  The M-step moments are accumulated in that whitened
# space and mapped back with ``U_k^{-1}`` once per block (see _UNWHITEN).


@dataclass(frozen=True)
class _Prepared:
    """Per-parameter constants of the E-step, computed once per block."""

    params: Params
    offset: np.ndarray  # (K, 1): log weight + log det - D/2 log 2 pi
    whiten: np.ndarray  # full: (K*D, D) stacked U_k^T; tied: (D, D) U^T; diag/spherical: U
    centres: np.ndarray  # full/tied: (K*D, 1) or (K, D, 1) of U_k^T mu_k; diag/spherical: (K, D, 1) means


def _prepare(params: Params) -> _Prepared:
    ct, u, d = params.covariance_type, params.precisions_cholesky, params.n_features
    k = params.n_components
    with np.errstate(divide="ignore"):  # a weight of 0 gives log 0 = -inf
        offset = np.log(params.weights) + _LOG_DET[ct](u, d) - 0.5 * d * _LOG_2PI
    if ct == "full":
        whiten = np.ascontiguousarray(np.transpose(u, (0, 2, 1)).reshape(k * d, d))
        centres = np.einsum("kd,kde->ke", params.means, u).reshape(k * d, 1)
    elif ct == "tied":
        whiten = np.ascontiguousarray(u.T)
        centres = (params.means @ u)[:, :, None]
    else:
        whiten = u
        centres = params.means[:, :, None]
    return _Prepared(params, offset[:, None], whiten, centres)


def _whiten_full(xt, prep):
    y = prep.whiten @ xt
    y -= prep.centres
    return y.reshape(prep.params.n_components, xt.shape[0], xt.shape[1])


def _whiten_tied(xt, prep):
    return (prep.whiten @ xt)[None, :, :] - prep.centres


def _whiten_diag(xt, prep):
    y = xt[None, :, :] - prep.centres
    y *= prep.whiten[:, :, None]
    return y


def _whiten_spherical(xt, prep):
    y = xt[None, :, :] - prep.centres
    y *= prep.whiten[:, None, None]
    return y


def _log_det_full(prec_chol, d):
    return np.log(np.diagonal(prec_chol, axis1=1, axis2=2)).sum(axis=1)


def _log_det_tied(prec_chol, d):
    return np.log(np.diagonal(prec_chol)).sum()


def _log_det_diag(prec_chol, d):
    return np.log(prec_chol).sum(axis=1)


def _log_det_spherical(prec_chol, d):
    return d * np.log(prec_chol)


_WHITEN = {"full": _whiten_full, "tied": _whiten_tied, "diag": _whiten_diag, "spherical": _whiten_spherical}
_LOG_DET = {"full": _log_det_full, "tied": _log_det_tied, "diag": _log_det_diag, "spherical": _log_det_spherical}


def _chunk_log_prob(xt: np.ndarray, prep: _Prepared) -> tuple[np.ndarray, np.ndarray]:
    """Whitened differences (K, D, n) and weighted log densities (K, n) of a chunk of columns."""
    y = _WHITEN[prep.params.covariance_type](xt, prep)
    maha = np.einsum("kdn,kdn->kn", y, y)
    maha *= -0.5
    maha += prep.offset
    return y, maha


def _normalise(weighted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log-sum-exp over components (axis 0): log p(x) (n,) and responsibilities (K, n), one exp."""
    top = weighted.max(axis=0)
    resp = np.exp(weighted - top)
    total = resp.sum(axis=0)
    resp /= total
    return top + np.log(total), resp


def _column_chunks(X: np.ndarray, width: int):
    """Chunks of rows of X as C-contiguous (n_features, n) arrays (zero-copy for F-ordered X)."""
    step = max(512, _CHUNK_VALUES // max(width, 1))
    xt_all = X.T
    for start in range(0, X.shape[0], step):
        rows = slice(start, min(start + step, X.shape[0]))
        xt = xt_all[:, rows]
        yield rows, (xt if xt.flags.c_contiguous or xt.strides[1] == xt.itemsize else np.ascontiguousarray(xt))


def log_gaussian_prob(X: np.ndarray, params: Params) -> np.ndarray:
    """Log density of every row under every component.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    params : Params

    Returns
    -------
    log_prob : ndarray of shape (n_samples, n_components)
    """
    unweighted = replace(params, weights=np.ones(params.n_components))
    prep = _prepare(unweighted)
    out = np.empty((X.shape[0], params.n_components))
    for rows, xt in _column_chunks(X, params.n_components * params.n_features):
        out[rows] = _chunk_log_prob(xt, prep)[1].T
    return out


def estimate_log_resp(X: np.ndarray, params: Params) -> tuple[np.ndarray, np.ndarray]:
    """Log-likelihood of every row and its log responsibilities (log-sum-exp).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    params : Params

    Returns
    -------
    log_prob_norm : ndarray of shape (n_samples,)
        ``log p(x_i)``.
    log_resp : ndarray of shape (n_samples, n_components)
        ``log p(z_i = k | x_i)``.
    """
    prep = _prepare(params)
    log_prob_norm = np.empty(X.shape[0])
    log_resp = np.empty((X.shape[0], params.n_components))
    for rows, xt in _column_chunks(X, params.n_components * params.n_features):
        weighted = _chunk_log_prob(xt, prep)[1]
        top = weighted.max(axis=0)
        norm = top + np.log(np.exp(weighted - top).sum(axis=0))
        log_prob_norm[rows] = norm
        log_resp[rows] = (weighted - norm).T
    return log_prob_norm, log_resp


def _row_chunks(n_rows: int, width: int):
    step = max(256, _CHUNK_VALUES // max(width, 1))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


# --------------------------------------------------------------------------- #
# Block statistics
# --------------------------------------------------------------------------- #
def _accumulate(X, a, shift, covariance_type, nk, s1, s2):
    """Add the shifted moments of rows ``X`` with weights ``a`` (n, K) in place."""
    nk += a.sum(axis=0)
    for k in range(shift.shape[0]):
        diff = X - shift[k]
        weighted = diff * a[:, k : k + 1]
        s1[k] += weighted.sum(axis=0)
        if covariance_type == "full":
            s2[k] += weighted.T @ diff
        elif covariance_type == "tied":
            s2 += weighted.T @ diff
        elif covariance_type == "diag":
            s2[k] += (weighted * diff).sum(axis=0)
        else:
            s2[k] += (weighted * diff).sum()


def _statistics(X, sample_weight, shift, covariance_type, responsibilities):
    """Shared loop: chunk rows, get (log-likelihood, resp) per chunk, accumulate."""
    n_components, n_features = shift.shape
    base = empty_stats(covariance_type, n_components, n_features)
    nk, s1, s2 = base.nk, base.s1, base.s2
    loglik = 0.0
    for rows in _row_chunks(X.shape[0], n_components * n_features):
        xb = X[rows]
        log_prob_norm, resp = responsibilities(xb, rows)
        if sample_weight is None:
            a = resp
            loglik += float(log_prob_norm.sum())
        else:
            sw = sample_weight[rows]
            a = resp * sw[:, None]
            loglik += float(log_prob_norm @ sw)
        _accumulate(xb, a, shift, covariance_type, nk, s1, s2)
    weight_sum = float(X.shape[0] if sample_weight is None else sample_weight.sum())
    return Stats(int(X.shape[0]), weight_sum, loglik, nk, s1, s2)


def _moments_full(y, a, u, t):
    root = np.sqrt(a)
    y *= root[:, None, :]
    u += np.matmul(y, root[:, :, None])[:, :, 0]
    for k in range(y.shape[0]):
        t[k] += y[k] @ y[k].T


def _moments_tied(y, a, u, t):
    root = np.sqrt(a)
    y *= root[:, None, :]
    u += np.matmul(y, root[:, :, None])[:, :, 0]
    for k in range(y.shape[0]):
        t += y[k] @ y[k].T


def _moments_diag(y, a, u, t):
    u += np.matmul(y, a[:, :, None])[:, :, 0]
    np.square(y, out=y)
    t += np.matmul(y, a[:, :, None])[:, :, 0]


def _moments_spherical(y, a, u, t):
    u += np.matmul(y, a[:, :, None])[:, :, 0]
    np.square(y, out=y)
    t += np.einsum("kdn,kn->k", y, a)


def _unwhiten_full(u, t, prec_chol):
    inv = np.stack([solve_triangular(p, np.eye(p.shape[0]), lower=False) for p in prec_chol])  # U_k^{-1}
    return np.einsum("kd,kde->ke", u, inv), np.swapaxes(inv, 1, 2) @ t @ inv


def _unwhiten_tied(u, t, prec_chol):
    inv = solve_triangular(prec_chol, np.eye(prec_chol.shape[0]), lower=False)
    return u @ inv, inv.T @ t @ inv


def _unwhiten_diag(u, t, prec_chol):
    return u / prec_chol, t / prec_chol**2


def _unwhiten_spherical(u, t, prec_chol):
    return u / prec_chol[:, None], t / prec_chol**2


_WHITENED_MOMENTS = {"full": _moments_full, "tied": _moments_tied, "diag": _moments_diag,
                     "spherical": _moments_spherical}
_UNWHITEN = {"full": _unwhiten_full, "tied": _unwhiten_tied, "diag": _unwhiten_diag,
             "spherical": _unwhiten_spherical}


def block_statistics(X: np.ndarray, sample_weight: np.ndarray | None, params: Params) -> Stats:
    """E-step over a block and its sufficient statistics for the M-step.

    The moments are shifted by the current means: accumulated on the whitened
    differences ``U_k^T (x - mu_k)`` that the E-step forms anyway, and mapped
    back with ``U_k^{-1}`` once at the end.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float64
        Fastest in Fortran order (each column contiguous, as Arrow gives them).
    sample_weight : ndarray of shape (n_samples,) or None
        Frequency weights.
    params : Params

    Returns
    -------
    Stats
    """
    ct = params.covariance_type
    k, d = params.n_components, params.n_features
    prep = _prepare(params)
    base = empty_stats(ct, k, d)
    nk, u, t = base.nk, base.s1, base.s2
    log_likelihood = 0.0
    for rows, xt in _column_chunks(X, k * d):
        y, weighted = _chunk_log_prob(xt, prep)
        log_prob_norm, a = _normalise(weighted)
        if sample_weight is None:
            log_likelihood += float(log_prob_norm.sum())
        else:
            sw = sample_weight[rows]
            log_likelihood += float(log_prob_norm @ sw)
            a *= sw
        nk += a.sum(axis=1)
        _WHITENED_MOMENTS[ct](y, a, u, t)
    s1, s2 = _UNWHITEN[ct](u, t, params.precisions_cholesky)
    weight_sum = float(X.shape[0] if sample_weight is None else sample_weight.sum())
    return Stats(int(X.shape[0]), weight_sum, log_likelihood, nk, s1, s2)


def block_log_likelihood(X: np.ndarray, sample_weight: np.ndarray | None, params: Params) -> tuple[float, float]:
    """Weighted sum of ``log p(x_i)`` over a block, and the sum of weights.

    Returns
    -------
    log_likelihood : float
    weight_sum : float
    """
    prep = _prepare(params)
    total = 0.0
    for rows, xt in _column_chunks(X, params.n_components * params.n_features):
        log_prob_norm, _ = _normalise(_chunk_log_prob(xt, prep)[1])
        total += float(log_prob_norm.sum() if sample_weight is None else log_prob_norm @ sample_weight[rows])
    weight_sum = float(X.shape[0] if sample_weight is None else sample_weight.sum())
    return total, weight_sum


def nearest_centre(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre (Euclidean) of every row.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    centres : ndarray of shape (n_centres, n_features)

    Returns
    -------
    labels : ndarray of shape (n_samples,), int
    """
    # ||x||^2 is the same for every centre, so it does not change the argmin.
    return (np.square(centres).sum(axis=1) - 2.0 * (X @ centres.T)).argmin(axis=1)


def hard_assignment_statistics(
    X: np.ndarray, sample_weight: np.ndarray | None, centres: np.ndarray, covariance_type: str
) -> Stats:
    """Statistics with every row given wholly to its nearest centre.

    Used to turn k-means centres into a first M-step.  ``log_likelihood`` is 0.
    """
    n_components = centres.shape[0]

    def hard(xb, rows):
        resp = np.zeros((xb.shape[0], n_components))
        resp[np.arange(xb.shape[0]), nearest_centre(xb, centres)] = 1.0
        return np.zeros(xb.shape[0]), resp

    return _statistics(X, sample_weight, centres, covariance_type, hard)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def row_uniforms(row_offset: int, n_rows: int, n_columns: int, seed: int) -> np.ndarray:
    """Uniform numbers in (0, 1] keyed by global row index, so any partitioning gives the same.

    Returns
    -------
    u : ndarray of shape (n_rows, n_columns)
    """
    idx = np.arange(row_offset * n_columns, (row_offset + n_rows) * n_columns, dtype=np.uint64)
    with np.errstate(over="ignore"):
        bits = _splitmix64(idx ^ _splitmix64(np.uint64(seed)))
    return (((bits >> np.uint64(11)).astype(np.float64) + 1.0) / 2.0**53).reshape(n_rows, n_columns)


def random_resp_statistics(
    X: np.ndarray,
    sample_weight: np.ndarray | None,
    row_offset: int,
    seed: int,
    shift: np.ndarray,
    covariance_type: str,
) -> Stats:
    """Statistics under uniformly random responsibilities (scikit-learn's ``random`` init).

    The responsibilities of row ``i`` depend only on ``seed`` and its global
    index ``row_offset + i``.
    """

    def rand(xb, rows):
        u = row_uniforms(row_offset + rows.start, xb.shape[0], shift.shape[0], seed)
        return np.zeros(xb.shape[0]), u / u.sum(axis=1, keepdims=True)

    return _statistics(X, sample_weight, shift, covariance_type, rand)


# --------------------------------------------------------------------------- #
# M-step
# --------------------------------------------------------------------------- #
def m_step(stats: Stats, shift: np.ndarray, covariance_type: str, reg_covar: float) -> Params:
    """New parameters from merged statistics.

    Parameters
    ----------
    stats : Stats
        Statistics of all rows, shifted by ``shift``.
    shift : ndarray of shape (n_components, n_features)
    covariance_type : str
    reg_covar : float
        Added to the diagonal of every covariance.

    Returns
    -------
    Params

    Raises
    ------
    ComponentCollapseError
        If a covariance is not positive definite even with ``reg_covar``.
    """
    # scikit-learn adds 10 eps so that an empty component does not divide by 0.
    nk = stats.nk + 10 * np.finfo(np.float64).eps
    offset = stats.s1 / nk[:, None]
    means = shift + offset
    d = shift.shape[1]
    if covariance_type == "full":
        m2 = stats.s2 - np.einsum("ki,kj->kij", stats.s1, offset)
        cov = m2 / nk[:, None, None]
        cov[:, np.arange(d), np.arange(d)] += reg_covar
    elif covariance_type == "tied":
        cov = (stats.s2 - stats.s1.T @ offset) / nk.sum()
        cov[np.arange(d), np.arange(d)] += reg_covar
    elif covariance_type == "diag":
        cov = (stats.s2 - stats.s1 * offset) / nk[:, None] + reg_covar
    else:
        cov = (stats.s2 - (stats.s1 * offset).sum(axis=1)) / (nk * d) + reg_covar
    return Params(nk / nk.sum(), means, cov, compute_precision_cholesky(cov, covariance_type), covariance_type)
