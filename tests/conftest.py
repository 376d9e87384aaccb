"""Fixtures shared by the tests (helpers are in tests/helpers.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def client():
    """A real 2-worker, process-based LocalCluster for the whole session.

    Not the default client: a test opts in with ``client.as_current()`` or uses its address.
    """
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with Client(cluster, set_as_default=False) as c:
            yield c
