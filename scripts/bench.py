"""Benchmark: time per EM iteration against scikit-learn, GFLOP/s, out-of-core, Dask overhead, memory; with
``--converge``, passes and seconds to a converged model (:mod:`converge`); with ``--mclust``, ``gmm select
--covariance-types all`` on a million rows beside R's Mclust (:mod:`mclust_scale`).

Run through ``scripts/bench`` (after ``scripts/test`` has set up .venv/).  Each
figure is the median of ``--repeats`` runs with min and max; both sides run in
this process on the same data.  Results go to a table on stdout and to JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from distributed import Client, LocalCluster, futures_of, wait

from pipeline import data, em, kernels, passes
from pipeline.choices import DTYPES
from pipeline.kernels.algorithms import EMStep
from pipeline.synthetic import generate

SHAPES = {
    "A": dict(n=1_000_000, d=16, k=8, cov="full", parts=16),
    "B": dict(n=200_000, d=64, k=16, cov="full", parts=8),
    "C": dict(n=4_000_000, d=8, k=4, cov="diag", parts=32),
    "D": dict(n=200_000, d=16, k=64, cov="full", parts=8),
    "E": dict(n=1_000_000, d=64, k=64, cov="diag", parts=16),  # not run by default (--shapes A,B,C,D,E)
}
SMOKE = False
SELECT_SHAPE = dict(n=200_000, d=16, k=5, cov="full", parts=8)
GEMM_SIZE = 4000
FLOPS = {  # floating-point operations per row of one EM iteration (E-step + M-step moments)
    "full": lambda k, d: 4 * k * d * d,
    "tied": lambda k, d: 4 * k * d * d,
    "diag": lambda k, d: 8 * k * d,
    "spherical": lambda k, d: 8 * k * d,
}
FLOP_FORMULA = {"full": "4·N·K·D²", "tied": "4·N·K·D²", "diag": "8·N·K·D", "spherical": "8·N·K·D"}


def stats_of(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def matmul_rate(threads: int, dtype=np.float64) -> float:
    """GEMM GFLOP/s of this machine (GEMM_SIZE^3, best of 3) with ``threads`` BLAS threads."""
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).normal(size=(GEMM_SIZE, GEMM_SIZE)).astype(dtype)
    with threadpool_limits(threads):
        a @ a
        best = min(_timed(lambda: a @ a) for _ in range(3))
    return 2 * GEMM_SIZE**3 / best / 1e9


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
    cov = {"full": np.tile(np.eye(d), (k, 1, 1)), "tied": np.eye(d), "diag": np.ones((k, d)), "spherical": np.ones(k)}[
        covariance_type
    ]
    return kernels.make_params(np.full(k, 1.0 / k), truth.means + 0.5, cov, covariance_type)


def per_iteration(source, start, repeats, low=2, high=12, dtype="float64", missing=False):
    """(time for max_iter=high - time for max_iter=low) / (high - low), ``repeats`` times."""
    out = []
    for _ in range(repeats):
        times = {}
        for n_iter in (low, high):
            runs = [em.EMRun(EMStep(start.covariance_type, 1e-6, missing=missing), start)]
            started = time.perf_counter()
            em.run_em(source, runs, tol=0.0, max_iter=n_iter, dtype=dtype)
            times[n_iter] = time.perf_counter() - started
        out.append((times[high] - times[low]) / (high - low))
    if dtype != "float64":  # the arithmetic the last iteration ran in (float64 where float32 is not accurate enough)
        print(
            f"  {dtype} requested; last iteration ran in {kernels.prepare(runs[0].params, dtype=dtype).dtype}",
            file=sys.stderr,
            flush=True,
        )
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
    n = len(dataset.partitions)
    for _ in range(repeats):
        t = _timed(
            lambda: client.gather(
                client.map(_read_block, [dataset.fs] * n, dataset.partitions, [dataset.feature_names] * n, pure=False)
            )
        )
        out.append(t)
    return out


def _warm_baseline_mb(tiny_dataset, start):
    """Resident memory of this worker after reading a 10-row file and its statistics: no data held, but the
    code and the thread and memory pools of the libraries touched (36 MB of them at the first read, measured)."""
    X, _ = data.read_partition(tiny_dataset.fs, tiny_dataset.partitions[0], tiny_dataset.feature_names, None, "error")
    for dtype in DTYPES:
        kernels.block_statistics(X, None, kernels.prepare(start, dtype=dtype))
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS:")).split()[1]) / 1024


def _tiny_dataset(root: Path, path: Path, feature_names):
    """A 10-row Parquet file with the columns of ``path``'s dataset, and the dataset around it."""
    import pyarrow as pa

    tiny = root / f"tiny-{path.name}"
    tiny.mkdir(exist_ok=True)
    pq.write_table(
        pa.table({name: np.arange(10.0) * (i + 1) for i, name in enumerate(feature_names)}), tiny / "part.parquet"
    )
    return data.open_dataset(str(tiny))


