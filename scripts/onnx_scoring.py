"""onnxruntime scoring an exported model beside ``gmm score`` (``scripts/bench --extras``): rows per second.

The guide's recipe (docs/guide/export.md): pyarrow batches of :data:`BATCH` rows through one onnxruntime session
with 2 intra-op threads (the two workers' cores), Parquet in and out, file after file, float64 and float32 graphs;
and ``session.run`` alone on one batch held in memory (the graph's arithmetic without I/O, what a service scoring
requests sees), 1 and 2 threads.  Needs the ``onnx`` extra; without it the figures are left out, saying so.
"""

from __future__ import annotations

import json
import statistics
import time
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

BATCH = 65_536


def _seconds(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _session(path: Path, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def score_with_onnx(session, data: Path, out: Path) -> int:
    """The recipe over every Parquet file of ``data``: one scored file per input file under ``out``; rows scored."""
    metadata = session.get_modelmeta().custom_metadata_map
    features = json.loads(metadata["feature_names"])
    dtype = np.dtype(metadata["dtype"])
    outputs = [output.name for output in session.get_outputs()]
    out.mkdir(parents=True, exist_ok=True)
    rows = 0
    for path in sorted(data.glob("*.parquet")):
        writer = None
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH, columns=features):
            X = np.column_stack([batch.column(name).to_numpy(zero_copy_only=False) for name in features]).astype(dtype)
            scores = dict(zip(outputs, session.run(None, {"X": X})))
            columns = {"label": scores["label"], "log_likelihood": scores["log_likelihood"]}
            columns.update({f"prob_{k}": p for k, p in enumerate(scores["probabilities"].T)})
            table = pa.table(columns)
            if writer is None:
                writer = pq.ParquetWriter(out / path.name, table.schema)
            writer.write_table(table)
            rows += len(X)
        if writer is not None:
            writer.close()
    return rows


def bench_onnx(model: Path, data: Path, work: Path, n_rows: int, n_features: int, repeats: int) -> dict:
    """Rows per second of the recipe and of ``session.run`` in memory, per dtype (the medians of ``repeats``)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return {"not_run": "onnxruntime is not installed (pip install -e '.[onnx]')"}
    from pipeline.export import export

    results = {}
    for dtype in ("float64", "float32"):
        graph = work / f"model-{dtype}.onnx"
        export(str(model), str(graph), dtype=dtype)  # replaces an earlier export of the bench's
        recipe = _seconds(partial(_recipe, graph, data, work / f"onnx-{dtype}"), repeats)
        results[f"recipe {dtype}"] = n_rows / statistics.median(recipe)
        feed = {"X": np.random.default_rng(0).normal(size=(BATCH, n_features)).astype(dtype)}
        for threads in (1, 2):
            session = _session(graph, threads)
            session.run(None, feed)  # the first run allocates
            run = _seconds(partial(session.run, None, feed), max(repeats, 10))
            results[f"in memory {dtype} {threads} thread{'s' if threads > 1 else ''}"] = BATCH / statistics.median(run)
    return {"rows_per_s": results}


def _recipe(graph: Path, data: Path, out: Path) -> int:
    return score_with_onnx(_session(graph, 2), data, out)
