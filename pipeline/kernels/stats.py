"""Block sufficient statistics and their merge (``+``).

Second moments are *shifted*: a block's statistics for component ``k`` are
taken about a point ``c_k`` shared by every block (``Prepared.shift``), so they
add up exactly across blocks and never suffer the cancellation of
``E[xx^T] - mu mu^T`` on raw moments.  On the expanded route ``c_k`` is the
mixture's mean, close (in every component's own units) to every component,
and all moments of a chunk are one product of the responsibilities with the
quadratic features the E-step built.  On the centred route ``c_k`` is the
component's current mean; moments are accumulated on the whitened differences
``y_k = U_k^T (x - c_k)`` and mapped back with ``U_k^{-1}`` once per block.
Either way each component's moments are first per component (matrices for
full and tied, diagonals for diag and spherical) and then reduced to the
covariance type's shape (:func:`~pipeline.kernels.params.reduce_components`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pipeline.kernels.estep import Prepared, chunk_log_prob, chunks, n_quadratic, normalise, prepare
from pipeline.kernels.missing import hard, pattern_sums, soft
from pipeline.kernels.missing import log_resp as missing_log_resp
from pipeline.kernels.params import (
    covariance_shape,
    is_dense,
    per_component,
    reduce_components,
    solve_triangular_stack,
    unit_params,
)

# A column's squared spread times the weight sum must stay below this, so that second moments stay finite.
MAX_SQUARED_SPREAD = 1e300
# The same for the E-step's float32 arithmetic (whose largest number is 3.4e38), with room for sums over a chunk.
MAX_SQUARED_SPREAD_FLOAT32 = 1e33


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
        First moments ``sum_i s_i r_ik (x_i - c_k)``.
    s2 : ndarray, shape by covariance type
        Second moments ``sum_i s_i r_ik (x_i - c_k)(x_i - c_k)^T`` (full), their
        sum over components (tied), their diagonal (diag) or its sum (spherical).
    resp_log_resp : float
        ``sum_i s_i sum_k r_ik log r_ik`` when the E-step was asked for it
        (``Prepared.with_entropy``, the variational bound needs it), else 0.
    """

    n_rows: int
    weight_sum: float
    log_likelihood: float
    nk: np.ndarray
    s1: np.ndarray
    s2: np.ndarray
    resp_log_resp: float = 0.0

    def __add__(self, other: Stats) -> Stats:
        return Stats(
            self.n_rows + other.n_rows,
            self.weight_sum + other.weight_sum,
            self.log_likelihood + other.log_likelihood,
            self.nk + other.nk,
            self.s1 + other.s1,
            self.s2 + other.s2,
            self.resp_log_resp + other.resp_log_resp,
        )


def empty_stats(covariance_type: str, n_components: int, n_features: int) -> Stats:
    """Statistics of zero rows: the identity of ``+``."""
    return Stats(
        0,
        0.0,
        0.0,
        np.zeros(n_components),
        np.zeros((n_components, n_features)),
        np.zeros(covariance_shape(covariance_type, n_components, n_features)),
    )


