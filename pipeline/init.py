"""Starting parameters for EM.

Every start is seeded and independent of how the rows are partitioned: the
sample is drawn by global row index, random responsibilities are keyed by
global row index, and all reductions are sums in a fixed order.  A start
depends only on the seed and on its own candidate and restart index
``(n_components, restart)``, as scikit-learn's: the same candidate starts the
same in ``gmm fit`` and in any selection, and every covariance type of a
selection starts from the same centres at each K.

Where scikit-learn's starts are weak we do better: its ``k-means++`` and
``random_from_data`` give each component a single point (so tied fits stall
with every mean at the data mean); here the chosen centres are followed by a
hard assignment of every row to its nearest centre, and the first M-step uses
those labels, as ``kmeans`` does.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from pipeline import kernels
from pipeline.kernels.moments import DataMoments, block_moment_sums
from pipeline.passes import BlockSource, add_tuples

SAMPLE_SIZE = 100_000
LLOYD_MAX_ITER = 100
LLOYD_TOL = 1e-4


# --------------------------------------------------------------------------- #
# Block functions (run on workers)
# --------------------------------------------------------------------------- #
def _take_rows(X, sample_weight, row_offset, index):
    lo, hi = np.searchsorted(index, [row_offset, row_offset + X.shape[0]])
    local = index[lo:hi] - row_offset
    w = np.ones(local.size) if sample_weight is None else sample_weight[local]
    return X[local], w


def _concat_rows(a, b):
    return np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]])


def _start_block(X, sample_weight, row_offset, specs, moments_shift):
    out = []
    for spec in specs:
        if spec.seed is None:
            out.append(kernels.hard_assignment_statistics(X, sample_weight, spec.shift, spec.covariance_type))
        else:
            out.append(
                kernels.random_resp_statistics(
                    X, sample_weight, row_offset, spec.seed, spec.shift, spec.covariance_type
                )
            )
    if moments_shift is not None:
        out.append(block_moment_sums(X, sample_weight, moments_shift))
    return tuple(out)


def _moments_only(X, sample_weight, row_offset, shift):
    return (block_moment_sums(X, sample_weight, shift),)


@dataclass(frozen=True)
class StartSpec:
    """One start to compute in the shared pass: hard labels from centres, or random responsibilities."""

    covariance_type: str
    shift: np.ndarray  # (K, D): the centres, or the data mean repeated (random)
    seed: int | None = None  # set for random responsibilities


# --------------------------------------------------------------------------- #
# k-means on the sample (client side, NumPy)
# --------------------------------------------------------------------------- #
def draw_sample(source: BlockSource, rng: np.random.Generator, size: int = SAMPLE_SIZE):
    """Rows drawn without replacement by global index, with their weights.

    Returns
    -------
    X : ndarray of shape (m, n_features)
    sample_weight : ndarray of shape (m,)
    """
    n_total = sum(source.n_rows)
    index = np.sort(rng.choice(n_total, size=min(n_total, size), replace=False))
    X, w = source.run(_take_rows, index, combine=_concat_rows)
    keep = (w > 0) & ~np.isnan(X).all(axis=1)
    X, w = X[keep], w[keep]
    holes = np.isnan(X)
    if holes.any():  # k-means needs whole rows: a missing value takes its column's mean in the sample (or 0)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a column with no value in the sample: mean of nothing
            means = np.nan_to_num(np.nanmean(X, axis=0), nan=0.0)
        X = np.where(holes, means, X)
    return X, w


def kmeans_plusplus(X, sample_weight, n_clusters, rng):
    """Greedy k-means++ seeding (2 + log k local trials, as scikit-learn).

    Returns
    -------
    centres : ndarray of shape (n_clusters, n_features)
    """
    n_trials = 2 + int(math.log(n_clusters))
    p = sample_weight / sample_weight.sum()
    centres = [X[rng.choice(X.shape[0], p=p)]]
    closest = np.square(X - centres[0]).sum(axis=1)
    for _ in range(1, n_clusters):
        mass = sample_weight * closest
        total = mass.sum()
        if total <= 0:  # fewer distinct points than clusters: repeat one
            centres.append(centres[-1])
            continue
        candidates = rng.choice(X.shape[0], size=n_trials, p=mass / total)
        dist = np.stack([np.minimum(closest, np.square(X - X[c]).sum(axis=1)) for c in candidates])
        best = int(np.argmin(dist @ sample_weight))
        centres.append(X[candidates[best]])
        closest = dist[best]
    return np.array(centres)


def lloyd(X, sample_weight, centres):
    """Weighted Lloyd iterations from ``centres``; an empty cluster keeps its centre."""
    tol = LLOYD_TOL * float(np.mean(np.var(X, axis=0)))
    for _ in range(LLOYD_MAX_ITER):
        labels = kernels.nearest_centre(X, centres)
        mass = np.bincount(labels, weights=sample_weight, minlength=centres.shape[0])
        sums = np.zeros_like(centres)
        np.add.at(sums, labels, X * sample_weight[:, None])
        new = np.where(mass[:, None] > 0, sums / np.where(mass > 0, mass, 1.0)[:, None], centres)
        shift = float(np.square(new - centres).sum())
        centres = new
        if shift <= tol:
            break
    return centres


# --------------------------------------------------------------------------- #
# Starts
# --------------------------------------------------------------------------- #
def start_rng(seed: int, n_components: int, restart: int) -> np.random.Generator:
    """The random stream of one start: a function of the seed, the number of components and the restart only.

    As in scikit-learn, the covariance type does not enter: at one seed every type starts from the same centres
    (or random responsibilities), so comparing types compares the types, not their starts.
    """
    return np.random.default_rng([seed, n_components, restart])


def _start(sample, sample_w, n_components, init_params, rng) -> tuple[np.ndarray, int | None]:
    """One start's shift (the centres, or the sample mean repeated) and, for random responsibilities, their seed."""
    if sample.shape[0] == 0:
        raise ValueError("no row of positive weight has every feature present; cannot choose starting centres")
    if init_params == "random":
        centre = np.average(sample, axis=0, weights=sample_w)
        return np.repeat(centre[None, :], n_components, axis=0), int(rng.integers(2**63))
    if init_params == "random_from_data":
        size = min(n_components, sample.shape[0])
        chosen = sample[rng.choice(sample.shape[0], size=size, replace=False)]
        return np.concatenate([chosen, np.repeat(chosen[-1:], n_components - size, 0)]), None
    centres = kmeans_plusplus(sample, sample_w, n_components, rng)
    if init_params == "kmeans":
        centres = lloyd(sample, sample_w, centres)
    return centres, None


