"""Block sufficient statistics and their merge (``+``), and the block log-likelihood for model choice (``Fit``).

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
covariance type's layout (:meth:`~pipeline.kernels.covtypes.Layout.reduce`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import numpy.typing as npt

from pipeline.kernels.arrays import Array, Floats, IntArray
from pipeline.kernels.covtypes import layout_of
from pipeline.kernels.estep import Buffers, Prepared, chunk_log_prob, chunks, n_values, normalise, quadratic_pairs
from pipeline.kernels.missing import HoleRule, pattern_sums, soft
from pipeline.kernels.missing import log_resp as missing_log_resp
from pipeline.kernels.params import covariance_shape, solve_triangular_stack


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
    nk: Array
    s1: Array
    s2: Array
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


# --------------------------------------------------------------------------- #
# Moments: expanded route (one product), centred route (whitened space, and back)
# --------------------------------------------------------------------------- #
def _unpack_quadratic(q: Array, covariance_type: str, n_features: int) -> Array:
    """``s2`` in its covariance type's shape from the moments (K, n_quadratic) of ``q(x')``."""
    layout = layout_of(covariance_type)
    if layout.isotropic:  # q(x') = |x'|^2: already the sum over features
        return q[:, 0]
    if layout.dense:
        rows, cols = quadratic_pairs(n_features)  # q holds x'_i x'_j in this order
        full = np.empty((q.shape[0], n_features, n_features))
        full[:, rows, cols] = q
        full[:, cols, rows] = q
        q = full
    return layout.reduce(q)


def _moments_centred(y: Floats, a: Floats, s1: Array, s2: Array, scratch: Floats, dense: bool) -> None:
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


def _unwhiten(s1: Array, s2: Array, prep: Prepared) -> tuple[Array, Array]:
    """Moments about each component's mean from whitened ones (``y = U^T x'``), reduced to the type's shape."""
    layout, k, d = layout_of(prep.covariance_type), prep.n_components, prep.n_features
    assert prep.precisions_cholesky is not None  # the centred route's
    if layout.dense:
        inverse = layout.per_component(solve_triangular_stack(prep.precisions_cholesky), k, d)  # U_k^{-1}
        s1 = np.einsum("kd,kde->ke", s1, inverse)
        s2 = np.swapaxes(inverse, 1, 2) @ s2 @ inverse
    else:
        u = layout.per_component(prep.precisions_cholesky, k, d)
        s1, s2 = s1 / u, s2 / u**2
    return s1, layout.reduce(s2)


def _weighted_sum(values: npt.NDArray[np.floating], sample_weight: Array | None) -> float:
    return float(values.sum(dtype=np.float64) if sample_weight is None else values @ sample_weight)


# The moments' product ``z @ a.T`` of a chunk runs twice as fast (OpenBLAS 0.3.31 on an EPYC, one thread) with the
# responsibilities ``a`` first copied to rows, (n, K) contiguous, for few components and mid-sized rows of features
# (shape A: 8 components, 153 values a row: 7.8 -> 3.9 ms for 65536 rows), and slower elsewhere (measured over
# 2-64 components and 17-2145 values; see docs/guide/performance.md).
_BY_ROWS_COMPONENTS, _BY_ROWS_VALUES = 8, (128, 1024)


@dataclass
class _Accumulator:
    """float64 sums of one block's chunks, for one prepared mixture."""

    prep: Prepared
    log_likelihood: float = 0.0
    resp_log_resp: float = 0.0
    moments: Array = field(init=False)
    product: npt.NDArray[np.floating] = field(init=False)
    by_rows: bool = field(init=False, default=False)
    nk: Array = field(init=False)
    s1: Array = field(init=False)
    s2: Array = field(init=False)

    def __post_init__(self) -> None:
        k, d, layout = self.prep.n_components, self.prep.n_features, layout_of(self.prep.covariance_type)
        if self.prep.expanded:  # nk, s1 and q's moments in one (1 + D + n_quadratic, K) product per chunk
            width = n_values(self.prep)
            self.moments, self.product = np.zeros((width, k)), np.empty((width, k), self.prep.dtype)
            self.by_rows = k <= _BY_ROWS_COMPONENTS and _BY_ROWS_VALUES[0] <= width <= _BY_ROWS_VALUES[1]
        else:
            self.nk, self.s1 = np.zeros(k), np.zeros((k, d))
            self.s2 = np.zeros((k, d, d) if layout.dense else (k, d))

    def add(
        self, resp: Floats, buffers: Buffers, weighted: Floats, log_prob_norm: Floats | None, sw: Array | None
    ) -> None:
        """Add one chunk: ``resp`` (K, n) responsibilities (weighted here, in place); ``weighted`` is free after."""
        if log_prob_norm is not None:
            self.log_likelihood += _weighted_sum(log_prob_norm, sw)
            if self.prep.with_entropy:  # sum_k r_k log r_k = sum_k r_k log rho_k - log p(x), per row
                self.resp_log_resp += _weighted_sum(np.einsum("kn,kn->n", resp, weighted) - log_prob_norm, sw)
        a = resp if sw is None else np.multiply(resp, sw, out=resp)
        if self.prep.expanded:
            by_rows = a.T
            if self.by_rows:
                by_rows = buffers["resp_rows"]
                np.copyto(by_rows, a.T)
            self.moments += np.matmul(buffers["z"], by_rows, out=self.product)
        else:
            self.nk += a.sum(axis=1)
            dense = layout_of(self.prep.covariance_type).dense
            _moments_centred(buffers["y"], a, self.s1, self.s2, weighted, dense)

    def stats(self, n_rows: int, weight_sum: float) -> Stats:
        ct, d = self.prep.covariance_type, self.prep.n_features
        if self.prep.expanded:
            m = np.ascontiguousarray(self.moments.T)  # (K, ...) in C order, as the M-step has always had them
            nk, s1, s2 = m[:, 0], m[:, 1 : d + 1], _unpack_quadratic(m[:, d + 1 :], ct, d)
        else:
            nk, (s1, s2) = self.nk, _unwhiten(self.s1, self.s2, self.prep)
        return Stats(n_rows, weight_sum, self.log_likelihood, nk, s1, s2, self.resp_log_resp)


