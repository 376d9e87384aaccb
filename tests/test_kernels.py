"""The NumPy kernels against naive references (scipy.stats, explicit weighted sums)."""

from dataclasses import replace

import numpy as np
import pytest
from helpers import COVARIANCE_TYPES, in_type_shape, make_blobs, random_params, whitened_errors
from scipy.stats import multivariate_normal

from pipeline import choices, kernels
from pipeline.errors import ComponentCollapseError
from pipeline.kernels import covtypes, estep
from pipeline.kernels.starts import uniforms_at

ROUTES = [pytest.param(True, id="expanded"), pytest.param(False, id="centred")]


def prepared(params, expanded):
    prep = kernels.prepare(params, allow_expanded=expanded)
    assert prep.expanded == expanded  # these parameters are well within the expanded route's reach
    return prep


def weighted_log_prob(X, prep):
    out = np.empty((X.shape[0], prep.n_components))
    for rows, buffers in estep.chunks(X, prep):
        out[rows] = estep.chunk_log_prob(prep, buffers).T
    return out


@pytest.mark.parametrize("expanded", ROUTES)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_prob_matches_scipy(covariance_type, expanded):
    params = random_params(covariance_type)
    X = make_blobs(1, n_per=50)
    got = weighted_log_prob(X, prepared(params, expanded))
    for k in range(params.n_components):
        want = np.log(params.weights[k]) + multivariate_normal(
            params.means[k], kernels.dense_covariances(params)[k]
        ).logpdf(X)
        np.testing.assert_allclose(got[:, k], want, rtol=1e-10)


def test_dense_covariances_expand_every_type_to_matrices():
    means = np.zeros((2, 2))
    cases = {
        "full": np.array([[[2.0, 0.5], [0.5, 1.0]], [[1.0, 0.0], [0.0, 3.0]]]),
        "tied": np.array([[2.0, 0.5], [0.5, 1.0]]),
        "diag": np.array([[2.0, 1.0], [1.0, 3.0]]),
        "spherical": np.array([2.0, 3.0]),
    }
    expected = {
        "full": cases["full"],
        "tied": np.stack([cases["tied"]] * 2),
        "diag": np.array([[[2.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 3.0]]]),
        "spherical": np.array([[[2.0, 0.0], [0.0, 2.0]], [[3.0, 0.0], [0.0, 3.0]]]),
    }
    for ct, cov in cases.items():
        params = kernels.make_params([0.5, 0.5], means, cov, ct)
        np.testing.assert_array_equal(kernels.dense_covariances(params), expected[ct], err_msg=ct)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_responsibilities_sum_to_one_and_match_bayes(covariance_type):
    params = random_params(covariance_type)
    X = make_blobs(2, n_per=50)
    log_prob_norm, log_resp = kernels.estimate_log_resp(X, params)
    np.testing.assert_allclose(np.exp(log_resp).sum(axis=1), 1.0, rtol=1e-12)
    dens = np.stack(
        [
            params.weights[k] * multivariate_normal(params.means[k], kernels.dense_covariances(params)[k]).pdf(X)
            for k in range(params.n_components)
        ],
        axis=1,
    )
    np.testing.assert_allclose(log_prob_norm, np.log(dens.sum(axis=1)), rtol=1e-10)


def test_log_resp_survives_far_outliers():
    params = random_params("full")
    X = np.full((2, 3), 1e4)  # every density underflows to 0 outside log space
    log_prob_norm, log_resp = kernels.estimate_log_resp(X, params)
    assert np.isfinite(log_prob_norm).all()
    np.testing.assert_allclose(np.exp(log_resp).sum(axis=1), 1.0)


def naive_m_step(X, resp, sw, covariance_type, reg):
    a = resp * sw[:, None]
    nk = a.sum(axis=0) + 10 * np.finfo(float).eps
    means = a.T @ X / nk[:, None]
    covs = np.stack([(a[:, k, None] * (X - means[k])).T @ (X - means[k]) / nk[k] for k in range(len(nk))])
    d = X.shape[1]
    if covariance_type == "full":
        cov = covs + reg * np.eye(d)
    elif covariance_type == "tied":
        cov = (covs * nk[:, None, None]).sum(axis=0) / nk.sum() + reg * np.eye(d)
    elif covariance_type == "diag":
        cov = np.diagonal(covs, axis1=1, axis2=2) + reg
    else:
        cov = np.diagonal(covs, axis1=1, axis2=2).mean(axis=1) + reg
    return nk / nk.sum(), means, cov


