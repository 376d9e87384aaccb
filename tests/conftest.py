"""Shared test helpers: seeded data, Parquet writing, a real distributed LocalCluster."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def make_blobs(seed: int, n_per: int = 300, centres=((-4, 0, 1), (0, 3, -2), (5, -1, 0))) -> np.ndarray:
    """Rows from well-separated anisotropic blobs (seeded, no global RNG)."""
    rng = np.random.default_rng(seed)
    centres = np.asarray(centres, dtype=float)
    d = centres.shape[1]
    parts = []
    for c in centres:
        a = rng.normal(size=(d, d)) * 0.6 + np.eye(d)
        parts.append(c + rng.normal(size=(n_per, d)) @ a)
    X = np.concatenate(parts)
    return X[rng.permutation(X.shape[0])]


def write_parquet(directory, X: np.ndarray, n_files: int, names=None, extra: dict | None = None):
    """Write rows as ``n_files`` Parquet files (in order); returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    names = names or [f"x{j}" for j in range(X.shape[1])]
    bounds = np.linspace(0, X.shape[0], n_files + 1).astype(int)
    paths = []
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        columns = {name: X[lo:hi, j] for j, name in enumerate(names)}
        for key, values in (extra or {}).items():
            columns[key] = values[lo:hi]
        path = directory / f"part-{i:03d}.parquet"
        pq.write_table(pa.table(columns), path)
        paths.append(path)
    return paths


def sklearn_start(X, n_components, covariance_type, seed=0):
    """Explicit initial parameters from one sklearn k-means start (weights, means, precisions)."""
    from sklearn.mixture import GaussianMixture as SkGMM

    sk = SkGMM(n_components, covariance_type=covariance_type, max_iter=0, random_state=seed).fit(X)
    return sk.weights_, sk.means_, sk.precisions_


def sklearn_start_params(X, n_components, covariance_type):
    """:func:`sklearn_start` as our Params (covariances and precision factors derived from the precisions)."""
    from pipeline import kernels

    w, m, p = sklearn_start(X, n_components, covariance_type)
    prec_chol = kernels.precision_cholesky_from_precisions(p, covariance_type)
    cov = kernels.covariances_from_precision_cholesky(prec_chol, covariance_type)
    return kernels.Params(w, m, cov, prec_chol, covariance_type)


def whitened_errors(got_means, got_covariances, want_means, want_covariances, prec_chol, covariance_type):
    """Largest differences of means and covariances in the reference's own units: ``U^T d`` and ``U^T D U``.

    ``prec_chol`` is the reference's ``precisions_cholesky_`` (U).  The first is in standard deviations, the
    second relative to the covariance.
    """
    from pipeline.kernels.estep import _whitened

    mean_error = np.abs(_whitened(got_means - want_means, prec_chol, covariance_type)).max()
    delta = got_covariances - want_covariances
    if covariance_type == "full":
        cov_error = np.abs(np.swapaxes(prec_chol, 1, 2) @ delta @ prec_chol).max()
    elif covariance_type == "tied":
        cov_error = np.abs(prec_chol.T @ delta @ prec_chol).max()
    else:
        cov_error = np.abs(delta * prec_chol**2).max()
    return mean_error, cov_error


@pytest.fixture(scope="session")
def client():
    """A real 2-worker, process-based LocalCluster for the whole session.

    Not the default client: a test opts in with ``client.as_current()`` or uses its address.
    """
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with Client(cluster, set_as_default=False) as c:
            yield c