@dataclass(frozen=True)
class Starts:
    """Statistics of every start of every candidate after the start pass, and the data's moments if asked.

    ``stats[c][r]`` are the statistics of restart ``r`` of candidate ``c``
    about ``specs[c][r].shift``; the first M-step of each turns them into parameters.
    """

    specs: list[list[StartSpec]]
    stats: list[list[kernels.Stats]]
    moments: DataMoments | None


def start_statistics(
    source: BlockSource,
    candidates: list[tuple[int, str]],
    *,
    init_params: str,
    n_init: int,
    seed: int,
    with_moments: bool = False,
) -> Starts:
    """``n_init`` starts for each candidate ``(n_components, covariance_type)``, as statistics for a first M-step.

    One pass draws the sample; one more pass computes the statistics of every
    start of every candidate (and, if asked, the data's mean and covariance).
    """
    sample, sample_w = draw_sample(source, np.random.default_rng(seed))
    shared = {}  # one start per (K, restart), whatever the covariance type
    for k, _ in candidates:
        for r in range(n_init):
            if (k, r) not in shared:
                shared[k, r] = _start(sample, sample_w, k, init_params, start_rng(seed, k, r))
    specs = [[StartSpec(ct, *shared[k, r]) for r in range(n_init)] for k, ct in candidates]
    flat = [spec for group in specs for spec in group]
    shift = _sample_mean(sample, sample_w, source.n_features) if with_moments else None
    results = source.run(_start_block, flat, shift, combine=add_tuples)
    moments = results[-1].moments(shift) if with_moments else None
    stats = iter(results)
    return Starts(specs, [[next(stats) for _ in group] for group in specs], moments)


