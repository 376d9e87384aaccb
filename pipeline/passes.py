"""The Dask layer: map a block function over partitions, reduce in a fixed tree, one compute.

A :class:`BlockSource` is a list of Dask tasks, each producing one block
``(X, sample_weight)`` of float64 rows, with the global row offset of each.
A pass sends its arguments to the cluster once per iteration, inside every
fold task when that is few bytes in all (the E-step constants), else as one key
the fold tasks share (a sample's row indices); it applies a pure NumPy block
function to every block and adds the results up.

The sum is a binary tree fixed by the number of blocks alone: node
``(level, index)`` is the sum of blocks ``[index * 2**level, (index + 1) *
2**level)``, always the ``combine`` of its two children (or its only child),
wherever and in whichever task it is computed.  So the same data and
partitioning give bit-identical results on any cluster, and blocks can be
grouped into tasks freely: a *fold* task applies the function to a contiguous
range of blocks and returns the tree nodes that cover its range, and *merge*
tasks join neighbouring ranges, ``split_every`` at a time.  Blocks held in
cluster memory are placed as one contiguous range per worker thread and folded
by one task each (one task per thread per pass, however many partitions);
blocks read from storage on each pass are one range each.
"""

from __future__ import annotations

import operator
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import dask
import numpy as np
from dask.delayed import Delayed

from pipeline import kernels
from pipeline.choices import NanPolicy
from pipeline.errors import BlockError, EnvironmentFault, InputError

SPLIT_EVERY = 8
# Arguments go inside every fold task while all the copies take at most this many bytes; beyond, one shared key.
# A shared key costs the pass one more round of scheduling (7 ms of a 90 ms iteration of shape A, measured), about
# the time the scheduler takes to pass on this many bytes.
EMBED_BYTES = 8 << 20
# A pass fails when the cluster has had no worker for this long (cluster.worker_timeout sets it for a job).
WORKER_TIMEOUT = 60.0


def add_tuples(a: tuple, b: tuple) -> tuple:
    """Element-wise ``+`` of two tuples (statistics of several models at once)."""
    return tuple(map(operator.add, a, b))


def _join(combine, left, right):
    if isinstance(left, BlockError):
        return left
    return right if isinstance(right, BlockError) else combine(left, right)


