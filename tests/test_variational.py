"""The variational Bayesian mixture against scikit-learn 1.9, on NumPy and on partitioned Parquet on a cluster;
the CLI's variational fits; ICL and per-row uncertainty.

Both sides start from the same responsibilities: scikit-learn's by overriding its ``_initialize_parameters``
(so it calls ``_initialize(X, resp)``), ours through the fitting core's given start (``engine.Warm``: the
first M-step takes statistics computed here, with NumPy, from the same ``resp``).
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from helpers import COVARIANCE_TYPES, gmm, kill_at_line, make_blobs, stats_of_resp, write_config, write_parquet
from sklearn.mixture import BayesianGaussianMixture as SkBGM
from sklearn.mixture import GaussianMixture as SkGMM

from pipeline import BayesianGaussianMixture, data, engine, load_model, passes
from pipeline.errors import ConvergenceWarning

PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")
ATTRS = ("weights_", "means_", "covariances_", "precisions_cholesky_", "mean_precision_", "degrees_of_freedom_")


def random_resp(n, k, seed=0):
    resp = np.random.default_rng(seed).uniform(size=(n, k))
    return resp / resp.sum(axis=1, keepdims=True)


def sklearn_fit(X, resp, **params):
    class FromResp(SkBGM):
        def _initialize_parameters(self, X, random_state, xp=None):
            self._initialize(X, resp)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return FromResp(**params).fit(X)


def first_m_step(X, resp, sample_weight=None):
    """A start as the core takes it (:class:`pipeline.engine.Warm`): the step's first M-step from ``resp``."""
    shift = np.repeat(X.mean(axis=0)[None], resp.shape[1], axis=0)
    return lambda step: step.m_step(stats_of_resp(X, resp, shift, step.covariance_type, sample_weight), shift)


def ours_fit(X, resp, sample_weight=None, **params):
    class FromResp(BayesianGaussianMixture):
        def _start(self):
            if self.warm_start and self.__sklearn_is_fitted__():
                return super()._start()
            return engine.Warm(first_m_step(X, resp, sample_weight))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return FromResp(**params).fit(X, sample_weight=sample_weight)


def assert_same(ours, theirs, rtol=1e-6):
    for attr in ATTRS:
        np.testing.assert_allclose(getattr(ours, attr), getattr(theirs, attr), rtol=rtol, atol=1e-12, err_msg=attr)
    np.testing.assert_allclose(
        np.asarray(ours.weight_concentration_), np.asarray(theirs.weight_concentration_), rtol=rtol
    )
    assert ours.lower_bound_ == pytest.approx(float(np.squeeze(theirs.lower_bound_)), rel=rtol)
    assert ours.n_iter_ == theirs.n_iter_


@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_parity_with_sklearn_on_numpy(covariance_type, prior_type):
    X = make_blobs(100)
    resp = random_resp(X.shape[0], 6)
    params = dict(
        n_components=6, covariance_type=covariance_type, weight_concentration_prior_type=prior_type, tol=0, max_iter=40
    )
    assert_same(ours_fit(X, resp, **params), sklearn_fit(X, resp, **params))


def test_parity_with_sklearn_with_given_priors():
    X = make_blobs(101)
    resp = random_resp(X.shape[0], 4, seed=1)
    params = dict(
        n_components=4,
        covariance_type="diag",
        tol=0,
        max_iter=30,
        weight_concentration_prior=0.5,
        mean_precision_prior=0.3,
        mean_prior=[1.0, 0.0, -1.0],
        degrees_of_freedom_prior=4.0,
        covariance_prior=[2.0, 1.0, 0.5],
    )
    assert_same(ours_fit(X, resp, **params), sklearn_fit(X, resp, **params))


