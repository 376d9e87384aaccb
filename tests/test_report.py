"""``gmm report``: what a person sees, checked on the figure, on the PNG, and in a real headless Chromium."""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import assert_user_error, gmm, make_blobs, write_config

from pipeline import GaussianMixture, report

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SELECTION = """n_components,covariance_type,log_likelihood,bic,aic,icl,n_iter,converged
1,full,-9.5,600.5,590.25,600.5,2,True
2,full,-8.25,500.25,480.0,505.0,5,True
3,full,-8.0,520.0,470.0,530.0,8,True
1,diag,-9.75,610.0,601.0,610.0,2,True
2,diag,-8.5,540.0,525.0,545.0,6,True
"""


def invoke(cwd, monkeypatch, *args) -> subprocess.CompletedProcess:
    """The ``gmm`` click command in this process."""
    from click.testing import CliRunner

    from pipeline.cli import main

    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(main, list(args))
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def saved_model(directory: Path, names=None, selection: str | None = None, criterion="bic", config=None) -> Path:
    """A K=2 full model of three features saved at ``directory``; model.yaml then given ``names`` as its feature
    names, a selection by ``criterion`` whose selection.csv is ``selection``, and ``config`` as its config."""
    GaussianMixture(2, random_state=0).fit(make_blobs(0, n_per=50)).save(directory)
    info = yaml.safe_load((directory / "model.yaml").read_text())
    if names is not None:
        info["feature_names"] = names
    if selection is not None:
        info["selection"] = {"criterion": criterion, "file": "selection.csv"}
        (directory / "selection.csv").write_text(selection)
    if config is not None:
        info["config"] = config
    (directory / "model.yaml").write_text(yaml.safe_dump(info))
    return directory


@pytest.fixture(scope="module")
def selected(tmp_path_factory):
    """A selection over four covariance types on data with one large-scale column, and the data."""
    root = tmp_path_factory.mktemp("report")
    assert (
        gmm(
            root,
            "generate",
            "--output",
            "data",
            "--n-samples",
            "6000",
            "--n-features",
            "4",
            "--n-components",
            "3",
            "--partitions",
            "2",
            "--seed",
            "4",
        ).returncode
        == 0
    )
    import pyarrow as pa
    import pyarrow.parquet as pq

    for path in (root / "data").glob("*.parquet"):  # one column in other units: 1000 times larger
        table = pq.read_table(path)
        pq.write_table(table.set_column(3, "x3", pa.array(table.column("x3").to_numpy() * 1000)), path)
    write_config(root / "c.yaml", data={"path": "data"}, model={"max_iter": 200}, output={"path": "sel"})
    run = gmm(
        root, "select", "c.yaml", "--k", "1..4", "--covariance-types", "full,tied,diag,spherical", "--criterion", "icl"
    )
    assert run.returncode == 0, run.stderr
    return root


