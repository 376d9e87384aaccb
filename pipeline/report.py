"""Pictures of a fitted model: convergence, the BIC/AIC curve of a selection, components over the data.

Needs matplotlib (``pip install gmm-pipeline[plot]``).  Runs on the client:
the data panel reads a small, evenly spread sample of rows with pyarrow.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from pipeline import data, outputs, storage
from pipeline.errors import InputError
from pipeline.model import load_saved_model

SAMPLE_ROWS = 5000


def _sample_rows(path: str, feature_names: list[str], rows: int = SAMPLE_ROWS) -> np.ndarray:
    """Up to ``rows`` rows spread over the files (a first row group's worth of each)."""
    fs, files = data.list_files(path)
    per_file = max(1, rows // len(files))
    parts = []
    for name in files:
        with fs.open(name, "rb") as f:
            pf = pq.ParquetFile(f)
            missing = [c for c in feature_names if c not in pf.schema_arrow.names]
            if missing:
                raise InputError(f"{name}: column {missing[0]!r} of the model is missing")
            if pf.num_row_groups == 0:
                continue
            table = pf.read_row_group(0, columns=feature_names).slice(0, per_file)
        parts.append(np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in feature_names]))
    X = np.concatenate(parts) if parts else np.empty((0, len(feature_names)))
    return X[np.isfinite(X).all(axis=1)]


def _dense_covariances(params) -> np.ndarray:
    k, d = params.n_components, params.n_features
    cov = params.covariances
    return {"full": lambda: cov, "tied": lambda: np.repeat(cov[None], k, axis=0),
            "diag": lambda: np.stack([np.diag(c) for c in cov]),
            "spherical": lambda: np.stack([c * np.eye(d) for c in cov])}[params.covariance_type]()


def _principal_axes(params, sample: np.ndarray) -> np.ndarray:
    """The two leading principal axes (D, 2) of the sample, or of the mixture itself without data."""
    if sample.shape[0] > 2:
        spread = np.cov(sample, rowvar=False)
    else:
        covs = _dense_covariances(params)
        mean = params.weights @ params.means
        centred = params.means - mean
        spread = np.einsum("k,kij->ij", params.weights, covs) + (centred.T * params.weights) @ centred
    spread = np.atleast_2d(spread)
    values, vectors = np.linalg.eigh(spread)
    axes = vectors[:, np.argsort(values)[::-1][:2]]
    if axes.shape[1] == 1:
        axes = np.column_stack([axes, np.zeros_like(axes)])
    return axes


def _read_selection(model_dir: str) -> list[dict] | None:
    path = storage.join(model_dir, "selection.csv")
    if not storage.exists(path):
        return None
    return list(csv.DictReader(io.StringIO(storage.read_bytes(path).decode())))


def draw(model_dir: str, data_path: str | None = None):
    """A matplotlib Figure with the report's panels."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Ellipse
    except ImportError:
        raise InputError("gmm report needs matplotlib: pip install gmm-pipeline[plot]") from None
    saved = load_saved_model(model_dir)
    params, info = saved.params, saved.info
    selection = _read_selection(model_dir)
    sample = _sample_rows(data_path, info.feature_names) if data_path else np.empty((0, params.n_features))
    n_panels = 2 + (selection is not None)
    fig, axes = plt.subplots(1, n_panels, figsize=(6 * n_panels, 5), squeeze=False)
    axes = axes[0]

    history = info.history
    ax = axes[0]
    ax.plot(range(1, len(history) + 1), history, marker="o", markersize=3)
    ax.set(title=f"Convergence ({'converged' if info.converged else 'not converged'}, "
                 f"{info.n_iter} iterations)",
           xlabel="iteration", ylabel="mean log-likelihood")
    ax.grid(alpha=0.3)
    changes = np.abs(np.diff(history))
    if changes.size and changes.max() > 0:
        twin = ax.twinx()
        twin.semilogy(range(2, len(history) + 1), np.where(changes > 0, changes, np.nan), color="tab:red",
                      linestyle="--", marker=".", label="|change|")
        twin.set_ylabel("|change| (log scale)", color="tab:red")

    if selection is not None:
        ax = axes[1]
        for ct in dict.fromkeys(row["covariance_type"] for row in selection):
            rows = sorted((r for r in selection if r["covariance_type"] == ct), key=lambda r: int(r["n_components"]))
            ks = [int(r["n_components"]) for r in rows]
            ax.plot(ks, [float(r["bic"]) for r in rows], marker="o", label=f"BIC {ct}")
            ax.plot(ks, [float(r["aic"]) for r in rows], marker="s", linestyle="--", label=f"AIC {ct}")
        ax.axvline(params.n_components, color="grey", linestyle=":", label=f"chosen K={params.n_components}")
        ax.set(title="Model selection", xlabel="n_components", ylabel="criterion (lower is better)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)

    ax = axes[-1]
    projection = _principal_axes(params, sample)
    colours = plt.cm.tab10(np.arange(params.n_components) % 10)
    if sample.shape[0]:
        from pipeline.kernels import estimate_log_resp

        labels = estimate_log_resp(np.asfortranarray(sample), params)[1].argmax(axis=1)
        projected = sample @ projection
        ax.scatter(projected[:, 0], projected[:, 1], s=3, c=colours[labels], alpha=0.35, linewidths=0)
    for k, cov in enumerate(_dense_covariances(params)):
        centre = params.means[k] @ projection
        cov2 = projection.T @ cov @ projection
        values, vectors = np.linalg.eigh(cov2)
        angle = np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1]))
        for scale in (1.0, 2.0):
            ax.add_patch(Ellipse(centre, 2 * scale * np.sqrt(max(values[-1], 0)), 2 * scale * np.sqrt(max(values[0], 0)),
                                 angle=angle, fill=False, color=colours[k], linewidth=2 if scale == 1 else 1))
        ax.annotate(f"{k} ({params.weights[k]:.2f})", centre, fontsize=9, ha="center", weight="bold")
    ax.autoscale_view()
    where = f"{sample.shape[0]} sample rows" if sample.shape[0] else "no data given"
    ax.set(title=f"{params.n_components} components ({params.covariance_type}) on the 2 leading principal axes",
           xlabel=f"PC1 ({where})", ylabel="PC2")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig, info


def write_report(model_dir: str, output: str, data_path: str | None = None) -> None:
    """Write the report as a PNG, or as an HTML page embedding it with the model's summary.

    An existing ``output`` is replaced only if it is an earlier report (it carries the generator mark).
    """
    suffix = Path(output).suffix.lower()
    if suffix not in (".png", ".html"):
        raise InputError(f"--output {output!r}: expected a .png or .html file")
    outputs.check_apart(output, "--output", {"the model": model_dir, "--data": data_path})
    outputs.check_replaceable(output, "--output", outputs.is_report, "report")
    fig, info = draw(model_dir, data_path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": outputs.REPORT_MARK})
    png = buffer.getvalue()
    if suffix == ".png":
        storage.write_bytes(output, png)
        return
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(getattr(info, k)))}</td></tr>"
                   for k in ("n_samples", "converged", "n_iter", "lower_bound", "bic", "aic", "data_fingerprint"))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><meta name='generator' content='{outputs.REPORT_MARK}'>"
            f"<title>gmm report: {html.escape(model_dir)}</title>"
            f"</head><body><h1>Gaussian mixture: {html.escape(model_dir)}</h1><table>{rows}</table>"
            f"<img alt='report' src='data:image/png;base64,{base64.b64encode(png).decode()}'></body></html>")
    storage.write_bytes(output, page.encode())
