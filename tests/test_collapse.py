"""Collapse is judged at the data's own scale, the same way for every covariance type (both faces)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers import COVARIANCE_TYPES, make_blobs, random_params, write_config, write_parquet

from pipeline import GaussianMixture, kernels
from pipeline.errors import CollapsedComponentsWarning, ComponentCollapseError
from pipeline.kernels.algorithms import COLLAPSE_RTOL, collapsed_components, unsupported_components
from pipeline.kernels.summary import block_summary


def _two_points(scale=1.0):
    rng = np.random.default_rng(1)
    points = rng.normal(size=(2, 3)) * 7.3 + 100.0
    return np.repeat(points, 25, axis=0) * scale


def _with_component(params, k, covariance):
    """``params`` with component ``k``'s covariance (type-shaped, per component) replaced."""
    cov = np.array(params.covariances, dtype=float)
    if params.covariance_type == "tied":
        cov = covariance
    else:
        cov[k] = covariance
    return kernels.make_params(params.weights, params.means, cov, params.covariance_type)


def _tiny(covariance_type, d, value):
    return {"full": np.eye(d) * value, "tied": np.eye(d) * value, "diag": np.full(d, value), "spherical": value}[
        covariance_type
    ]


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_a_component_on_single_points_without_reg_covar_is_an_error_for_every_type(covariance_type):
    with pytest.raises(ComponentCollapseError, match="reg_covar"):
        GaussianMixture(10, covariance_type=covariance_type, reg_covar=0, random_state=0).fit(_two_points())


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_degenerate_components_are_found_relative_to_the_data_scale(covariance_type):
    params = random_params(covariance_type, k=3, d=3, seed=2)
    data_variance = np.array([4.0, 9.0, 1.0])
    assert unsupported_components(params, data_variance, 0.0).size == 0
    # A tiny positive variance (as a diag fit on two points reached: 2e-300) passes a positivity check, not this one.
    degenerate = _with_component(params, 1, _tiny(covariance_type, 3, 2e-300))
    want = [0, 1, 2] if covariance_type == "tied" else [1]
    assert unsupported_components(degenerate, data_variance, 0.0).tolist() == want
    # The same mixture in other units: the same verdict (relative, not an absolute floor).
    for scale in (1e-6, 1e6):
        scaled = kernels.make_params(
            params.weights, params.means * scale, params.covariances * scale**2, covariance_type
        )
        assert unsupported_components(scaled, data_variance * scale**2, 0.0).size == 0
        scaled_bad = _with_component(scaled, 1, _tiny(covariance_type, 3, 2e-300 * scale**2))
        assert unsupported_components(scaled_bad, data_variance * scale**2, 0.0).tolist() == want
    # A narrow but real component (1000 times below the bound's reciprocal) is not degenerate.
    narrow = _with_component(params, 1, _tiny(covariance_type, 3, 1e3 * COLLAPSE_RTOL * data_variance.max()))
    assert unsupported_components(narrow, data_variance, 0.0).size == 0


def test_a_full_covariance_degenerate_along_an_oblique_direction_is_found():
    params = random_params("full", k=2, d=3, seed=3)
    direction = np.array([1.0, 1.0, 0.0]) / np.sqrt(2.0)
    flat = 5.0 * (np.eye(3) - np.outer(direction, direction)) + 1e-300 * np.outer(direction, direction)
    assert np.diagonal(flat).min() > 1  # every variance on the axes is large
    bad = _with_component(params, 0, flat)
    assert unsupported_components(bad, np.ones(3), 0.0).tolist() == [0]


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_reg_covar_holding_a_point_component_up_is_a_warning_for_every_type(covariance_type):
    with pytest.warns(CollapsedComponentsWarning, match="collapsed onto single points"):
        GaussianMixture(10, covariance_type=covariance_type, reg_covar=1e-6, random_state=0).fit(_two_points())


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_data_on_a_small_scale_is_not_called_collapsed(covariance_type):
    # Every variance of these data is far below 2 * reg_covar (the old absolute rule called all of them collapsed).
    X = make_blobs(0, n_per=200) * 1e-5
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapsedComponentsWarning)
        gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    assert kernels.dense_covariances(gm._params()).max() < 2 * gm.reg_covar
    summary = block_summary(X, None)
    assert collapsed_components(gm._params(), gm.reg_covar, summary.variance).size == 0


def test_the_scan_gives_each_column_its_variance_across_blocks():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 3)) * [1.0, 1e-3, 1e4] + [1e6, 0.0, -5.0]
    X[rng.random(X.shape) < 0.1] = np.nan
    w = rng.uniform(0.5, 2.0, size=1000)
    parts = [block_summary(X[a:b], w[a:b]) for a, b in ((0, 10), (10, 500), (500, 500), (500, 1000))]
    total = parts[0] + parts[1] + parts[2] + parts[3]
    observed = ~np.isnan(X)
    for j in range(3):
        x, weights = X[observed[:, j], j], w[observed[:, j]]
        mean = np.average(x, weights=weights)
        # Column 0 sits at 1e6 with a spread of 1: raw moments (E[x^2] - E[x]^2) would lose about 1e-4 of it.
        np.testing.assert_allclose(total.variance[j], np.average((x - mean) ** 2, weights=weights), rtol=1e-8)


def test_gmm_fit_names_the_collapse_for_diag(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from pipeline.cli import main

    write_parquet(tmp_path / "data", _two_points(), n_files=2)
    write_config(
        tmp_path / "c.yaml",
        data={"path": "data"},
        model={"n_components": 10, "covariance_type": "diag", "reg_covar": 0.0},
        cluster={"n_workers": 1},
        output={"path": "out"},
    )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["fit", "c.yaml"])
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "reg_covar" in lines[-1] and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