def test_the_figure_reads_at_a_glance(selected):
    fig, info, selection = report.draw(str(selected / "sel"), str(selected / "data"))
    fig.canvas.draw()
    convergence, components, *panels = [ax for ax in fig.axes if ax.get_title()]
    # integer iteration ticks, no offset or scientific notation on the convergence axis
    assert all(float(t).is_integer() for t in convergence.get_xticks())
    assert convergence.yaxis.get_offset_text().get_text() == ""
    # one panel per criterion, the one that chose the model named, the chosen candidate starred on it
    assert [p.get_title() for p in panels] == ["BIC", "AIC", "ICL (chose the model)"]
    assert "selection by ICL" in fig.subfigs[1]._suptitle.get_text()
    chosen = f"chosen: K={info.n_components} {info.covariance_type}"
    assert [line.get_label() for line in panels[2].get_lines()][-1] == chosen
    # one line per covariance type in every panel (as mclust's plot(BIC)), each type drawn alike in every panel
    # and unlike the others, the chosen type's line the boldest; one legend of the types, beside the panels
    types = ["full", "tied", "diag", "spherical"]
    looks = []
    for panel in panels:
        lines = [line for line in panel.get_lines() if line.get_linestyle() != "None"]
        assert [line.get_label() for line in lines] == types
        looks.append([(tuple(line.get_color()), line.get_marker(), line.get_linestyle()) for line in lines])
        widths = {line.get_label(): line.get_linewidth() for line in lines}
        assert max(widths, key=widths.get) == info.covariance_type
    assert looks[0] == looks[1] == looks[2] and len(set(looks[0])) == len(types)
    legend = panels[-1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [*types, chosen]
    # each panel holds its criterion's values for every candidate
    for panel, key in zip(panels, ("bic", "aic", "icl")):
        low, high = panel.get_ylim()
        assert low <= min(row[key] for row in selection) and max(row[key] for row in selection) <= high
    # legends sit outside the data area
    for ax in [convergence, components, *panels]:
        legend = ax.get_legend()
        if legend is not None:
            assert not legend.get_window_extent().overlaps(ax.get_window_extent()), ax.get_title()
    # the principal axes are those of the standardised data: x3 (in units 1000 times larger) does not make PC1
    # by scale alone, and the axes name their leading features
    assert components.get_xlabel().startswith("PC1 (") and "standardised variance" in components.get_xlabel()
    legend = [t.get_text() for t in components.get_legend().get_texts()]
    assert any(text.startswith("1σ ellipse") for text in legend) and any(
        text.startswith("2σ ellipse") for text in legend
    )
    assert sum(text.startswith("component ") and "weight" in text for text in legend) == info.n_components


def test_standardised_axes_ignore_the_scale_of_a_column():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 3))
    X[:, 1] = X[:, 0] + 0.1 * rng.normal(size=2000)  # x0 and x1 move together: they make PC1
    X[:, 2] *= 1000  # x2 is large but alone
    from pipeline import GaussianMixture

    _, _, axes, explained = report.standardised_axes(GaussianMixture(1).fit(X)._params(), X)
    assert np.abs(axes[:, 0]).argmin() == 2 and explained[0] > 0.6


def test_png_and_html_are_written_and_replaced(selected):
    for name in ("r.png", "r.html"):
        for _ in range(2):  # the second time over its own earlier report
            run = gmm(selected, "report", "sel", "--data", "data", "--output", name)
            assert run.returncode == 0, run.stderr
    from PIL import Image

    with Image.open(selected / "r.png") as image:
        width, height = image.size
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert width > 1000 and height > 800 and pixels.std() > 10  # two rows of panels, not a blank canvas
    assert (selected / "r.png").read_bytes().count(b"gmm-pipeline report") == 1


def test_the_html_page_renders_in_a_real_browser_without_errors(selected):
    if CHROMIUM is None or CHROMEDRIVER is None:
        missing = "Chromium and chromedriver (Debian's chromium, chromium-driver) are not installed here"
        if os.environ.get("CI"):  # CI must run it: .ci/run installs them
            pytest.fail(f"{missing}; under CI (CI is set) this test must run, not be skipped")
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert gmm(selected, "report", "sel", "--data", "data", "--output", "page.html").returncode == 0
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        f"--user-data-dir={selected / 'chromium-profile'}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        browser.get((selected / "page.html").as_uri())
        images = browser.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
        )
        fetched = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        tables = browser.execute_script("return document.querySelectorAll('table').length")
        console = browser.get_log("browser")
        browser.save_screenshot(str(selected / "page-screenshot.png"))
    finally:
        browser.quit()
    assert images and all(complete and w > 1000 and h > 800 for complete, w, h in images), images
    assert fetched == []  # self-contained: nothing loaded from anywhere
    assert tables == 3  # the model, the selection, the components
    assert console == [], console
    assert Path(selected / "page-screenshot.png").stat().st_size > 10_000
    assert "selection.csv" in (selected / "page.html").read_text()  # the table is named


def test_a_nearly_flat_history_has_no_offset_notation(tmp_path):
    # Two iterations 1e-11 apart around -6.79: matplotlib's default would label the axis "1e-11−6.792682249".
    from helpers import random_params

    from pipeline.model import describe, save_model

    params = random_params("full")
    save_model(
        tmp_path / "m",
        params,
        describe(params, ["a", "b", "c"], history=[-6.792682249, -6.79268224901], converged=True, n_iter=2),
    )
    fig, _, _ = report.draw(str(tmp_path / "m"))
    fig.canvas.draw()
    convergence = fig.axes[0]
    assert convergence.yaxis.get_offset_text().get_text() == ""
    assert [float(t) for t in convergence.get_xticks() if 1 <= t <= 2] == [1.0, 2.0]
    labels = [t.get_text() for t in convergence.get_yticklabels() if t.get_text()]
    assert labels and all("e" not in label for label in labels), labels


