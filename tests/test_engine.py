"""One fitting core under both faces: gmm fit and the estimators give the same bits from the same data and spec."""

from __future__ import annotations

import warnings

import dask.dataframe as dd
import numpy as np
import pytest
from click.testing import CliRunner
from helpers import COVARIANCE_TYPES, make_blobs, write_config, write_parquet

from pipeline import BayesianGaussianMixture, GaussianMixture, load_model
from pipeline.cli import main
from pipeline.errors import ConvergenceWarning

ALGORITHMS = {
    "em": ({}, lambda ct: GaussianMixture(3, covariance_type=ct, random_state=0, max_iter=30, tol=1e-6)),
    "map": (
        {"prior": "default"},
        lambda ct: GaussianMixture(3, covariance_type=ct, random_state=0, max_iter=30, tol=1e-6, prior="default"),
    ),
    "squarem": (
        {"acceleration": "squarem"},
        lambda ct: GaussianMixture(
            3, covariance_type=ct, random_state=0, max_iter=30, tol=1e-6, acceleration="squarem"
        ),
    ),
    "variational": (
        {"algorithm": "variational"},
        # the CLI's tol is per row, the estimator's on the total bound: 0 in both stops at max_iter alike
        lambda ct: BayesianGaussianMixture(n_components=3, covariance_type=ct, random_state=0, max_iter=30, tol=0),
    ),
}


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_gmm_fit_and_the_estimator_give_the_same_bits(tmp_path, monkeypatch, client, algorithm, covariance_type):
    X = make_blobs(21, n_per=400)
    write_parquet(tmp_path / "data", X, n_files=3)
    extra, estimator = ALGORITHMS[algorithm]
    tol = 0.0 if algorithm == "variational" else 1e-6
    model = {"n_components": 3, "covariance_type": covariance_type, "max_iter": 30, "tol": tol, **extra}
    write_config(tmp_path / "c.yaml", data={"path": "data"}, model=model, output={"path": "out"})
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["fit", "c.yaml", "--scheduler", client.scheduler.address])
    assert result.exit_code == 0, result.stderr
    cli = load_model(tmp_path / "out")
    frame = dd.read_parquet(str(tmp_path / "data"))  # one partition per file, as gmm fit reads them
    assert frame.npartitions == 3
    with client.as_current(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # tol=0: both stop at max_iter
        ours = estimator(covariance_type).fit(frame)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(ours, name), getattr(cli, name), err_msg=name)
    assert (ours.n_iter_, ours.lower_bounds_) == (cli.n_iter_, cli.lower_bounds_)
