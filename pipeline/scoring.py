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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import cluster, data, kernels, outputs, passes, storage
from pipeline.config import ClusterConfig
from pipeline.errors import BlockError, InputError
from pipeline.kernels.missing import impute, marginal_model
from pipeline.model import load_saved_model
from pipeline.secrets import scrub

LABEL_COLUMNS = ("label", "log_likelihood")
UNCERTAINTY_COLUMNS = ("uncertainty", "entropy")
IMPUTED_PREFIX = "imputed_"


@dataclass(frozen=True)
class Scorer:
    """What ``gmm score`` writes for a model: it travels to the workers, which score one file each.

    Attributes
    ----------
    params : Params
    log_weights : ndarray or None
        A variational model's expected log weights (its predictions use them), else None.
    feature_names, keep : list of str
        The model's features (matched by name) and the input columns passed through.
    probabilities, uncertainty, impute : bool
        Also write ``prob_k``; ``uncertainty`` and ``entropy``; ``imputed_<feature>``.
    marginalize : bool
        Rows with missing values (NaN) are scored on their observed values (the model's ``nan_policy``).
    """

    params: kernels.Params
    log_weights: np.ndarray | None
    feature_names: list[str]
    keep: list[str]
    probabilities: bool = False
    uncertainty: bool = False
    impute: bool = False
    marginalize: bool = False

    def columns(self) -> list[str]:
        """The columns written before the kept ones."""
        return [
            *LABEL_COLUMNS,
            *([f"prob_{k}" for k in range(self.params.n_components)] if self.probabilities else []),
            *(UNCERTAINTY_COLUMNS if self.uncertainty else []),
            *([IMPUTED_PREFIX + name for name in self.feature_names] if self.impute else []),
        ]

    def schema(self, input_schema: pa.Schema) -> pa.Schema:
        fields = [pa.field(name, pa.int32() if name == "label" else pa.float64()) for name in self.columns()]
        return pa.schema(fields + [input_schema.field(name) for name in self.keep])

    def table(self, table: pa.Table, path: str, schema: pa.Schema) -> pa.Table:
        X = np.empty((len(self.feature_names), table.num_rows))
        for j, name in enumerate(self.feature_names):
            column = table.column(name)
            if column.null_count:
                column = pc.fill_null(pc.cast(column, pa.float64()), np.nan)
            X[j] = column.to_numpy(zero_copy_only=False)
        X = X.T
        bad = int((np.isinf(X) if self.marginalize else ~np.isfinite(X)).any(axis=1).sum())
        if bad:
            what = "infinite values" if self.marginalize else "NaN or infinite values"
            hint = "" if self.marginalize else " (the model was not fitted with data.nan_policy: marginalize)"
            raise InputError(
                f"{path}: {bad} rows have {what} in the model's features; every row must be scored, "
                f"so clean them first{hint}"
            )
        log_prob_norm, log_resp = kernels.estimate_log_resp(X, self.params, self.log_weights)
        resp = np.exp(log_resp)
        columns = [pa.array(log_resp.argmax(axis=1).astype(np.int32)), pa.array(log_prob_norm)]
        if self.probabilities:
            columns += [pa.array(resp[:, k]) for k in range(self.params.n_components)]
        if self.uncertainty:
            columns += [pa.array(1.0 - resp.max(axis=1)), pa.array(-(resp * log_resp).sum(axis=1))]
        if self.impute:
            log_weights = np.log(self.params.weights) if self.log_weights is None else self.log_weights
            imputed = impute(X, marginal_model(self.params, log_weights))
            columns += [pa.array(imputed[:, j]) for j in range(X.shape[1])]
        columns += [table.column(name) for name in self.keep]
        return pa.Table.from_arrays(columns, schema=schema)


def score_file(fs, path: str, out_path: str, scorer: Scorer) -> int | BlockError:
    """Write the scores and the kept columns of every row of ``path``.

    Returns the number of rows written, or a BlockError naming the file.
    """
    try:
        with fs.open(path, "rb") as f:
            pf = data.open_parquet(f)
            schema = scorer.schema(pf.schema_arrow)
            columns = list(dict.fromkeys(scorer.feature_names + scorer.keep))
            n_rows = 0
            with pq.ParquetWriter(out_path, schema) as writer:
                for group in range(pf.num_row_groups):
                    table = pf.read_row_group(group, columns=columns)
                    writer.write_table(scorer.table(table, path, schema))
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
    impute: bool = False,
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
    log_weights = saved.log_weights()
    marginalize = saved.info.missing is not None and saved.info.missing.nan_policy == "marginalize"
    scorer = Scorer(saved.params, log_weights, names, list(keep), probabilities, uncertainty, impute, marginalize)
    every = Scorer(saved.params, None, names, [], True, True, True).columns()
    clash = [c for c in keep if c in every or c.startswith("prob_")]
    if clash:
        raise InputError(f"--keep {clash[0]!r} would collide with an output column of the same name")
    dataset = data.open_dataset(input_path, columns=names, passthrough=list(keep), naming=data.MODEL_COLUMNS)
    root = _input_root(input_path, dataset.fs)
    marker = json.dumps(
        {
            "kind": "gmm score output",
            "model": scrub(str(model_path)),
            "input": scrub(str(input_path)),
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
    )
    output = outputs.resolve(output_path, "--output")
    with (
        outputs.writing(
            output, "--output", "score", outputs.is_score_output, {"--input": input_path, "--model": str(model_path)}
        ),
        storage.staged_directory(output_path, replaceable=lambda _: outputs.is_score_output(output)) as staging,
        cluster.session(settings, scheduler, emit) as client,
    ):
        shared = dask.delayed(scorer, pure=True)
        tasks = []
        for path in dataset.files:
            target = staging / path[len(root) :].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            tasks.append(dask.delayed(score_file, pure=False)(dataset.fs, path, str(target), shared))
        futures = client.compute(tasks)
        results = passes.await_results(client, futures, settings.worker_timeout)
        errors = [r for r in results if isinstance(r, BlockError)]
        if errors:
            raise InputError(errors[0].message)
        (Path(staging) / outputs.SCORE_MARKER).write_text(marker)
    rows = int(sum(results))
    emit({"event": "scored", "output": output_path, "files": len(dataset.files), "rows": rows})
    return rows