@dataclass(frozen=True)
class Summary:
    """What a validation scan learns of some blocks; ``+`` concatenates in block order.

    Attributes
    ----------
    n_rows : tuple of int
        Rows of each block, in order.
    weight_sum : float
    max_weight : float
    minimum, maximum : ndarray of shape (n_features,)
        Column extremes over rows of positive weight (observed values only).
    n_missing : int
        Missing values (NaN) in the rows kept.
    n_incomplete : int
        Rows kept with at least one missing value.
    column_weight, column_mean, column_m2 : ndarray of shape (n_features,)
        Each column's weight of observed values, weighted mean, and weighted sum of squared deviations about
        that mean; blocks combine by Chan's pairwise update, never as ``E[x^2] - E[x]^2``.
    """

    n_rows: tuple[int, ...]
    weight_sum: float
    max_weight: float
    minimum: np.ndarray
    maximum: np.ndarray
    n_missing: int = 0
    n_incomplete: int = 0
    column_weight: np.ndarray | None = None
    column_mean: np.ndarray | None = None
    column_m2: np.ndarray | None = None

    @property
    def variance(self) -> np.ndarray:
        """Each column's weighted variance over its observed values (the data's own scale, for collapse checks).

        Returns
        -------
        ndarray of shape (n_features,); NaN for a column with no observed value.
        """
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.column_m2 / self.column_weight

    def problem(self, columns: list[str], weights: str, float32: str | None = None) -> str | None:
        """What the arithmetic cannot carry, in words (None if nothing): weights that sum past float64's range or
        to 0, a column whose squared spread, times the weight sum, overflows float64, or (with ``float32``) whose
        squared spread comes near float32's range, where the E-step computes its squares.

        ``columns`` names each feature (e.g. "column 'x0'"), ``weights`` the weights (e.g. "sample_weight"),
        ``float32`` how float32 arithmetic was asked for (e.g. "model.dtype: float32"), None for float64.
        """
        if not math.isfinite(self.weight_sum):
            return (
                f"{weights} sums to more than float64 holds (largest weight {self.max_weight:.3g}); rescale the weights"
            )
        if self.weight_sum <= 0:
            return f"{weights} sums to zero; no row would count"
        with np.errstate(over="ignore", invalid="ignore"):
            spread = self.maximum - self.minimum
            load = np.square(spread) * max(self.weight_sum, 1.0)
        for j, name in enumerate(columns):
            if self.minimum[j] > self.maximum[j]:  # no value seen: every row missing it, or weighing 0
                return f"{name} has no value in any row that counts (all missing); drop the column or fill it"
            if not (math.isfinite(load[j]) and load[j] < MAX_SQUARED_SPREAD):
                return (
                    f"{name} spans {spread[j]:.3g} (from {self.minimum[j]:.3g} to {self.maximum[j]:.3g}); its "
                    f"squares, weighted by a weight sum of {self.weight_sum:.3g}, overflow float64: rescale it"
                    + (f" or the {weights}" if self.weight_sum > sum(self.n_rows) else "")
                )
        if float32 is not None:
            for j, name in enumerate(columns):
                if not np.square(spread[j]) < MAX_SQUARED_SPREAD_FLOAT32:
                    return (
                        f"{name} spans {spread[j]:.3g} (from {self.minimum[j]:.3g} to {self.maximum[j]:.3g}); its "
                        f"squares pass what float32 arithmetic holds ({float32}): use float64 or rescale it"
                    )
        return None

    def __add__(self, other: Summary) -> Summary:
        wa, wb = self.column_weight, other.column_weight
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            total = wa + wb
            share = np.where(total > 0, wb / np.where(total > 0, total, 1.0), 0.0)
            delta = other.column_mean - self.column_mean
            merged = np.where(wa > 0, self.column_mean + delta * share, other.column_mean)
            mean = np.where(wb > 0, merged, self.column_mean)
            m2 = self.column_m2 + other.column_m2 + np.where((wa > 0) & (wb > 0), np.square(delta) * wa * share, 0.0)
        return Summary(
            self.n_rows + other.n_rows,
            self.weight_sum + other.weight_sum,
            max(self.max_weight, other.max_weight),
            np.fmin(self.minimum, other.minimum),
            np.fmax(self.maximum, other.maximum),
            self.n_missing + other.n_missing,
            self.n_incomplete + other.n_incomplete,
            total,
            mean,
            m2,
        )


def block_summary(X: np.ndarray, sample_weight: np.ndarray | None) -> Summary:
    """Row count, weights, column extremes and missing values of a block.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features); NaN marks a missing value
    sample_weight : ndarray of shape (n_samples,) or None
    """
    rows = X if sample_weight is None else X[sample_weight > 0]
    d = X.shape[1]
    with np.errstate(invalid="ignore"):
        minimum = np.fmin.reduce(rows, axis=0) if rows.shape[0] else np.full(d, np.inf)
        maximum = np.fmax.reduce(rows, axis=0) if rows.shape[0] else np.full(d, -np.inf)
    missing = np.isnan(X)
    if sample_weight is None:
        weight_sum, max_weight = float(X.shape[0]), 1.0 if X.shape[0] else 0.0
    else:
        with np.errstate(over="ignore"):  # a sum past float64's range is reported by Summary.problem
            weight_sum = float(sample_weight.sum())
        max_weight = float(sample_weight.max()) if sample_weight.size else 0.0
    column_weight, column_mean, column_m2 = _column_moments(X, missing, sample_weight)
    return Summary(
        (int(X.shape[0]),),
        weight_sum,
        max_weight,
        np.nan_to_num(minimum, nan=np.inf),
        np.nan_to_num(maximum, nan=-np.inf),
        int(missing.sum()),
        int(missing.any(axis=1).sum()),
        column_weight,
        column_mean,
        column_m2,
    )


