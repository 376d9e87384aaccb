"""Synthetic Gaussian-mixture data as partitioned Parquet, with the true parameters beside it."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import kernels
from pipeline.errors import InputError
from pipeline.model import describe, save_model

TRUTH_DIR = "_truth"  # leading underscore: Parquet readers skip it


def true_params(n_features: int, n_components: int, seed: int) -> kernels.Params:
    """Well-separated random full-covariance components (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(n_components, 5.0))
    means = rng.uniform(-10.0, 10.0, size=(n_components, n_features))
    factors = rng.normal(size=(n_components, n_features, n_features)) / np.sqrt(n_features)
    covariances = 0.5 * factors @ np.swapaxes(factors, 1, 2) + 0.5 * np.eye(n_features)
    return kernels.make_params(weights, means, covariances, "full")


def _partition_rows(params: kernels.Params, n_rows: int, seed: int, index: int) -> np.ndarray:
    rng = np.random.default_rng([seed, index])
    labels = rng.choice(params.n_components, size=n_rows, p=params.weights)
    chol = np.linalg.cholesky(params.covariances)
    z = rng.standard_normal((n_rows, params.n_features))
    return params.means[labels] + np.einsum("nij,nj->ni", chol[labels], z)


def generate(
    output: str | Path, n_samples: int, n_features: int, n_components: int, partitions: int, seed: int
) -> kernels.Params:
    """Write ``partitions`` Parquet files of rows from a random mixture, and ``_truth/`` (a model directory).

    Columns are ``x0 .. x{D-1}`` (float64).  The output appears complete or not at all.

    Returns
    -------
    Params
        The true parameters.
    """
    for name, value, low in (
        ("n-samples", n_samples, 1),
        ("n-features", n_features, 1),
        ("n-components", n_components, 1),
        ("partitions", partitions, 1),
    ):
        if value < low:
            raise InputError(f"--{name} must be >= {low}, got {value}")
    if partitions > n_samples:
        raise InputError(f"--partitions {partitions} is more than --n-samples {n_samples}: some files would be empty")
    output = Path(output).absolute()
    if output.exists() or output.is_symlink():
        raise InputError(f"--output {str(output)!r} already exists; remove it or choose another path")
    params = true_params(n_features, n_components, seed)
    staging = output.parent / f".{output.name}.tmp-{uuid.uuid4().hex[:12]}"
    staging.mkdir(parents=True)
    try:
        names = [f"x{j}" for j in range(n_features)]
        base, extra = divmod(n_samples, partitions)
        for p in range(partitions):
            rows = _partition_rows(params, base + (p < extra), seed, p)
            table = pa.table({name: rows[:, j] for j, name in enumerate(names)})
            pq.write_table(table, staging / f"part-{p:05d}.parquet")
        info = describe(params, names, n_samples=n_samples, generated={"seed": seed, "partitions": partitions})
        save_model(staging / TRUTH_DIR, params, info)
        staging.rename(output)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return params
