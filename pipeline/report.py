"""Pictures of a fitted model: convergence, the criteria of a selection, components over the data.

Needs matplotlib (the ``plot`` extra: ``python -m pip install 'gmm-pipeline[plot]'``).  Runs on the client:
the data panel reads a small, evenly spread sample of rows with pyarrow.
The components are drawn on the two leading principal axes of the
*standardised* data (each feature divided by its standard deviation), so one
large-scale column cannot make the first axis; each axis names the features
that load on it most.  The HTML page is self-contained (the picture and the
tables inline, no script, nothing fetched).  Text that comes from the user
(feature names, the model's path, the cells of selection.csv) is drawn as
plain text, never as mathtext, and passes through :func:`pipeline.secrets.scrub`.
"""

from __future__ import annotations

import base64
import html
import io
import shlex
import sys
from pathlib import Path

import numpy as np

from pipeline import data, kernels, outputs, selection, storage
from pipeline.choices import CRITERIA
from pipeline.errors import InputError
from pipeline.model import SELECTION_FILE, YAML_NAME, ModelInfo, load_saved_model
from pipeline.secrets import scrub

SAMPLE_ROWS = 5000
# Markers and line styles of the covariance types' lines (with tab20's colours: no two of mclust's 14 alike).
MODEL_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">", "h", "p", "8", "d", "*")
MODEL_LINES = ("-", "--", "-.", ":")
# Text properties for anything the user wrote: drawn as it is, never read as mathtext or TeX ("$" is a dollar).
PLAIN_TEXT = {"parse_math": False, "usetex": False}
# Longest feature name an axis label shows in full (longer ones are cut, with "…"; the HTML table has them all).
NAME_CHARS = 24


def _sample_rows(path: str, feature_names: list[str], rows: int = SAMPLE_ROWS) -> np.ndarray:
    """Up to ``rows`` complete rows spread over the files (the first row group's worth of each)."""
    dataset = data.open_dataset(path, columns=feature_names, naming=data.MODEL_COLUMNS)
    per_file = max(1, rows // len(dataset.files))
    parts = []
    for name in dataset.files:
        try:
            with dataset.fs.open(name, "rb") as f:
                pf = data.open_parquet(f)
                if pf.num_row_groups == 0:
                    continue
                table = pf.read_row_group(0, columns=feature_names).slice(0, per_file)
        except OSError as exc:
            raise InputError(f"{name}: cannot read Parquet data ({exc})") from None
        parts.append(np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in feature_names]))
    X = np.concatenate(parts).astype(float) if parts else np.empty((0, len(feature_names)))
    return X[np.isfinite(X).all(axis=1)]


def _read_selection(model_dir: storage.Place, info: ModelInfo) -> list[dict] | None:
    """The rows of the model's selection.csv, checked (see :func:`pipeline.selection.read`), with the model's own.

    Raises
    ------
    InputError
        An unknown ``selection.criterion`` in model.yaml, a table :func:`pipeline.selection.read` refuses or one
        without the criterion's column, or no row for the model itself.
    """
    if info.selection is None:
        return None
    criterion = info.selection.criterion
    if criterion not in CRITERIA:
        raise InputError(
            f"{model_dir.join(YAML_NAME).name}: selection.criterion {criterion!r} is not one of "
            f"{', '.join(CRITERIA)}; restore the model.yaml gmm select wrote"
        )
    table = model_dir.join(Path(info.selection.file).name)
    path = table.name
    rows = selection.read(storage.read_bytes(table), path, ("n_components", "covariance_type", criterion))
    if not any(
        (row["n_components"], row["covariance_type"]) == (info.n_components, info.covariance_type) for row in rows
    ):
        raise InputError(
            f"{path}: no row for the model itself (K={info.n_components} {info.covariance_type}); {selection.REDO}"
        )
    return rows


