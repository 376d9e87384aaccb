"""A stored model remembers how it was fitted: both faces write the estimator's parameters, load_model reads them."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from helpers import COVARIANCE_TYPES, make_blobs, write_config, write_parquet
from sklearn.base import clone

from pipeline import BayesianGaussianMixture, GaussianMixture, load_model
from pipeline.cli import main
from pipeline.errors import InputError

FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_")


def _assert_same_params(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(got[name], value, err_msg=name)
        else:
            assert got[name] == value, name


def _assert_same_fit(a, b) -> None:
    for name in FITTED:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_a_saved_model_loads_with_its_parameters_and_refits_bit_identically(tmp_path, covariance_type):
    X = make_blobs(1, n_per=120)
    gm = GaussianMixture(
        3,
        covariance_type=covariance_type,
        reg_covar=1e-3,
        tol=1e-5,
        max_iter=40,
        n_init=2,
        init_params="random_from_data",
        random_state=11,
        prior={"shrinkage": 0.02},
        nan_policy="drop",
        acceleration="squarem",
        verbose_interval=5,
    ).fit(X)
    gm.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    _assert_same_params(loaded.get_params(), gm.get_params())
    _assert_same_fit(clone(loaded).fit(X), gm)
    assert (loaded.n_samples_, loaded.weight_sum_) == (gm.n_samples_, gm.weight_sum_) == (360, 360.0)


def test_explicit_start_arrays_are_kept(tmp_path):
    X = make_blobs(2, n_per=100)
    start = GaussianMixture(3, max_iter=0, random_state=0).fit(X)
    gm = GaussianMixture(
        3, means_init=start.means_, weights_init=start.weights_, precisions_init=start.precisions_, random_state=0
    ).fit(X)
    gm.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    _assert_same_params(loaded.get_params(), gm.get_params())
    _assert_same_fit(clone(loaded).fit(X), gm)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_a_variational_model_keeps_its_priors(tmp_path, covariance_type):
    X = make_blobs(3, n_per=100)
    bgm = BayesianGaussianMixture(
        n_components=5,
        covariance_type=covariance_type,
        weight_concentration_prior_type="dirichlet_distribution",
        weight_concentration_prior=0.05,
        mean_precision_prior=0.5,
        degrees_of_freedom_prior=4.0,
        max_iter=300,
        random_state=4,
    ).fit(X)
    bgm.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    _assert_same_params(loaded.get_params(), bgm.get_params())
    _assert_same_fit(clone(loaded).fit(X), bgm)


def test_a_python_save_writes_no_null_criteria_and_icl_is_bic_plus_the_classification_entropy(tmp_path):
    X = make_blobs(5, n_per=100)
    gm = GaussianMixture(3, random_state=0).fit(X)
    gm.save(tmp_path / "m")
    info = yaml.safe_load((tmp_path / "m" / "model.yaml").read_text())
    assert not [key for key, value in info.items() if value is None]
    assert "bic" not in info and "config" not in info and info["parameters"]["n_components"] == 3
    resp = gm.predict_proba(X)
    assert gm.icl(X) == pytest.approx(gm.bic(X) - 2 * np.log(resp.max(axis=1)).sum(), rel=1e-12)
    assert gm.icl(X) >= gm.bic(X)


def test_recorded_parameters_that_are_not_the_estimators_are_refused(tmp_path):
    gm = GaussianMixture(2, random_state=0).fit(make_blobs(6, n_per=50))
    gm.save(tmp_path / "m")
    path = tmp_path / "m" / "model.yaml"
    info = yaml.safe_load(path.read_text())
    for bad, pattern in (({"bogus": 1}, "bogus"), ({"reg_covar": -1.0}, "reg_covar")):
        path.write_text(yaml.safe_dump({**info, "parameters": {**info["parameters"], **bad}}))
        with pytest.raises(InputError, match=rf"model\.yaml: parameters: .*{pattern}"):
            load_model(tmp_path / "m")


def test_a_model_of_format_1_loads_with_what_it_recorded(tmp_path):
    gm = GaussianMixture(2, covariance_type="diag", prior="default", random_state=0).fit(make_blobs(6, n_per=50))
    gm.save(tmp_path / "m")
    path = tmp_path / "m" / "model.yaml"
    info = yaml.safe_load(path.read_text())
    del info["parameters"]
    path.write_text(yaml.safe_dump({**info, "format_version": 1}))
    loaded = load_model(tmp_path / "m")
    assert (loaded.n_components, loaded.covariance_type) == (2, "diag")
    assert loaded.prior == info["prior"]
    np.testing.assert_array_equal(loaded.means_, gm.means_)


@pytest.mark.parametrize(
    "model",
    [
        {
            "prior": "default",
            "covariance_type": "tied",
            "reg_covar": 1e-4,
            "tol": 1e-6,
            "random_state": 3,
            "acceleration": "squarem",
        },
        {"algorithm": "variational", "covariance_type": "full", "n_components": 6, "tol": 1e-4, "max_iter": 300},
    ],
    ids=["map", "variational"],
)
def test_a_gmm_fit_model_loads_with_the_resolved_config_and_refits_alike(tmp_path, monkeypatch, model):
    X = make_blobs(7, n_per=2000)
    write_parquet(tmp_path / "data", X, n_files=2)
    config = {"n_components": 3, "max_iter": 200, **model}
    write_config(
        tmp_path / "c.yaml",
        data={"path": "data"},
        model=config,
        cluster={"n_workers": 1},
        output={"path": "out"},
    )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["fit", "c.yaml"])
    assert result.exit_code == 0, result.stderr
    loaded = load_model(tmp_path / "out")
    params = loaded.get_params()
    for key in ("covariance_type", "reg_covar", "max_iter", "random_state", "n_components"):
        assert params[key] == {"reg_covar": 1e-6, "random_state": 0, **config}.get(key), key
    info = yaml.safe_load((tmp_path / "out" / "model.yaml").read_text())
    assert info["converged"] is True  # the variational fit's tol is per row, as README says
    if model.get("algorithm") == "variational":
        assert params["tol"] == pytest.approx(1e-4 * len(X))  # the estimator's tol is on the total bound
        assert all(params[key] is not None for key in ("weight_concentration_prior", "mean_prior", "covariance_prior"))
    else:
        assert set(params["prior"]) == {"shrinkage", "mean", "dof", "scale"}  # the numbers used, from the data
        assert params["acceleration"] == "squarem"
    refit = clone(loaded).fit(X)
    for name in FITTED:  # other blocks than the Parquet files' row groups: equal to round-off, not to the bit
        np.testing.assert_allclose(getattr(refit, name), getattr(loaded, name), rtol=1e-7, atol=1e-9, err_msg=name)
    inspected = CliRunner().invoke(main, ["inspect", "out", "--json"])
    assert '"parameters"' in inspected.stdout


def test_inspect_shows_the_parameters_a_model_was_fitted_with(tmp_path, monkeypatch):
    gm = GaussianMixture(2, reg_covar=1e-3, means_init=[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], random_state=0)
    gm.fit(make_blobs(6, n_per=50)).save(tmp_path / "m")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["inspect", "m"])
    assert result.exit_code == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if "fitted with" in line)
    assert "reg_covar=0.001" in line and "means_init=<array 2x3>" in line and "random_state=0" in line


def test_save_replaces_only_a_model_directory(tmp_path):
    gm = GaussianMixture(2, random_state=0).fit(make_blobs(3, n_per=50))
    (tmp_path / "f").write_text("keep me")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_text("keep me too")
    with pytest.raises(InputError, match=r"^save\(\): path '.*f' exists and is a file; .*remove it or choose"):
        gm.save(tmp_path / "f")
    with pytest.raises(InputError, match=r"^save\(\): path '.*d' exists and is a directory that is not a model"):
        gm.save(tmp_path / "d")
    assert (tmp_path / "f").read_text() == "keep me" and (tmp_path / "d" / "a").read_text() == "keep me too"
    gm.save(tmp_path / "m")
    gm.save(tmp_path / "m")  # its own earlier output: replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f", "m"]
