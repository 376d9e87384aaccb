"""Block sufficient statistics, their merge (``+``), and the M-step.

Second moments are *shifted*: a block's statistics for component ``k`` are
taken about a point ``c_k`` shared by every block (``Prepared.shift``), so they
add up exactly across blocks and never suffer the cancellation of
``E[xx^T] - mu mu^T`` on raw moments.  On the expanded route ``c_k`` is the
mixture's mean, close (in every component's own units) to every component,
and all moments of a chunk are one product of the responsibilities with the
quadratic features the E-step built.  On the centred route ``c_k`` is the
component's current mean; moments are accumulated on the whitened differences
``y_k = U_k^T (x - c_k)`` and mapped back with ``U_k^{-1}`` once per block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.linalg import solve_triangular

from pipeline.kernels.estep import Prepared, chunk_log_prob, chunks, n_quadratic, normalise, prepare
from pipeline.kernels.params import Params, compute_precision_cholesky, second_moment_shape


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
# Moments: expanded route (one product), centred route (whitened space, and back)
# --------------------------------------------------------------------------- #
def _unpack_quadratic(q: np.ndarray, covariance_type: str, n_features: int) -> np.ndarray:
    """``s2`` in its covariance type's shape from the moments (K, n_quadratic) of ``q(x')``."""
    if covariance_type in ("full", "tied"):
        rows, cols = np.triu_indices(n_features)
        s2 = np.empty((q.shape[0], n_features, n_features))
        s2[:, rows, cols] = q
        s2[:, cols, rows] = q
        return s2 if covariance_type == "full" else s2.sum(axis=0)
    return q if covariance_type == "diag" else q[:, 0]


def _moments_full(y, a, u, t, scratch):
    root = np.sqrt(a, out=scratch)
    y *= root[:, None, :]
    u += np.matmul(y, root[:, :, None])[:, :, 0]
    for k in range(y.shape[0]):
        t[k] += y[k] @ y[k].T


def _moments_tied(y, a, u, t, scratch):
    root = np.sqrt(a, out=scratch)
    y *= root[:, None, :]
    u += np.matmul(y, root[:, :, None])[:, :, 0]
    for k in range(y.shape[0]):
        t += y[k] @ y[k].T


def _moments_diag(y, a, u, t, scratch):
    u += np.matmul(y, a[:, :, None])[:, :, 0]
    np.square(y, out=y)
    t += np.matmul(y, a[:, :, None])[:, :, 0]


def _moments_spherical(y, a, u, t, scratch):
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

# A rule for responsibilities: (weighted log densities (K, n), rows, buffers) -> (log p(x) or None, resp (K, n)).
Responsibilities = Callable[[np.ndarray, slice, dict], tuple]


def _statistics(X, sample_weight, prep: Prepared, responsibilities: Responsibilities) -> Stats:
    """The one accumulation loop: chunk rows, E-step, responsibilities, moments."""
    ct, k, d = prep.covariance_type, prep.n_components, prep.n_features
    if prep.expanded:  # nk, s1 and q's moments in one (K, 1 + D + n_quadratic) product per chunk
        width = 1 + d + n_quadratic(ct, d)
        moments, product = np.zeros((k, width)), np.empty((k, width), prep.dtype)
    else:
        base = empty_stats(ct, k, d)
        nk, u, t = base.nk, base.s1, base.s2
    log_likelihood = 0.0
    for rows, buffers in chunks(X, prep):
        weighted = chunk_log_prob(prep, buffers)
        log_prob_norm, a = responsibilities(weighted, rows, buffers)
        if sample_weight is not None:
            sw = sample_weight[rows]
            a *= sw
            if log_prob_norm is not None:
                log_likelihood += float(log_prob_norm @ sw)
        elif log_prob_norm is not None:
            log_likelihood += float(log_prob_norm.sum(dtype=np.float64))
        if prep.expanded:
            moments += np.matmul(a, buffers["z"].T, out=product)
        else:
            nk += a.sum(axis=1)
            _WHITENED_MOMENTS[ct](buffers["y"], a, u, t, weighted)  # weighted is free now: scratch
    if prep.expanded:
        nk, s1, s2 = moments[:, 0], moments[:, 1 : d + 1], _unpack_quadratic(moments[:, d + 1 :], ct, d)
    else:
        s1, s2 = _UNWHITEN[ct](u, t, prep.precisions_cholesky)
    weight_sum = float(X.shape[0] if sample_weight is None else sample_weight.sum())
    return Stats(int(X.shape[0]), weight_sum, log_likelihood, nk, s1, s2)


def _soft(weighted, rows, buffers):
    return normalise(weighted, buffers)


def block_statistics(X: np.ndarray, sample_weight: np.ndarray | None, prep: Prepared) -> Stats:
    """E-step over a block and its sufficient statistics for the M-step.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float64
        Fastest in Fortran order (each column contiguous, as Arrow gives them).
    sample_weight : ndarray of shape (n_samples,) or None
        Frequency weights.
    prep : Prepared
        ``prepare(params)`` of the current parameters; the moments are about ``prep.shift``.

    Returns
    -------
    Stats
    """
    return _statistics(X, sample_weight, prep, _soft)


def block_log_likelihood(X: np.ndarray, sample_weight: np.ndarray | None, prep: Prepared) -> tuple[float, float]:
    """Weighted sum of ``log p(x_i)`` over a block, and the sum of weights.

    Returns
    -------
    log_likelihood : float
    weight_sum : float
    """
    total = 0.0
    for rows, buffers in chunks(X, prep):
        log_prob_norm = normalise(chunk_log_prob(prep, buffers), buffers)[0]
        if sample_weight is None:
            total += float(log_prob_norm.sum(dtype=np.float64))
        else:
            total += float(log_prob_norm @ sample_weight[rows])
    weight_sum = float(X.shape[0] if sample_weight is None else sample_weight.sum())
    return total, weight_sum


# --------------------------------------------------------------------------- #
# Statistics for starts: hard assignment to centres, random responsibilities
# --------------------------------------------------------------------------- #
def unit_params(centres: np.ndarray, covariance_type: str) -> Params:
    """Equal weights, the given means, identity covariances: whitening is just ``x - c_k``."""
    k, d = centres.shape
    eye = {"full": np.tile(np.eye(d), (k, 1, 1)), "tied": np.eye(d), "diag": np.ones((k, d)),
           "spherical": np.ones(k)}[covariance_type]
    return Params(np.full(k, 1.0 / k), np.asarray(centres, dtype=np.float64), eye, eye, covariance_type)


def _hard(weighted, rows, buffers):
    # Equal weights and unit covariances: the most likely component is the nearest centre.
    resp = buffers["resp"]
    resp.fill(0.0)
    resp[weighted.argmax(axis=0), np.arange(resp.shape[1])] = 1.0
    return None, resp


def hard_assignment_statistics(
    X: np.ndarray, sample_weight: np.ndarray | None, centres: np.ndarray, covariance_type: str
) -> Stats:
    """Statistics with every row given wholly to its nearest centre (shifted by the centres).

    Used to turn k-means centres into a first M-step.  ``log_likelihood`` is 0.
    """
    return _statistics(X, sample_weight, prepare(unit_params(centres, covariance_type), allow_expanded=False), _hard)


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
    index ``row_offset + i``.  ``shift`` is (n_components, n_features).
    """

    def rand(weighted, rows, buffers):
        resp = buffers["resp"]
        resp[...] = row_uniforms(row_offset + rows.start, resp.shape[1], resp.shape[0], seed).T
        resp /= resp.sum(axis=0)
        return None, resp

    return _statistics(X, sample_weight, prepare(unit_params(shift, covariance_type), allow_expanded=False), rand)


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
