"""Scoring Parquet data with a fitted mixture: one output file per input file, rows in input order.

:func:`score_file` runs on a Dask worker, row group by row group, so memory
is bounded by a row group; problems with the input come back as
:class:`~pipeline.errors.BlockError` values, not raised.  :func:`score` is the
job: it checks the output before a cluster starts, and the output directory
appears complete (with its :data:`~pipeline.outputs.SCORE_MARKER`) or not at all.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import cluster, data, kernels, outputs, storage
from pipeline.config import ClusterConfig
from pipeline.errors import BlockError, InputError
from pipeline.kernels.variational import scoring_log_weights
from pipeline.model import load_saved_model

LABEL_COLUMNS = ("label", "log_likelihood")
UNCERTAINTY_COLUMNS = ("uncertainty", "entropy")


def output_columns(n_components: int, probabilities: bool, uncertainty: bool) -> list[str]:
    """The columns ``gmm score`` writes before the kept ones."""
    return [
        *LABEL_COLUMNS,
        *([f"prob_{k}" for k in range(n_components)] if probabilities else []),
        *(UNCERTAINTY_COLUMNS if uncertainty else []),
    ]


def output_schema(
    input_schema: pa.Schema, n_components: int, keep: list[str], probabilities: bool, uncertainty: bool
) -> pa.Schema:
    names = output_columns(n_components, probabilities, uncertainty)
    fields = [pa.field(name, pa.int32() if name == "label" else pa.float64()) for name in names]
    return pa.schema(fields + [input_schema.field(name) for name in keep])


def _score_table(
    table: pa.Table, path: str, feature_names, keep, params, log_weights, probabilities, uncertainty, schema
) -> pa.Table:
    X = np.empty((len(feature_names), table.num_rows))
    for j, name in enumerate(feature_names):
        X[j] = table.column(name).to_numpy(zero_copy_only=False)
    X = X.T
    bad = int((~np.isfinite(X).all(axis=1)).sum())
    if bad:
        raise InputError(
            f"{path}: {bad} rows have NaN or infinite values in the model's features; "
            "every row must be scored, so clean them first"
        )
    log_prob_norm, log_resp = kernels.estimate_log_resp(X, params, log_weights)
    columns = [pa.array(log_resp.argmax(axis=1).astype(np.int32)), pa.array(log_prob_norm)]
    resp = np.exp(log_resp)
    if probabilities:
        columns += [pa.array(resp[:, k]) for k in range(params.n_components)]
    if uncertainty:
        columns += [pa.array(1.0 - resp.max(axis=1)), pa.array(-(resp * log_resp).sum(axis=1))]
    columns += [table.column(name) for name in keep]
    return pa.Table.from_arrays(columns, schema=schema)


def score_file(
    fs,
    path: str,
    out_path: str,
    feature_names: list[str],
    keep: list[str],
    params: kernels.Params,
    probabilities: bool,
    uncertainty: bool = False,
    log_weights: np.ndarray | None = None,
) -> int | BlockError:
    """Write the scores and the kept columns of every row of ``path``.

    Returns the number of rows written, or a BlockError naming the file.
    """
    try:
        with fs.open(path, "rb") as f:
            pf = data.open_parquet(f)
            schema = output_schema(pf.schema_arrow, params.n_components, keep, probabilities, uncertainty)
            columns = list(dict.fromkeys(feature_names + keep))
            n_rows = 0
            with pq.ParquetWriter(out_path, schema) as writer:
                for group in range(pf.num_row_groups):
                    table = pf.read_row_group(group, columns=columns)
                    writer.write_table(
                        _score_table(
                            table, path, feature_names, keep, params, log_weights, probabilities, uncertainty, schema
                        )
                    )
                    n_rows += table.num_rows
            return n_rows
    except InputError as exc:
        return BlockError(str(exc))
    except (pa.ArrowException, OSError) as exc:
        return BlockError(f"{path}: cannot read Parquet data ({exc})")


def _input_root(path: str, fs) -> str:
    """The directory that output paths are made relative to: the dataset's root."""
    root = fs._strip_protocol(path).rstrip("/")
    magic = min((root.find(ch) for ch in "*?[" if ch in root), default=-1)
    if magic >= 0:
        return root[:magic].rsplit("/", 1)[0]
    return root if fs.isdir(root) else root.rsplit("/", 1)[0]


def score(
    model_path: str,
    input_path: str,
    output_path: str,
    keep: list[str] = (),
    probabilities: bool = False,
    uncertainty: bool = False,
    *,
    scheduler: str | None = None,
    settings: ClusterConfig | None = None,
    emit: Callable[[dict[str, Any]], None] = lambda event: None,
) -> int:
    """Score every row of a Parquet dataset; one output file per input file, rows in input order.

    Feature columns are matched by the names stored in the model.  The output
    directory appears complete, or not at all; an existing one is replaced
    only if it is an earlier score output.

    Returns
    -------
    int
        Rows written.
    """
    if storage.is_url(output_path):
        raise InputError(f"--output {output_path!r}: gmm score writes to a local or shared directory, not a URL")
    settings = settings or ClusterConfig()
    cluster.check(settings, scheduler)
    saved = load_saved_model(model_path)
    names = saved.info.feature_names
    written = output_columns(saved.params.n_components, True, True)
    clash = [c for c in keep if c in written or c.startswith("prob_")]
    if clash:
        raise InputError(f"--keep {clash[0]!r} would collide with an output column of the same name")
    dataset = data.open_dataset(input_path, columns=names, passthrough=list(keep))
    root = _input_root(input_path, dataset.fs)
    marker = json.dumps(
        {
            "kind": "gmm score output",
            "model": str(model_path),
            "input": str(input_path),
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
    )
    with (
        outputs.writing(
            output_path,
            "--output",
            "score",
            outputs.is_score_output,
            {"--input": input_path, "--model": str(model_path)},
            None,
        ),
        storage.staged_directory(output_path, replaceable=lambda p: outputs.is_score_output(str(p))) as staging,
        cluster.session(settings, scheduler, emit),
    ):
        params = dask.delayed(saved.params, pure=True)
        log_weights = None
        if saved.info.algorithm == "variational":  # predictions of a variational model use its expectations
            log_weights = scoring_log_weights(
                saved.extra_arrays, saved.info.variational["weight_concentration_prior_type"], saved.params
            )
        tasks = []
        for path in dataset.files:
            target = staging / path[len(root) :].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            tasks.append(
                dask.delayed(score_file, pure=False)(
                    dataset.fs, path, str(target), names, list(keep), params, probabilities, uncertainty, log_weights
                )
            )
        results = dask.compute(*tasks)
        errors = [r for r in results if isinstance(r, BlockError)]
        if errors:
            raise InputError(errors[0].message)
        (Path(staging) / outputs.SCORE_MARKER).write_text(marker)
    rows = int(sum(results))
    emit({"event": "scored", "output": output_path, "files": len(dataset.files), "rows": rows})
    return rows
