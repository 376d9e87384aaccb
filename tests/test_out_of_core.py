"""With ``persist: none`` a dataset several times the cluster's memory fits, partition by partition."""

import os

import dask
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from distributed import Client, LocalCluster

from pipeline import job
from pipeline.config import validate

pytestmark = pytest.mark.slow
# A worker holds ~175 MiB before any data (Python, Dask, NumPy, SciPy, pyarrow) and ~50 MiB per 20 MB partition.
WORKER_LIMIT = 400 * 2**20
N_FILES, ROWS_PER_FILE, N_FEATURES = 120, 312_500, 8  # 120 x 20 MB = 2.4 GB of float64: 3x the cluster
DISTINCT_FILES = 6


@pytest.fixture(scope="module")
def big_dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("ooc") / "data"
    path.mkdir()
    rng = np.random.default_rng(7)
    centres = rng.uniform(-5, 5, size=(2, N_FEATURES))
    for i in range(N_FILES):
        name = path / f"part-{i:03d}.parquet"
        if i >= DISTINCT_FILES:  # hard links keep the set-up quick and the disk small; each file is read all the same
            os.link(path / f"part-{i % DISTINCT_FILES:03d}.parquet", name)
            continue
        labels = rng.integers(0, 2, size=ROWS_PER_FILE)
        X = centres[labels] + rng.standard_normal((ROWS_PER_FILE, N_FEATURES))
        pq.write_table(pa.table({f"x{j}": X[:, j] for j in range(N_FEATURES)}), name, compression="none")
    return path


def peak_rss():
    """This process's high-water resident memory (VmHWM; unlike ru_maxrss it does not survive exec)."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def config(data, output, persist):
    return validate(
        {
            "data": {"path": str(data)},
            "model": {"n_components": 2, "covariance_type": "diag", "max_iter": 1, "tol": 0.0},
            "cluster": {"persist": persist},
            "output": {"path": str(output)},
        },
        "test",
    )


def test_dataset_three_times_the_cluster_memory_fits_without_persisting(tmp_path, big_dataset):
    events = []
    # A paused worker (at 80% of its limit) would wait forever; without pausing, an overrun restarts the
    # worker, which the test reports.
    with dask.config.set({"distributed.worker.memory.pause": False}):
        small = LocalCluster(n_workers=2, threads_per_worker=1, memory_limit=WORKER_LIMIT, dashboard_address=":0")
    with small, Client(small) as client:
        before = set(client.scheduler_info()["workers"])
        job.fit(config(big_dataset, tmp_path / "ooc", "auto"), scheduler=small.scheduler_address, emit=events.append)
        after = set(client.scheduler_info()["workers"])
        peaks = client.run(peak_rss)
    assert before == after, "a worker was restarted"
    assert next(e for e in events if e["event"] == "data")["persisted"] is False  # auto chose not to
    assert max(peaks.values()) < WORKER_LIMIT, peaks
    print(f"peak worker RSS {max(peaks.values()) / 2**20:.0f} MiB with a {WORKER_LIMIT / 2**20:.0f} MiB limit")

    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="4GiB", dashboard_address=":0") as roomy:
        job.fit(config(big_dataset, tmp_path / "persisted", "memory"), scheduler=roomy.scheduler_address)
    assert (tmp_path / "ooc" / "model.npz").read_bytes() == (tmp_path / "persisted" / "model.npz").read_bytes()