def _column_moments(X: np.ndarray, missing: np.ndarray, sample_weight: np.ndarray | None):
    """Each column's weight of observed values, weighted mean and sum of squared deviations (one block)."""
    w = np.ones(X.shape[0]) if sample_weight is None else sample_weight
    observed = np.where(missing, 0.0, w[:, None])
    values = np.where(missing, 0.0, X)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # overflow is Summary.problem's to report
        weight = observed.sum(axis=0)
        mean = np.where(weight > 0, (observed * values).sum(axis=0) / np.where(weight > 0, weight, 1.0), 0.0)
        m2 = (observed * np.square(values - mean)).sum(axis=0)
    return weight, mean, m2


# --------------------------------------------------------------------------- #
# Moments: expanded route (one product), centred route (whitened space, and back)
# --------------------------------------------------------------------------- #
def _unpack_quadratic(q: np.ndarray, covariance_type: str, n_features: int) -> np.ndarray:
    """``s2`` in its covariance type's shape from the moments (K, n_quadratic) of ``q(x')``."""
    if covariance_type == "spherical":  # q(x') = |x'|^2: already the sum over features
        return q[:, 0]
    if is_dense(covariance_type):
        # q holds x'_i x'_j for i <= j in np.triu_indices order (see estep._fill_expanded).
        rows, cols = np.triu_indices(n_features)
        full = np.empty((q.shape[0], n_features, n_features))
        full[:, rows, cols] = q
        full[:, cols, rows] = q
        q = full
    return reduce_components(q, covariance_type)


def _moments_centred(y, a, s1, s2, scratch, dense: bool):
    """Add a chunk's whitened moments: ``y`` (K, D, n) whitened differences, ``a`` (K, n) weighted responsibilities.

    ``s2`` is per component: (K, D, D) when ``dense``, else (K, D) (the diagonals).
    """
    if dense:
        root = np.sqrt(a, out=scratch)
        y *= root[:, None, :]
        s1 += np.matmul(y, root[:, :, None])[:, :, 0]
        for k in range(y.shape[0]):
            s2[k] += y[k] @ y[k].T
    else:
        s1 += np.matmul(y, a[:, :, None])[:, :, 0]
        np.square(y, out=y)
        s2 += np.matmul(y, a[:, :, None])[:, :, 0]


def _unwhiten(s1, s2, prep: Prepared):
    """Moments about each component's mean from whitened ones (``y = U^T x'``), reduced to the type's shape."""
    ct, k, d = prep.covariance_type, prep.n_components, prep.n_features
    if is_dense(ct):
        inverse = per_component(solve_triangular_stack(prep.precisions_cholesky), ct, k, d)  # U_k^{-1}
        s1 = np.einsum("kd,kde->ke", s1, inverse)
        s2 = np.swapaxes(inverse, 1, 2) @ s2 @ inverse
    else:
        u = per_component(prep.precisions_cholesky, ct, k, d)
        s1, s2 = s1 / u, s2 / u**2
    return s1, reduce_components(s2, ct)


def _weighted_sum(values: np.ndarray, sample_weight: np.ndarray | None) -> float:
    return float(values.sum(dtype=np.float64) if sample_weight is None else values @ sample_weight)