def test_a_warm_start_on_other_data_takes_that_datas_priors_as_sklearn():
    X, other = make_blobs(102), make_blobs(103) + 1.5
    resp = random_resp(X.shape[0], 4, seed=2)
    params = dict(n_components=4, covariance_type="full", tol=0, max_iter=15, warm_start=True)
    ours, theirs = ours_fit(X, resp, **params), sklearn_fit(X, resp, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours.fit(other), theirs.fit(other)
    np.testing.assert_allclose(ours.mean_prior_, other.mean(axis=0), rtol=1e-12)
    assert_same(ours, theirs)


@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_parity_on_partitioned_parquet_on_a_cluster(tmp_path, client, covariance_type, prior_type):
    X = make_blobs(102)
    resp = random_resp(X.shape[0], 5, seed=2)
    write_parquet(tmp_path / "data", X, 4)
    theirs = sklearn_fit(
        X,
        resp,
        n_components=5,
        covariance_type=covariance_type,
        weight_concentration_prior_type=prior_type,
        tol=0,
        max_iter=25,
    )
    template = BayesianGaussianMixture(
        n_components=5, covariance_type=covariance_type, weight_concentration_prior_type=prior_type
    )
    with client.as_current():
        source, summary = passes.scan(data.block_source(data.open_dataset(str(tmp_path / "data"))).persist())
        spec = replace(template._spec(), tol=0, max_iter=25)
        candidate = engine.Candidate(5, covariance_type)
        fitted = engine.fit(
            source, summary, spec, [candidate], template._naming(3), warm=engine.Warm(first_m_step(X, resp))
        )
    template._set_fitted(fitted.outcomes[0].run, X.shape[1])
    assert_same(template, theirs)


def test_weights_count_as_repeated_rows():
    X = make_blobs(103)
    w = (np.arange(X.shape[0]) % 3 + 1).astype(float)
    resp = random_resp(X.shape[0], 4, seed=3)
    weighted = ours_fit(X, resp, sample_weight=w, n_components=4, tol=0, max_iter=15)
    repeated = ours_fit(
        np.repeat(X, w.astype(int), axis=0), np.repeat(resp, w.astype(int), axis=0), n_components=4, tol=0, max_iter=15
    )
    for attr in ATTRS:
        np.testing.assert_allclose(getattr(weighted, attr), getattr(repeated, attr), rtol=1e-9, err_msg=attr)


def test_predictions_use_the_variational_expectations_as_sklearn_does():
    X = make_blobs(104)
    resp = random_resp(X.shape[0], 5, seed=4)
    params = dict(n_components=5, tol=0, max_iter=20)
    ours, theirs = ours_fit(X, resp, **params), sklearn_fit(X, resp, **params)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(ours.score_samples(X), theirs.score_samples(X), rtol=1e-9)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


def test_save_and_load_keep_the_posterior(tmp_path):
    X = make_blobs(105)
    bgm = BayesianGaussianMixture(n_components=6, random_state=0).fit(X)
    bgm.save(tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert isinstance(back, BayesianGaussianMixture)
    for attr in (*ATTRS, "lower_bound_", "mean_prior_", "covariance_prior_"):
        np.testing.assert_array_equal(getattr(back, attr), getattr(bgm, attr), err_msg=attr)
    np.testing.assert_array_equal(back.predict_proba(X), bgm.predict_proba(X))


@pytest.fixture(scope="module")
def five_blobs(tmp_path_factory):
    root = tmp_path_factory.mktemp("vb")
    assert (
        gmm(
            root,
            "generate",
            "--output",
            "data",
            "--n-samples",
            "20000",
            "--n-features",
            "4",
            "--n-components",
            "5",
            "--partitions",
            "4",
            "--seed",
            "7",
        ).returncode
        == 0
    )
    return root


def test_the_dirichlet_process_finds_five_of_twenty_components_through_the_cli(five_blobs, client):
    write_config(
        five_blobs / "v.yaml",
        data={"path": "data"},
        output={"path": "vb"},
        # tol is per row: a Dirichlet process prunes slowly, long after the bound seems settled (README)
        model={"n_components": 20, "algorithm": "variational", "max_iter": 500, "random_state": 1, "tol": 1e-7},
    )
    run = gmm(five_blobs, "fit", "v.yaml", "--scheduler", client.scheduler.address)
    assert run.returncode == 0, run.stderr
    shown = gmm(five_blobs, "inspect", "vb")
    assert "effective components: 5 (weight above 0.01)" in shown.stdout, shown.stdout
    info = yaml.safe_load((five_blobs / "vb" / "model.yaml").read_text())
    assert info["algorithm"] == "variational" and info["variational"]["weight_concentration_prior"] == 0.05
    assert "bic" not in info  # a maximum-likelihood criterion: not for the variational mixture
    with np.load(five_blobs / "vb" / "model.npz") as npz:
        assert npz["weight_concentration"].shape == (2, 20) and npz["degrees_of_freedom"].shape == (20,)
    scored = gmm(
        five_blobs,
        "score",
        "--model",
        "vb",
        "--input",
        "data",
        "--output",
        "scores",
        "--uncertainty",
        "--scheduler",
        client.scheduler.address,
    )
    assert scored.returncode == 0, scored.stderr
    model = load_model(five_blobs / "vb")
    table = pq.read_table(five_blobs / "scores" / "part-00000.parquet")
    X = pq.read_table(five_blobs / "data" / "part-00000.parquet").to_pandas()  # named columns, as fitted
    np.testing.assert_array_equal(table.column("label").to_numpy(), model.predict(X))
    assert gmm(five_blobs, "report", "vb", "--output", "vb.png").returncode == 0


def test_a_variational_fit_resumes_to_the_same_bytes_on_any_number_of_workers(five_blobs, client, tmp_path):
    config = {
        "data": {"path": str(five_blobs / "data")},
        "model": {"n_components": 12, "algorithm": "variational", "tol": 0.0, "max_iter": 60},
    }
    write_config(tmp_path / "a.yaml", **config, output={"path": "a"})
    write_config(tmp_path / "b.yaml", **config, output={"path": "b"}, cluster={"n_workers": 1})
    assert gmm(tmp_path, "fit", "a.yaml", "--scheduler", client.scheduler.address).returncode == 0
    kill_at_line(tmp_path, "iteration 5:", "fit", "b.yaml")  # its own 1-worker LocalCluster
    resumed = gmm(tmp_path, "fit", "b.yaml")
    assert resumed.returncode == 0 and "resuming from iteration" in resumed.stderr, resumed.stderr
    assert (tmp_path / "a" / "model.npz").read_bytes() == (tmp_path / "b" / "model.npz").read_bytes()


def test_icl_and_uncertainty_match_their_definitions(tmp_path, client):
    X = make_blobs(106)
    write_parquet(tmp_path / "data", X, 2)
    write_config(tmp_path / "c.yaml", data={"path": "data"}, model={"max_iter": 200}, output={"path": "sel"})
    run = gmm(
        tmp_path, "select", "c.yaml", "--k", "2..4", "--criterion", "icl", "--scheduler", client.scheduler.address
    )
    assert run.returncode == 0 and "best by ICL" in run.stdout, run.stderr
    model = load_model(tmp_path / "sel")
    sk = model.to_sklearn()
    X = pd.DataFrame(X, columns=["x0", "x1", "x2"])  # the names the model was fitted with
    proba = sk.predict_proba(X)
    info = yaml.safe_load((tmp_path / "sel" / "model.yaml").read_text())
    # mclust's ICL is BIC + 2 sum log max_k z_ik with its BIC's sign (higher is better); here lower is better
    assert info["icl"] == pytest.approx(sk.bic(X) - 2 * np.log(proba.max(axis=1)).sum(), rel=1e-9)
    scored = gmm(
        tmp_path,
        "score",
        "--model",
        "sel",
        "--input",
        "data",
        "--output",
        "s",
        "--uncertainty",
        "--probabilities",
        "--scheduler",
        client.scheduler.address,
    )
    assert scored.returncode == 0, scored.stderr
    table = pq.read_table(tmp_path / "s" / "part-000.parquet")
    rows = slice(0, table.num_rows)
    np.testing.assert_allclose(table.column("uncertainty").to_numpy(), 1 - proba[rows].max(axis=1), atol=1e-12)
    entropy = -(proba[rows] * np.log(np.clip(proba[rows], 1e-300, None))).sum(axis=1)
    np.testing.assert_allclose(table.column("entropy").to_numpy(), entropy, rtol=1e-9, atol=1e-12)
    assert isinstance(sk, SkGMM)
