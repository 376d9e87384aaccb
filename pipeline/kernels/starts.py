"""Statistics for the starts: rows given wholly to their nearest centre, or random responsibilities keyed by row.

Both are the accumulation loop of :mod:`~pipeline.kernels.stats` under another rule for the responsibilities, on
unit parameters at the given centres (the centred route: moments about the centres).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

import numpy as np
import numpy.typing as npt

from pipeline.kernels.arrays import Array, Floats, IntArray
from pipeline.kernels.estep import Buffers, prepare
from pipeline.kernels.missing import hard
from pipeline.kernels.params import unit_params
from pipeline.kernels.stats import Rule, Stats, statistics


def _hard(
    weighted: Floats, rows: slice, buffers: Buffers, global_rows: Callable[[slice], IntArray]
) -> tuple[None, Floats]:
    # Equal weights and unit covariances: the most likely component is the nearest centre.
    resp = buffers["resp"]
    resp.fill(0.0)
    resp[weighted.argmax(axis=0), np.arange(resp.shape[1])] = 1.0
    return None, resp


_HARD = Rule(_hard, hard)


def hard_assignment_statistics(X: Array, sample_weight: Array | None, centres: Array, covariance_type: str) -> Stats:
    """Statistics with every row given wholly to its nearest centre (shifted by the centres).

    Used to turn k-means centres into a first M-step.  ``log_likelihood`` is 0.  A row with holes goes to the
    centre nearest on its values, which fill them.
    """
    prep = prepare(unit_params(centres, covariance_type), allow_expanded=False, with_missing=True)
    return statistics(X, sample_weight, prep, _HARD, conditional_covariance=False)


def nearest_centre(X: Array, centres: Array) -> IntArray:
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
    labels: IntArray = (np.square(centres).sum(axis=1) - 2.0 * (X @ centres.T)).argmin(axis=1)
    return labels


# One 64-bit number or an array of them.
_Bits = TypeVar("_Bits", np.uint64, npt.NDArray[np.uint64])


def _splitmix64(x: _Bits) -> _Bits:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def uniforms_at(rows: IntArray, n_columns: int, seed: int) -> Array:
    """Uniform numbers in (0, 1] keyed by global row index, so any partitioning gives the same.

    Returns
    -------
    u : ndarray of shape (len(rows), n_columns)
    """
    keys = np.asarray(rows, dtype=np.uint64)[:, None] * np.uint64(n_columns) + np.arange(n_columns, dtype=np.uint64)
    idx = cast(npt.NDArray[np.uint64], keys.ravel())
    n_rows = len(rows)
    with np.errstate(over="ignore"):
        bits = _splitmix64(idx ^ _splitmix64(np.uint64(seed)))
    return (((bits >> np.uint64(11)).astype(np.float64) + 1.0) / 2.0**53).reshape(n_rows, n_columns)


def random_resp_statistics(
    X: Array,
    sample_weight: Array | None,
    row_offset: int,
    seed: int,
    shift: Array,
    covariance_type: str,
) -> Stats:
    """Statistics under uniformly random responsibilities (scikit-learn's ``random`` init).

    The responsibilities of row ``i`` depend only on ``seed`` and its global
    index ``row_offset + i``.  ``shift`` is (n_components, n_features).
    """

    def uniform(rows: IntArray, k: int) -> Array:
        resp = uniforms_at(rows, k, seed).T
        normalised: Array = resp / resp.sum(axis=0)
        return normalised

    def complete(
        weighted: Floats, rows: slice, buffers: Buffers, global_rows: Callable[[slice], IntArray]
    ) -> tuple[None, Floats]:
        resp = buffers["resp"]
        resp[...] = uniform(global_rows(rows), resp.shape[0])
        return None, resp

    def holes(log_prob: Array, rows: IntArray) -> tuple[None, Array]:
        return None, uniform(rows, log_prob.shape[0])

    prep = prepare(unit_params(shift, covariance_type), allow_expanded=False, with_missing=True)
    return statistics(X, sample_weight, prep, Rule(complete, holes), row_offset, conditional_covariance=False)