def standardised_axes(params: kernels.Params, sample: np.ndarray):
    """The standardisation (centre, scale) and the two leading principal axes of the standardised data.

    Without a sample, the mixture's own mean and total covariance stand for the data's.

    Returns
    -------
    centre, scale : ndarray of shape (n_features,)
    axes : ndarray of shape (n_features, 2)
    explained : ndarray of shape (2,)
        Share of the standardised variance along each axis.
    """
    if sample.shape[0] > 2:
        centre, spread = sample.mean(axis=0), np.atleast_2d(np.cov(sample, rowvar=False))
    else:
        centre = params.weights @ params.means
        deviations = params.means - centre
        spread = (
            np.einsum("k,kij->ij", params.weights, kernels.dense_covariances(params))
            + (deviations.T * params.weights) @ deviations
        )
    scale = np.sqrt(np.clip(np.diag(spread), np.finfo(float).tiny, None))
    correlation = spread / np.outer(scale, scale)
    values, vectors = np.linalg.eigh(correlation)
    order = np.argsort(values)[::-1][:2]
    axes, explained = vectors[:, order], values[order] / max(values.sum(), np.finfo(float).tiny)
    if axes.shape[1] == 1:  # one feature: the second axis is empty
        axes, explained = np.column_stack([axes, np.zeros_like(axes)]), np.append(explained, 0.0)
    axes = axes * np.where(axes[np.abs(axes).argmax(axis=0), [0, 1]] < 0, -1, 1)  # largest loading positive
    return centre, scale, axes, explained


def axis_label(
    index: int, loadings: np.ndarray, explained: float, names: list[str], shown: int = 3, stacked: bool = False
) -> str:
    """The features that load most on a standardised axis, under the axis' name and share of the variance.

    ``PC1 (54% of standardised variance)`` over ``0.62 x3 − 0.55 x1 + 0.41 x0 …``, or with ``stacked`` one
    term a line (for a vertical axis, whose label must fit the panel's height).  A name longer than
    :data:`NAME_CHARS` is cut, ending in "…".
    """
    order = np.argsort(-np.abs(loadings))[:shown]
    short = [name if len(name) <= NAME_CHARS else name[: NAME_CHARS - 1] + "…" for name in names]
    terms = [f"{'−' if loadings[j] < 0 else '+'} {abs(loadings[j]):.2f} {short[j]}" for j in order]
    text = ("\n" if stacked else " ").join(terms).lstrip("+ ")
    more = " …" if len(names) > shown else ""
    return f"PC{index + 1} ({100 * explained:.0f}% of standardised variance)\n{text}{more}"


