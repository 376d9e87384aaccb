"""Models that keep learning: component moments that combine exactly, and ``partial_fit``'s stepwise online EM.

The reference is written here from Cappé & Moulines (2009): running averages of the raw sufficient statistics
``s0_k = mean_i r_ik``, ``s1_k = mean_i r_ik x_i``, ``s2_k = mean_i r_ik x_i x_i^T`` (weighted means with sample
weights), ``s <- (1 - rho_t) s + rho_t s_batch``, and the M-step ``w = s0 / sum s0``, ``mu = s1 / s0``,
``Sigma = s2 / s0 - mu mu^T`` (+ reg_covar), reduced to the covariance type.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import yaml
from helpers import COVARIANCE_TYPES, make_blobs, random_params, stats_of_resp
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from pipeline import BayesianGaussianMixture, GaussianMixture, kernels, load_model
from pipeline.errors import InputError
from pipeline.kernels.mstep import ComponentMoments, m_step, m_step_moments
from pipeline.model import npz_bytes
from pipeline.passes import BlockSource


def _resp(X, weights, means, covariances):
    log = np.stack(
        [np.log(w) + multivariate_normal(m, c).logpdf(X) for w, m, c in zip(weights, means, covariances)], axis=1
    )
    return np.exp(log - logsumexp(log, axis=1, keepdims=True))


def _reduce(full_cov, s0, covariance_type):
    """Full per-component covariances as the type estimates them (pooled, diagonal, mean variance)."""
    if covariance_type == "full":
        return full_cov
    if covariance_type == "tied":
        return np.einsum("k,kde->de", s0, full_cov) / s0.sum()
    diagonal = np.einsum("kdd->kd", full_cov)
    return diagonal if covariance_type == "diag" else diagonal.mean(axis=1)


def reference_stepwise(batches, weights, start, covariance_type, rates, reg_covar):
    """The paper's stepwise EM: one (weights, means, covariances) after each batch; ``rates[t]`` weights batch t."""
    params = start
    out = []
    s = None
    for X, w, rho in zip(batches, weights, rates):
        dense = kernels.dense_covariances(params)
        r = _resp(X, params.weights, params.means, dense) * w[:, None] / w.sum()
        batch = (r.sum(0), r.T @ X, np.einsum("nk,nd,ne->kde", r, X, X))
        s = batch if s is None else tuple((1 - rho) * a + rho * b for a, b in zip(s, batch))
        s0, s1, s2 = s
        means = s1 / s0[:, None]
        full = s2 / s0[:, None, None] - means[:, :, None] * means[:, None, :]
        cov = _reduce(full, s0, covariance_type)
        cov = cov + reg_covar * (np.eye(X.shape[1]) if covariance_type in ("full", "tied") else 1.0)
        params = kernels.make_params(s0 / s0.sum(), means, cov, covariance_type)
        out.append(params)
    return out


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_component_moments_combine_as_the_moments_of_all_rows(covariance_type):
    X = make_blobs(1)
    rng = np.random.default_rng(2)
    resp = rng.dirichlet(np.ones(3), size=X.shape[0])
    w = rng.uniform(0.5, 2.0, size=X.shape[0])
    shift = np.full((3, 3), 1.5)
    cut = 400

    def moments(rows, factor=1.0):
        stats = stats_of_resp(X[rows], resp[rows], shift, covariance_type, w[rows] * factor)
        return ComponentMoments.of(stats, shift, covariance_type)

    whole, first, second = moments(slice(None)), moments(slice(None, cut)), moments(slice(cut, None))
    both = first + second
    np.testing.assert_allclose(both.nk, whole.nk, rtol=1e-13)
    np.testing.assert_allclose(both.means, whole.means, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(both.scatter, whole.scatter, rtol=1e-12)
    # scaled: rows counted three times
    tripled = moments(slice(None), 3.0)
    np.testing.assert_allclose(whole.scaled(3.0).scatter, tripled.scatter, rtol=1e-12)
    np.testing.assert_allclose(whole.scaled(3.0).means, tripled.means, rtol=1e-12, atol=1e-12)
    # the M-step of the combined moments is the M-step of all rows' statistics
    combined = m_step_moments(both, 1e-6)
    direct = m_step(stats_of_resp(X, resp, shift, covariance_type, w), shift, covariance_type, 1e-6)
    for name in ("weights", "means", "covariances"):
        np.testing.assert_allclose(getattr(combined, name), getattr(direct, name), rtol=1e-11, atol=1e-12)


def _explicit(params):
    return {
        "weights_init": params.weights,
        "means_init": params.means,
        "precisions_init": kernels.precisions_from_cholesky(params.precisions_cholesky, params.covariance_type),
    }


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_partial_fit_is_stepwise_em_as_the_paper_writes_it(covariance_type, weighted):
    rng = np.random.default_rng(3)
    X = make_blobs(4, n_per=400)
    batches = np.array_split(X, 5)
    weights = [rng.uniform(0.5, 2.0, size=len(b)) if weighted else np.ones(len(b)) for b in batches]
    start = random_params(covariance_type, k=3, d=3, seed=5)
    model = GaussianMixture(3, covariance_type=covariance_type, reg_covar=1e-4, **_explicit(start))
    got = []
    for batch, w in zip(batches, weights):
        model.partial_fit(batch, sample_weight=w if weighted else None)
        got.append((model.weights_, model.means_, model.covariances_))
    rates = [1.0] + [(10.0 + t) ** -0.7 for t in range(1, len(batches))]
    want = reference_stepwise(batches, weights, start, covariance_type, rates, 1e-4)
    for t, ((w_, m_, c_), ref) in enumerate(zip(got, want)):
        np.testing.assert_allclose(w_, ref.weights, rtol=1e-10, err_msg=f"batch {t}")
        np.testing.assert_allclose(m_, ref.means, rtol=1e-10, atol=1e-10, err_msg=f"batch {t}")
        np.testing.assert_allclose(c_, ref.covariances, rtol=1e-9, atol=1e-10, err_msg=f"batch {t}")
    assert model.n_iter_ == len(batches)
    assert len(model.lower_bounds_) == len(batches)
    assert not model.converged_


def _mixture_rows(rng, n):
    centres = np.array([[-4.0, 0.0, 1.0], [0.0, 3.0, -2.0], [5.0, -1.0, 0.0]])
    labels = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    return centres[labels] + rng.standard_normal((n, 3)) @ np.diag([1.0, 0.5, 1.5])


def test_a_stream_of_small_batches_reaches_the_batch_fits_held_out_likelihood():
    rng = np.random.default_rng(6)
    train, held_out = _mixture_rows(rng, 20_000), _mixture_rows(rng, 5_000)
    batch = GaussianMixture(3, random_state=0, tol=1e-6).fit(train)
    stream = GaussianMixture(3, random_state=0)
    for rows in np.array_split(train, 40):  # 500 rows a step
        stream.partial_fit(rows)
    assert stream.n_iter_ == 40 and stream.n_samples_ == 20_000 and stream.weight_sum_ == 20_000.0
    # stated tolerance: within 1e-3 nats per row of the batch optimum on held-out rows (measured: 1.2e-5)
    assert stream.score(held_out) == pytest.approx(batch.score(held_out), abs=1e-3)


def test_a_dask_stream_gives_the_same_bits_on_a_cluster_and_in_this_process(client):
    import dask
    import dask.array as da

    rng = np.random.default_rng(7)
    batches = [da.from_array(_mixture_rows(rng, 3_000), chunks=700) for _ in range(4)]

    def stream():
        model = GaussianMixture(3, covariance_type="diag", random_state=1)
        for batch in batches:
            model.partial_fit(batch)
        return model

    with client.as_current():
        on_cluster = stream()
    with dask.config.set(scheduler="synchronous"):
        here = stream()
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(on_cluster, name), getattr(here, name), err_msg=name)
    assert on_cluster.lower_bounds_ == here.lower_bounds_


