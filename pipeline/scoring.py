"""Scoring one Parquet file with a fitted mixture, row group by row group, into one output file.

Runs on a Dask worker: memory is bounded by a row group.  Problems with the
input come back as :class:`~pipeline.passes.BlockError` values, not raised.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import kernels
from pipeline.errors import InputError
from pipeline.passes import BlockError

OUTPUT_COLUMNS = ("label", "log_likelihood")


def output_schema(input_schema: pa.Schema, n_components: int, keep: list[str], probabilities: bool) -> pa.Schema:
    fields = [pa.field("label", pa.int32()), pa.field("log_likelihood", pa.float64())]
    if probabilities:
        fields += [pa.field(f"prob_{k}", pa.float64()) for k in range(n_components)]
    return pa.schema(fields + [input_schema.field(name) for name in keep])


def _score_table(table: pa.Table, path: str, feature_names, keep, params, probabilities, schema) -> pa.Table:
    X = np.empty((len(feature_names), table.num_rows))
    for j, name in enumerate(feature_names):
        X[j] = table.column(name).to_numpy(zero_copy_only=False)
    X = X.T
    bad = int((~np.isfinite(X).all(axis=1)).sum())
    if bad:
        raise InputError(f"{path}: {bad} rows have NaN or infinite values in the model's features; "
                         "every row must be scored, so clean them first")
    log_prob_norm, log_resp = kernels.estimate_log_resp(X, params)
    columns = [pa.array(log_resp.argmax(axis=1).astype(np.int32)), pa.array(log_prob_norm)]
    if probabilities:
        columns += [pa.array(np.exp(log_resp[:, k])) for k in range(params.n_components)]
    columns += [table.column(name) for name in keep]
    return pa.Table.from_arrays(columns, schema=schema)


def score_file(fs, path: str, out_path: str, feature_names: list[str], keep: list[str],
               params: kernels.Params, probabilities: bool) -> int | BlockError:
    """Write ``label``, ``log_likelihood`` (and ``prob_k``) and the kept columns of every row of ``path``.

    Returns the number of rows written, or a BlockError naming the file.
    """
    try:
        with fs.open(path, "rb") as f:
            pf = pq.ParquetFile(f)
            schema = output_schema(pf.schema_arrow, params.n_components, keep, probabilities)
            columns = list(dict.fromkeys(feature_names + keep))
            n_rows = 0
            with pq.ParquetWriter(out_path, schema) as writer:
                for group in range(pf.num_row_groups):
                    table = pf.read_row_group(group, columns=columns)
                    writer.write_table(_score_table(table, path, feature_names, keep, params, probabilities, schema))
                    n_rows += table.num_rows
            return n_rows
    except InputError as exc:
        return BlockError(str(exc))
    except (pa.ArrowException, OSError) as exc:
        return BlockError(f"{path}: cannot read Parquet data ({exc})")