@pytest.mark.parametrize("expanded", ROUTES)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_m_step_from_statistics_matches_naive_weighted_formulas(covariance_type, expanded):
    # Far from the origin, where raw moments (E[xx^T] - mu mu^T) would lose digits.
    base = random_params(covariance_type)
    params = kernels.make_params(base.weights, base.means + 1000.0, base.covariances, covariance_type)
    X = make_blobs(3, n_per=80) + 1000.0
    sw = np.random.default_rng(3).uniform(0, 3, size=X.shape[0])
    prep = prepared(params, expanded)
    stats = kernels.block_statistics(X, sw, prep)
    got = kernels.m_step(stats, prep.shift, covariance_type, 1e-6)
    resp = np.exp(kernels.estimate_log_resp(X, params)[1])
    weights, means, cov = naive_m_step(X, resp, sw, covariance_type, 1e-6)
    np.testing.assert_allclose(got.weights, weights, rtol=1e-12)
    np.testing.assert_allclose(got.means, means, rtol=1e-12)
    np.testing.assert_allclose(got.covariances, cov, rtol=1e-9)
    assert stats.weight_sum == pytest.approx(sw.sum())


def test_a_tight_component_far_from_the_rest_takes_the_centred_route():
    # One component 1e4 away from the other with a spread of 1e-3: 1e13 squared units of its own from the mixture's
    # mean, where the expanded form would keep about 3 digits of its covariance.
    rng = np.random.default_rng(8)
    X = np.concatenate([rng.normal(size=(200, 2)), 1e4 + 1e-3 * rng.normal(size=(200, 2))])
    params = kernels.make_params([0.5, 0.5], [[0.0, 0.0], [1e4, 1e4]], [[1.0, 1.0], [1e-6, 1e-6]], "diag")
    prep = kernels.prepare(params)
    assert not prep.expanded
    got = kernels.m_step(kernels.block_statistics(X, None, prep), prep.shift, "diag", 0.0)
    resp = np.exp(kernels.estimate_log_resp(X, params)[1])
    np.testing.assert_allclose(got.covariances, naive_m_step(X, resp, np.ones(400), "diag", 0.0)[2], rtol=1e-9)


def float32_against_float64(X, params):
    """Statistics of X in float32 and float64, and the whitened errors of the float32 M-step's means and covariances."""
    prep32, prep64 = kernels.prepare(params, dtype="float32"), kernels.prepare(params)
    assert prep32.dtype == np.float32 and prep64.dtype == np.float64
    s32, s64 = kernels.block_statistics(X, None, prep32), kernels.block_statistics(X, None, prep64)
    got = kernels.m_step(s32, prep32.shift, params.covariance_type, 1e-6)
    want = kernels.m_step(s64, prep64.shift, params.covariance_type, 1e-6)
    errors = whitened_errors(
        got.means, got.covariances, want.means, want.covariances, want.precisions_cholesky, params.covariance_type
    )
    np.testing.assert_allclose(got.weights, want.weights, rtol=1e-5)
    return s32, s64, errors


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_float32_statistics_give_float64s_step_to_1e_4_in_each_components_units(covariance_type):
    X = make_blobs(9, n_per=8000)  # 24,000 rows: two chunks, each summed in float32, then in float64
    s32, s64, (mean_error, cov_error) = float32_against_float64(X, random_params(covariance_type))
    # float32 keeps ~7 digits.  The documented claim at the route's limit is 1e-5 (means) and 1e-3 (covariances);
    # these components are much nearer the mixture's mean, where the error is a few float32 roundings.
    assert mean_error < 1e-5 and cov_error < 1e-4
    assert s32.log_likelihood == pytest.approx(s64.log_likelihood, rel=1e-6)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_float32_keeps_its_claim_at_the_limit_and_leaves_it_beyond(covariance_type):
    # Two components at squared distance r from the mixture's mean in their own units, all of it along one axis
    # (the worst case): float32 up to the limit, float64 beyond it, where the cancellation would cost more.
    rng = np.random.default_rng(10)
    d, limit = 2, kernels.MAX_SHIFT_DISTANCE2_FLOAT32
    for r, dtype in ((0.9 * limit, np.float32), (1.1 * limit, np.float64)):
        means = np.array([[-np.sqrt(r), 0.0], [np.sqrt(r), 0.0]]) + 50.0
        X = np.concatenate([m + rng.normal(size=(20_000, d)) for m in means])
        cov = np.stack([np.eye(d)] * 2) if covariance_type == "full" else np.ones((2, d))
        params = kernels.make_params([0.5, 0.5], means, cov, covariance_type)
        assert kernels.prepare(params, dtype="float32").dtype == dtype
        if dtype == np.float32:
            mean_error, cov_error = float32_against_float64(X, params)[2]
            assert mean_error < 1e-5 and cov_error < 1e-3


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_responsibilities_stay_clear_of_subnormal_numbers(dtype):
    # Subnormal numbers would slow every product that touches them: tiny responsibilities are kept normal.
    params = random_params("full")
    X = np.concatenate([make_blobs(11, n_per=50), np.full((3, 3), 60.0)])
    prep = kernels.prepare(params, dtype=dtype)
    n_rows = 0
    for rows, buffers in estep.chunks(X, prep):
        resp = estep.normalise(estep.chunk_log_prob(prep, buffers), buffers)[1]
        assert resp.dtype == dtype and resp.min() >= np.finfo(dtype).tiny
        np.testing.assert_allclose(resp.sum(axis=0), 1.0, rtol=1e-5)
        n_rows += rows.stop - rows.start
    assert n_rows == X.shape[0]  # every row was checked, the three far ones too