def _convergence(ax, info: ModelInfo):
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    history = info.history
    iterations = np.arange(1, len(history) + 1)
    variational = info.algorithm == "variational"
    label = "variational lower bound" if variational else "mean log-likelihood"
    ax.plot(iterations, history, marker="o", markersize=3, label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    formatter = ScalarFormatter(useOffset=False)
    formatter.set_scientific(False)
    ax.yaxis.set_major_formatter(formatter)
    state = "converged" if info.converged else "not converged"
    ax.set(
        title=f"Convergence: {state} after {info.n_iter} iterations",
        xlabel="iteration",
        ylabel="lower bound (scikit-learn's, constants left out)" if variational else "mean log-likelihood per row",
    )
    ax.grid(alpha=0.3)
    changes = np.abs(np.diff(history))
    if changes.size and changes.max() > 0:
        twin = ax.twinx()
        twin.semilogy(
            iterations[1:],
            np.where(changes > 0, changes, np.nan),
            color="tab:red",
            linestyle="--",
            marker=".",
            label="|change| (right axis, log)",
        )
        twin.set_ylabel("|change| between iterations", color="tab:red")
        twin.tick_params(axis="y", colors="tab:red")
        lines = ax.get_lines() + twin.get_lines()
        ax.legend(
            lines,
            [line.get_label() for line in lines],
            loc="upper center",
            bbox_to_anchor=(0.5, -0.14),
            ncol=2,
            fontsize=8,
            frameon=False,
        )


def _model_styles(types: list[str]) -> dict[str, tuple[object, str, str]]:
    """A colour, marker and line style for each covariance type of a selection, none two alike (up to 14)."""
    import matplotlib.pyplot as plt

    colours = plt.cm.tab20(np.arange(len(types)) % 20)
    return {
        ct: (colours[i], MODEL_MARKERS[i % len(MODEL_MARKERS)], MODEL_LINES[i % len(MODEL_LINES)])
        for i, ct in enumerate(types)
    }


def _selection(axes, selection: list[dict], info: ModelInfo, params: kernels.Params):
    """One panel per criterion, one line per covariance type against K (as mclust's ``plot(BIC)``), the chosen
    candidate starred on the criterion that chose it; one legend of the types beside the last panel."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    criterion = info.selection.criterion
    types = list(dict.fromkeys(row["covariance_type"] for row in selection))
    styles = _model_styles(types)
    keys = [key for key in CRITERIA if key in selection[0]]  # a panel each, in this order
    for ax, key in zip(axes, keys):
        for ct in types:
            rows = sorted((r for r in selection if r["covariance_type"] == ct), key=lambda r: r["n_components"])
            colour, marker, style = styles[ct]
            chosen = ct == params.covariance_type
            ax.plot(
                [r["n_components"] for r in rows],
                [r[key] for r in rows],
                linestyle=style,
                marker=marker,
                markersize=6 if chosen else 4.5,
                linewidth=2.4 if chosen else 1.1,
                label=ct,
                color=colour,
                zorder=3 if chosen else 2,
            )
        label = key.upper()
        if key == criterion:
            best = next(
                r
                for r in selection
                if (r["n_components"], r["covariance_type"]) == (params.n_components, params.covariance_type)
            )
            ax.plot(
                [params.n_components],
                [best[key]],
                marker="*",
                markersize=18,
                color="tab:orange",
                markeredgecolor="black",
                linestyle="none",
                label=f"chosen: K={params.n_components} {params.covariance_type}",
                zorder=4,
            )
            label += " (chose the model)"
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.6g}"))
        ax.set(title=label, xlabel="n_components (K)", ylabel=f"{key.upper()} (lower is better)")
        ax.grid(alpha=0.3)
    handles, labels = axes[keys.index(criterion)].get_legend_handles_labels()
    axes[len(keys) - 1].legend(
        handles,
        labels,
        title="covariance type",
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        ncol=2 if len(types) > 8 else 1,
        fontsize=8,
        frameon=False,
    )


def _components(ax, params: kernels.Params, info: ModelInfo, sample: np.ndarray, log_weights: np.ndarray | None):
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Ellipse

    names = info.feature_names
    centre, scale, axes, explained = standardised_axes(params, sample)
    colours = plt.cm.tab10(np.arange(params.n_components) % 10)
    if sample.shape[0]:
        labels = kernels.estimate_log_resp(np.asfortranarray(sample), params, log_weights)[1].argmax(axis=1)
        projected = ((sample - centre) / scale) @ axes
        ax.scatter(projected[:, 0], projected[:, 1], s=3, c=colours[labels], alpha=0.3, linewidths=0)
    handles = []
    for k, cov in enumerate(kernels.dense_covariances(params)):
        mean2 = ((params.means[k] - centre) / scale) @ axes
        cov2 = axes.T @ (cov / np.outer(scale, scale)) @ axes
        values, vectors = np.linalg.eigh(cov2)
        angle = np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1]))
        for sigma, style in ((1.0, "-"), (2.0, "--")):
            ax.add_patch(
                Ellipse(
                    mean2,
                    2 * sigma * np.sqrt(max(values[-1], 0)),
                    2 * sigma * np.sqrt(max(values[0], 0)),
                    angle=angle,
                    fill=False,
                    color=colours[k],
                    linestyle=style,
                    linewidth=1.8,
                )
            )
        ax.plot(*mean2, marker="x", color=colours[k], markersize=8)
        ax.annotate(
            f"{k}", mean2, xytext=(4, 4), textcoords="offset points", fontsize=9, weight="bold", color=colours[k]
        )
        handles.append(
            Line2D([], [], color=colours[k], marker="x", label=f"component {k}: weight {params.weights[k]:.3f}")
        )
    handles += [
        Line2D([], [], color="grey", linestyle="-", label="1σ ellipse (39% of its mass in 2-D)"),
        Line2D([], [], color="grey", linestyle="--", label="2σ ellipse (86%)"),
    ]
    ax.autoscale_view()
    ax.set_aspect("equal", adjustable="datalim")
    where = f"{sample.shape[0]} sample rows" if sample.shape[0] else "no data given: the mixture alone"
    ax.set_title(f"{params.n_components} components ({params.covariance_type}); {where}")
    ax.set_xlabel(scrub(axis_label(0, axes[:, 0], explained[0], names)), fontsize=8, **PLAIN_TEXT)
    ax.set_ylabel(scrub(axis_label(1, axes[:, 1], explained[1], names, stacked=True)), fontsize=8, **PLAIN_TEXT)
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)


def draw(model_dir: str, data_path: str | None = None):
    """A matplotlib Figure with the report's panels, the model's ModelInfo, and its checked selection rows."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError(
            f"gmm report needs matplotlib, which this Python does not have: "
            f"{shlex.quote(sys.executable)} -m pip install 'gmm-pipeline[plot]'"
        ) from None
    place = storage.Place.of(model_dir)
    saved = load_saved_model(place)
    params, info = saved.params, saved.info
    selection = _read_selection(place, info)
    sample = _sample_rows(data_path, info.feature_names) if data_path else np.empty((0, params.n_features))
    n_criteria = sum(key in selection[0] for key in CRITERIA) if selection else 0
    fig = plt.figure(figsize=(16.0, 5.8 * (2 if selection else 1)), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1]) if selection else (fig, None)
    left, right = top.subplots(1, 2, width_ratios=[1, 1.6])
    _convergence(left, info)
    log_weights = saved.log_weights()  # a variational model predicts with its expectations, as gmm score does
    _components(right, params, info, sample, log_weights)
    if selection:
        _selection(bottom.subplots(1, n_criteria, squeeze=False)[0], selection, info, params)
        bottom.suptitle(
            f"Model selection by {info.selection.criterion.upper()} over {len(selection)} candidates "
            "(lower is better; one line per covariance type, the chosen one bold and starred)",
            fontsize=12,
            weight="bold",
        )
    return fig, info, selection


