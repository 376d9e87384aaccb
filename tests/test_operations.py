"""Operating promises against real processes: remote clusters, kills, resume, worker loss.

A fit's ``model.npz`` is byte-reproducible (fixed zip timestamps), so
"bit-identical arrays" is checked as equal file bytes.
"""

import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from helpers import dask_cluster, gmm, kill_at_line, started, tree_digest, wait_for_line

from pipeline.synthetic import generate

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
# Enough work per iteration (about 0.1 s) to stop a fit in the middle.
CONFIG = {"model": {"n_components": 4, "covariance_type": "full", "tol": 0.0, "max_iter": 14}}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("ops") / "data"
    generate(path, n_samples=150_000, n_features=8, n_components=4, partitions=8, seed=11)
    return path


def write_config(directory: Path, data: Path, output: str, **model) -> Path:
    config = {"data": {"path": str(data)}, "model": {**CONFIG["model"], **model}, "output": {"path": output}}
    path = directory / f"{output}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    """The uninterrupted fit on a 2-worker LocalCluster: model.npz bytes."""
    work = tmp_path_factory.mktemp("reference")
    run = gmm(work, "fit", write_config(work, dataset, "ref"))
    assert run.returncode == 0, run.stderr
    return (work / "ref" / "model.npz").read_bytes()


def test_remote_cluster_gives_the_local_clusters_bytes(tmp_path, dataset, reference):
    with dask_cluster(tmp_path, 2) as (address, _):
        run = gmm(tmp_path, "fit", write_config(tmp_path, dataset, "remote"), "--scheduler", address)
        assert run.returncode == 0, run.stderr
        assert f"scheduler {address}" in run.stderr
    assert (tmp_path / "remote" / "model.npz").read_bytes() == reference


def test_scheduler_from_the_environment_and_one_worker(tmp_path, dataset, reference):
    with dask_cluster(tmp_path, 1) as (address, _):
        env = {**os.environ, "DASK_SCHEDULER_ADDRESS": address}
        run = gmm(tmp_path, "fit", write_config(tmp_path, dataset, "one"), env=env)
        assert run.returncode == 0, run.stderr
        assert "with 1 workers" in run.stderr
    assert (tmp_path / "one" / "model.npz").read_bytes() == reference


def test_sigkill_mid_fit_then_rerun_resumes_to_the_same_bytes(tmp_path, dataset, reference):
    config = write_config(tmp_path, dataset, "killed")
    kill_at_line(tmp_path, "iteration 5:", "fit", config)  # the command and its LocalCluster, mid-iteration
    assert (tmp_path / "killed.checkpoint.npz").exists() and not (tmp_path / "killed").exists()

    started = time.perf_counter()
    run = gmm(tmp_path, "fit", config)
    resumed_seconds = time.perf_counter() - started
    assert run.returncode == 0, run.stderr
    resumed_at = int(run.stderr.split("resuming from iteration ")[1].split()[0])
    assert 5 <= resumed_at < 14
    assert f"iteration {resumed_at + 1}:" in run.stderr and f"iteration {resumed_at}:" not in run.stderr
    assert (tmp_path / "killed" / "model.npz").read_bytes() == reference
    assert not (tmp_path / "killed.checkpoint.npz").exists()
    print(f"resumed at iteration {resumed_at}; the rest took {resumed_seconds:.1f} s")

    again = gmm(tmp_path, "fit", config)
    assert again.returncode == 0 and "nothing to do" in again.stderr
    forced = gmm(tmp_path, "fit", config, "--force")
    assert forced.returncode == 0 and "iteration 1:" in forced.stderr and "resuming" not in forced.stderr
    assert (tmp_path / "killed" / "model.npz").read_bytes() == reference


def test_checkpoint_of_another_config_is_not_used(tmp_path, dataset):
    config = write_config(tmp_path, dataset, "m")
    kill_at_line(tmp_path, "iteration 3:", "fit", config)
    run = gmm(tmp_path, "fit", config, "--set", "model.max_iter=5")
    assert run.returncode == 0, run.stderr
    assert "starting over: checkpoint not used: it was written by a different config" in run.stderr
    assert "iteration 1:" in run.stderr
    assert yaml.safe_load((tmp_path / "m" / "model.yaml").read_text())["n_iter"] == 5


def test_worker_killed_mid_fit_costs_time_not_the_result(tmp_path, dataset, reference):
    with dask_cluster(tmp_path, 2, nanny=False) as (address, workers):
        with started(tmp_path, "fit", write_config(tmp_path, dataset, "lossy"), "--scheduler", address) as proc:
            wait_for_line(proc, "iteration 4:")
            workers[0].send_signal(signal.SIGKILL)  # its persisted partitions are lost with it
            rest = proc.communicate(timeout=300)[1]
            assert proc.returncode == 0, rest
    assert (tmp_path / "lossy" / "model.npz").read_bytes() == reference


@pytest.mark.parametrize(
    "signum, to_group",
    [(signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["SIGTERM to the command (an orchestrator)", "SIGINT to its process group (Ctrl-C)"],
)
def test_a_termination_signal_stops_cleanly_and_a_rerun_resumes(tmp_path, dataset, reference, signum, to_group):
    config = write_config(tmp_path, dataset, "stopped")
    earlier = gmm(tmp_path, "fit", config, "--set", "model.max_iter=2")  # another fit's model at the output
    assert earlier.returncode == 0, earlier.stderr
    before = tree_digest(tmp_path / "stopped")
    with started(tmp_path, "fit", config) as proc:
        wait_for_line(proc, "iteration 4:")
        workers = psutil.Process(proc.pid).children(recursive=True)
        assert workers  # its LocalCluster's processes
        if to_group:  # a terminal's Ctrl-C reaches the command and its LocalCluster's workers
            os.killpg(proc.pid, signum)
        else:  # Kubernetes signals the container's first process only
            proc.send_signal(signum)
        rest = proc.communicate(timeout=120)[1]
    lines = rest.strip().splitlines()
    assert proc.returncode == 1 and lines[-1] == f"error: stopped by {signum.name} before finishing", rest
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest, rest
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, alive  # no worker left behind
    assert tree_digest(tmp_path / "stopped") == before  # the earlier model is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stopped", "stopped.checkpoint.npz", "stopped.yaml"]

    run = gmm(tmp_path, "fit", config)
    assert run.returncode == 0 and "resuming from iteration" in run.stderr, run.stderr
    assert (tmp_path / "stopped" / "model.npz").read_bytes() == reference