@dataclass
class _Accumulator:
    """float64 sums of one block's chunks, for one prepared mixture."""

    prep: Prepared
    log_likelihood: float = 0.0
    resp_log_resp: float = 0.0
    moments: np.ndarray = field(init=False)

    def __post_init__(self):
        k, d, ct = self.prep.n_components, self.prep.n_features, self.prep.covariance_type
        if self.prep.expanded:  # nk, s1 and q's moments in one (K, 1 + D + n_quadratic) product per chunk
            width = 1 + d + n_quadratic(ct, d)
            self.moments, self.product = np.zeros((k, width)), np.empty((k, width), self.prep.dtype)
        else:
            self.nk, self.s1 = np.zeros(k), np.zeros((k, d))
            self.s2 = np.zeros((k, d, d) if is_dense(ct) else (k, d))

    def add(self, resp, buffers, weighted, log_prob_norm, sw):
        """Add one chunk: ``resp`` (K, n) responsibilities (weighted here, in place); ``weighted`` is free after."""
        if log_prob_norm is not None:
            self.log_likelihood += _weighted_sum(log_prob_norm, sw)
            if self.prep.with_entropy:  # sum_k r_k log r_k = sum_k r_k log rho_k - log p(x), per row
                self.resp_log_resp += _weighted_sum(np.einsum("kn,kn->n", resp, weighted) - log_prob_norm, sw)
        a = resp if sw is None else np.multiply(resp, sw, out=resp)
        if self.prep.expanded:
            self.moments += np.matmul(a, buffers["z"].T, out=self.product)
        else:
            self.nk += a.sum(axis=1)
            _moments_centred(buffers["y"], a, self.s1, self.s2, weighted, is_dense(self.prep.covariance_type))

    def stats(self, n_rows: int, weight_sum: float) -> Stats:
        ct, d = self.prep.covariance_type, self.prep.n_features
        if self.prep.expanded:
            m = self.moments
            nk, s1, s2 = m[:, 0], m[:, 1 : d + 1], _unpack_quadratic(m[:, d + 1 :], ct, d)
        else:
            nk, (s1, s2) = self.nk, _unwhiten(self.s1, self.s2, self.prep)
        return Stats(n_rows, weight_sum, self.log_likelihood, nk, s1, s2, self.resp_log_resp)


@dataclass(frozen=True)
class _Rule:
    """How responsibilities are made: for chunks of complete rows, and for rows with holes (see ``missing``).

    ``complete(weighted (K, n), rows, buffers, global_rows)`` (``rows`` a slice of the complete rows, and
    ``global_rows(rows)`` their global indices) and ``holes(log_prob (K, n), global_rows)`` (the rows' global
    indices) each give ``(log p(x) or None, resp (K, n))``.
    """

    complete: Callable
    holes: Callable


def _split(X, sample_weight, prep: Prepared) -> np.ndarray | None:
    """The mask of rows with a hole; None when no row has one, or when holes are not expected (``prep``)."""
    if prep.missing is None:
        return None
    holes = np.isnan(X).any(axis=1)
    if not holes.any():
        return None
    return holes


def _statistics(
    X, sample_weight, prep: Prepared, rule: _Rule, row_offset: int = 0, conditional_covariance: bool = True
) -> Stats:
    """The one accumulation loop: chunk rows, E-step, responsibilities, moments (rows with holes apart)."""
    n_rows = int(X.shape[0])
    weight_sum = float(n_rows if sample_weight is None else sample_weight.sum())
    holes = _split(X, sample_weight, prep)
    index = None
    if holes is not None:
        index = np.flatnonzero(~holes)
        missing = pattern_sums(
            X[holes],
            None if sample_weight is None else sample_weight[holes],
            prep.missing,
            prep.shift,
            rule.holes,
            row_offset + np.flatnonzero(holes),
            conditional_covariance,
        )
        X = np.compress(~holes, X.T, axis=1).T  # one copy, still in columns
        sample_weight = None if sample_weight is None else sample_weight[~holes]

    def global_rows(rows: slice) -> np.ndarray:
        return row_offset + (np.arange(rows.start, rows.stop) if index is None else index[rows])

    total = _Accumulator(prep)
    for rows, buffers in chunks(X, prep):
        weighted = chunk_log_prob(prep, buffers)
        log_prob_norm, resp = rule.complete(weighted, rows, buffers, global_rows)
        total.add(resp, buffers, weighted, log_prob_norm, None if sample_weight is None else sample_weight[rows])
    stats = total.stats(n_rows, weight_sum)
    if holes is None:
        return stats
    log_likelihood, nk, s1, s2 = missing
    return stats + Stats(0, 0.0, log_likelihood, nk, s1, reduce_components(s2, prep.covariance_type))


def _soft(weighted, rows, buffers, global_rows):
    return normalise(weighted, buffers)


