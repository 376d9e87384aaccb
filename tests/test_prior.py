"""MAP EM under mclust's conjugate prior, against a naive reference written from the paper's formulas
(tests/reference_map.py, which imports nothing of ours); degenerate data; checked starts.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import reference_map as ref
import yaml
from helpers import (
    COVARIANCE_TYPES,
    assert_user_error,
    em_runs,
    gmm,
    make_blobs,
    sklearn_start_params,
    stats_of_resp,
    write_config,
    write_parquet,
)

from pipeline import GaussianMixture, data, em, init, kernels
from pipeline.errors import ComponentCollapseError, ConvergenceWarning
from pipeline.kernels.prior import Prior
from pipeline.passes import blocks_from_arrays


def ours_of(prior: dict) -> Prior:
    return Prior(prior["shrinkage"], np.asarray(prior["mean"], float), prior["dof"], np.asarray(prior["scale"], float))


def moments(X, sample_weight=None):
    return init.data_moments(blocks_from_arrays(X, sample_weight), X[0])


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_the_default_prior_is_mclusts(covariance_type):
    X = make_blobs(110)
    w = np.arange(X.shape[0]) % 3 + 0.5
    for weights in (None, w):
        theirs = ref.default_prior(X, 3, covariance_type, sample_weight=weights)
        ours = kernels.default_prior(moments(X, weights), 3, covariance_type)
        assert ours.shrinkage == theirs["shrinkage"] == 0.01 and ours.dof == theirs["dof"] == 5
        np.testing.assert_allclose(ours.mean, theirs["mean"], rtol=1e-12)
        np.testing.assert_allclose(ours.scale, theirs["scale"], rtol=1e-10)
    few = X[:3]  # n <= d: mclust keeps only the diagonal of var(X) for full and tied
    np.testing.assert_allclose(
        kernels.default_prior(moments(few), 2, covariance_type).scale,
        ref.default_prior(few, 2, covariance_type)["scale"],
        rtol=1e-10,
    )


@pytest.mark.parametrize("shrinkage", [0.01, 0.0, 3.0])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_one_map_m_step_equals_the_papers(covariance_type, shrinkage):
    X = make_blobs(111, n_per=60)
    rng = np.random.default_rng(111)
    resp = rng.dirichlet(np.ones(4), size=X.shape[0])
    w = rng.uniform(0.2, 3.0, size=X.shape[0])
    prior = {**ref.default_prior(X, 4, covariance_type, sample_weight=w), "shrinkage": shrinkage}
    shift = np.repeat(X.mean(axis=0)[None] + 1.5, 4, axis=0)  # moments about some shared point
    got = kernels.m_step(stats_of_resp(X, resp, shift, covariance_type, w), shift, covariance_type, 0.0, ours_of(prior))
    weights, means, covariances = ref.map_m_step(X, resp, prior, covariance_type, sample_weight=w)
    np.testing.assert_allclose(got.weights, weights, rtol=1e-10)
    np.testing.assert_allclose(got.means, means, rtol=1e-10)
    np.testing.assert_allclose(got.covariances, covariances, rtol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_prior_is_the_papers_density_up_to_its_constants(covariance_type):
    # Ours leaves out the normalising constants (infinite for a singular scale): differences between two sets of
    # parameters must agree with the full density's.
    X = make_blobs(112)
    prior = ref.default_prior(X, 3, covariance_type)
    a = sklearn_start_params(X, 3, covariance_type)
    b = kernels.m_step(
        kernels.block_statistics(X, None, kernels.prepare(a)), kernels.prepare(a).shift, covariance_type, 1e-6
    )
    ours = kernels.log_prior(a, ours_of(prior)) - kernels.log_prior(b, ours_of(prior))
    theirs = ref.log_prior(a.means, a.covariances, prior, covariance_type) - ref.log_prior(
        b.means, b.covariances, prior, covariance_type
    )
    assert ours == pytest.approx(theirs, rel=1e-9)
    assert abs(theirs) > 1e-3  # the two differ enough for the comparison to mean something


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_a_map_fit_on_partitioned_parquet_on_a_cluster_equals_the_reference(tmp_path, client, covariance_type):
    X = make_blobs(113)
    write_parquet(tmp_path / "data", X, 4)
    start = sklearn_start_params(X, 3, covariance_type)
    prior = ref.default_prior(X, 3, covariance_type)
    with client.as_current():
        source = data.block_source(data.open_dataset(str(tmp_path / "data"))).persist()
        (run,) = em.run_em(source, em_runs([start], reg_covar=0.0, prior=ours_of(prior)), tol=0.0, max_iter=15)
    weights, means, covariances, history = ref.map_em(
        X, start.weights, start.means, start.covariances, prior, covariance_type, 15
    )
    np.testing.assert_allclose(run.params.weights, weights, rtol=1e-9)
    np.testing.assert_allclose(run.params.means, means, rtol=1e-9)
    np.testing.assert_allclose(run.params.covariances, covariances, rtol=1e-9)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_the_log_posterior_never_decreases(covariance_type):
    X = make_blobs(114)
    source = blocks_from_arrays(X, rows_per_block=250)
    (start,) = em_runs([sklearn_start_params(X, 4, covariance_type)])
    prior = kernels.default_prior(moments(X), 4, covariance_type)
    objectives = []
    em.run_em(
        source,
        em_runs([start.state], prior=prior),
        tol=0.0,
        max_iter=40,
        on_iteration=lambda rep: objectives.append(rep.runs[0].objective),
    )
    steps = np.diff(objectives)
    assert (steps >= -1e-12).all(), steps.min()
    assert objectives[-1] > objectives[0]


def _degenerate(case: str) -> tuple[np.ndarray, int]:
    X = make_blobs(115, n_per=100)
    if case == "duplicates":
        return np.concatenate([X, np.repeat([[20.0, 20.0, 20.0]], 50, axis=0)]), 4
    if case == "constant column":
        X[:, 2] = 7.0
        return X, 3
    if case == "more components than distinct rows":
        return np.repeat([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [-1.0, 0.0, 1.0]], 40, axis=0), 5
    return np.concatenate([X, [[1e3, -1e3, 1e3]]]), 4  # a single point far away


CASES = ["duplicates", "constant column", "more components than distinct rows", "a single far point"]
# Data that are not degenerate for a covariance type: tied pools one covariance over all components, so a
# component on a single point borrows it; spherical averages the variances over features, so a constant column
# alone leaves them positive.
SOUND_WITHOUT_PRIOR = {("tied", "duplicates"), ("tied", "a single far point"), ("spherical", "constant column")}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_degenerate_data_fits_with_the_prior_and_fails_clearly_without(covariance_type, case):
    X, k = _degenerate(case)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not one warning
        gm = GaussianMixture(k, covariance_type=covariance_type, prior="default", random_state=0).fit(X)
    for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert np.isfinite(getattr(gm, attr)).all(), attr
    assert np.isfinite(gm.score(X))
    if (covariance_type, case) in SOUND_WITHOUT_PRIOR:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            plain = GaussianMixture(k, covariance_type=covariance_type, reg_covar=0.0, random_state=0).fit(X)
        # no component is degenerate at the data's scale (the collapse check's own test)
        v = X.var(axis=0)
        smallest = np.linalg.eigvalsh(kernels.dense_covariances(plain._params())).min()
        assert np.isfinite(plain.covariances_).all() and smallest > 1e-6 * v[v > 0].min()
        return
    with pytest.raises(
        ComponentCollapseError,
        match=r"ill-defined empirical covariance .* increase reg_covar .*"
        r"prior.*or reduce n_components",
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            GaussianMixture(k, covariance_type=covariance_type, reg_covar=0.0, random_state=0).fit(X)


def test_an_empty_component_shrinks_to_the_prior():
    X = make_blobs(116)
    resp = np.zeros((X.shape[0], 3))
    resp[:, 0], resp[:, 1] = 0.5, 0.5  # component 2 owns nothing
    shift = np.repeat(X.mean(axis=0)[None], 3, axis=0)
    prior = kernels.default_prior(moments(X), 3, "full")
    got = kernels.m_step(stats_of_resp(X, resp, shift, "full"), shift, "full", 0.0, prior)
    np.testing.assert_allclose(got.means[2], prior.mean, rtol=1e-12)
    np.testing.assert_allclose(got.covariances[2], prior.scale / (prior.dof + 3 + 2), rtol=1e-10)
    plain = kernels.m_step(stats_of_resp(X, resp, shift, "diag"), shift, "diag", 1e-6)  # no prior: no 0/0
    assert np.isfinite(plain.means).all() and plain.weights[2] < 1e-15


@pytest.mark.parametrize(
    ("given", "pattern"),
    [
        ({"weights_init": [0.5, 0.5]}, r"The parameter 'weights' should have the shape of \(3,\), but got \(2,\)"),
        ({"weights_init": [0.7, 0.7, -0.4]}, r"The parameter 'weights' should be in the range \[0, 1\]"),
        (
            {"weights_init": [0.2, 0.2, 0.2]},
            r"The parameter 'weights' should be normalized, but got sum\(weights\) = "
            r"0\.60000",
        ),
        ({"weights_init": [np.nan, 0.5, 0.5]}, r"The parameter 'weights' holds NaN or infinite values"),
        (
            {"means_init": np.zeros((3, 2))},
            r"The parameter 'means' should have the shape of \(3, 3\), but got \(3, 2\)",
        ),
        ({"precisions_init": np.ones((3, 3))}, r"The parameter 'precisions' should have the shape of \(3, 3, 3\)"),
        (
            {"precisions_init": np.stack([np.eye(3), np.eye(3), -np.eye(3)])},
            r"'full precision' should be symmetric, positive-definite",
        ),
        (
            {"precisions_init": np.stack([np.eye(3), np.eye(3), np.triu(np.ones((3, 3)))])},
            r"'full precision' should be symmetric, positive-definite",
        ),
    ],
)
def test_bad_starts_are_refused_as_scikit_learn_refuses_them(given, pattern):
    with pytest.raises(ValueError, match=pattern):
        GaussianMixture(3, **given).fit(make_blobs(117))


@pytest.mark.parametrize(("covariance_type", "precisions"), [("diag", -np.ones((3, 3))), ("spherical", np.zeros(3))])
def test_bad_diagonal_precisions_are_refused(covariance_type, precisions):
    with pytest.raises(ValueError, match=rf"'{covariance_type} precision' should be positive"):
        GaussianMixture(3, covariance_type=covariance_type, precisions_init=precisions).fit(make_blobs(118))


def test_the_cli_fits_with_the_prior_and_records_it(tmp_path, client):
    X, _ = _degenerate("more components than distinct rows")
    write_parquet(tmp_path / "data", X, 2)
    write_config(
        tmp_path / "c.yaml",
        data={"path": "data"},
        output={"path": "out"},
        model={"n_components": 5, "prior": "default", "covariance_type": "diag"},
    )
    run = gmm(tmp_path, "fit", "c.yaml", "--scheduler", client.scheduler.address)
    assert run.returncode == 0 and "warning" not in run.stderr, run.stderr
    info = yaml.safe_load((tmp_path / "out" / "model.yaml").read_text())
    expected = kernels.default_prior(moments(X), 5, "diag")
    assert info["prior"]["shrinkage"] == 0.01 and info["prior"]["dof"] == 5.0
    np.testing.assert_allclose(info["prior"]["mean"], expected.mean, rtol=1e-12)
    assert info["prior"]["scale"] == pytest.approx(float(expected.scale), rel=1e-12)
    shown = gmm(tmp_path, "inspect", "out")
    assert "prior: shrinkage 0.01, dof 5" in shown.stdout
    # a hyperparameter given replaces the default's; a bad one is named
    run = gmm(
        tmp_path,
        "fit",
        "c.yaml",
        "--set",
        "model.prior={shrinkage: 0.5}",
        "--set",
        "output.path=out2",
        "--scheduler",
        client.scheduler.address,
    )
    assert run.returncode == 0, run.stderr
    assert yaml.safe_load((tmp_path / "out2" / "model.yaml").read_text())["prior"]["shrinkage"] == 0.5
    bad = gmm(
        tmp_path,
        "fit",
        "c.yaml",
        "--set",
        "model.prior={mean: [1.0]}",
        "--set",
        "output.path=out3",
        "--scheduler",
        client.scheduler.address,
    )
    assert_user_error(
        bad, r"model\.prior: prior mean must be 3 numbers \(one per feature\), got shape \(1,\)", tmp_path, "out3"
    )
    # with reg_covar = 0 and no prior the same data stop with the advice
    assert_user_error(
        gmm(
            tmp_path,
            "fit",
            "c.yaml",
            "--set",
            "model.prior=null",
            "--set",
            "model.reg_covar=0",
            "--set",
            "output.path=out4",
            "--scheduler",
            client.scheduler.address,
        ),
        r"ill-defined empirical covariance .*increase reg_covar .*model\.prior: default.*or reduce n_components",
        tmp_path,
        "out4",
    )


def test_the_estimators_prior_parameter():
    X = make_blobs(119)
    gm = GaussianMixture(3, prior={"shrinkage": 0.1, "dof": 7.0}, random_state=0).fit(X)
    assert gm.prior_["shrinkage"] == 0.1 and gm.prior_["dof"] == 7.0 and len(gm.prior_["mean"]) == 3
    with pytest.raises(ValueError, match=r"unknown keys \['shrink'\]"):
        GaussianMixture(3, prior={"shrink": 1}).fit(X)
    with pytest.raises(ValueError, match="prior dof must be > 2"):
        GaussianMixture(3, prior={"dof": 1.0}).fit(X)


def test_of_several_map_starts_the_highest_log_posterior_wins():
    # the log-likelihood alone would pick the first: the prior's term is what MAP EM maximises
    runs = [
        em.EMRun(None, None, lower_bound=-1.0, objective=-5.0),
        em.EMRun(None, None, lower_bound=-2.0, objective=-3.0),
    ]
    assert em.best_run(runs) is runs[1]