def test_a_variational_model_is_drawn_with_its_bound_and_its_own_predictions(tmp_path):
    import matplotlib.pyplot as plt
    from helpers import make_blobs, write_parquet

    from pipeline import BayesianGaussianMixture, kernels

    X = make_blobs(5, n_per=150, centres=((0, 0, 0), (1.5, 0, 0), (0, 1.5, 0)))
    write_parquet(tmp_path / "data", X, 1)
    bgm = BayesianGaussianMixture(n_components=6, random_state=0, max_iter=300).fit(X)
    bgm.save(tmp_path / "m")
    fig, _, _ = report.draw(str(tmp_path / "m"), str(tmp_path / "data"))
    convergence, components = fig.axes[:2]
    assert convergence.get_legend().get_texts()[0].get_text() == "variational lower bound"
    assert convergence.get_ylabel().startswith("lower bound")
    shown = components.collections[0].get_facecolors()[:, :3]
    colours = plt.cm.tab10(np.arange(6) % 10)[:, :3]
    expected = bgm.predict(X)
    np.testing.assert_allclose(shown, colours[expected])
    plug_in = kernels.estimate_log_resp(np.asfortranarray(X), bgm._params())[1].argmax(axis=1)
    assert (plug_in != expected).any()  # the case the report must not draw with the plug-in mixture


def test_axis_labels_fit_in_the_figure_whatever_the_feature_names(tmp_path):
    names = ["monthly_recurring_revenue_in_euros", "number_of_support_tickets_opened", "days_since_last_login"]
    fig, _, _ = report.draw(str(saved_model(tmp_path / "m", names)))
    fig.canvas.draw()
    figure = fig.bbox
    for ax in fig.axes:
        for label in (ax.xaxis.label, ax.yaxis.label):
            box = label.get_window_extent()
            assert figure.x0 <= box.x0 and box.x1 <= figure.x1 and figure.y0 <= box.y0 and box.y1 <= figure.y1, (
                label.get_text()
            )
    components = next(ax for ax in fig.axes if ax.get_title().startswith("2 components"))
    assert "monthly_recurring_reven…" in components.get_xlabel() + components.get_ylabel()


def test_feature_names_are_drawn_as_plain_text(tmp_path, monkeypatch):
    names = ["price $", r"$\frac{x$", "cost $ total"]  # mathtext would fail on the second, italicise the others
    saved_model(tmp_path / "m", names)
    run = invoke(tmp_path, monkeypatch, "report", "m", "--output", "r.png")
    assert run.returncode == 0 and (tmp_path / "r.png").exists(), run.stderr
    fig, _, _ = report.draw(str(tmp_path / "m"))
    fig.canvas.draw()
    components = next(ax for ax in fig.axes if ax.get_title().startswith("2 components"))
    for label in (components.xaxis.label, components.yaxis.label):
        assert "$" in label.get_text()
        plain = fig.text(0, 0, label.get_text(), fontsize=label.get_fontsize(), rotation=label.get_rotation())
        plain.set_parse_math(False)
        np.testing.assert_allclose(label.get_window_extent().size, plain.get_window_extent().size)


@pytest.mark.parametrize(
    ("damage", "pattern"),
    [
        (lambda t: t.replace("2,full", "two,full"), r"selection\.csv, line 3, column n_components: 'two' is not a"),
        (
            lambda t: t.replace("2,full,-8.25,500.25,480.0,505.0,5,True\n", ""),
            r"no row for the model itself \(K=2 full",
        ),
        (lambda t: t.replace("1,diag", "1,diagonal"), r"line 5, column covariance_type: 'diagonal' is not one of"),
        (lambda t: t.replace("600.5,590.25", "n/a,590.25"), r"line 2, column bic: 'n/a' is not a finite number"),
        (lambda t: t.replace("600.5,590.25", "inf,590.25"), r"line 2, column bic: 'inf' is not a finite number"),
        (lambda t: t.replace(",bic,", ",BIC,"), r"selection\.csv: no column 'bic' in the header"),
        (lambda t: t.replace("n_components,", "k,"), r"no column 'n_components' in the header"),
        (lambda t: t.replace(",5,True", ""), r"line 3: 6 fields, expected 8"),
        (lambda t: t.replace(",5,True", ",5,True,x"), r"line 3: 9 fields, expected 8"),
        (lambda t: t + "1,full,-9.5,600.5,590.25,600.5,2,True\n", r"line 7: K=1 full again \(first on line 2\)"),
        (lambda t: "", r"selection\.csv: empty"),
        (lambda t: t.splitlines()[0] + "\n", r"selection\.csv: no candidates, only a header"),
    ],
)
def test_a_damaged_selection_is_one_error_line(tmp_path, monkeypatch, damage, pattern):
    saved_model(tmp_path / "m", selection=damage(SELECTION))
    run = invoke(tmp_path, monkeypatch, "report", "m", "--output", "r.png")
    assert_user_error(run, pattern + ".*run gmm select again", tmp_path, "r.png")