def _html(text: str) -> str:
    """Text for the page: secrets and URL passwords scrubbed, then escaped."""
    return html.escape(scrub(text))


def _html_table(rows: list[list[str]], header: list[str]) -> str:
    head = "".join(f"<th>{_html(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_html(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(model_dir: str, output: str, data_path: str | None = None) -> None:
    """Write the report as a PNG, or as a self-contained HTML page embedding it with the model's summary.

    An existing ``output`` is replaced only if it is an earlier report (it carries the generator mark).
    """
    suffix = Path(output).suffix.lower()
    if suffix not in (".png", ".html"):
        raise InputError(f"--output {output!r}: expected a .png or .html file")
    place = outputs.resolve(output, "--output")
    with outputs.writing(place, "--output", "report", outputs.is_report, {"the model": model_dir, "--data": data_path}):
        fig, info, selection = draw(model_dir, data_path)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100, metadata={"Software": outputs.REPORT_MARK})
        png = buffer.getvalue()
        storage.write_bytes(place, png if suffix == ".png" else _page(model_dir, png, info, selection).encode())


def _page(model_dir: str, png: bytes, info, selection: list[dict]) -> str:
    """The HTML report: the PNG embedded, the model's summary, its selection table and its components."""
    summary = [
        [key, str(getattr(info, key))]
        for key in (
            "n_components",
            "covariance_type",
            "n_samples",
            "converged",
            "n_iter",
            "lower_bound",
            "bic",
            "aic",
            "icl",
            "data_fingerprint",
        )
    ]
    tables = _html_table(summary, ["", "value"])
    if selection:
        header = list(selection[0])
        tables += f"<h2>Selection ({_html(SELECTION_FILE)})</h2>" + _html_table(
            [[str(row[h]) for h in header] for row in selection], header
        )
    weights = _html_table(
        [
            [str(k), f"{w:.4f}", ", ".join(f"{v:.4g}" for v in mean)]
            for k, (w, mean) in enumerate(zip(info.weights, info.means))
        ],
        ["component", "weight", f"mean ({', '.join(info.feature_names)})"],
    )
    title = _html(f"gmm report: {model_dir}")
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='generator' content='{outputs.REPORT_MARK}'><link rel='icon' href='data:,'>"
        f"<title>{title}</title><style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;"
        f"margin:1em 0}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}img{{max-width:100%}}"
        f"</style></head><body><h1>{title}</h1>"
        f"<img alt='convergence, components and selection of the model' "
        f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
        f"<h2>Model</h2>{tables}<h2>Components</h2>{weights}</body></html>"
    )
