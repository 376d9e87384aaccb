"""Spark MLlib's GaussianMixture beside ours (``scripts/bench --spark``): the same Parquet files, ``local[2]``.

Imported only with ``--spark``, which needs the ``bench`` extra (``pip install -e .[bench]``: pyspark, which
needs Java 17 or later).  Spark's ``pyspark.ml.clustering.GaussianMixture`` has no given start (it draws its own
from the data with ``seed``) and stops when the change of the *total* log-likelihood is at most ``tol``; it is
run with ``tol`` = our mean log-likelihood tolerance times the rows, the same rule in its units.
"""

from __future__ import annotations

import time
from pathlib import Path

MEMORY = "8g"  # the driver's heap: local[2] runs its two tasks in the driver's JVM


def session():
    """A ``local[2]`` SparkSession (two cores, as the bench's two Dask workers), without its web UI, logging
    errors only."""
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("gmm-pipeline bench")
        .config("spark.driver.memory", MEMORY)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _features(spark, path: Path, n_features: int):
    from pyspark.ml.feature import VectorAssembler

    frame = spark.read.parquet(str(path))
    names = [f"x{j}" for j in range(n_features)]
    return VectorAssembler(inputCols=names, outputCol="features").transform(frame).select("features")


def _fit(frame, k: int, tol: float, max_iter: int):
    from pyspark.ml.clustering import GaussianMixture

    started = time.perf_counter()
    model = GaussianMixture(k=k, tol=tol, maxIter=max_iter, seed=0).fit(frame)
    return model, time.perf_counter() - started


def per_iteration(spark, path: Path, n_features: int, k: int, repeats: int, low: int = 1, high: int = 6) -> list[float]:
    """Seconds per iteration: (time for maxIter=high - time for maxIter=low) / (high - low), tol=0 (every
    iteration runs), ``repeats`` times, after a first fit that warms the JVM up.  The rows are cached once (as
    ours are persisted); Spark's start draws a sample of them in each fit, which the difference cancels."""
    frame = _features(spark, path, n_features).cache()
    frame.count()
    _fit(frame, k, 0.0, low)
    out = []
    for _ in range(repeats):
        times = {n: _fit(frame, k, 0.0, n)[1] for n in (low, high)}
        out.append((times[high] - times[low]) / (high - low))
    frame.unpersist()
    return out


def to_convergence(spark, path: Path, n_features: int, k: int, mean_tol: float) -> dict:
    """Spark's own start and stopping rule (total log-likelihood change at most ``mean_tol`` times the rows):
    iterations, seconds, and the mean log-likelihood reached."""
    frame = _features(spark, path, n_features).cache()
    n_rows = frame.count()
    model, seconds = _fit(frame, k, mean_tol * n_rows, 5000)
    summary = model.summary
    frame.unpersist()
    return {
        "passes": int(summary.numIter),
        "seconds": seconds,
        "mean_log_likelihood": summary.logLikelihood / n_rows,
        "tol_total": mean_tol * n_rows,
    }