def _peak_rss_mb():
    """High-water resident memory of this worker process (VmHWM; ru_maxrss would survive exec)."""
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM:")).split()[1]) / 1024


def sklearn_from(start: kernels.Params, tol: float, max_iter: int):
    """scikit-learn's GaussianMixture (unfitted) that starts from ``start``'s weights, means and precisions."""
    from sklearn.mixture import GaussianMixture as SkGMM

    return SkGMM(
        start.n_components,
        covariance_type=start.covariance_type,
        weights_init=start.weights,
        means_init=start.means,
        precisions_init=kernels.precisions_from_cholesky(start.precisions_cholesky, start.covariance_type),
        tol=tol,
        max_iter=max_iter,
    )


def sklearn_per_iteration(X, start, repeats, low=1, high=3):
    from sklearn.exceptions import ConvergenceWarning

    out = []
    for _ in range(repeats):
        times = {}
        for n_iter in (low, high):
            sk = sklearn_from(start, tol=0, max_iter=n_iter)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                started = time.perf_counter()
                sk.fit(X)
                times[n_iter] = time.perf_counter() - started
        out.append((times[high] - times[low]) / (high - low))
    return out


def bench_shape(name, shape, root, client, repeats, gemm_rate, with_sklearn=True, spark=None):
    path = dataset_for(root, name, shape)
    dataset = data.open_dataset(str(path))
    start = start_params(path, shape["cov"], shape["k"])
    source = data.block_source(dataset).persist()
    wait(futures_of(source.blocks))
    largest = max(p.n_rows for p in dataset.partitions) * shape["d"] * 8
    ours = per_iteration(source, start, repeats)
    ours32 = per_iteration(source, start, repeats, dtype="float32")
    flop = FLOPS[shape["cov"]](shape["k"], shape["d"]) * shape["n"]
    result = {
        "shape": shape,
        "ours_s": stats_of(ours),
        "ours_float32_s": stats_of(ours32),
        "gflops": flop / statistics.median(ours) / 1e9,
        "flop_formula": FLOP_FORMULA[shape["cov"]],
        "machine_gemm_gflops": gemm_rate,
        "dask_overhead_s": stats_of(dask_overhead(source, start, repeats)),
        "largest_partition_mb": largest / 2**20,
    }
    result["peak_worker_rss_mb_persisted"] = max(client.run(_peak_rss_mb).values())
    del source
    if not SMOKE:  # fresh worker processes: the next peak is the out-of-core run's own.  Restarts in quick
        client.restart()  # succession can hang (dask/distributed#8534): a smoke run's figures mean nothing anyway
    tiny = _tiny_dataset(root, path, dataset.feature_names)
    result["worker_baseline_rss_mb"] = max(client.run(_warm_baseline_mb, tiny, start).values())
    unpersisted = data.block_source(dataset)
    result["persist_none_s"] = stats_of(per_iteration(unpersisted, start, max(1, repeats // 2), low=1, high=3))
    result["peak_worker_rss_mb_none"] = max(client.run(_peak_rss_mb).values())
    result["pyarrow_read_s"] = stats_of(pyarrow_read(client, dataset, repeats))
    if with_sklearn:
        X = np.concatenate(
            [
                pq.read_table(f).to_pandas().to_numpy(np.float64)
                for f in sorted(path.glob("*.parquet"), key=lambda p: data._natural_key(str(p)))
            ]
        )
        result["sklearn_s"] = stats_of(sklearn_per_iteration(X, start, repeats))
        result["speedup_vs_sklearn"] = result["sklearn_s"]["median"] / result["ours_s"]["median"]
        result["float32_speedup_vs_sklearn"] = result["sklearn_s"]["median"] / result["ours_float32_s"]["median"]
    if spark is not None and name == "A":
        import spark_mllib

        spark_s = spark_mllib.per_iteration(spark, path, shape["d"], shape["k"], max(1, repeats // 2))
        result["spark_mllib_s"] = stats_of(spark_s)
        result["speedup_vs_spark_mllib"] = result["spark_mllib_s"]["median"] / result["ours_s"]["median"]
    return result


def profile_pass(root, name, shape, repeats, top=8):
    """Where a pass's arithmetic spends its time: the statistics kernel over shape ``name``'s first partition, one
    thread, in this process, under cProfile.  Each kernel function's own time (the NumPy work it does inline: an
    ``@`` or a ufunc is not a call cProfile sees) as a share of the kernel's, the largest ``top``, and the rest."""
    import cProfile
    import pstats

    from threadpoolctl import threadpool_limits

    path = dataset_for(root, name, shape)
    start = start_params(path, shape["cov"], shape["k"])
    names = [f"x{j}" for j in range(shape["d"])]
    first = sorted(path.glob("*.parquet"), key=lambda p: data._natural_key(str(p)))[0]
    X = np.asfortranarray(np.column_stack([pq.read_table(first, columns=names).column(n).to_numpy() for n in names]))
    prep = kernels.prepare(start)
    with threadpool_limits(limits=1, user_api="blas"):
        kernels.block_statistics(X, None, prep)  # warm: buffers, BLAS
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        for _ in range(repeats):
            kernels.block_statistics(X, None, prep)
        profiler.disable()
        seconds = (time.perf_counter() - started) / repeats
    own = {}
    for (filename, _, function), (_, _, tottime, _, _) in pstats.Stats(profiler).stats.items():
        where = f"{Path(filename).stem}.{function}" if "pipeline" in filename else "other (NumPy, Python)"
        own[where] = own.get(where, 0.0) + tottime
    total = sum(own.values())
    ranked = sorted(own.items(), key=lambda item: -item[1])
    shares = {where: t / total for where, t in ranked[:top]}
    shares["the rest"] = sum(t for _, t in ranked[top:]) / total
    return {"rows": X.shape[0], "seconds_per_pass_of_the_partition": seconds, "shares": shares}


ONLINE = dict(batch_rows=10_000, n_batches=20)


def bench_online(root, repeats):
    """Rows per second of ``GaussianMixture.partial_fit`` (stepwise EM, full covariances) beside scikit-learn's
    ``MiniBatchKMeans.partial_fit`` (the nearest thing a scikit-learn user has) on the same batches of shape A's
    first rows, both in this process (ours on Dask's local threaded scheduler, as an estimator runs without a
    Client)."""
    import dask
    from sklearn.cluster import MiniBatchKMeans

    from pipeline import GaussianMixture

    shape = SHAPES["A"]
    path = dataset_for(root, "A", shape)
    names = [f"x{j}" for j in range(shape["d"])]
    files = sorted(path.glob("*.parquet"), key=lambda p: data._natural_key(str(p)))
    parts, wanted = [], ONLINE["batch_rows"] * ONLINE["n_batches"]
    for file in files:
        if sum(len(p) for p in parts) >= wanted:
            break
        parts.append(np.column_stack([pq.read_table(file, columns=names).column(n).to_numpy() for n in names]))
    X = np.concatenate(parts)
    size = min(ONLINE["batch_rows"], max(1, X.shape[0] // ONLINE["n_batches"]))
    batches = [X[i * size : (i + 1) * size] for i in range(min(ONLINE["n_batches"], X.shape[0] // size))]
    n = sum(len(b) for b in batches)

    def ours():
        model = GaussianMixture(shape["k"], random_state=0)
        with dask.config.set(scheduler="threads"):
            for batch in batches:
                model.partial_fit(batch)

    def theirs():
        model = MiniBatchKMeans(shape["k"], random_state=0, n_init=1)
        for batch in batches:
            model.partial_fit(batch)

    ours_s = [_timed(ours) for _ in range(repeats)]
    theirs_s = [_timed(theirs) for _ in range(repeats)]
    return {
        "batch_rows": size,
        "n_batches": len(batches),
        "ours_s": stats_of(ours_s),
        "minibatch_kmeans_s": stats_of(theirs_s),
        "ours_rows_per_s": n / statistics.median(ours_s),
        "minibatch_kmeans_rows_per_s": n / statistics.median(theirs_s),
        "update": _bench_update(np.concatenate(batches), shape["k"], repeats),
    }


def _bench_update(X, k, repeats):
    """Seconds of ``update`` with the second half of ``X`` after a fit of the first half, beside a refit of all of
    ``X`` (ours and scikit-learn's, from their default starts), and the held-out gap of the update to the refit."""
    import copy

    import dask
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    from pipeline import GaussianMixture

    half = X.shape[0] // 2
    with dask.config.set(scheduler="threads"):
        fitted = GaussianMixture(k, random_state=0).fit(X[:half])
        update_s = [_timed(lambda: copy.deepcopy(fitted).update(X[half:])) for _ in range(repeats)]
        refit_s = [_timed(lambda: GaussianMixture(k, random_state=0).fit(X)) for _ in range(repeats)]
        updated, refit = copy.deepcopy(fitted).update(X[half:]), GaussianMixture(k, random_state=0).fit(X)
    sklearn_s = [_timed(lambda: SkGaussianMixture(k, random_state=0).fit(X)) for _ in range(repeats)]
    return {
        "old_rows": half,
        "new_rows": X.shape[0] - half,
        "update_s": stats_of(update_s),
        "refit_s": stats_of(refit_s),
        "sklearn_refit_s": stats_of(sklearn_s),
        "update_iterations": updated.n_iter_,
        "refit_iterations": refit.n_iter_,
        "mean_log_likelihood_gap": float(refit.score(X) - updated.score(X)),
    }


def bench_scoring(root, address, repeats):
    """Rows per second of ``gmm score`` (label, log-likelihood, probabilities) on shape A's data."""
    from pipeline import scoring

    path = dataset_for(root, "A", SHAPES["A"])
    out = root / "scored"
    times = []
    for _ in range(repeats):
        times.append(
            _timed(lambda: scoring.score(str(path / "_truth"), str(path), str(out), [], True, scheduler=address))
        )
    n = SHAPES["A"]["n"]
    from onnx_scoring import bench_onnx

    work = root / "onnx-bench"
    work.mkdir(exist_ok=True)
    onnx = bench_onnx(path / "_truth", path, work, n, SHAPES["A"]["d"], repeats)
    return {"seconds": stats_of(times), "rows_per_s": n / statistics.median(times), "n_rows": n, "onnx": onnx}


def bench_missing(root, client, repeats):
    """Shape A with 10% of rows missing one or two of their 16 values (nan_policy: marginalize), against the same
    rows complete: the cost of an incomplete row against a complete one."""
    import pyarrow as pa

    shape = SHAPES["A"]
    path = dataset_for(root, "A", shape)
    holes = root / f"{path.name}-missing10"
    if not holes.exists():
        holes.mkdir()
        rng = np.random.default_rng(10)
        for part in sorted(path.glob("*.parquet"), key=lambda p: data._natural_key(str(p))):
            table = pq.read_table(part)
            X = np.column_stack([table.column(i).to_numpy() for i in range(table.num_columns)])
            rows = np.flatnonzero(rng.uniform(size=X.shape[0]) < 0.10)
            for row in rows:
                X[row, rng.choice(X.shape[1], size=rng.integers(1, 3), replace=False)] = np.nan
            pq.write_table(pa.table({name: X[:, j] for j, name in enumerate(table.column_names)}), holes / part.name)
    start = start_params(path, shape["cov"], shape["k"])
    result = {}
    for name, where in (("complete", path), ("missing", holes)):
        source = data.block_source(data.open_dataset(str(where), nan_policy="marginalize")).persist()
        wait(futures_of(source.blocks))
        result[name] = stats_of(per_iteration(source, start, repeats, missing=True))
        del source
    n_incomplete = round(0.10 * shape["n"])
    complete_s, missing_s = result["complete"]["median"], result["missing"]["median"]
    result["per_complete_row_us"] = 1e6 * complete_s / shape["n"]
    # missing = 90% of the rows at the complete cost + 10% at the incomplete cost
    result["per_incomplete_row_us"] = 1e6 * (missing_s - 0.9 * complete_s) / n_incomplete
    result["incomplete_rows"] = n_incomplete
    return result


def bench_select(root, address):
    """Wall time of select --k 2..9 against eight separate fits of the same data, same settings."""
    from pipeline import job
    from pipeline.config import validate

    shape = SELECT_SHAPE
    path = dataset_for(root, "select", shape)

    def config(k, out):
        return validate(
            {
                "data": {"path": str(path)},
                "model": {"n_components": k, "max_iter": 100},
                "output": {"path": str(root / out)},
            },
            "bench",
        )

    fits = _timed(lambda: [job.fit(config(k, f"fit-{k}"), scheduler=address, force=True) for k in range(2, 10)])
    select = _timed(lambda: job.select(config(2, "selected"), list(range(2, 10)), ["full"], "bic", scheduler=address))
    return {"shape": shape, "eight_fits_s": fits, "select_s": select, "ratio": fits / select}


SCALING = {"N": [1_000_000, 2_000_000, 4_000_000], "K": [8, 16, 32], "D": [16, 32, 64], "partitions": [16, 32, 64]}


def bench_scaling(root, client, repeats):
    """Time per iteration as N, K, D and the number of partitions each double (rest at shape A)."""
    base = SHAPES["A"]
    out = {}
    for axis, values in SCALING.items():
        out[axis] = []
        for value in values:
            shape = dict(base)
            key = {"N": "n", "K": "k", "D": "d", "partitions": "parts"}[axis]
            shape[key] = value
            path = dataset_for(root, f"scale-{axis}", shape)
            dataset = data.open_dataset(str(path))
            source = data.block_source(dataset).persist()
            wait(futures_of(source.blocks))
            start = start_params(path, "full", shape["k"])
            seconds = statistics.median(per_iteration(source, start, repeats, low=1, high=4))
            out[axis].append({"value": value, "seconds": seconds})
            print(f"  {axis}={value}: {seconds:.3f} s/iteration", file=sys.stderr, flush=True)
            del source
    return out


def plot_scaling(scaling, png):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    for ax, (axis, points) in zip(axes, scaling.items()):
        x = [p["value"] for p in points]
        y = [p["seconds"] for p in points]
        ax.loglog(x, y, marker="o", label="measured")
        slope = {"N": 1, "K": 1, "D": 2, "partitions": 0}[axis]
        ax.loglog(
            x,
            [y[0] * (v / x[0]) ** slope for v in x],
            linestyle="--",
            color="grey",
            label=f"∝ {axis}^{slope}" if slope else "flat",
        )
        ax.set(title=f"doubling {axis}", xlabel=axis, ylabel="seconds per iteration")
        ax.legend()
        ax.grid(alpha=0.3, which="both")
    fig.suptitle("EM iteration time on a 2-worker LocalCluster (rest fixed at N=1M, D=16, K=8, 16 partitions)")
    fig.tight_layout()
    fig.savefig(png, dpi=100)


def print_table(results, gemm_rate):
    print(f"\nmachine float64 GEMM: {gemm_rate:.1f} GFLOP/s (2 threads)")
    head = (
        f"{'shape':6}{'ours s/it':>11}{'sklearn s/it':>14}{'speedup':>9}{'f32 s/it':>10}{'f32 spd':>9}"
        f"{'GFLOP/s':>9}{'%GEMM':>7}"
        f"{'dask ovh':>10}{'none s/it':>11}{'read s':>8}{'none/read':>10}{'base MB':>9}{'peak MB':>9}"
        f"{'part MB':>9}"
    )
    print(head)
    for name, r in results.items():
        sk = r.get("sklearn_s", {}).get("median", float("nan"))
        none, read = r["persist_none_s"]["median"], r["pyarrow_read_s"]["median"]
        print(
            f"{name:6}{r['ours_s']['median']:>11.4f}{sk:>14.3f}{r.get('speedup_vs_sklearn', float('nan')):>9.1f}"
            f"{r['ours_float32_s']['median']:>10.4f}{r.get('float32_speedup_vs_sklearn', float('nan')):>9.1f}"
            f"{r['gflops']:>9.1f}{100 * r['gflops'] / gemm_rate:>6.0f}%{r['dask_overhead_s']['median']:>10.4f}"
            f"{none:>11.3f}{read:>8.3f}{none / read:>10.2f}{r['worker_baseline_rss_mb']:>9.0f}"
            f"{r['peak_worker_rss_mb_none']:>9.0f}{r['largest_partition_mb']:>9.1f}"
        )
    for name, r in results.items():
        if "spark_mllib_s" in r:
            print(
                f"{name}: Spark MLlib GaussianMixture (local[2], same Parquet) "
                f"{r['spark_mllib_s']['median']:.3f} s/it; ours {r['speedup_vs_spark_mllib']:.1f}x faster"
            )


def _shrink_to_smoke() -> None:
    """Tiny shapes of the same kinds (figures meaningless): the test suite runs the bench this way."""
    global GEMM_SIZE, SELECT_SHAPE, SMOKE
    SMOKE = True
    for shape in SHAPES.values():
        shape.update(n=400 * shape["parts"], d=min(shape["d"], 4), k=min(shape["k"], 3))
    SELECT_SHAPE = dict(SELECT_SHAPE, n=2000, parts=2)
    for axis, values in SCALING.items():
        SCALING[axis] = [max(2, v // {"N": 500, "K": 4, "D": 8, "partitions": 8}[axis]) for v in values]
    GEMM_SIZE = 200


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shapes", default="A,B,C,D")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", default="bench-data", help="where generated datasets are cached")
    parser.add_argument("--output", default="bench-results/bench.json")
    parser.add_argument("--no-sklearn", action="store_true")
    parser.add_argument("--extras", action="store_true", help="also scoring throughput and select vs fits")
    parser.add_argument("--scaling", action="store_true", help="only the scaling curves (and docs/scaling.png)")
    parser.add_argument(
        "--converge",
        action="store_true",
        help="only passes and seconds to a converged model (plain EM, SQUAREM, scikit-learn; scripts/converge.py)",
    )
    parser.add_argument(
        "--tried",
        action="store_true",
        help="with --converge: also how far incremental EM and online epochs get (scripts/converge_tried.py)",
    )
    parser.add_argument(
        "--mclust",
        action="store_true",
        help="only gmm select over mclust's models on 1M rows, beside R's Mclust (scripts/mclust_scale.py)",
    )
    parser.add_argument("--missing", action="store_true", help="also shape A with 10%% of rows missing values")
    parser.add_argument(
        "--online", action="store_true", help="also partial_fit's rows/s beside MiniBatchKMeans.partial_fit's"
    )
    parser.add_argument(
        "--profile", action="store_true", help="also where a pass's arithmetic spends its time, per shape"
    )
    parser.add_argument(
        "--spark",
        action="store_true",
        help="also Spark MLlib's GaussianMixture (shape A; with --converge, shape A and the overlapping mixture): the "
        "bench extra",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="every step on tiny shapes, in seconds: a check that the bench runs"
    )
    args = parser.parse_args(argv)
    spark = None
    if args.spark:
        try:
            import spark_mllib
        except ImportError:
            parser.error("--spark needs the bench extra: pip install -e '.[bench]' (pyspark; Java 17 or later)")
        spark = spark_mllib.session()
    if args.smoke:
        _shrink_to_smoke()
    root = Path(args.data)
    root.mkdir(parents=True, exist_ok=True)
    if args.mclust:  # gmm select starts its own cluster, as a user's would
        from mclust_scale import bench_mclust

        out = Path(args.output).with_name("mclust.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(bench_mclust(root.resolve(), smoke=args.smoke), indent=2))
        print(f"\nwritten to {out}")
        return
    gemm_rate = matmul_rate(2)
    report = {
        "date": dt.date.today().isoformat(),
        "cpu_count": os.cpu_count(),
        "gemm_gflops": gemm_rate,
        "gemm_float32_gflops": matmul_rate(2, np.float32),
        "smoke": args.smoke,
    }
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        if args.converge:
            from converge import bench_converge

            report["converge"] = bench_converge(root, SHAPES["A"], smoke=args.smoke, spark=spark, tried=args.tried)
        elif args.scaling:
            report["scaling"] = bench_scaling(root, client, max(1, args.repeats))
            png = Path(args.output).with_name("scaling.png") if args.smoke else Path("docs/scaling.png")
            png.parent.mkdir(parents=True, exist_ok=True)
            plot_scaling(report["scaling"], png)
            print(json.dumps(report["scaling"], indent=1))
        else:
            results = {}
            for name in args.shapes.split(","):
                print(f"shape {name}: {SHAPES[name]}", file=sys.stderr, flush=True)
                results[name] = bench_shape(
                    name,
                    SHAPES[name],
                    root,
                    client,
                    args.repeats,
                    gemm_rate,
                    with_sklearn=not args.no_sklearn,
                    spark=spark,
                )
            report["results"] = results
            print_table(results, gemm_rate)
            if args.profile:
                report["profile"] = {}
                for name in args.shapes.split(","):
                    report["profile"][name] = p = profile_pass(root, name, SHAPES[name], max(3, args.repeats))
                    shares = ", ".join(f"{where} {share:.0%}" for where, share in p["shares"].items())
                    print(
                        f"profile {name} ({p['rows']:,} rows, 1 thread, "
                        f"{p['seconds_per_pass_of_the_partition'] * 1e3:.1f} ms a pass): {shares}"
                    )
            print(f"machine float32 GEMM: {report['gemm_float32_gflops']:.1f} GFLOP/s (2 threads)")
            if args.missing:
                report["missing"] = m = bench_missing(root, client, args.repeats)
                print(
                    f"\nshape A, nan_policy marginalize: complete rows {m['complete']['median']:.4f} s/it, with 10% of "
                    f"rows missing 1-2 of 16 values {m['missing']['median']:.4f} s/it; per complete row "
                    f"{m['per_complete_row_us']:.3f} us, per incomplete row {m['per_incomplete_row_us']:.2f} us "
                    f"({m['per_incomplete_row_us'] / m['per_complete_row_us']:.1f}x)"
                )
            if args.online:
                report["online"] = o = bench_online(root, args.repeats)
                print(
                    f"\npartial_fit (K={SHAPES['A']['k']} full, {o['n_batches']} batches of {o['batch_rows']:,} rows "
                    f"of shape A): {o['ours_rows_per_s']:,.0f} rows/s; MiniBatchKMeans.partial_fit: "
                    f"{o['minibatch_kmeans_rows_per_s']:,.0f} rows/s"
                )
                u = o["update"]
                print(
                    f"update with {u['new_rows']:,} new rows after a fit of {u['old_rows']:,}: "
                    f"{u['update_s']['median']:.2f} s ({u['update_iterations']} iterations over the new rows); "
                    f"refit of all: {u['refit_s']['median']:.2f} s ({u['refit_iterations']} iterations), "
                    f"scikit-learn's {u['sklearn_refit_s']['median']:.2f} s; mean log-likelihood of all rows "
                    f"{u['mean_log_likelihood_gap']:.2e} below the refit's"
                )
            if args.extras:
                report["scoring"] = bench_scoring(root, cluster.scheduler_address, args.repeats)
                report["select"] = bench_select(root, cluster.scheduler_address)
                sc, se = report["scoring"], report["select"]
                print(
                    f"\nscoring: {sc['rows_per_s']:,.0f} rows/s (median {sc['seconds']['median']:.2f} s for "
                    f"{sc['n_rows']:,} rows, min {sc['seconds']['min']:.2f}, max {sc['seconds']['max']:.2f})"
                )
                onnx = sc["onnx"].get("rows_per_s")
                print(
                    "onnxruntime (gmm export's graph, Parquet in and out, 2 threads; in memory, one batch): "
                    + (", ".join(f"{k} {v:,.0f} rows/s" for k, v in onnx.items()) if onnx else sc["onnx"]["not_run"])
                )
                print(
                    f"select --k 2..9: {se['select_s']:.1f} s; eight separate fits: {se['eight_fits_s']:.1f} s "
                    f"(ratio {se['ratio']:.2f})"
                )
    out = Path(args.output)
    if args.scaling or args.converge:
        out = out.with_name("scaling.json" if args.scaling else "converge.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