def test_a_fit_begins_a_stream_and_a_new_fit_ends_it():
    rng = np.random.default_rng(8)
    X, more = _mixture_rows(rng, 3_000), _mixture_rows(rng, 1_000)
    fitted = GaussianMixture(3, random_state=0).fit(X)
    start = kernels.Params(fitted.weights_, fitted.means_, fitted.covariances_, fitted.precisions_cholesky_, "full")
    fitted.partial_fit(more)  # goes on from the fit: its first step takes the batch alone (rho = 1)
    assert fitted.n_iter_ == 1 and fitted.n_samples_ == 1_000
    (want,) = reference_stepwise([more], [np.ones(1_000)], start, "full", [1.0], 1e-6)
    np.testing.assert_allclose(fitted.means_, want.means, rtol=1e-10, atol=1e-10)
    fitted.fit(X)  # a fit ends the stream: the next partial_fit starts a new one from this fit
    np.testing.assert_array_equal(fitted.means_, start.means)
    fitted.partial_fit(more)
    assert fitted.n_iter_ == 1
    np.testing.assert_allclose(fitted.means_, want.means, rtol=1e-10, atol=1e-10)


def test_with_a_prior_the_prior_of_the_first_batch_is_kept():
    rng = np.random.default_rng(9)
    model = GaussianMixture(3, covariance_type="diag", prior="default", random_state=0)
    model.partial_fit(_mixture_rows(rng, 2_000))
    prior = model.prior_
    model.partial_fit(_mixture_rows(rng, 2_000) + 100.0)  # another scale: the prior resolved at first stays
    assert model.prior_ == prior
    assert np.isfinite(model.means_).all()