def _sample_mean(sample, sample_w, n_features):
    return np.average(sample, axis=0, weights=sample_w) if sample.shape[0] else np.zeros(n_features)


def data_moments(source: BlockSource, shift: np.ndarray) -> DataMoments:
    """The data's weighted mean and (n - 1)-denominator covariance, in one pass (moments about ``shift``)."""
    (sums,) = source.run(_moments_only, shift, combine=add_tuples)
    return sums.moments(shift)


# --------------------------------------------------------------------------- #
# Explicit starts, checked as scikit-learn checks them
# --------------------------------------------------------------------------- #
def _as_float_array(value, name: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"The parameter '{name}' should be an array of numbers, got {type(value).__name__}") from None
    if not np.isfinite(array).all():
        raise ValueError(f"The parameter '{name}' holds NaN or infinite values")
    return array


def _check_shape(array: np.ndarray, shape: tuple, name: str) -> None:
    if array.shape != shape:
        raise ValueError(f"The parameter '{name}' should have the shape of {shape}, but got {array.shape}")


def check_weights(weights, n_components: int) -> np.ndarray:
    weights = _as_float_array(weights, "weights")
    _check_shape(weights, (n_components,), "weights")
    if (weights < 0).any() or (weights > 1).any():
        raise ValueError(
            f"The parameter 'weights' should be in the range [0, 1], but got max value "
            f"{weights.max():.5f}, min value {weights.min():.5f}"
        )
    if not np.allclose(np.abs(1.0 - weights.sum()), 0.0):
        raise ValueError(f"The parameter 'weights' should be normalized, but got sum(weights) = {weights.sum():.5f}")
    return weights


def check_means(means, n_components: int, n_features: int) -> np.ndarray:
    means = _as_float_array(means, "means")
    _check_shape(means, (n_components, n_features), "means")
    return means


def check_precisions(precisions, covariance_type: str, n_components: int, n_features: int) -> np.ndarray:
    precisions = _as_float_array(precisions, "precisions")
    _check_shape(precisions, kernels.covariance_shape(covariance_type, n_components, n_features), "precisions")
    matrices = precisions[None] if covariance_type == "tied" else precisions
    if kernels.is_dense(covariance_type):
        for matrix in matrices:
            if not (np.allclose(matrix, matrix.T) and np.linalg.eigvalsh(matrix).min() > 0):
                raise ValueError(f"'{covariance_type} precision' should be symmetric, positive-definite")
    elif (precisions <= 0).any():
        raise ValueError(f"'{covariance_type} precision' should be positive")
    return precisions


def explicit_params(
    start: kernels.Params | None,
    covariance_type: str,
    n_components: int,
    n_features: int,
    weights_init=None,
    means_init=None,
    precisions_init=None,
) -> kernels.Params | None:
    """``start`` with the given parts in its place, each checked; or the whole start when all three are given.

    Raises
    ------
    ValueError
        Naming the parameter and what is wrong with it, as scikit-learn's.
    """
    weights = None if weights_init is None else check_weights(weights_init, n_components)
    means = None if means_init is None else check_means(means_init, n_components, n_features)
    precisions = (
        None
        if precisions_init is None
        else check_precisions(precisions_init, covariance_type, n_components, n_features)
    )
    if start is None:
        if weights is None or means is None or precisions is None:
            return None
        prec_chol = kernels.precision_cholesky_from_precisions(precisions, covariance_type)
        return kernels.Params(
            weights,
            means,
            kernels.covariances_from_precision_cholesky(prec_chol, covariance_type),
            prec_chol,
            covariance_type,
        )
    if precisions is not None:
        prec_chol = kernels.precision_cholesky_from_precisions(precisions, covariance_type)
        start = kernels.Params(
            start.weights,
            start.means,
            kernels.covariances_from_precision_cholesky(prec_chol, covariance_type),
            prec_chol,
            covariance_type,
        )
    return kernels.Params(
        start.weights if weights is None else weights,
        start.means if means is None else means,
        start.covariances,
        start.precisions_cholesky,
        covariance_type,
    )