@pytest.mark.parametrize("expanded", ROUTES)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_statistics_add_up_over_splits_including_empty_blocks(covariance_type, expanded):
    prep = prepared(random_params(covariance_type), expanded)
    X = make_blobs(4, n_per=100)
    whole = kernels.block_statistics(X, None, prep)
    cuts = [0, 0, 7, 150, 150, 299, X.shape[0]]  # includes empty blocks
    parts = [kernels.block_statistics(X[a:b], None, prep) for a, b in zip(cuts[:-1], cuts[1:])]
    total = kernels.empty_stats(covariance_type, 3, 3)
    for p in parts:
        total = total + p
    assert total.n_rows == whole.n_rows
    for name in ("nk", "s1", "s2"):
        np.testing.assert_allclose(getattr(total, name), getattr(whole, name), rtol=1e-11, atol=1e-9)
    assert total.log_likelihood == pytest.approx(whole.log_likelihood, rel=1e-12)


@pytest.mark.parametrize("expanded", ROUTES)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_chunks_of_seven_rows_give_the_statistics_of_one_chunk(covariance_type, expanded, monkeypatch):
    prep = prepared(random_params(covariance_type), expanded)
    X = make_blobs(6, n_per=100)  # 300 rows: one chunk by default
    sw = np.random.default_rng(6).uniform(0, 2, size=X.shape[0])
    whole = kernels.block_statistics(X, sw, prep)
    monkeypatch.setattr(estep, "_MIN_CHUNK_ROWS", 1)
    monkeypatch.setattr(estep, "_MAX_CHUNK_ROWS", 7)
    assert [rows.stop - rows.start for rows, _ in estep.chunks(X, prep)] == [7] * 42 + [6]  # the last one short
    chunked = kernels.block_statistics(X, sw, prep)
    for name in ("nk", "s1", "s2"):
        np.testing.assert_allclose(getattr(chunked, name), getattr(whole, name), rtol=1e-12, atol=1e-10)
    assert chunked.log_likelihood == pytest.approx(whole.log_likelihood, rel=1e-13)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_the_statistics_bits_follow_the_values_not_their_memory_layout(covariance_type):
    # A model loaded from model.npz (C order) must score and resume exactly as the one in memory did, whatever
    # order the M-step's arrays came in: BLAS sums in an order that follows the layout.
    params = random_params(covariance_type)
    transposed = replace(params, means=np.asfortranarray(params.means))
    X = make_blobs(5, n_per=300)
    a, b = kernels.prepare(params), kernels.prepare(transposed)
    np.testing.assert_array_equal(a.matrix, b.matrix)
    one, other = kernels.block_statistics(X, None, a), kernels.block_statistics(X, None, b)
    for name in ("nk", "s1", "s2"):
        np.testing.assert_array_equal(getattr(one, name), getattr(other, name))


