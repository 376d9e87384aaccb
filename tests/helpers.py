"""Shared test helpers: seeded data, Parquet writing, the one ``gmm`` runner, sklearn's starts, tree hashes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
ROOT = Path(__file__).resolve().parents[1]
GMM = str(Path(sys.executable).parent / "gmm")


def json_fixtures(folder: str) -> dict[str, dict]:
    """The JSON fixtures in tests/data/``folder``, by file name without ``.json``."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((ROOT / "tests" / "data" / folder).glob("*.json"))}


def fixture_fits(fixtures: dict[str, dict], keep) -> list:
    """pytest params ``(name, i)`` of every fit ``keep(fit)`` holds true for, named ``name-MODEL-GK``."""
    return [
        pytest.param(name, i, id=f"{name}-{fit['model']}-G{fit['G']}")
        for name, doc in fixtures.items()
        for i, fit in enumerate(doc["fits"])
        if keep(fit)
    ]


def make_blobs(seed: int, n_per: int = 300, centres=((-4, 0, 1), (0, 3, -2), (5, -1, 0))) -> np.ndarray:
    """Rows from well-separated anisotropic blobs (seeded, no global RNG)."""
    rng = np.random.default_rng(seed)
    centres = np.asarray(centres, dtype=float)
    d = centres.shape[1]
    parts = []
    for c in centres:
        a = rng.normal(size=(d, d)) * 0.6 + np.eye(d)
        parts.append(c + rng.normal(size=(n_per, d)) @ a)
    X = np.concatenate(parts)
    return X[rng.permutation(X.shape[0])]


def write_parquet(directory, X: np.ndarray, n_files: int, names=None, extra: dict | None = None, **options):
    """Write rows as ``n_files`` Parquet files (in order); returns the paths. ``options`` go to pq.write_table."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = names or [f"x{j}" for j in range(X.shape[1])]
    bounds = np.linspace(0, X.shape[0], n_files + 1).astype(int)
    paths = []
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        columns = {name: X[lo:hi, j] for j, name in enumerate(names)}
        for key, values in (extra or {}).items():
            columns[key] = values[lo:hi]
        path = directory / f"part-{i:03d}.parquet"
        pq.write_table(pa.table(columns), path, **options)
        paths.append(path)
    return paths


def write_config(path: Path, **sections) -> Path:
    path.write_text(yaml.safe_dump(sections))
    return path


def gmm(cwd, *args, env=None, timeout=300) -> subprocess.CompletedProcess:
    """The installed ``gmm`` command, run in ``cwd``."""
    return subprocess.run([GMM, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def error_line(run: subprocess.CompletedProcess) -> str:
    """The one ``error:`` line of a failed run (the last of stderr); checks there is one and no traceback."""
    lines = run.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    return errors[0]


def assert_user_error(run: subprocess.CompletedProcess, pattern: str, cwd=None, output="out", code=2) -> None:
    """Exit ``code`` (2: a user mistake); one stderr line starting 'error:' (the last) matching ``pattern``; no
    traceback; nothing written at ``cwd / output``.
    """
    assert run.returncode == code, run.stderr
    line = error_line(run)
    assert re.search(pattern, line), line
    if cwd is not None:
        assert not (Path(cwd) / output).exists(), f"{output} was written"


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (and the set of directories): equal before and after = nothing changed."""
    root = Path(root)
    digest = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            digest[os.path.relpath(os.path.join(dirpath, name), root) + "/"] = "dir"
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                digest[os.path.relpath(path, root)] = "link to " + os.readlink(path)
                continue
            with open(path, "rb") as f:
                digest[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return digest


def sklearn_start(X, n_components, covariance_type, seed=0):
    """Explicit initial parameters from one sklearn k-means start (weights, means, precisions)."""
    from sklearn.mixture import GaussianMixture as SkGMM

    sk = SkGMM(n_components, covariance_type=covariance_type, max_iter=0, random_state=seed).fit(X)
    return sk.weights_, sk.means_, sk.precisions_


def sklearn_start_params(X, n_components, covariance_type):
    """:func:`sklearn_start` as our Params (covariances and precision factors derived from the precisions)."""
    from pipeline import kernels

    w, m, p = sklearn_start(X, n_components, covariance_type)
    prec_chol = kernels.precision_cholesky_from_precisions(p, covariance_type)
    cov = kernels.covariances_from_precision_cholesky(prec_chol, covariance_type)
    return kernels.Params(w, m, cov, prec_chol, covariance_type)


def random_params(covariance_type, k=3, d=3, seed=0):
    """Random, valid mixture parameters of a covariance type (means spread by 3, covariances well-conditioned)."""
    from pipeline import kernels

    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(k))
    means = rng.normal(scale=3, size=(k, d))
    if covariance_type == "full":
        a = rng.normal(size=(k, d, d))
        cov = a @ np.swapaxes(a, 1, 2) + 0.5 * np.eye(d)
    elif covariance_type == "tied":
        a = rng.normal(size=(d, d))
        cov = a @ a.T + 0.5 * np.eye(d)
    elif covariance_type == "diag":
        cov = rng.uniform(0.5, 2.0, size=(k, d))
    else:
        cov = rng.uniform(0.5, 2.0, size=k)
    return kernels.make_params(weights, means, cov, covariance_type)