# Responsibilities of a chunk of complete rows: ``complete(weighted (K, n), rows, buffers, global_rows)``, ``rows`` a
# slice of the complete rows and ``global_rows(rows)`` their global indices; gives ``(log p(x) or None, resp (K, n))``.
ChunkRule = Callable[[Floats, slice, Buffers, Callable[[slice], IntArray]], tuple[Floats | None, Floats]]


@dataclass(frozen=True)
class Rule:
    """How responsibilities are made: for chunks of complete rows, and for rows with holes (see ``missing``)."""

    complete: ChunkRule
    holes: HoleRule


def _split(X: Array, sample_weight: Array | None, prep: Prepared) -> npt.NDArray[np.bool_] | None:
    """The mask of rows with a hole; None when no row has one, or when holes are not expected (``prep``)."""
    if prep.missing is None:
        return None
    holes = cast(npt.NDArray[np.bool_], np.isnan(X).any(axis=1))
    if not holes.any():
        return None
    return holes


def statistics(
    X: Array,
    sample_weight: Array | None,
    prep: Prepared,
    rule: Rule,
    row_offset: int = 0,
    conditional_covariance: bool = True,
) -> Stats:
    """The one accumulation loop: chunk rows, E-step, responsibilities under ``rule``, moments (rows with holes
    apart); ``row_offset`` is the global index of the block's first row."""
    n_rows = int(X.shape[0])
    weight_sum = float(n_rows if sample_weight is None else sample_weight.sum())
    holes = _split(X, sample_weight, prep)
    index = None
    missing = None
    if holes is not None:
        assert prep.missing is not None  # see _split
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

    def global_rows(rows: slice) -> IntArray:
        return row_offset + (np.arange(rows.start, rows.stop) if index is None else index[rows])

    total = _Accumulator(prep)
    for rows, buffers in chunks(X, prep):
        weighted = chunk_log_prob(prep, buffers)
        log_prob_norm, resp = rule.complete(weighted, rows, buffers, global_rows)
        total.add(resp, buffers, weighted, log_prob_norm, None if sample_weight is None else sample_weight[rows])
    stats = total.stats(n_rows, weight_sum)
    if missing is None:
        return stats
    log_likelihood, nk, s1, s2 = missing
    return stats + Stats(0, 0.0, log_likelihood, nk, s1, layout_of(prep.covariance_type).reduce(s2))


def _soft(
    weighted: Floats, rows: slice, buffers: Buffers, global_rows: Callable[[slice], IntArray]
) -> tuple[Floats, Floats]:
    return normalise(weighted, buffers)


_SOFT = Rule(_soft, soft)


def block_statistics(X: Array, sample_weight: Array | None, prep: Prepared) -> Stats:
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
    return statistics(X, sample_weight, prep, _SOFT)


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


def block_fit(X: Array, sample_weight: Array | None, prep: Prepared) -> Fit:
    """Weighted sums of ``log p(x_i)`` and of ``log max_k r_ik`` over a block, and the sum of weights."""
    total = np.zeros(2)
    weight_sum = float(X.shape[0] if sample_weight is None else sample_weight.sum())
    holes = _split(X, sample_weight, prep)
    if holes is not None:
        assert prep.missing is not None  # see _split
        sw = None if sample_weight is None else sample_weight[holes]
        hole_norm, hole_resp = missing_log_resp(X[holes], prep.missing)
        total += (_weighted_sum(hole_norm, sw), _weighted_sum(hole_resp.max(axis=1), sw))
        X = np.compress(~holes, X.T, axis=1).T  # one copy, still in columns
        sample_weight = None if sample_weight is None else sample_weight[~holes]
    for rows, buffers in chunks(X, prep):
        log_prob_norm = normalise(chunk_log_prob(prep, buffers), buffers)[0]
        log_max_resp = buffers["top"] - log_prob_norm  # max_k log rho_k - log sum_k rho_k
        sw = None if sample_weight is None else sample_weight[rows]
        total += (_weighted_sum(log_prob_norm, sw), _weighted_sum(log_max_resp, sw))
    return Fit(float(total[0]), weight_sum, float(total[1]))
