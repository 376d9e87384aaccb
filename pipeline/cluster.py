"""Where the job runs: a Client to an existing scheduler, or a LocalCluster; the persist policy."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Callable, Iterator

from distributed import Client, LocalCluster

from pipeline.errors import InputError

# persist: auto holds the data in memory when it takes at most this share of the workers' memory.
AUTO_PERSIST_FRACTION = 0.5


def resolve_address(cli_address: str | None, config_address: str | None) -> str | None:
    """``--scheduler`` wins over ``DASK_SCHEDULER_ADDRESS``, which wins over ``cluster.address``."""
    return cli_address or os.environ.get("DASK_SCHEDULER_ADDRESS") or config_address


@contextmanager
def connect(
    address: str | None,
    n_workers: int = 2,
    threads_per_worker: int = 1,
    memory_limit: str | int = "auto",
    on_connect: Callable[[Client], None] | None = None,
) -> Iterator[Client]:
    """A Client on ``address``, or on a LocalCluster started (and stopped) here."""
    if address:
        try:
            client = Client(address, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise InputError(f"cannot reach the Dask scheduler at {address!r}: {exc}") from None
        with client:
            if on_connect:
                on_connect(client)
            yield client
        return
    with LocalCluster(
        n_workers=n_workers, threads_per_worker=threads_per_worker, memory_limit=memory_limit, processes=True
    ) as cluster, Client(cluster) as client:
        if on_connect:
            on_connect(client)
        yield client


def should_persist(policy: str, n_bytes: int, client: Client) -> bool:
    """Decide whether to hold the data in cluster memory (``auto``: when it fits comfortably)."""
    if policy != "auto":
        return policy == "memory"
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    limits = [w.get("memory_limit") or 0 for w in workers]
    total = sum(limits)
    return total == 0 or n_bytes <= AUTO_PERSIST_FRACTION * total