@pytest.mark.parametrize("prior", [None, "default"])
def test_a_later_step_reads_its_batch_twice_and_a_first_one_computes_no_criteria(monkeypatch, prior):
    computed = []
    real = BlockSource._compute

    def counted(self, task):
        computed.append(task)
        return real(self, task)

    monkeypatch.setattr(BlockSource, "_compute", counted)
    rng = np.random.default_rng(12)
    explicit = random_params("full", seed=12)  # an explicit start: no start pass
    precisions = np.linalg.inv(explicit.covariances)
    model = GaussianMixture(
        3, prior=prior, weights_init=explicit.weights, means_init=explicit.means, precisions_init=precisions
    )
    model.partial_fit(_mixture_rows(rng, 1_000))
    # a scan, the prior's data moments, the step; not the criteria's pass
    assert len(computed) == (3 if prior else 2)
    computed.clear()
    model.partial_fit(_mixture_rows(rng, 1_000))
    assert len(computed) == 2  # a scan and the step: the prior is kept, not resolved again


@pytest.mark.parametrize(
    ("changed", "value"), [("n_components", 4), ("covariance_type", "diag"), ("covariance_type", "tied")]
)
@pytest.mark.parametrize("streamed", [False, True], ids=["after-fit", "in-a-stream"])
def test_changing_the_models_shape_between_calls_is_refused(changed, value, streamed):
    rng = np.random.default_rng(13)
    model = GaussianMixture(3, random_state=0)
    model.partial_fit(_mixture_rows(rng, 500)) if streamed else model.fit(_mixture_rows(rng, 500))
    before = model.means_.copy()
    model.set_params(**{changed: value})
    with pytest.raises(ValueError, match=f"{changed} was changed since the model was fitted"):
        model.partial_fit(_mixture_rows(rng, 500))
    np.testing.assert_array_equal(model.means_, before)


@pytest.mark.parametrize(
    ("first", "then", "pattern"),
    [
        (None, np.full((10, 3), np.nan), r"Input X contains NaN"),
        (None, np.zeros((10, 4)), r"X has 4 features, but GaussianMixture is expecting 3 features as input"),
        (None, np.zeros((0, 3)), r"Found array with 0 sample\(s\)"),
        (np.zeros((2, 3)), None, r"n_samples >= n_components"),
    ],
    ids=["nan", "other-width", "no-rows", "fewer-rows-than-components-at-first"],
)
def test_bad_batches_are_refused_in_scikit_learns_words(first, then, pattern):
    rng = np.random.default_rng(10)
    model = GaussianMixture(3, random_state=0)
    if first is not None:
        with pytest.raises(ValueError, match=pattern):
            model.partial_fit(first)
        assert not model.__sklearn_is_fitted__()
        return
    model.partial_fit(_mixture_rows(rng, 500))
    means = model.means_.copy()
    with pytest.raises(ValueError, match=pattern):
        model.partial_fit(then)
    np.testing.assert_array_equal(model.means_, means)  # nothing changed
    assert model.n_iter_ == 1


def test_a_batch_after_the_first_may_be_one_row():
    rng = np.random.default_rng(13)
    model = GaussianMixture(3, random_state=0).partial_fit(_mixture_rows(rng, 500))
    model.partial_fit(_mixture_rows(rng, 1))
    assert model.n_iter_ == 2 and model.n_samples_ == 501


def test_a_batch_of_zero_weight_is_refused_and_changes_nothing():
    rng = np.random.default_rng(11)
    model = GaussianMixture(3, random_state=0).partial_fit(_mixture_rows(rng, 500))
    means = model.means_.copy()
    with pytest.raises(ValueError, match="weight"):
        model.partial_fit(_mixture_rows(rng, 100), sample_weight=np.zeros(100))
    np.testing.assert_array_equal(model.means_, means)


def test_names_of_the_columns_must_stay_the_same():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(12)
    model = GaussianMixture(3, random_state=0).partial_fit(pd.DataFrame(_mixture_rows(rng, 500), columns=list("abc")))
    with pytest.raises(ValueError, match="feature names"):
        model.partial_fit(pd.DataFrame(_mixture_rows(rng, 500), columns=list("abd")))