@pytest.mark.parametrize("expanded", ROUTES)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_weight_two_equals_two_copies(covariance_type, expanded):
    prep = prepared(random_params(covariance_type), expanded)
    X = make_blobs(5, n_per=40)
    w = np.where(np.arange(X.shape[0]) % 3 == 0, 2.0, 1.0)
    doubled = np.concatenate([X, X[w == 2.0]])
    a = kernels.m_step(kernels.block_statistics(X, w, prep), prep.shift, covariance_type, 1e-6)
    b = kernels.m_step(kernels.block_statistics(doubled, None, prep), prep.shift, covariance_type, 1e-6)
    np.testing.assert_allclose(a.covariances, b.covariances, rtol=1e-10)
    np.testing.assert_allclose(a.means, b.means, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_precision_cholesky_round_trips(covariance_type):
    params = random_params(covariance_type)
    precisions = kernels.precisions_from_cholesky(params.precisions_cholesky, covariance_type)
    again = kernels.precision_cholesky_from_precisions(precisions, covariance_type)
    np.testing.assert_allclose(again, params.precisions_cholesky, rtol=1e-10, atol=1e-12)
    cov = kernels.covariances_from_precision_cholesky(params.precisions_cholesky, covariance_type)
    np.testing.assert_allclose(cov, params.covariances, rtol=1e-10, atol=1e-12)


def test_singular_covariance_names_the_component_and_the_remedy():
    cov = np.stack([np.eye(2), np.zeros((2, 2))])
    with pytest.raises(ComponentCollapseError, match=r"component 1 .*increase reg_covar"):
        kernels.compute_precision_cholesky(cov, "full")


def test_row_uniforms_do_not_depend_on_block_boundaries():
    whole = uniforms_at(np.arange(10, 110), 4, seed=7)
    split = np.concatenate([uniforms_at(np.arange(10, 43), 4, seed=7), uniforms_at(np.arange(43, 110), 4, seed=7)])
    np.testing.assert_array_equal(whole, split)
    assert 0 < whole.min() and whole.max() <= 1 and abs(whole.mean() - 0.5) < 0.05


# --------------------------------------------------------------------------- #
# The covariance types' table
# --------------------------------------------------------------------------- #
def test_the_table_holds_the_configs_covariance_types():
    assert tuple(covtypes.COVARIANCE_TYPES) == choices.COVARIANCE_TYPES


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_each_types_count_of_parameters_is_scikit_learns(covariance_type):
    sklearn_mixture = pytest.importorskip("sklearn.mixture")
    for k, d in ((1, 1), (3, 2), (5, 7)):
        sk = sklearn_mixture.GaussianMixture(k, covariance_type=covariance_type)
        sk.means_ = np.zeros((k, d))
        assert kernels.n_parameters(covariance_type, k, d) == sk._n_parameters(), (k, d)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_each_layout_reduces_per_component_moments_as_the_tests_write_them_out(covariance_type):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 4, 4))
    full = a @ np.swapaxes(a, 1, 2)
    layout = covtypes.layout_of(covariance_type)
    per_component = full if layout.dense else np.einsum("kdd->kd", full)
    reduced = layout.reduce(per_component)
    np.testing.assert_array_equal(reduced, in_type_shape(full, covariance_type))
    assert reduced.shape == layout.shape(3, 4) == kernels.covariance_shape(covariance_type, 3, 4)
    assert layout.per_component(reduced, 3, 4).shape == per_component.shape


def test_a_type_added_to_the_table_alone_fits_with_every_other_kernel(monkeypatch):
    # mclust's EEI (equal volume, equal shape, axis-aligned): one diagonal for all components, pooled over them,
    # stored in the diag layout with equal rows.  Only its entry is written: E-step, statistics and M-step follow.
    def pooled_diagonal(nk, scatter, n_features, previous=None):
        return np.broadcast_to(scatter.sum(axis=0) / nk.sum(), scatter.shape).copy()

    diag = covtypes.get("diag")
    eei = covtypes.CovarianceType(
        "EEI", covtypes.DIAG, lambda k, d: d, diag.map_covariances, diag.wishart, pooled_diagonal
    )
    monkeypatch.setitem(covtypes.COVARIANCE_TYPES, "EEI", eei)
    X = make_blobs(3)
    start = random_params("diag", k=3, d=X.shape[1])
    params = kernels.Params(start.weights, start.means, start.covariances, start.precisions_cholesky, "EEI")
    prep = kernels.prepare(params)
    got = kernels.m_step(kernels.block_statistics(X, None, prep), prep.shift, "EEI", 0.0)
    resp = np.exp(kernels.estimate_log_resp(X, params)[1])
    nk = resp.sum(axis=0)
    means = resp.T @ X / nk[:, None]
    pooled = sum(resp[:, k] @ np.square(X - means[k]) for k in range(3)) / nk.sum()
    np.testing.assert_allclose(got.means, means, rtol=1e-10)
    np.testing.assert_allclose(got.covariances, np.tile(pooled, (3, 1)), rtol=1e-10)
    assert kernels.n_parameters("EEI", 3, X.shape[1]) == X.shape[1] + 3 * X.shape[1] + 2
