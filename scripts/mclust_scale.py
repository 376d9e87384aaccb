"""mclust's models at scale (``scripts/bench --mclust``): ``gmm select --covariance-types all`` beside R's Mclust.

As a user runs it: ``gmm select CONFIG --k 1..9 --covariance-types all`` in its own process (its LocalCluster
of 2 workers), on ``ROWS`` rows x ``FEATURES`` features of a seeded mixture, timed from start to exit, its peak
memory sampled every 0.1 s over the process and its children (the client, the scheduler and the workers); then
the same with scikit-learn's four types, for the cost per candidate of the fourteen against the four.  Beside
it, R's ``Mclust(X, G = 1:9)`` (all fourteen models, its own hierarchical start) on subsamples of the same rows,
doubling until a fit takes longer than ours: the largest it fits in our time is the figure.  Without Rscript
and mclust (``apt-get install r-cran-mclust``) that part says so and is left out.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from pipeline.choices import MCLUST_MODELS, SKLEARN_COVARIANCE_TYPES

ROWS, FEATURES, PARTS, KS = 1_000_000, 8, 16, "1..9"
FIRST_R_ROWS = 5_000
R_SCRIPT = """
suppressPackageStartupMessages(library(mclust))
args <- commandArgs(trailingOnly = TRUE)
X <- as.matrix(read.csv(args[1], header = FALSE))
m <- Mclust(X, G = 1:{k_high}, verbose = FALSE)
cat(nrow(X), m$modelName, m$G, m$bic, "\\n")
"""


def _dataset(root: Path, rows: int) -> tuple[Path, np.ndarray]:
    """``rows`` x FEATURES of a mixture of 4 correlated Gaussians as PARTS Parquet files; and the rows."""
    rng = np.random.default_rng(0)
    k = 4
    means = rng.normal(scale=3.0, size=(k, FEATURES))
    factors = rng.normal(size=(k, FEATURES, FEATURES)) / np.sqrt(FEATURES)
    labels = rng.choice(k, size=rows, p=[0.4, 0.3, 0.2, 0.1])
    X = means[labels] + np.einsum("nd,nde->ne", rng.normal(size=(rows, FEATURES)), factors[labels])
    path = root / f"mclust-{rows}x{FEATURES}"
    if not path.exists():
        path.mkdir(parents=True)
        for i, block in enumerate(np.array_split(X, PARTS)):
            table = pa.table({f"x{j}": block[:, j] for j in range(FEATURES)})
            pq.write_table(table, path / f"part-{i:03d}.parquet")
    return path, X


def _run_measured(command: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds of ``command`` and the peak of its and its children's resident memory summed (MB)."""
    start = time.perf_counter()
    process = psutil.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while process.poll() is None:
        try:
            tree = [process, *process.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.1)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {process.stderr.read().decode()[-2000:]}")
    return seconds, peak / 1e6


def _select(root: Path, path: Path, types: str, ks: str) -> dict:
    """``gmm select`` over ``types`` and ``ks`` on ``path``: seconds, peak MB, candidates, the chosen model."""
    config = root / f"select-{types[:8].replace(',', '-')}.yaml"
    out = root / f"selected-{types[:8].replace(',', '-')}"
    config.write_text(yaml.safe_dump({"data": {"path": str(path)}, "output": {"path": str(out)}}))
    command = [sys.executable, "-m", "pipeline", "select", str(config), "--k", ks, "--covariance-types", types]
    seconds, peak_mb = _run_measured([*command, "--force"], root)
    chosen = yaml.safe_load((out / "model.yaml").read_text())
    lo, hi = (int(v) for v in ks.split(".."))
    n_types = len(MCLUST_MODELS) if types == "all" else len(types.split(","))
    candidates = n_types * (hi - lo + 1)
    return {
        "types": types,
        "seconds": seconds,
        "peak_mb": peak_mb,
        "candidates": candidates,
        "seconds_per_candidate": seconds / candidates,
        "chosen": f"K={chosen['n_components']} {chosen['covariance_type']}",
    }