def _merge(combine, n_blocks: int, *node_lists: list) -> list:
    """Join the nodes ``(level, index, value)`` of neighbouring ranges, in order, into their tree's nodes."""
    stack: list = []
    for node in (node for nodes in node_lists for node in nodes):
        stack.append(node)
        while True:
            level, index, value = stack[-1]
            if index == 0 and 1 << level >= n_blocks:  # the root
                break
            if index % 2 == 0 and (index + 1) << level >= n_blocks:  # no right sibling: the parent is this node
                stack[-1] = (level + 1, index // 2, value)
            elif index % 2 == 1 and len(stack) > 1 and stack[-2][:2] == (level, index - 1):
                stack[-2:] = [(level + 1, index // 2, _join(combine, stack[-2][2], value))]
            else:
                break
    return stack


class _Literal:
    """Arguments carried as they are inside a task: Dask does not look into (or rebuild) what it holds."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def _fold(fn, combine, n_blocks: int, first: int, row_offsets: list[int], args: _Literal, *blocks) -> list:
    """Tree nodes covering blocks ``[first, first + len(blocks))``: ``fn`` on each block, joined in order."""
    leaves = []
    for i, (block, row_offset) in enumerate(zip(blocks, row_offsets)):
        if isinstance(block, BlockError):
            value = block
        else:
            X, sample_weight = block
            value = fn(X, sample_weight, row_offset, *args.value)
        leaves.append((0, first + i, value))
    return _merge(combine, n_blocks, leaves)


@dataclass
class BlockSource:
    """Partitioned rows as Dask tasks.

    Attributes
    ----------
    blocks : list of Delayed
        Each computes to ``(X, sample_weight)``: X of shape (n_i, n_features)
        float64 in Fortran order (the kernels' fast layout), sample_weight of shape (n_i,) or None.
    n_rows : list of int
        Rows of each block (before any row dropped at read time).
    n_features : int
    ranges : list of (int, int), optional
        Contiguous ranges of blocks folded by one task each; one range per block if not given.
    worker_timeout : float
        Seconds a pass waits while the cluster has no worker before it fails.
    """

    blocks: list[Delayed]
    n_rows: list[int]
    n_features: int
    ranges: list[tuple[int, int]] | None = None
    worker_timeout: float = WORKER_TIMEOUT
    # The last pass's result on a distributed cluster, released only once the next pass is sent (see _compute).
    _held: list = field(default_factory=list, init=False, repr=False, compare=False)

    @property
    def row_offsets(self) -> list[int]:
        return list(np.cumsum([0] + self.n_rows[:-1]).tolist())

    def persist(self) -> BlockSource:
        """Hold the blocks in cluster memory (recomputed from their source if lost).

        On a distributed cluster each worker thread gets a contiguous range
        of blocks with about equal rows, folded by one task per pass.
        """
        client = _current_client()
        if client is None:
            return replace(self, blocks=list(dask.persist(*self.blocks)))
        workers = client.scheduler_info(n_workers=-1)["workers"]
        slots = [address for address in sorted(workers) for _ in range(workers[address]["nthreads"])]
        ranges = balanced_ranges(self.n_rows, len(slots))
        blocks = []
        for (start, stop), worker in zip(ranges, slots):
            # A preference, not a rule: if the worker is lost, its blocks are recomputed elsewhere.
            blocks += client.persist(self.blocks[start:stop], workers=[worker], allow_other_workers=True)
        return replace(self, blocks=blocks, ranges=ranges)

    def run(
        self,
        fn: Callable[..., Any],
        *args: Any,
        combine: Callable[[Any, Any], Any] = operator.add,
        split_every: int = SPLIT_EVERY,
    ) -> Any:
        """Compute the tree sum (by ``combine``) of ``fn(X, sample_weight, row_offset, *args)`` over blocks.

        One compute; ``args`` go inside every fold task, or as one shared key
        when those copies would exceed :data:`EMBED_BYTES`; the result does
        not depend on how blocks are grouped into tasks, nor on ``split_every``.
        """
        n_blocks, offsets = len(self.blocks), self.row_offsets
        ranges = self.ranges or [(i, i + 1) for i in range(n_blocks)]
        shared = _Literal(tuple(args))
        if len(ranges) * len(pickle.dumps(shared.value, protocol=5)) > EMBED_BYTES:
            shared = dask.delayed(shared, pure=False)
        level = [
            dask.delayed(_fold, pure=False)(
                fn, combine, n_blocks, start, offsets[start:stop], shared, *self.blocks[start:stop]
            )
            for start, stop in ranges
        ]
        while len(level) > split_every:
            level = [
                dask.delayed(_merge, pure=False)(combine, n_blocks, *level[i : i + split_every])
                for i in range(0, len(level), split_every)
            ]
        # The last join is made here: one round trip less than a merge task (measured: ~5 of 22 ms a pass).
        result = _merge(combine, n_blocks, *self._compute(level))[0][2]
        if isinstance(result, BlockError):
            raise InputError(result.message)
        return result

    def _compute(self, tasks: list[Delayed]) -> list[Any]:
        """What ``tasks`` compute to (the tree nodes of their ranges), in order.

        On a distributed cluster the previous pass's results are released only
        after this pass's graph is sent: the client sends its messages at
        most every 10 ms, so a release sent just before would hold the graph
        back by up to 10 ms (measured: 8-10 ms of a 90 ms iteration).
        """
        client = _current_client()
        if client is None:
            return list(dask.compute(*tasks))
        futures = client.compute(tasks)
        self._held[:] = futures
        return await_results(client, futures, self.worker_timeout)


def await_results(client, futures: list, worker_timeout: float) -> list:
    """``client.gather(futures)``, failing (EnvironmentFault) once the cluster has had no worker for
    ``worker_timeout`` s.

    It waits on the futures' done-callbacks, not by polling ``future.result(timeout=...)``: under load that poll
    can fail inside ``distributed`` with an ``UnboundLocalError`` (dask/distributed#8514).  The results are then
    fetched in one gather (one round trip to the workers, not one per future).
    """
    import threading
    from concurrent.futures import CancelledError

    if not futures:
        return []
    done = threading.Event()
    lock, pending = threading.Lock(), [len(futures)]

    def one_done(_) -> None:
        with lock:
            pending[0] -= 1
            if pending[0] == 0:
                done.set()

    for future in futures:
        future.add_done_callback(one_done)
    without_workers = None
    while not done.wait(1.0):
        try:
            n_workers = len(client.nthreads())
        except OSError as exc:
            raise EnvironmentFault(
                f"lost the connection to the Dask scheduler at {client.scheduler.address}: {exc}"
            ) from None
        if n_workers:
            without_workers = None
            continue
        without_workers = without_workers or time.monotonic()
        if time.monotonic() - without_workers > worker_timeout:
            raise EnvironmentFault(
                f"the Dask scheduler at {client.scheduler.address} has had no workers for "
                f"{worker_timeout:g} s (cluster.worker_timeout); start workers or check them"
            )
    try:
        return list(client.gather(futures))
    except CancelledError:
        raise EnvironmentFault(
            f"the computation on the Dask scheduler at {client.scheduler.address} was "
            "cancelled (the scheduler restarted, or the connection to it was lost)"
        ) from None


def balanced_ranges(n_rows: list[int], n_ranges: int) -> list[tuple[int, int]]:
    """Cut blocks into at most ``n_ranges`` contiguous, non-empty ranges of about equal rows."""
    n_ranges = max(1, min(n_ranges, len(n_rows)))
    ends = np.cumsum(n_rows)
    total = ends[-1] if len(ends) else 0
    cuts = [0]
    for r in range(1, n_ranges):
        cut = int(np.searchsorted(ends, total * r / n_ranges, side="left")) + 1
        cuts.append(min(max(cut, cuts[-1] + 1), len(n_rows) - (n_ranges - r)))
    cuts.append(len(n_rows))
    return list(zip(cuts[:-1], cuts[1:]))


def _current_client():
    """The distributed Client that ``dask.compute`` would use, or None (local schedulers)."""
    try:
        from distributed import get_client

        client = get_client()
    except (ImportError, ValueError):
        return None
    return client if dask.base.get_scheduler() == client.get else None


def blocks_from_arrays(
    X, sample_weight=None, rows_per_block: int | None = None, nan_policy: str = "error"
) -> BlockSource:
    """A BlockSource over an in-memory or Dask array.

    Parameters
    ----------
    X : ndarray or dask.array.Array of shape (n_samples, n_features)
    sample_weight : array-like of shape (n_samples,) or None
    rows_per_block : int, optional
        Re-chunk rows to this size (NumPy input defaults to blocks of about 64 MiB).
    nan_policy : {"error", "drop", "marginalize"}
        The rows the policy leaves out for their NaN (:meth:`~pipeline.choices.NanPolicy.missing`) are dropped
        as each block is made; infinite values are left for the scan to refuse; with ``error`` the caller has
        checked there are no NaN (a Dask array's are found by the scan).
    """
    import dask.array as da

    X = da.asarray(X)
    if rows_per_block is None and X.chunks[0] == (X.shape[0],):
        rows_per_block = max(1, (64 << 20) // (8 * max(X.shape[1], 1)))
    if rows_per_block is not None:
        X = X.rechunk({0: rows_per_block})
    X = X.rechunk({1: -1}).astype(np.float64)
    x_blocks = X.to_delayed().ravel().tolist()
    if sample_weight is None:
        w_blocks = [None] * len(x_blocks)
    else:
        w = da.asarray(sample_weight).astype(np.float64).rechunk((X.chunks[0],))
        w_blocks = w.to_delayed().ravel().tolist()
    policy = NanPolicy(nan_policy)
    blocks = [dask.delayed(_pair, pure=True)(x, w, policy) for x, w in zip(x_blocks, w_blocks)]
    return BlockSource(blocks, list(X.chunks[0]), X.shape[1])


def _pair(x, w, nan_policy: NanPolicy):
    missing = nan_policy.missing(x)
    if missing.any():
        x, w = x[~missing], (None if w is None else w[~missing])
    return np.asfortranarray(x), w


def _summary_block(X, sample_weight, row_offset):
    return kernels.block_summary(X, sample_weight)


def scan(source: BlockSource) -> tuple[BlockSource, kernels.Summary]:
    """One pass that counts the rows of every block (after any dropped at read) and summarises them.

    Returns the source with exact row counts (so global row offsets are right) and the summary.
    """
    summary = source.run(_summary_block)
    return replace(source, n_rows=list(summary.n_rows)), summary
