"""The scripts README sends users to: ``scripts/demo``'s commands, and ``scripts/bench`` (every step, on tiny
shapes: its figures are not checked here, only that it runs and writes them)."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

from helpers import ROOT

from pipeline.choices import MCLUST_MODELS


def test_the_demos_commands_fit_and_inspect_the_demo(tmp_path):
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    commands = (ROOT / "scripts" / "demo").read_text().split('cd "$ROOT"\n', 1)[1]  # after its venv set-up
    run = subprocess.run(
        ["bash", "-c", f"set -euo pipefail\n{commands}"],
        cwd=tmp_path,
        env={**os.environ, "VENV": str(Path(sys.executable).parent.parent)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert "4 components x 4 features" in run.stdout and "converged" in run.stdout, run.stdout
    assert (tmp_path / "out" / "demo-model" / "model.yaml").exists()


def bench(cwd, *args):
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--smoke", "--repeats", "1", "--data", "data", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_bench_runs_every_step_and_writes_its_figures(tmp_path):
    run = bench(
        tmp_path, "--shapes", "A,C", "--missing", "--online", "--extras", "--profile", "--output", "out/bench.json"
    )
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert set(report["results"]) == {"A", "C"}  # full and diag
    for result in report["results"].values():
        figures = [result["ours_s"]["median"], result["ours_float32_s"]["median"], result["sklearn_s"]["median"]]
        figures += [result["worker_baseline_rss_mb"], result["peak_worker_rss_mb_none"], result["gflops"]]
        assert all(math.isfinite(x) for x in figures), result
    assert math.isfinite(report["missing"]["per_incomplete_row_us"])
    assert report["scoring"]["rows_per_s"] > 0 and report["select"]["ratio"] > 0
    assert len(report["scoring"]["onnx"]["rows_per_s"]) == 6 and "onnxruntime (gmm export's graph" in run.stdout
    assert report["online"]["ours_rows_per_s"] > 0 and report["online"]["minibatch_kmeans_rows_per_s"] > 0
    for profile in report["profile"].values():
        assert abs(sum(profile["shares"].values()) - 1.0) < 1e-9 and any(
            k.startswith(("estep.", "stats.")) for k in profile["shares"]
        )
    update = report["online"]["update"]
    assert update["update_s"]["median"] > 0 and math.isfinite(update["mean_log_likelihood_gap"])
    assert "speedup" in run.stdout and "scoring:" in run.stdout and "nan_policy marginalize" in run.stdout


def test_the_bench_draws_its_scaling_curves(tmp_path):
    run = bench(tmp_path, "--scaling", "--output", "out/bench.json")
    assert run.returncode == 0, run.stderr[-4000:]
    scaling = json.loads((tmp_path / "out" / "scaling.json").read_text())["scaling"]
    assert set(scaling) == {"N", "K", "D", "partitions"}
    # smoke shapes take microseconds an iteration: the difference of two timings is noise, of either sign
    assert all(len(points) == 3 and all(math.isfinite(p["seconds"]) for p in points) for points in scaling.values())
    assert (tmp_path / "out" / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # not over docs/'s
    assert not (tmp_path / "docs").exists()


def test_the_bench_measures_passes_to_a_converged_model(tmp_path):
    run = bench(tmp_path, "--converge", "--tried", "--output", "out/bench.json")
    assert run.returncode == 0, run.stderr[-4000:]
    results = json.loads((tmp_path / "out" / "converge.json").read_text())["converge"]
    assert set(results) == {"A", "overlapping", "wine", "digits", "faithful"}
    for result in results.values():
        for method in ("none", "squarem"):
            fit = result[method]
            assert fit["passes"] >= 1 and fit["seconds"] > 0 and math.isfinite(fit["lower_bound"])
            assert "passes" in fit["to_optimum"]  # None: not within 1e-6 of plain EM's optimum (another one)
        assert result["none"]["to_optimum"]["passes"] is not None  # plain EM reaches its own
        assert result["sklearn"]["passes"] >= 1
    assert set(results["A"]["persist_none"]) == {"none", "squarem"}
    tried = results["overlapping"]["tried"]
    assert len(tried) == 4 and all(len(method["at_marks"]) == 5 for method in tried.values())
    assert tried["plain EM"]["passes_to_plain_at_last_mark"] is not None
    assert "acceleration squarem" in run.stdout and "scikit-learn (tol" in run.stdout


def test_the_bench_measures_mclusts_models_at_scale(tmp_path):
    run = bench(tmp_path, "--mclust", "--output", "out/bench.json")
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads((tmp_path / "out" / "mclust.json").read_text())
    for side, n_types in (("fourteen", len(MCLUST_MODELS)), ("four", 4)):
        fit = result[side]
        assert fit["candidates"] == 2 * n_types and fit["seconds"] > 0 and fit["peak_mb"] > 50
    assert result["mclust"].get("not_run") or result["mclust"]["fits"][0]["rows"] == 500
    assert "all fourteen: " in run.stdout and "R Mclust" in run.stdout