def _mclust(root: Path, X: np.ndarray, budget: float, k_high: int, first_rows: int) -> dict:
    """R's Mclust on the first rows of ``X``, doubling until a fit takes over ``budget`` seconds (or all rows)."""
    rscript = shutil.which("Rscript")
    probe = rscript and subprocess.run([rscript, "-e", "library(mclust)"], capture_output=True).returncode == 0
    if not probe:
        return {"not_run": "Rscript with mclust not found (apt-get install r-cran-mclust)"}
    script = root / "mclust_fit.R"
    script.write_text(R_SCRIPT.replace("{k_high}", str(k_high)))
    fits, rows = [], first_rows
    while rows <= len(X):
        csv = root / f"rows-{rows}.csv"
        np.savetxt(csv, X[:rows], delimiter=",", fmt="%.17g")
        seconds, peak_mb = _run_measured([rscript, str(script), str(csv)], root)
        csv.unlink()
        fits.append({"rows": rows, "seconds": seconds, "peak_mb": peak_mb})
        print(f"  R Mclust on {rows:,} rows: {seconds:.1f} s, {peak_mb:.0f} MB", file=sys.stderr, flush=True)
        if seconds > budget:
            break
        rows *= 2
    within = [f["rows"] for f in fits if f["seconds"] <= budget]
    return {"fits": fits, "largest_rows_within_budget": max(within) if within else 0}


def bench_mclust(root: Path, smoke: bool = False) -> dict:
    """The figures of the module's docstring (tiny sizes with ``smoke``: a check that it runs)."""
    rows, ks, first_rows = (4_000, "1..2", 500) if smoke else (ROWS, KS, FIRST_R_ROWS)
    path, X = _dataset(root, rows)
    fourteen = _select(root, path, "all", ks)
    print(
        f"gmm select --k {ks} --covariance-types all on {rows:,} x {FEATURES}: {fourteen['seconds']:.1f} s, "
        f"{fourteen['peak_mb']:.0f} MB peak (client, scheduler, workers), chose {fourteen['chosen']}",
        file=sys.stderr,
        flush=True,
    )
    four = _select(root, path, ",".join(SKLEARN_COVARIANCE_TYPES), ks)
    k_high = int(ks.split("..")[1])
    r = _mclust(root, X, fourteen["seconds"], k_high, first_rows)
    result = {"rows": rows, "features": FEATURES, "ks": ks, "fourteen": fourteen, "four": four, "mclust": r}
    ratio = fourteen["seconds_per_candidate"] / four["seconds_per_candidate"]
    print(
        f"\nmclust's models at scale ({rows:,} rows x {FEATURES}, K {ks}, 2-worker LocalCluster):\n"
        f"  all fourteen: {fourteen['candidates']} candidates, {fourteen['seconds']:.1f} s "
        f"({fourteen['seconds_per_candidate']:.2f} s a candidate), peak {fourteen['peak_mb']:.0f} MB, "
        f"chose {fourteen['chosen']}\n"
        f"  scikit-learn's four: {four['candidates']} candidates, {four['seconds']:.1f} s "
        f"({four['seconds_per_candidate']:.2f} s a candidate, the fourteen's {ratio:.2f}x that), "
        f"peak {four['peak_mb']:.0f} MB"
    )
    if "not_run" in r:
        print(f"  R Mclust: not run: {r['not_run']}")
    else:
        largest = r["largest_rows_within_budget"]
        print(
            f"  R Mclust (G = 1:{k_high}, fourteen models): {largest:,} rows at most in {fourteen['seconds']:.0f} s "
            f"({rows / max(largest, 1):.0f}x fewer rows); "
            + ", ".join(f"{f['rows']:,} rows {f['seconds']:.1f} s" for f in r["fits"])
        )
    return result
