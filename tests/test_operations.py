"""Operating promises against real processes: remote clusters, kills, resume, worker loss.

A fit's ``model.npz`` is byte-reproducible (fixed zip timestamps), so
"bit-identical arrays" is checked as equal file bytes.
"""

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from pipeline.synthetic import generate

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
GMM = str(BIN / "gmm")
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


def gmm(cwd, *args, **kw):
    return subprocess.run([GMM, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    """The uninterrupted fit on a 2-worker LocalCluster: model.npz bytes."""
    work = tmp_path_factory.mktemp("reference")
    run = gmm(work, "fit", write_config(work, dataset, "ref"))
    assert run.returncode == 0, run.stderr
    return (work / "ref" / "model.npz").read_bytes()


@contextmanager
def remote_cluster(tmp_path: Path, n_workers: int, nanny: bool = True):
    """A real ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1 (random free ports)."""
    scheduler_file = tmp_path / "scheduler.json"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    procs = [
        subprocess.Popen(
            [
                str(BIN / "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--dashboard-address",
                "127.0.0.1:0",
                "--scheduler-file",
                str(scheduler_file),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
    ]
    try:
        deadline = time.time() + 60
        while not scheduler_file.exists() and time.time() < deadline:
            time.sleep(0.1)
        workers = []
        for _ in range(n_workers):
            args = [
                str(BIN / "dask"),
                "worker",
                "--scheduler-file",
                str(scheduler_file),
                "--host",
                "127.0.0.1",
                "--nthreads",
                "1",
                "--memory-limit",
                "2GB",
                "--dashboard-address",
                "127.0.0.1:0",
            ]
            if not nanny:  # without a nanny, one BLAS thread is ours to set (as README says)
                args.append("--no-nanny")
            workers.append(
                subprocess.Popen(
                    args,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env={**env, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
                )
            )
        procs += workers
        import json

        from distributed import Client

        address = json.loads(scheduler_file.read_text())["address"]
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(n_workers, timeout=60)
        yield address, workers
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def test_remote_cluster_gives_the_local_clusters_bytes(tmp_path, dataset, reference):
    with remote_cluster(tmp_path, n_workers=2) as (address, _):
        run = gmm(tmp_path, "fit", write_config(tmp_path, dataset, "remote"), "--scheduler", address)
        assert run.returncode == 0, run.stderr
        assert f"scheduler {address}" in run.stderr
    assert (tmp_path / "remote" / "model.npz").read_bytes() == reference


def test_scheduler_from_the_environment_and_one_worker(tmp_path, dataset, reference):
    with remote_cluster(tmp_path, n_workers=1) as (address, _):
        env = {**os.environ, "DASK_SCHEDULER_ADDRESS": address}
        run = gmm(tmp_path, "fit", write_config(tmp_path, dataset, "one"), env=env)
        assert run.returncode == 0, run.stderr
        assert "with 1 workers" in run.stderr
    assert (tmp_path / "one" / "model.npz").read_bytes() == reference


@contextmanager
def started_fit(cwd, config, *extra):
    """``gmm fit`` running in its own process group, which is killed on the way out whatever happens."""
    proc = subprocess.Popen(
        [GMM, "fit", str(config), *extra], cwd=cwd, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()


def wait_for_line(proc, prefix, timeout=300):
    deadline = time.time() + timeout
    seen = []
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith(prefix):
            return seen
    raise AssertionError(f"no line starting {prefix!r} in:\n{''.join(seen)}")


def test_sigkill_mid_fit_then_rerun_resumes_to_the_same_bytes(tmp_path, dataset, reference):
    config = write_config(tmp_path, dataset, "killed")
    with started_fit(tmp_path, config) as proc:
        wait_for_line(proc, "iteration 5:")
        os.killpg(proc.pid, signal.SIGKILL)  # the command and its LocalCluster, mid-iteration
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
    with started_fit(tmp_path, config) as proc:
        wait_for_line(proc, "iteration 3:")
        os.killpg(proc.pid, signal.SIGKILL)
    run = gmm(tmp_path, "fit", config, "--set", "model.max_iter=5")
    assert run.returncode == 0, run.stderr
    assert "starting over: checkpoint not used: it was written by a different config" in run.stderr
    assert "iteration 1:" in run.stderr
    assert yaml.safe_load((tmp_path / "m" / "model.yaml").read_text())["n_iter"] == 5


def test_worker_killed_mid_fit_costs_time_not_the_result(tmp_path, dataset, reference):
    with remote_cluster(tmp_path, n_workers=2, nanny=False) as (address, workers):
        with started_fit(tmp_path, write_config(tmp_path, dataset, "lossy"), "--scheduler", address) as proc:
            wait_for_line(proc, "iteration 4:")
            workers[0].send_signal(signal.SIGKILL)  # its persisted partitions are lost with it
            rest = proc.communicate(timeout=300)[1]
            assert proc.returncode == 0, rest
    assert (tmp_path / "lossy" / "model.npz").read_bytes() == reference