def test_an_unknown_criterion_is_one_error_line(tmp_path, monkeypatch):
    saved_model(tmp_path / "m", selection=SELECTION, criterion="loglik")
    run = invoke(tmp_path, monkeypatch, "report", "m", "--output", "r.html")
    assert_user_error(
        run, r"model\.yaml: selection\.criterion 'loglik' is not one of bic, aic, icl", tmp_path, "r.html"
    )


def test_a_hand_made_selection_is_drawn(tmp_path, monkeypatch):
    saved_model(tmp_path / "m", selection=SELECTION)
    assert invoke(tmp_path, monkeypatch, "report", "m", "--output", "r.html").returncode == 0
    fig, _, selection = report.draw(str(tmp_path / "m"))
    assert [panel.get_title() for panel in fig.axes[-3:]] == ["BIC (chose the model)", "AIC", "ICL"]
    assert [line.get_label() for line in fig.axes[-3].get_lines()] == ["full", "diag", "chosen: K=2 full"]
    assert len(selection) == 5 and "<td>500.25</td>" in (tmp_path / "r.html").read_text()


def test_mclusts_fourteen_models_and_sklearns_four_are_told_apart_in_one_figure(tmp_path):
    from pipeline.choices import COVARIANCE_TYPES

    rows = [
        f"{k},{ct},-9.0,{500 + 10 * i + k},{490 + 10 * i + k},{505 + 10 * i + k},3,True"
        for i, ct in enumerate(COVARIANCE_TYPES)
        for k in (1, 2, 3)
    ]
    saved_model(tmp_path / "m", selection="\n".join([SELECTION.splitlines()[0], *rows]) + "\n")
    fig, _, _ = report.draw(str(tmp_path / "m"))
    fig.canvas.draw()
    assert fig.get_figwidth() == 16.0  # not a panel per type
    panel = fig.axes[-3]
    lines = [line for line in panel.get_lines() if line.get_linestyle() != "None"]
    assert [line.get_label() for line in lines] == list(COVARIANCE_TYPES)
    looks = {(tuple(line.get_color()), line.get_marker(), line.get_linestyle()) for line in lines}
    assert len(looks) == len(COVARIANCE_TYPES)
    legend = fig.axes[-1].get_legend()
    assert not legend.get_window_extent().overlaps(fig.axes[-1].get_window_extent())
    assert legend.get_window_extent().x1 <= fig.bbox.x1


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_the_html_report_shows_no_password(tmp_path, monkeypatch):
    url = "https://reader:s3cretpass@models.example.com/m"
    saved_model(tmp_path / "served" / "m", config={"model": {"init_params": url}, "data": {"path": url + "/data"}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=tmp_path / "served"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        model = f"http://reader:s3cretpass@127.0.0.1:{server.server_port}/m"
        run = invoke(tmp_path, monkeypatch, "report", model, "--output", "r.html")
    finally:
        server.shutdown()
        thread.join()
    assert run.returncode == 0, run.stderr
    page = (tmp_path / "r.html").read_text()
    assert "reader:***@127.0.0.1" in page  # the model is named, its password is not
    assert "pass" not in page and "pass" not in run.stdout + run.stderr


def test_without_matplotlib_the_error_names_this_python(tmp_path, monkeypatch):
    saved_model(tmp_path / "m")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an import finds where matplotlib is not installed
    run = invoke(tmp_path, monkeypatch, "report", "m", "--output", "r.png")
    command = f"{shlex.quote(sys.executable)} -m pip install 'gmm-pipeline[plot]'"
    assert_user_error(run, "gmm report needs matplotlib", tmp_path, "r.png")
    assert run.stderr.strip().endswith(command), run.stderr
