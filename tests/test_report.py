"""``gmm report``: what a person sees, checked on the figure, on the PNG, and in a real headless Chromium."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import gmm, write_config

from pipeline import report

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


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
    # one panel per covariance type, the criterion named, the chosen model marked
    assert [p.get_title() for p in panels] == [f"{ct} covariances" for ct in ("full", "tied", "diag", "spherical")]
    assert "selection by ICL" in fig.subfigs[1]._suptitle.get_text()
    labels = [t.get_text() for p in panels for t in p.get_legend().get_texts()]
    assert "ICL (chose the model)" in labels and any(label.startswith("chosen: K=") for label in labels)
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


@pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="Chromium and chromedriver (Debian's chromium, chromium-driver) are not installed here",
)
def test_the_html_page_renders_in_a_real_browser_without_errors(selected):
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
    assert "selection.csv" in (selected / "page.html").read_text() and yaml  # the table is named


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
