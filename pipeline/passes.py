"""The Dask layer: map a block function over partitions, tree-reduce, one compute.

A :class:`BlockSource` is a list of Dask tasks, each producing one block
``(X, sample_weight)`` of float64 rows, with the global row offset of each.
A pass sends its arguments to the cluster once (one key each), applies a pure
NumPy block function to every block, and adds the results up in a tree whose
shape depends only on the number of partitions (``split_every``), never on
scheduling: the same data and partitioning give bit-identical sums on any
cluster.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from functools import reduce
from typing import Any, Callable

import dask
import numpy as np
from dask.delayed import Delayed

from pipeline import data, kernels
from pipeline.errors import InputError

SPLIT_EVERY = 8


@dataclass(frozen=True)
class BlockError:
    """A partition that could not be used (unreadable, bad values): carried to the client as a value.

    Raising on a worker would make Dask log a traceback for a user's mistake;
    instead the reduction passes the first error (in partition order) along
    and :meth:`BlockSource.run` raises it on the client.
    """

    message: str


def _combine(combine, *parts):
    errors = [p for p in parts if isinstance(p, BlockError)]
    return errors[0] if errors else reduce(combine, parts)


def _apply(fn, block, row_offset, args):
    if isinstance(block, BlockError):
        return block
    X, sample_weight = block
    return fn(X, sample_weight, row_offset, *args)


def add_tuples(a: tuple, b: tuple) -> tuple:
    """Element-wise ``+`` of two tuples (statistics of several models at once)."""
    return tuple(map(operator.add, a, b))


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
    """

    blocks: list[Delayed]
    n_rows: list[int]
    n_features: int

    @property
    def row_offsets(self) -> list[int]:
        return list(np.cumsum([0] + self.n_rows[:-1]).tolist())

    def persist(self) -> BlockSource:
        """Hold the blocks in cluster memory (recomputed from their source if lost)."""
        return BlockSource(list(dask.persist(*self.blocks)), self.n_rows, self.n_features)

    def run(
        self,
        fn: Callable[..., Any],
        *args: Any,
        combine: Callable[[Any, Any], Any] = operator.add,
        split_every: int = SPLIT_EVERY,
    ) -> Any:
        """Compute ``combine``-reduction of ``fn(X, sample_weight, row_offset, *args)`` over blocks.

        One compute; ``args`` are sent once each; the reduction tree is fixed
        by the block order and ``split_every``.
        """
        shared = dask.delayed(tuple(args), pure=True, traverse=False)
        level = [
            dask.delayed(_apply, pure=True)(fn, block, offset, shared)
            for block, offset in zip(self.blocks, self.row_offsets)
        ]
        while len(level) > 1:
            level = [
                dask.delayed(_combine, pure=True)(combine, *level[i : i + split_every])
                for i in range(0, len(level), split_every)
            ]
        (result,) = dask.compute(level[0])
        if isinstance(result, BlockError):
            raise InputError(result.message)
        return result


def blocks_from_arrays(X, sample_weight=None, rows_per_block: int | None = None) -> BlockSource:
    """A BlockSource over an in-memory or Dask array.

    Parameters
    ----------
    X : ndarray or dask.array.Array of shape (n_samples, n_features)
    sample_weight : array-like of shape (n_samples,) or None
    rows_per_block : int, optional
        Re-chunk rows to this size (NumPy input defaults to blocks of about 64 MiB).
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
    blocks = [dask.delayed(_pair, pure=True)(x, w) for x, w in zip(x_blocks, w_blocks)]
    return BlockSource(blocks, list(X.chunks[0]), X.shape[1])


def _pair(x, w):
    return np.asfortranarray(x), w



def _summary_block(X, sample_weight, row_offset):
    return kernels.block_summary(X, sample_weight)


def scan(source: BlockSource) -> tuple[BlockSource, kernels.Summary]:
    """One pass that counts the rows of every block (after any dropped at read) and summarises them.

    Returns the source with exact row counts (so global row offsets are right) and the summary.
    """
    summary = source.run(_summary_block)
    return BlockSource(source.blocks, list(summary.n_rows), source.n_features), summary


def _read_partition(*args) -> tuple | BlockError:
    try:
        return data.read_partition(*args)
    except InputError as exc:
        return BlockError(str(exc))


def blocks_from_parquet(dataset: data.ParquetDataset) -> BlockSource:
    """A BlockSource that reads each partition of ``dataset`` with pyarrow on the workers."""
    blocks = [
        dask.delayed(_read_partition, pure=True)(
            dataset.fs,
            part,
            dataset.feature_names,
            dataset.weight_column,
            dataset.nan_policy,
            dask_key_name=f"read-parquet-{dataset.fingerprint[:16]}-{i}",
        )
        for i, part in enumerate(dataset.partitions)
    ]
    return BlockSource(blocks, [p.n_rows for p in dataset.partitions], len(dataset.feature_names))