def whitened_errors(got_means, got_covariances, want_means, want_covariances, prec_chol, covariance_type):
    """Largest differences of means and covariances in the reference's own units: ``U^T d`` and ``U^T D U``.

    ``prec_chol`` is the reference's ``precisions_cholesky_`` (U).  The first is in standard deviations, the
    second relative to the covariance.
    """
    from pipeline.kernels.estep import _whitened

    mean_error = np.abs(_whitened(got_means - want_means, prec_chol, covariance_type)).max()
    delta = got_covariances - want_covariances
    if covariance_type == "full":
        cov_error = np.abs(np.swapaxes(prec_chol, 1, 2) @ delta @ prec_chol).max()
    elif covariance_type == "tied":
        cov_error = np.abs(prec_chol.T @ delta @ prec_chol).max()
    else:
        cov_error = np.abs(delta * prec_chol**2).max()
    return mean_error, cov_error


def em_runs(params_list, reg_covar=1e-6, prior=None, missing=False):
    """Fresh EM runs (maximum likelihood, or MAP under ``prior``; ``missing``: rows with NaN marginalised)."""
    from pipeline import em
    from pipeline.kernels.algorithms import EMStep

    return [em.EMRun(EMStep(p.covariance_type, reg_covar, prior, missing), p) for p in params_list]


def in_type_shape(full, covariance_type):
    """Per-component (K, D, D) second moments as the covariance type keeps them, written out for the tests."""
    return {
        "full": full,
        "tied": full.sum(0),
        "diag": np.einsum("kdd->kd", full),
        "spherical": np.einsum("kdd->k", full),
    }[covariance_type]


def stats_of_resp(X, resp, shift, covariance_type, sample_weight=None):
    """Our Stats of rows under given responsibilities, about ``shift``, by the textbook sums."""
    a = resp if sample_weight is None else resp * sample_weight[:, None]
    diff = X[None, :, :] - shift[:, None, :]
    s2 = in_type_shape(np.einsum("nk,knd,kne->kde", a, diff, diff), covariance_type)
    weight_sum = float(X.shape[0] if sample_weight is None else sample_weight.sum())
    from pipeline.kernels.stats import Stats

    return Stats(X.shape[0], weight_sum, 0.0, a.sum(0), np.einsum("nk,knd->kd", a, diff), s2)


@contextmanager
def started(cwd, *args, env=None):
    """``gmm *args`` running in its own process group, which is killed on the way out whatever happens."""
    proc = subprocess.Popen(
        [GMM, *map(str, args)], cwd=cwd, stderr=subprocess.PIPE, text=True, start_new_session=True, env=env
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()


def wait_for_line(proc, prefix, timeout=300) -> list[str]:
    """The stderr lines of ``proc`` up to the first that starts with ``prefix`` (AssertionError if none comes)."""
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


def kill_at_line(cwd, prefix, *args, env=None) -> None:
    """Run ``gmm *args`` and SIGKILL it (and its LocalCluster) once it prints a line starting with ``prefix``."""
    with started(cwd, *args, env=env) as proc:
        wait_for_line(proc, prefix)
        os.killpg(proc.pid, signal.SIGKILL)


@contextmanager
def dask_cluster(directory: Path, n_workers: int, *options: str, nanny: bool = True):
    """A real ``dask scheduler`` and ``n_workers`` ``dask worker`` processes on 127.0.0.1 (free ports).

    ``options`` go to the scheduler and every worker (e.g. TLS files).  Yields the address and the workers.
    """
    dask = str(Path(GMM).parent / "dask")
    scheduler_file = Path(directory) / "scheduler.json"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    protocol = ["--protocol", "tls"] if "--tls-cert" in options else []
    procs = [
        subprocess.Popen(
            [
                dask,
                "scheduler",
                *protocol,
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--dashboard-address",
                "127.0.0.1:0",
                "--scheduler-file",
                str(scheduler_file),
                *options,
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
        address = json.loads(scheduler_file.read_text())["address"]
        workers = []
        for _ in range(n_workers):
            args = [
                dask,
                "worker",
                address,
                "--host",
                "127.0.0.1",
                "--nthreads",
                "1",
                "--memory-limit",
                "2GB",
                "--dashboard-address",
                "127.0.0.1:0",
                *options,
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
        if n_workers and "--tls-cert" not in options:
            from distributed import Client

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
