"""Starting parameters for EM.

Every start is seeded and independent of how the rows are partitioned: the
sample is drawn by global row index, random responsibilities are keyed by
global row index, and all reductions are sums in a fixed order.

Where scikit-learn's starts are weak we do better: its ``k-means++`` and
``random_from_data`` give each component a single point (so tied fits stall
with every mean at the data mean); here the chosen centres are followed by a
hard assignment of every row to its nearest centre, and the first M-step uses
those labels, as ``kmeans`` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from pipeline import kernels
from pipeline.errors import InputError
from pipeline.passes import BlockSource, add_tuples

INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")
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


def _start_block(X, sample_weight, row_offset, specs):
    out = []
    for spec in specs:
        if spec.seed is None:
            out.append(kernels.hard_assignment_statistics(X, sample_weight, spec.shift, spec.covariance_type))
        else:
            out.append(kernels.random_resp_statistics(X, sample_weight, row_offset, spec.seed, spec.shift,
                                                      spec.covariance_type))
    return tuple(out)


@dataclass(frozen=True)
class _StartSpec:
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
    keep = w > 0
    return X[keep], w[keep]


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
        new = np.where(mass[:, None] > 0, sums / np.maximum(mass, 1e-300)[:, None], centres)
        shift = float(np.square(new - centres).sum())
        centres = new
        if shift <= tol:
            break
    return centres


# --------------------------------------------------------------------------- #
# Starts
# --------------------------------------------------------------------------- #
def _spec(sample, sample_w, n_components, covariance_type, init_params, rng) -> _StartSpec:
    if init_params == "random":
        centre = np.average(sample, axis=0, weights=sample_w)
        shift = np.repeat(centre[None, :], n_components, axis=0)
        return _StartSpec(covariance_type, shift, int(rng.integers(2**63)))
    if init_params == "random_from_data":
        return _StartSpec(covariance_type, sample[rng.choice(sample.shape[0], size=n_components, replace=False)])
    centres = kmeans_plusplus(sample, sample_w, n_components, rng)
    if init_params == "kmeans":
        centres = lloyd(sample, sample_w, centres)
    return _StartSpec(covariance_type, centres)


def candidate_starts(
    source: BlockSource,
    candidates: list[tuple[int, str]],
    *,
    reg_covar: float,
    init_params: str,
    n_init: int,
    rng: np.random.Generator,
) -> list[list[kernels.Params]]:
    """``n_init`` starts for each candidate ``(n_components, covariance_type)``.

    One pass draws the sample; one more pass computes the first M-step of
    every start of every candidate.

    Returns
    -------
    list (per candidate) of list (per start) of Params
    """
    sample, sample_w = draw_sample(source, rng)
    largest = max(k for k, _ in candidates)
    if sample.shape[0] == sum(source.n_rows):  # the sample is all the data: count its distinct rows
        distinct = np.unique(sample, axis=0).shape[0]
        if distinct < largest:
            raise InputError(
                f"the data has only {distinct} distinct rows, fewer than n_components={largest}; "
                "reduce n_components"
            )
    specs = [_spec(sample, sample_w, k, ct, init_params, rng) for k, ct in candidates for _ in range(n_init)]
    all_stats = source.run(_start_block, specs, combine=add_tuples)
    starts = [kernels.m_step(stats, spec.shift, spec.covariance_type, reg_covar) for spec, stats in zip(specs, all_stats)]
    return [starts[i * n_init : (i + 1) * n_init] for i in range(len(candidates))]


def initial_params(
    source: BlockSource,
    *,
    n_components: int,
    covariance_type: str,
    reg_covar: float,
    init_params: str,
    n_init: int,
    rng: np.random.Generator,
    weights_init=None,
    means_init=None,
    precisions_init=None,
) -> list[kernels.Params]:
    """Starting parameters for each of ``n_init`` EM runs.

    Explicit ``weights_init``, ``means_init`` and ``precisions_init`` replace
    the matching part of the computed start; when all three are given no pass
    is made and there is a single start.

    Returns
    -------
    list of Params
    """
    if weights_init is not None and means_init is not None and precisions_init is not None:
        cov, prec_chol = _from_precisions(precisions_init, covariance_type)
        return [kernels.Params(np.asarray(weights_init, float), np.asarray(means_init, float), cov, prec_chol,
                               covariance_type)]
    (starts,) = candidate_starts(source, [(n_components, covariance_type)], reg_covar=reg_covar,
                                 init_params=init_params, n_init=n_init, rng=rng)
    return [_override(p, weights_init, means_init, precisions_init) for p in starts]


def _override(params, weights_init, means_init, precisions_init):
    if weights_init is not None:
        params = replace(params, weights=np.asarray(weights_init, float))
    if means_init is not None:
        params = replace(params, means=np.asarray(means_init, float))
    if precisions_init is not None:
        cov, prec_chol = _from_precisions(precisions_init, params.covariance_type)
        params = replace(params, covariances=cov, precisions_cholesky=prec_chol)
    return params


def _from_precisions(precisions, covariance_type):
    prec_chol = kernels.precision_cholesky_from_precisions(np.asarray(precisions, float), covariance_type)
    return kernels.covariances_from_precision_cholesky(prec_chol, covariance_type), prec_chol