def test_a_saved_stream_goes_on_after_loading_as_if_never_saved(tmp_path):
    rng = np.random.default_rng(14)
    batches = [_mixture_rows(rng, 400) for _ in range(4)]
    whole = GaussianMixture(3, covariance_type="tied", random_state=2)
    for batch in batches:
        whole.partial_fit(batch)
    halves = GaussianMixture(3, covariance_type="tied", random_state=2)
    for batch in batches[:2]:
        halves.partial_fit(batch)
    halves.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    for batch in batches[2:]:
        loaded.partial_fit(batch)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(whole, name), err_msg=name)
    assert loaded.n_iter_ == whole.n_iter_ == 4


def test_a_marginalizing_stream_takes_a_batch_missing_a_whole_column_and_records_what_it_did(tmp_path):
    rng = np.random.default_rng(17)
    first, then = _mixture_rows(rng, 600), _mixture_rows(rng, 300)
    first[::10, 2] = np.nan
    then[:, 0] = np.nan  # no value of column 0 in this batch: the current parameters fill it in
    model = GaussianMixture(3, nan_policy="marginalize", random_state=0)
    model.partial_fit(first).partial_fit(then)
    assert np.isfinite(model.means_).all() and model.n_iter_ == 2
    model.save(tmp_path / "m")
    missing = yaml.safe_load((tmp_path / "m" / "model.yaml").read_text())["missing"]
    assert missing == {
        "nan_policy": "marginalize",
        "n_missing_values": 60 + 300,
        "n_incomplete_rows": 60 + 300,
        "n_dropped_rows": 0,
    }
    loaded = load_model(tmp_path / "m")
    assert np.isfinite(loaded.score_samples(then)).all()  # rows with holes are scored, as after a fit
    with pytest.raises(ValueError, match="column 0 has no value"):  # but a stream cannot start without it
        GaussianMixture(3, nan_policy="marginalize", random_state=0).partial_fit(then)


def test_only_a_model_that_keeps_what_it_learnt_is_written_in_the_newer_format(tmp_path):
    X = _mixture_rows(np.random.default_rng(16), 400)
    GaussianMixture(3, random_state=0).fit(X).save(tmp_path / "fit")
    GaussianMixture(3, random_state=0).partial_fit(X).save(tmp_path / "stream")
    BayesianGaussianMixture(n_components=3, random_state=0).fit(X).save(tmp_path / "variational")
    info = {
        name: yaml.safe_load((tmp_path / name / "model.yaml").read_text()) for name in ("fit", "stream", "variational")
    }
    assert info["fit"]["format_version"] == 3 and "lineage" in info["fit"] and "stream" not in info["fit"]
    assert info["stream"]["format_version"] == 3 and "stream" in info["stream"] and "lineage" not in info["stream"]
    # a version-2 reader still reads a model that keeps nothing
    assert info["variational"]["format_version"] == 2 and "lineage" not in info["variational"]


@pytest.mark.parametrize(
    ("how", "damage", "pattern"),
    [
        ("partial_fit", lambda a: a.update(moments_means=a["moments_means"][:2]), r"moments_means has shape \(2, 3\)"),
        ("fit", lambda a: a.update(moments_nk=a["moments_nk"] * 2.0), r"moments_nk sums to .*, not to the weight"),
        ("fit", lambda a: a.update(moments_counts=np.array([0.0, 1.0])), r"moments_counts must be two finite numbers"),
    ],
    ids=["stream-shape", "fit-weights", "fit-counts"],
)
def test_moments_that_are_not_a_models_are_refused(tmp_path, how, damage, pattern):
    rng = np.random.default_rng(15)
    getattr(GaussianMixture(3, random_state=0), how)(_mixture_rows(rng, 400)).save(tmp_path / "m")
    with np.load(tmp_path / "m" / "model.npz") as npz:
        arrays = {name: npz[name] for name in npz.files}
    damage(arrays)
    content = npz_bytes(arrays)
    (tmp_path / "m" / "model.npz").write_bytes(content)
    text = (tmp_path / "m" / "model.yaml").read_text()
    old = yaml.safe_load(text)["arrays"]["sha256"]
    (tmp_path / "m" / "model.yaml").write_text(text.replace(old, hashlib.sha256(content).hexdigest()))
    with pytest.raises(InputError, match=r"model\.npz: " + pattern):
        load_model(tmp_path / "m")
