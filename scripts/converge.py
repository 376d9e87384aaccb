"""Passes and seconds to a converged model (``scripts/bench --converge``): plain EM, SQUAREM and scikit-learn.

Per data set, every method starts from the same parameters (scikit-learn's k-means start, computed once) on the
same persisted blocks; ours run on the bench's 2-worker LocalCluster.  Reported per method:

- passes and seconds until the convergence test at ``TOL`` (the change of the mean log-likelihood);
- passes and seconds until the mean log-likelihood is within ``OPTIMUM_RTOL`` (relative) of the optimum: plain
  EM's at ``TIGHT``, from each method's run at ``TIGHT`` (the pass found in its history, the seconds summed to it);
- scikit-learn's iterations and seconds at ``TOL`` (its own loop, one process, on the NumPy array);
- with ``persist: none`` (every pass reads the Parquet files), passes and seconds at ``TOL`` for bench shape A and
  the overlapping mixture;
- with ``--spark``, Spark MLlib's iterations and seconds on shape A and the overlapping mixture (its own start
  and rule; the data cached in Spark's memory, as ours are persisted).

Start passes are none here (an explicit start); a k-means start adds two passes (a sample, the first statistics)
to every method alike.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from distributed import futures_of, wait

from pipeline import data, em, kernels
from pipeline.kernels.acceleration import Cycle, Squarem
from pipeline.kernels.algorithms import EMStep
from pipeline.kernels.online import IncrementalStep, Learned

TOL = 1e-6
TIGHT = 1e-10
OPTIMUM_RTOL = 1e-6
MAX_ITER = 5000
METHODS = ("none", "squarem")


def overlapping_mixture(n: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    """Rows of ``k`` nearly round Gaussians of unequal weights whose means lie about 4 standard deviations apart
    (0.7 sqrt(2 d) for d = 16) in a space of ``d`` dimensions: EM is slow there (159 passes at tol 1e-6 for 100,000
    rows, K=8, from scikit-learn's k-means start; measured)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=0.7, size=(k, d))
    counts = rng.multinomial(n, rng.dirichlet(np.full(k, 5.0)))
    parts = [rng.normal(size=(c, d)) @ (np.eye(d) + 0.05 * rng.normal(size=(d, d))) + m for c, m in zip(counts, means)]
    return rng.permutation(np.concatenate(parts))


def _real(name: str) -> np.ndarray:
    """scikit-learn's wine and digits, or R's Old Faithful geyser (272 eruptions: duration and waiting time; the
    rows of tests/data/mclust/faithful.json), where EM with four components is slow (222 passes to tol 1e-6)."""
    if name == "faithful":
        fixture = Path(__file__).resolve().parents[1] / "tests" / "data" / "mclust" / "faithful.json"
        return np.asarray(json.loads(fixture.read_text())["X"], dtype=np.float64)
    from sklearn import datasets

    return {"wine": datasets.load_wine, "digits": datasets.load_digits}[name]().data.astype(np.float64)


def datasets(root: Path, shape_a: dict, smoke: bool) -> dict[str, dict]:
    """Each data set: its rows as Parquet (written once under ``root``), K and the covariance type."""
    from bench import dataset_for  # the bench's cached shape A

    n_overlap = 2_000 if smoke else 100_000
    found = {
        "A": dict(path=dataset_for(root, "A", shape_a), k=shape_a["k"], cov=shape_a["cov"]),
        "overlapping": dict(X=overlapping_mixture(n_overlap, 16, 8), k=8, cov="full", parts=8),
        "wine": dict(X=_real("wine"), k=3, cov="full", parts=1),
        "digits": dict(X=_real("digits"), k=10, cov="diag", parts=2),
        "faithful": dict(X=_real("faithful"), k=4, cov="full", parts=1),
    }
    for name, spec in found.items():
        if "path" in spec:
            continue
        X = spec["X"]
        spec["path"] = path = root / f"converge-{name}-{X.shape[0]}x{X.shape[1]}"
        if not path.exists():
            tmp = path.with_name(path.name + ".tmp")
            tmp.mkdir(parents=True, exist_ok=True)
            for i, rows in enumerate(np.array_split(X, spec["parts"])):
                table = pa.table({f"x{j}": rows[:, j] for j in range(X.shape[1])})
                pq.write_table(table, tmp / f"part-{i:03d}.parquet")
            tmp.rename(path)
    return found


def _numpy(path: Path) -> np.ndarray:
    files = sorted(path.glob("*.parquet"), key=lambda p: data._natural_key(str(p)))
    return np.concatenate([pq.read_table(f).to_pandas().to_numpy(np.float64) for f in files])


def _start(X: np.ndarray, k: int, covariance_type: str) -> kernels.Params:
    """scikit-learn's k-means start (its first M-step), as our parameters."""
    from sklearn.mixture import GaussianMixture as SkGMM

    sk = SkGMM(k, covariance_type=covariance_type, max_iter=0, random_state=0, reg_covar=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk.fit(X)
    prec_chol = kernels.precision_cholesky_from_precisions(sk.precisions_, covariance_type)
    covariances = kernels.covariances_from_precision_cholesky(prec_chol, covariance_type)
    return kernels.Params(sk.weights_, sk.means_, covariances, prec_chol, covariance_type)


def _ours(source, start: kernels.Params, acceleration: str, tol: float, max_iter: int = MAX_ITER) -> dict:
    """One fit from ``start``: passes, seconds, and the lower bound and cumulative seconds after each pass."""
    step = IncrementalStep(EMStep(start.covariance_type, 1e-6), None)
    run = (
        em.EMRun(Squarem(step), Cycle(Learned(start, None)))
        if acceleration == "squarem"
        else em.EMRun(step, Learned(start, None))
    )
    seconds: list[float] = []
    started = time.perf_counter()
    em.run_em(
        source,
        [run],
        tol=tol,
        max_iter=max_iter,
        on_iteration=lambda rep: seconds.append(time.perf_counter() - started),
    )
    return {
        "passes": run.n_iter,
        "seconds": time.perf_counter() - started,
        "converged": run.converged,
        "lower_bound": run.lower_bound,
        "history": list(run.history),
        "elapsed": seconds,
    }


def _to_optimum(fit: dict, optimum: float) -> dict:
    """The first pass (and the seconds to it) whose lower bound is within OPTIMUM_RTOL of ``optimum``."""
    for i, bound in enumerate(fit["history"]):
        if abs(bound - optimum) <= OPTIMUM_RTOL * abs(optimum):
            return {"passes": i + 1, "seconds": fit["elapsed"][i]}
    return {"passes": None, "seconds": None}


def _sklearn(X: np.ndarray, start: kernels.Params, tol: float) -> dict:
    from bench import sklearn_from

    sk = sklearn_from(start, tol, MAX_ITER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        sk.fit(X)
        seconds = time.perf_counter() - started
    return {
        "passes": int(sk.n_iter_),
        "seconds": seconds,
        "converged": bool(sk.converged_),
        "lower_bound": sk.lower_bound_,
    }


def bench_converge(root: Path, shape_a: dict, smoke: bool = False, spark=None, tried: bool = False) -> dict:
    """Every data set's figures (see the module's docstring); with a SparkSession, Spark MLlib's on shape A and the
    overlapping mixture (its own start and rule: :func:`spark_mllib.to_convergence`); with ``tried``, how far the
    methods tried and not kept get on the overlapping mixture (:mod:`converge_tried`)."""
    results = {}
    for name, spec in datasets(root, shape_a, smoke).items():
        dataset = data.open_dataset(str(spec["path"]))
        X = _numpy(spec["path"])
        start = _start(X, spec["k"], spec["cov"])
        source = data.block_source(dataset).persist()
        wait(futures_of(source.blocks))
        most = 8 if smoke else MAX_ITER  # a smoke run checks that every step runs, in seconds
        fits = {(m, tol): _ours(source, start, m, tol, most) for m in METHODS for tol in (TOL, TIGHT)}
        optimum = fits["none", TIGHT]["lower_bound"]
        result = {
            "rows": X.shape[0],
            "features": X.shape[1],
            "n_components": spec["k"],
            "covariance_type": spec["cov"],
            "optimum": optimum,
            "sklearn": _sklearn(X, start, TOL),
        }
        for m in METHODS:
            at_tol = {key: fits[m, TOL][key] for key in ("passes", "seconds", "converged", "lower_bound")}
            result[m] = {**at_tol, "to_optimum": _to_optimum(fits[m, TIGHT], optimum)}
            result[m]["tight_lower_bound"] = fits[m, TIGHT]["lower_bound"]
        del source
        if spark is not None and name in ("A", "overlapping"):
            import spark_mllib

            result["spark_mllib"] = spark_mllib.to_convergence(spark, spec["path"], X.shape[1], spec["k"], TOL)
        if tried and name == "overlapping":
            from converge_tried import bench_tried

            result["tried"] = bench_tried(X, start, smoke)
        if name in ("A", "overlapping"):
            unpersisted = data.block_source(dataset)
            result["persist_none"] = {
                m: {key: _ours(unpersisted, start, m, TOL, most)[key] for key in ("passes", "seconds")} for m in METHODS
            }
        results[name] = result
        print_converge(name, result)
    return results


def print_converge(name: str, r: dict) -> None:
    def cell(fig: dict) -> str:
        if fig.get("passes") is None:
            return "not reached"
        return f"{fig['passes']} passes, {fig['seconds']:.2f} s"

    sk = r["sklearn"]
    print(
        f"\n{name} ({r['rows']:,} x {r['features']}, K={r['n_components']} {r['covariance_type']}): "
        f"optimum {r['optimum']:.10g}"
    )
    for m in METHODS:
        f = r[m]
        gap = (f["tight_lower_bound"] - r["optimum"]) / abs(r["optimum"]) if math.isfinite(r["optimum"]) else math.nan
        speedup = sk["seconds"] / f["seconds"]
        print(
            f"  ours, acceleration {m:8s}: to tol {TOL:g}: {cell(f)} ({speedup:.1f}x scikit-learn); "
            f"to the optimum within {OPTIMUM_RTOL:g}: {cell(f['to_optimum'])}; at tol {TIGHT:g} "
            f"{gap:+.1e} from plain EM's"
        )
    print(f"  scikit-learn (tol {TOL:g}): {cell(sk)}")
    if "spark_mllib" in r:
        s = r["spark_mllib"]
        print(
            f"  Spark MLlib (local[2], its own start; total log-likelihood change <= {s['tol_total']:g}): {cell(s)}, "
            f"mean log-likelihood {s['mean_log_likelihood']:.8g}"
        )
    for m, f in r.get("persist_none", {}).items():
        print(f"  persist none, acceleration {m}: to tol {TOL:g}: {cell(f)}")
