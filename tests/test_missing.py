"""Missing values, marginalised: against a naive reference written per row and per component
(tests/reference_missing.py, which imports nothing of ours), EM's monotonicity, recovery, the cluster, scoring.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import reference_missing as ref
import yaml
from helpers import (
    COVARIANCE_TYPES,
    em_runs,
    gmm,
    in_type_shape,
    make_blobs,
    random_params,
    write_config,
    write_parquet,
)

from pipeline import GaussianMixture, em, kernels, load_model
from pipeline.errors import ConvergenceWarning
from pipeline.passes import blocks_from_arrays
from pipeline.synthetic import true_params


def with_holes(X, fraction, seed):
    """X with ``fraction`` of its values removed completely at random (rows left with no value removed too)."""
    X = np.array(X, dtype=float)
    X[np.random.default_rng(seed).uniform(size=X.shape) < fraction] = np.nan
    return X


def shifted(stats, shift, covariance_type):
    """The reference's raw sums E[x], E[xx^T] as our moments about ``shift``, in the type's shape."""
    nk, sx, sxx = stats["nk"], stats["sum_x"], stats["sum_xx"]
    s1 = sx - nk[:, None] * shift
    full = (
        sxx
        - np.einsum("kd,ke->kde", sx, shift)
        - np.einsum("kd,ke->kde", shift, sx)
        + nk[:, None, None] * np.einsum("kd,ke->kde", shift, shift)
    )
    return s1, in_type_shape(full, covariance_type)


@pytest.mark.parametrize("expanded", [True, False], ids=["expanded", "centred"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_statistics_of_a_block_with_holes_equal_the_naive_reference(covariance_type, expanded):
    params = random_params(covariance_type, k=3, d=4, seed=3)
    X = with_holes(np.random.default_rng(3).normal(scale=3, size=(400, 4)), 0.25, seed=4)
    X = X[~np.isnan(X).all(axis=1)]
    w = np.random.default_rng(5).uniform(0.2, 2.0, size=X.shape[0])
    prep = kernels.prepare(params, allow_expanded=expanded, with_missing=True)
    assert prep.expanded == expanded
    ours = kernels.block_statistics(np.asfortranarray(X), w, prep)
    theirs = ref.estep_statistics(X, params.weights, params.means, params.covariances, covariance_type, sample_weight=w)
    s1, s2 = shifted(theirs, prep.shift, covariance_type)
    np.testing.assert_allclose(ours.nk, theirs["nk"], rtol=1e-10)
    np.testing.assert_allclose(ours.s1, s1, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(ours.s2, s2, rtol=1e-10, atol=1e-8)
    assert ours.log_likelihood == pytest.approx(theirs["log_likelihood"], rel=1e-10)
    # and the log densities of single rows, as the reference marginalises them
    log_prob_norm, log_resp = kernels.estimate_log_resp(X[:20], params)
    for i in range(20):
        row = ref.row_log_densities(X[i], params.weights, params.means, params.covariances, covariance_type)
        assert log_prob_norm[i] == pytest.approx(np.logaddexp.reduce(row), rel=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_em_with_holes_equals_the_reference_and_never_decreases(covariance_type):
    X = with_holes(make_blobs(120, n_per=80), 0.2, seed=120)
    X = X[~np.isnan(X).all(axis=1)]
    start = random_params(covariance_type, k=3, d=3, seed=120)
    history = []
    (run,) = em.run_em(
        blocks_from_arrays(X, rows_per_block=97),
        em_runs([start], missing=True),
        tol=0.0,
        max_iter=15,
        on_iteration=lambda rep: history.append(rep.runs[0].lower_bound),
    )
    weights, means, covariances, theirs = ref.em(X, start.weights, start.means, start.covariances, covariance_type, 15)
    np.testing.assert_allclose(history, theirs, rtol=1e-9)
    np.testing.assert_allclose(run.params.means, means, rtol=1e-8)
    np.testing.assert_allclose(run.params.covariances, covariances, rtol=1e-8)
    assert (np.diff(history) >= -1e-10).all(), np.diff(history).min()


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_with_nothing_missing_marginalize_gives_the_same_bits(covariance_type):
    X = make_blobs(121)
    a = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    b = GaussianMixture(3, covariance_type=covariance_type, random_state=0, nan_policy="marginalize").fit(X)
    for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_", "lower_bounds_"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr), err_msg=attr)


def _distance(fitted, reference, truth):
    """Mean distance of a fit's means (in the truth's standard deviations) and covariances (relative to the
    truth's scales) from another fit's, components matched by their means."""
    order = [int(np.argmin(np.linalg.norm(fitted.means_ - mu, axis=1))) for mu in reference.means_]
    sd = np.sqrt(np.diagonal(truth.covariances, axis1=1, axis2=2)).mean(axis=0)
    means = np.abs(fitted.means_[order] - reference.means_) / sd
    covariances = np.abs(fitted.covariances_[order] - reference.covariances_) / np.outer(sd, sd)
    return means.mean(), covariances.mean()


def test_recovery_with_20_percent_missing_is_close_to_complete_and_better_than_dropping():
    # 4 features, 20% of values missing completely at random: only 0.8^4 = 41% of rows are complete, so
    # dropping keeps the information of 41% of the rows while marginalising keeps every observed value.
    truth = true_params(4, 3, seed=12)
    rng = np.random.default_rng(12)
    labels = rng.choice(3, size=12_000, p=truth.weights)
    chol = np.linalg.cholesky(truth.covariances)
    X = truth.means[labels] + np.einsum("nij,nj->ni", chol[labels], rng.standard_normal((12_000, 4)))
    holes = with_holes(X, 0.2, seed=13)
    fits = {}
    for name, data, policy in (
        ("complete", X, "error"),
        ("marginalize", holes, "marginalize"),
        ("drop", holes, "drop"),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fits[name] = GaussianMixture(3, random_state=0, tol=1e-6, nan_policy=policy).fit(data)
    # Measured against the complete-data fit, so that what differs is what the holes cost.  Tolerance: with
    # 12,000 rows each mean is known to about 0.015 standard deviations; losing a fifth of the values costs
    # marginalising a fraction of that (measured: 0.004 and 0.007 for means and covariances), while dropping
    # the incomplete rows (59% of them) costs about the sampling error itself (measured: 0.010 and 0.018).
    marginalize = _distance(fits["marginalize"], fits["complete"], truth)
    drop = _distance(fits["drop"], fits["complete"], truth)
    assert marginalize[0] < 0.01 and marginalize[1] < 0.015, marginalize
    assert marginalize[0] < 0.6 * drop[0] and marginalize[1] < 0.6 * drop[1], (marginalize, drop)


def test_a_partitioned_parquet_fit_equals_the_in_memory_one_on_any_number_of_workers(tmp_path, client):
    X = with_holes(make_blobs(122, n_per=400), 0.15, seed=122)
    X[5] = np.nan  # a row with nothing: dropped and counted
    empty = np.isnan(X).all(axis=1)
    write_parquet(tmp_path / "data", X, 4)
    model = {"n_components": 3, "tol": 0.0, "max_iter": 20, "random_state": 3}
    for name, extra in (("two", {}), ("one", {"cluster": {"n_workers": 1}})):
        write_config(
            tmp_path / f"{name}.yaml",
            data={"path": "data", "nan_policy": "marginalize"},
            model=model,
            output={"path": name},
            **extra,
        )
    run = gmm(tmp_path, "fit", "two.yaml", "--scheduler", client.scheduler.address)
    assert run.returncode == 0, run.stderr
    assert f"dropped {empty.sum()} rows with every value missing" in run.stderr and "missing values in" in run.stderr
    assert gmm(tmp_path, "fit", "one.yaml").returncode == 0
    assert (tmp_path / "two" / "model.npz").read_bytes() == (tmp_path / "one" / "model.npz").read_bytes()
    info = yaml.safe_load((tmp_path / "two" / "model.yaml").read_text())
    kept = X[~empty]
    assert info["missing"] == {
        "nan_policy": "marginalize",
        "n_missing_values": int(np.isnan(kept).sum()),
        "n_incomplete_rows": int(np.isnan(kept).any(axis=1).sum()),
        "n_dropped_rows": int(empty.sum()),
    }
    assert info["n_samples"] == kept.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        in_memory = GaussianMixture(3, tol=0.0, max_iter=20, random_state=3, nan_policy="marginalize").fit(X)
    in_memory.save(tmp_path / "mem")  # the estimator records what nan_policy did as gmm fit does
    assert yaml.safe_load((tmp_path / "mem" / "model.yaml").read_text())["missing"] == info["missing"]
    fitted = load_model(tmp_path / "two")
    np.testing.assert_allclose(fitted.means_, in_memory.means_, rtol=1e-9)
    np.testing.assert_allclose(fitted.covariances_, in_memory.covariances_, rtol=1e-9)
    assert fitted.lower_bound_ == pytest.approx(in_memory.lower_bound_, rel=1e-12)

    # scoring rows with holes on their observed values, and imputing them
    scored = gmm(
        tmp_path,
        "score",
        "--model",
        "two",
        "--input",
        "data",
        "--output",
        "s",
        "--impute",
        "--scheduler",
        client.scheduler.address,
    )
    assert scored.returncode == 0, scored.stderr
    table = pq.read_table(tmp_path / "s" / "part-000.parquet")
    rows = pd.DataFrame(X[: table.num_rows], columns=["x0", "x1", "x2"])  # the names the model was fitted with
    scores = table.column("log_likelihood").to_numpy()
    seen = ~empty[: table.num_rows]
    np.testing.assert_allclose(scores[seen], fitted.score_samples(rows[seen]), rtol=1e-12)
    rows = rows.to_numpy()
    assert scores[5] == 0.0  # nothing observed: the marginal over nothing
    imputed = np.column_stack([table.column(f"imputed_x{j}").to_numpy() for j in range(3)])
    p = fitted._params()
    np.testing.assert_allclose(imputed, ref.impute(rows, p.weights, p.means, p.covariances, "full"), rtol=1e-9)
    np.testing.assert_array_equal(imputed[~np.isnan(rows)], rows[~np.isnan(rows)])


def test_the_default_policy_still_refuses_holes(tmp_path):
    X = with_holes(make_blobs(123), 0.1, seed=123)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        GaussianMixture(3).fit(X)
    gm = GaussianMixture(3, nan_policy="marginalize", random_state=0).fit(X)
    assert np.isfinite(gm.predict_proba(X)).all()
    gm.save(tmp_path / "m")
    assert load_model(tmp_path / "m").nan_policy == "marginalize"
    load_model(tmp_path / "m").save(tmp_path / "again")  # a loaded model keeps the record
    assert yaml.safe_load((tmp_path / "again" / "model.yaml").read_text())["missing"] == {
        "nan_policy": "marginalize",
        "n_missing_values": int(np.isnan(X).sum()) - 3 * int(np.isnan(X).all(axis=1).sum()),  # in rows kept
        "n_incomplete_rows": int((np.isnan(X).any(axis=1) & ~np.isnan(X).all(axis=1)).sum()),
        "n_dropped_rows": int(np.isnan(X).all(axis=1).sum()),
    }
    GaussianMixture(3, nan_policy="drop", random_state=0).fit(X).save(tmp_path / "d")
    assert yaml.safe_load((tmp_path / "d" / "model.yaml").read_text())["missing"] == {
        "nan_policy": "drop",
        "n_missing_values": 0,
        "n_incomplete_rows": 0,
        "n_dropped_rows": int(np.isnan(X).any(axis=1).sum()),
    }


@pytest.mark.parametrize("policy", ["drop", "marginalize"])
@pytest.mark.parametrize("dask_input", [False, True], ids=["numpy", "dask"])
def test_an_infinite_value_in_an_array_is_refused_not_dropped(policy, dask_input):
    import dask.array as da

    X = with_holes(make_blobs(124), 0.05, seed=124)
    X[7, 1] = np.inf
    data = da.from_array(X, chunks=100) if dask_input else X
    # NumPy input: scikit-learn's check; Dask input: the scan, which names the column
    with pytest.raises(ValueError, match=r"column 1 has infinite values" if dask_input else r"infinity"):
        GaussianMixture(3, nan_policy=policy, random_state=0).fit(data)


@pytest.mark.parametrize("n_complete", [40, 2])
def test_the_datas_moments_use_every_observed_value(n_complete):
    """The prior's defaults need the data's mean and covariance: each column's over its observed values, the
    complete rows' correlations (only the variances when there are no more complete rows than features)."""
    from pipeline.init import data_moments

    X = make_blobs(88, n_per=40)
    X[n_complete:] = with_holes(X[n_complete:], 0.3, 7)
    if n_complete < X.shape[1]:  # every later row misses a value
        X[np.arange(n_complete, X.shape[0]), np.arange(X.shape[0] - n_complete) % X.shape[1]] = np.nan
    X = X[~np.isnan(X).all(axis=1)]
    weights = np.random.default_rng(1).integers(1, 4, size=X.shape[0])
    weights[:n_complete] = 1
    repeated = np.repeat(X, weights, axis=0)  # integer weights count as repeated rows
    got = data_moments(
        blocks_from_arrays(X, weights.astype(float), rows_per_block=31, nan_policy="marginalize"),
        np.array([0.5, -1.0, 2.0]),
    )
    variances = np.nanvar(repeated, axis=0, ddof=1)
    np.testing.assert_allclose(got.mean, np.nanmean(repeated, axis=0), rtol=1e-12)
    complete = repeated[~np.isnan(repeated).any(axis=1)]
    assert (complete.shape[0] > X.shape[1]) == (n_complete > X.shape[1])  # each case takes its own branch
    if complete.shape[0] > X.shape[1]:
        correlation = np.corrcoef(complete.T)
        want = correlation * np.sqrt(np.outer(variances, variances))
    else:
        want = np.diag(variances)
    np.testing.assert_allclose(got.covariance, want, rtol=1e-10)


# --------------------------------------------------------------------------- the reference itself
def _reference_parameters(rng, K, D, covariance_type):
    """Random well-conditioned parameters in scikit-learn's shapes, and their dense covariances."""
    weights = rng.dirichlet(np.full(K, 5.0))
    means = rng.normal(scale=3.0, size=(K, D))
    a = rng.normal(size=(K, D, D))
    covariances = {
        "full": lambda: a @ np.swapaxes(a, 1, 2) / D + 0.5 * np.eye(D),
        "tied": lambda: a[0] @ a[0].T / D + 0.5 * np.eye(D),
        "diag": lambda: rng.uniform(0.5, 2.0, size=(K, D)),
        "spherical": lambda: rng.uniform(0.5, 2.0, size=K),
    }[covariance_type]()
    return weights, means, covariances, ref.dense_covariances(covariances, covariance_type, K, D)


def _reference_sample(rng, n, weights, means, dense):
    labels = rng.choice(len(weights), size=n, p=weights)
    return np.array([rng.multivariate_normal(means[k], dense[k]) for k in labels])


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_the_reference_on_complete_data_is_scikit_learns_e_and_m_step(covariance_type):
    from sklearn.mixture import GaussianMixture as SkGMM
    from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky, _estimate_gaussian_parameters

    rng = np.random.default_rng(0)
    w, mu, cov, dense = _reference_parameters(rng, 3, 4, covariance_type)
    X = _reference_sample(rng, 300, w, mu, dense)
    sk = SkGMM(3, covariance_type=covariance_type)
    sk.weights_, sk.means_, sk.covariances_ = w, mu, cov
    sk.precisions_cholesky_ = _compute_precision_cholesky(cov, covariance_type)
    stats = ref.estep_statistics(X, w, mu, cov, covariance_type)
    assert stats["log_likelihood"] == pytest.approx(sk.score_samples(X).sum(), rel=1e-12)
    for reg_covar in (0.0, 1e-3):
        nk, means, covariances = _estimate_gaussian_parameters(X, sk.predict_proba(X), reg_covar, covariance_type)
        got = ref.m_step(stats, covariance_type, reg_covar)
        np.testing.assert_allclose(stats["nk"], nk, rtol=1e-12)
        np.testing.assert_allclose(got[0], nk / nk.sum(), rtol=1e-12)
        np.testing.assert_allclose(got[1], means, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(got[2], covariances, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_the_references_em_with_holes_drops_empty_rows_and_never_decreases(covariance_type):
    rng = np.random.default_rng(1)
    w, mu, cov, dense = _reference_parameters(rng, 3, 4, covariance_type)
    complete = _reference_sample(rng, 60, w, mu, dense)
    X = with_holes(complete, 0.2, seed=2)
    X[:3] = np.nan  # rows with nothing observed: skipped
    start = (
        np.full(3, 1 / 3),
        complete[[10, 20, 30]],
        {"full": np.stack([np.eye(4)] * 3), "tied": np.eye(4), "diag": np.ones((3, 4)), "spherical": np.ones(3)},
    )
    stats = ref.estep_statistics(X, *start[:2], start[2][covariance_type], covariance_type)
    assert (stats["n_rows"], stats["n_dropped"]) == (57, 3)
    *_, history = ref.em(X, *start[:2], start[2][covariance_type], covariance_type, n_iter=8)
    assert (np.diff(history) >= -1e-12).all() and history[-1] > history[0] + 0.1, history


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_the_references_row_density_is_the_marginal_of_the_dense_gaussian(covariance_type):
    from scipy import integrate
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(3)
    w, mu, cov, dense = _reference_parameters(rng, 3, 4, covariance_type)
    for x in _reference_sample(rng, 10, w, mu, dense):
        missing = rng.permutation(4)[: rng.integers(1, 4)]  # one to three of four values missing
        x[missing] = np.nan
        observed = np.flatnonzero(~np.isnan(x))
        want = [
            np.log(w[k])
            + multivariate_normal(mu[k][observed], dense[k][np.ix_(observed, observed)]).logpdf(x[observed])
            for k in range(3)
        ]
        np.testing.assert_allclose(ref.row_log_densities(x, w, mu, cov, covariance_type), want, rtol=1e-12)
    # and by quadrature of the joint density over one missing value (around its conditional mean, where it peaks)
    x = _reference_sample(rng, 1, w, mu, dense)[0]
    x[1] = np.nan
    got = ref.row_log_densities(x, w, mu, cov, covariance_type)
    observed = [0, 2, 3]
    for k in range(3):
        c = dense[k]
        gain = np.linalg.solve(c[np.ix_(observed, observed)], c[observed, 1])
        centre, sd = mu[k][1] + gain @ (x[observed] - mu[k][observed]), np.sqrt(c[1, 1] - gain @ c[observed, 1])
        joint = multivariate_normal(mu[k], c)
        value = integrate.quad(
            lambda t, joint=joint: joint.pdf([x[0], t, x[2], x[3]]),
            centre - 40 * sd,
            centre + 40 * sd,
            epsabs=0,
            epsrel=1e-12,
        )[0]
        assert got[k] == pytest.approx(np.log(w[k]) + np.log(value), abs=1e-9)
    with pytest.raises(ValueError, match="row has no observed value"):
        ref.row_log_densities(np.full(4, np.nan), w, mu, cov, covariance_type)


def test_the_references_conditional_moments_weights_and_imputation():
    rng = np.random.default_rng(4)
    w, mu, cov, dense = _reference_parameters(rng, 3, 4, "full")
    # nothing observed: the component's own moments
    ex, exx = ref.conditional_moments(np.full(4, np.nan), mu[0], cov[0])
    np.testing.assert_allclose(exx, cov[0] + np.outer(mu[0], mu[0]), rtol=1e-12)
    # two observed: the regression of the missing values on the observed ones, over many draws
    x = np.array([mu[0][0] + 0.7, np.nan, mu[0][2] - 0.3, np.nan])
    ex, exx = ref.conditional_moments(x, mu[0], cov[0])
    draws = rng.multivariate_normal(mu[0], cov[0], size=200_000)
    observed, missing = [0, 2], [1, 3]
    design = np.column_stack([np.ones(len(draws)), draws[:, observed]])
    beta = np.linalg.lstsq(design, draws[:, missing], rcond=None)[0]
    residuals = draws[:, missing] - design @ beta
    np.testing.assert_allclose(ex[missing], np.array([1.0, x[0], x[2]]) @ beta, atol=0.02)
    conditional = exx[np.ix_(missing, missing)] - np.outer(ex[missing], ex[missing])
    np.testing.assert_allclose(conditional, residuals.T @ residuals / len(draws), atol=0.02)
    # integer frequency weights count as repeated rows
    X = with_holes(_reference_sample(rng, 40, w, mu, dense), 0.2, seed=5)
    counts = rng.integers(0, 4, size=len(X))
    a = ref.estep_statistics(X, w, mu, cov, "full", sample_weight=counts)
    b = ref.estep_statistics(np.repeat(X, counts, axis=0), w, mu, cov, "full")
    assert a["log_likelihood"] == pytest.approx(b["log_likelihood"], rel=1e-12)
    np.testing.assert_allclose(a["sum_xx"], b["sum_xx"], rtol=1e-12)
    # with diagonal covariances a missing value is imputed by the posterior-weighted component means
    w, mu, cov, dense = _reference_parameters(rng, 3, 4, "diag")
    X = with_holes(_reference_sample(rng, 30, w, mu, dense), 0.3, seed=6)
    imputed = ref.impute(X, w, mu, cov, "diag")
    np.testing.assert_array_equal(imputed[~np.isnan(X)], X[~np.isnan(X)])
    partial = [i for i in range(len(X)) if 0 < np.isnan(X[i]).sum() < 4]
    assert len(partial) > 10
    for i in partial:
        log_densities = ref.row_log_densities(X[i], w, mu, cov, "diag")
        posterior = np.exp(log_densities - np.logaddexp.reduce(log_densities))
        miss = np.isnan(X[i])
        np.testing.assert_allclose(imputed[i, miss], (posterior @ mu)[miss], rtol=1e-10)