_SOFT = _Rule(_soft, soft)


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
    return _statistics(X, sample_weight, prep, _SOFT)


@dataclass(frozen=True)
class Fit:
    """The total log-likelihood of some rows under a mixture, and what model choice needs besides.

    Attributes
    ----------
    log_likelihood : float
        ``sum_i s_i log p(x_i)``.
    weight_sum : float
    log_max_resp : float
        ``sum_i s_i log max_k r_ik``: the classification log-likelihood ICL adds to BIC.
    """

    log_likelihood: float
    weight_sum: float
    log_max_resp: float

    def __add__(self, other: Fit) -> Fit:
        return Fit(
            self.log_likelihood + other.log_likelihood,
            self.weight_sum + other.weight_sum,
            self.log_max_resp + other.log_max_resp,
        )


def block_fit(X: np.ndarray, sample_weight: np.ndarray | None, prep: Prepared) -> Fit:
    """Weighted sums of ``log p(x_i)`` and of ``log max_k r_ik`` over a block, and the sum of weights."""
    total = np.zeros(2)
    weight_sum = float(X.shape[0] if sample_weight is None else sample_weight.sum())
    holes = _split(X, sample_weight, prep)
    if holes is not None:
        sw = None if sample_weight is None else sample_weight[holes]
        log_prob_norm, log_resp = missing_log_resp(X[holes], prep.missing)
        total += (_weighted_sum(log_prob_norm, sw), _weighted_sum(log_resp.max(axis=1), sw))
        X = np.compress(~holes, X.T, axis=1).T  # one copy, still in columns
        sample_weight = None if sample_weight is None else sample_weight[~holes]
    for rows, buffers in chunks(X, prep):
        log_prob_norm = normalise(chunk_log_prob(prep, buffers), buffers)[0]
        log_max_resp = buffers["top"] - log_prob_norm  # max_k log rho_k - log sum_k rho_k
        sw = None if sample_weight is None else sample_weight[rows]
        total += (_weighted_sum(log_prob_norm, sw), _weighted_sum(log_max_resp, sw))
    return Fit(float(total[0]), weight_sum, float(total[1]))


# --------------------------------------------------------------------------- #
# Statistics for starts: hard assignment to centres, random responsibilities
# --------------------------------------------------------------------------- #
def _hard(weighted, rows, buffers, global_rows):
    # Equal weights and unit covariances: the most likely component is the nearest centre.
    resp = buffers["resp"]
    resp.fill(0.0)
    resp[weighted.argmax(axis=0), np.arange(resp.shape[1])] = 1.0
    return None, resp


_HARD = _Rule(_hard, hard)


def hard_assignment_statistics(
    X: np.ndarray, sample_weight: np.ndarray | None, centres: np.ndarray, covariance_type: str
) -> Stats:
    """Statistics with every row given wholly to its nearest centre (shifted by the centres).

    Used to turn k-means centres into a first M-step.  ``log_likelihood`` is 0.  A row with holes goes to the
    centre nearest on its values, which fill them.
    """
    prep = prepare(unit_params(centres, covariance_type), allow_expanded=False, with_missing=True)
    return _statistics(X, sample_weight, prep, _HARD, conditional_covariance=False)


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


def uniforms_at(rows: np.ndarray, n_columns: int, seed: int) -> np.ndarray:
    """Uniform numbers in (0, 1] keyed by global row index, so any partitioning gives the same.

    Returns
    -------
    u : ndarray of shape (len(rows), n_columns)
    """
    idx = (
        np.asarray(rows, dtype=np.uint64)[:, None] * np.uint64(n_columns) + np.arange(n_columns, dtype=np.uint64)
    ).ravel()
    n_rows = len(rows)
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

    def uniform(rows, k):
        resp = uniforms_at(rows, k, seed).T
        return resp / resp.sum(axis=0)

    def complete(weighted, rows, buffers, global_rows):
        resp = buffers["resp"]
        resp[...] = uniform(global_rows(rows), resp.shape[0])
        return None, resp

    rule = _Rule(complete, lambda log_prob, rows: (None, uniform(rows, log_prob.shape[0])))
    prep = prepare(unit_params(shift, covariance_type), allow_expanded=False, with_missing=True)
    return _statistics(X, sample_weight, prep, rule, row_offset, conditional_covariance=False)
