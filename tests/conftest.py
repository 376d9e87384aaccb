"""Fixtures shared by the tests (helpers are in tests/helpers.py)."""

from __future__ import annotations

import logging
import os
import subprocess

import pytest


@pytest.fixture(autouse=True)
def _logging_left_as_found():
    """Every test leaves logging as it found it: a ``gmm`` command run in this process (click's runner) sets up the
    root handler, ``DASK_LOGGING`` and ``logging.captureWarnings``, which would otherwise reach later tests."""
    dask_logging = os.environ.get("DASK_LOGGING")
    loggers = [logging.getLogger(), *map(logging.getLogger, list(logging.root.manager.loggerDict))]
    kept = [(logger, logger.handlers[:], logger.propagate, logger.level) for logger in loggers]
    yield
    logging.captureWarnings(False)
    for logger, handlers, propagate, level in kept:
        logger.handlers, logger.propagate, logger.level = handlers, propagate, level
    if dask_logging is None:
        os.environ.pop("DASK_LOGGING", None)
    else:
        os.environ["DASK_LOGGING"] = dask_logging


@pytest.fixture
def in_process(monkeypatch):
    """``gmm`` through click's runner in this process, for mistakes found before any work: it must start no cluster.

    Returns ``run(cwd, *args) -> CompletedProcess`` (exit code, stdout, stderr).
    """
    from click.testing import CliRunner

    from pipeline.cli import main

    def run(cwd, *args) -> subprocess.CompletedProcess:
        monkeypatch.chdir(cwd)
        result = CliRunner().invoke(main, [str(a) for a in args], prog_name="gmm")
        assert "workers; dashboard:" not in result.stderr, result.stderr  # found before any work: no cluster
        return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)

    return run


@pytest.fixture(scope="session")
def client():
    """A real 2-worker, process-based LocalCluster for the whole session.

    Not the default client: a test opts in with ``client.as_current()`` or uses its address.
    """
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with Client(cluster, set_as_default=False) as c:
            yield c
