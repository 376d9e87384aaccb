"""Benchmark: time per EM iteration against scikit-learn, GFLOP/s, out-of-core, Dask overhead, memory.

Run through ``scripts/bench`` (after ``scripts/test`` has set up .venv/).  Each
figure is the median of ``--repeats`` runs with min and max; both sides run in
this process on the same data.  Results go to a table on stdout and to JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from distributed import Client, LocalCluster, wait

from pipeline import data, em, kernels, passes
from pipeline.synthetic import generate

SHAPES = {
    "A": dict(n=1_000_000, d=16, k=8, cov="full", parts=16),
    "B": dict(n=200_000, d=64, k=16, cov="full", parts=8),
    "C": dict(n=4_000_000, d=8, k=4, cov="diag", parts=32),
    "D": dict(n=200_000, d=16, k=64, cov="full", parts=8),
}
FLOPS = {  # floating-point operations per row of one EM iteration (E-step + M-step moments)
    "full": lambda k, d: 4 * k * d * d,
    "tied": lambda k, d: 4 * k * d * d,
    "diag": lambda k, d: 8 * k * d,
    "spherical": lambda k, d: 8 * k * d,
}
FLOP_FORMULA = {"full": "4·N·K·D²", "tied": "4·N·K·D²", "diag": "8·N·K·D", "spherical": "8·N·K·D"}


def stats_of(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def matmul_rate(threads: int) -> float:
    """float64 GEMM GFLOP/s of this machine (4000^3, best of 3) with ``threads`` BLAS threads."""
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).normal(size=(4000, 4000))
    with threadpool_limits(threads):
        a @ a
        best = min(_timed(lambda: a @ a) for _ in range(3))
    return 2 * 4000**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def dataset_for(root: Path, name: str, shape: dict) -> Path:
    path = root / f"{name}-{shape['n']}x{shape['d']}-k{shape['k']}-p{shape['parts']}"
    if not path.exists():
        generate(path, shape["n"], shape["d"], shape["k"], shape["parts"], seed=0)
    return path


def start_params(path: Path, covariance_type: str, k: int) -> kernels.Params:
    """A deterministic, slightly perturbed start (the truth's means shifted, unit covariances)."""
    from pipeline.model import load_saved_model

    truth = load_saved_model(path / "_truth").params
    d = truth.n_features
    cov = {"full": np.tile(np.eye(d), (k, 1, 1)), "tied": np.eye(d), "diag": np.ones((k, d)),
           "spherical": np.ones(k)}[covariance_type]
    return kernels.make_params(np.full(k, 1.0 / k), truth.means + 0.5, cov, covariance_type)


def per_iteration(source, start, repeats, low=2, high=12):
    """(time for max_iter=high - time for max_iter=low) / (high - low), ``repeats`` times."""
    out = []
    for _ in range(repeats):
        times = {}
        for n_iter in (low, high):
            runs = [em.EMRun(start)]
            times[n_iter] = _timed(lambda: em.run_em(source, runs, reg_covar=1e-6, tol=0.0, max_iter=n_iter))
        out.append((times[high] - times[low]) / (high - low))
    return out


def _noop_block(X, sample_weight, row_offset, params_list):
    p = params_list[0]
    return (kernels.empty_stats(p.covariance_type, p.n_components, p.n_features),)


def dask_overhead(source, start, repeats, iterations=10):
    """Seconds per pass with the arithmetic replaced by a no-op giving results of the same shape."""
    out = []
    for _ in range(repeats):
        t = _timed(lambda: [source.run(_noop_block, (start,), combine=passes.add_tuples) for _ in range(iterations)])
        out.append(t / iterations)
    return out


def _read_block(fs, part, names):
    X, _ = data.read_partition(fs, part, names, None, "error")
    return X.shape[0]


def pyarrow_read(client, dataset, repeats):
    """Seconds to read every file into float64 arrays on the same workers (no EM arithmetic)."""
    out = []
    for _ in range(repeats):
        t = _timed(lambda: client.gather(client.map(_read_block, [dataset.fs] * len(dataset.partitions),
                                                     dataset.partitions, [dataset.feature_names] * len(dataset.partitions),
                                                     pure=False)))
        out.append(t)
    return out


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sklearn_per_iteration(X, start, repeats, low=1, high=3):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture as SkGMM

    precisions = kernels.precisions_from_cholesky(start.precisions_cholesky, start.covariance_type)
    out = []
    for _ in range(repeats):
        times = {}
        for n_iter in (low, high):
            sk = SkGMM(start.n_components, covariance_type=start.covariance_type, weights_init=start.weights,
                       means_init=start.means, precisions_init=precisions, tol=0, max_iter=n_iter)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                times[n_iter] = _timed(lambda: sk.fit(X))
        out.append((times[high] - times[low]) / (high - low))
    return out


def bench_shape(name, shape, root, client, repeats, gemm_rate, with_sklearn=True):
    path = dataset_for(root, name, shape)
    dataset = data.open_dataset(str(path))
    start = start_params(path, shape["cov"], shape["k"])
    source = passes.blocks_from_parquet(dataset).persist()
    wait([b for b in source.blocks])
    largest = max(p.n_rows for p in dataset.partitions) * shape["d"] * 8
    ours = per_iteration(source, start, repeats)
    flop = FLOPS[shape["cov"]](shape["k"], shape["d"]) * shape["n"]
    result = {
        "shape": shape, "ours_s": stats_of(ours),
        "gflops": flop / statistics.median(ours) / 1e9, "flop_formula": FLOP_FORMULA[shape["cov"]],
        "machine_gemm_gflops": gemm_rate,
        "dask_overhead_s": stats_of(dask_overhead(source, start, repeats)),
        "largest_partition_mb": largest / 2**20,
    }
    result["peak_worker_rss_mb_persisted"] = max(client.run(_peak_rss_mb).values())
    del source
    client.run(lambda: __import__("gc").collect())
    unpersisted = passes.blocks_from_parquet(dataset)
    result["persist_none_s"] = stats_of(per_iteration(unpersisted, start, max(1, repeats // 2), low=1, high=3))
    result["pyarrow_read_s"] = stats_of(pyarrow_read(client, dataset, repeats))
    if with_sklearn:
        X = np.concatenate([pq.read_table(f).to_pandas().to_numpy(np.float64) for f in sorted(
            path.glob("*.parquet"), key=lambda p: data._natural_key(str(p)))])
        result["sklearn_s"] = stats_of(sklearn_per_iteration(X, start, repeats))
        result["speedup_vs_sklearn"] = result["sklearn_s"]["median"] / result["ours_s"]["median"]
    return result


def print_table(results, gemm_rate):
    print(f"\nmachine float64 GEMM: {gemm_rate:.1f} GFLOP/s (2 threads)")
    head = (f"{'shape':6}{'ours s/it':>11}{'sklearn s/it':>14}{'speedup':>9}{'GFLOP/s':>9}{'%GEMM':>7}"
            f"{'dask ovh':>10}{'none s/it':>11}{'read s':>8}{'none/read':>10}{'peak MB':>9}{'part MB':>9}")
    print(head)
    for name, r in results.items():
        sk = r.get("sklearn_s", {}).get("median", float("nan"))
        none, read = r["persist_none_s"]["median"], r["pyarrow_read_s"]["median"]
        print(f"{name:6}{r['ours_s']['median']:>11.4f}{sk:>14.3f}{r.get('speedup_vs_sklearn', float('nan')):>9.1f}"
              f"{r['gflops']:>9.1f}{100 * r['gflops'] / gemm_rate:>6.0f}%{r['dask_overhead_s']['median']:>10.4f}"
              f"{none:>11.3f}{read:>8.3f}{none / read:>10.2f}{r['peak_worker_rss_mb_persisted']:>9.0f}"
              f"{r['largest_partition_mb']:>9.1f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shapes", default="A,B,C,D")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", default="bench-data", help="where generated datasets are cached")
    parser.add_argument("--output", default="bench-results/bench.json")
    parser.add_argument("--no-sklearn", action="store_true")
    args = parser.parse_args(argv)
    root = Path(args.data)
    root.mkdir(parents=True, exist_ok=True)
    gemm_rate = matmul_rate(2)
    results = {}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        for name in args.shapes.split(","):
            print(f"shape {name}: {SHAPES[name]}", file=sys.stderr, flush=True)
            results[name] = bench_shape(name, SHAPES[name], root, client, args.repeats, gemm_rate,
                                        with_sklearn=not args.no_sklearn)
    print_table(results, gemm_rate)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": dt.date.today().isoformat(), "cpu_count": os.cpu_count(),
                               "gemm_gflops": gemm_rate, "results": results}, indent=2))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
