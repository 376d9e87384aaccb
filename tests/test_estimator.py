"""The scikit-learn-style API: methods, inputs, errors, weights, save/load."""

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from helpers import COVARIANCE_TYPES, make_blobs
from sklearn.mixture import GaussianMixture as SkGMM

from pipeline import BayesianGaussianMixture, GaussianMixture, load_model
from pipeline.errors import ConvergenceWarning, NotFittedError
from pipeline.kernels.online import MOMENT_ARRAYS


@pytest.fixture(scope="module")
def fitted():
    X = make_blobs(20)
    return X, GaussianMixture(3, random_state=0).fit(X)


def as_sklearn(gm):
    sk = SkGMM(gm.n_components, covariance_type=gm.covariance_type)
    for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
        setattr(sk, attr, getattr(gm, attr))
    sk.n_features_in_ = gm.n_features_in_
    return sk


def test_predictions_match_sklearn_with_the_same_parameters(fitted):
    X, gm = fitted
    sk = as_sklearn(gm)
    np.testing.assert_array_equal(gm.predict(X), sk.predict(X))
    np.testing.assert_allclose(gm.predict_proba(X), sk.predict_proba(X), rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(gm.score_samples(X), sk.score_samples(X), rtol=1e-12)
    assert gm.score(X) == pytest.approx(sk.score(X), rel=1e-12)
    assert gm.bic(X) == pytest.approx(sk.bic(X), rel=1e-12)
    assert gm.aic(X) == pytest.approx(sk.aic(X), rel=1e-12)


def test_dask_in_gives_lazy_dask_out(fitted):
    X, gm = fitted
    dX = da.from_array(X, chunks=(100, 3))
    labels, proba, scores = gm.predict(dX), gm.predict_proba(dX), gm.score_samples(dX)
    for value in (labels, proba, scores):
        assert isinstance(value, da.Array)
    np.testing.assert_array_equal(labels.compute(), gm.predict(X))
    np.testing.assert_allclose(proba.compute(), gm.predict_proba(X))
    np.testing.assert_allclose(scores.compute(), gm.score_samples(X))


def test_pandas_and_dask_dataframes_fit_like_numpy():
    X = make_blobs(21)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    ref = GaussianMixture(3, random_state=0).fit(X)
    from_pandas = GaussianMixture(3, random_state=0).fit(frame)
    from_dask = GaussianMixture(3, random_state=0).fit(dd.from_pandas(frame, npartitions=3))
    for gm in (from_pandas, from_dask):
        np.testing.assert_allclose(gm.means_, ref.means_, rtol=1e-9)
        assert list(gm.feature_names_in_) == ["a", "b", "c"]
    assert not hasattr(ref, "feature_names_in_")
    # a column that is not a number is refused, as scikit-learn refuses it (never silently left out)
    with pytest.raises(ValueError, match="could not convert string to float: 'text'"):
        GaussianMixture(3).fit(frame.assign(tag="text"))


def test_unfitted_model_raises_value_and_attribute_error():
    gm = GaussianMixture(2)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        gm.predict(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="not fitted yet"):
        gm.sample(2)
    with pytest.raises(AttributeError, match="not fitted yet"):
        gm.score_samples(np.zeros((3, 2)))


def test_input_errors_are_sklearn_style(fitted):
    X, gm = fitted
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        GaussianMixture(2).fit(np.arange(10.0))
    with pytest.raises(ValueError, match="X has 2 features, but GaussianMixture is expecting 3 features"):
        gm.predict(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="Input X contains NaN"):
        GaussianMixture(2).fit(np.array([[0.0, 1.0], [np.nan, 2.0], [3.0, 4.0]]))
    with pytest.raises(ValueError, match="could not convert string to float"):
        GaussianMixture(2).fit(np.array([[1, 2], ["a", 3]], dtype=object))
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        GaussianMixture(5).fit(X[:3])
    with pytest.raises(ValueError, match="'covariance_type' parameter of GaussianMixture must be a str among"):
        GaussianMixture(2, covariance_type="round").fit(X)
    with pytest.raises(
        ValueError, match=r"'dtype' parameter of GaussianMixture must be a str among \['float64', 'float32'\]"
    ):
        GaussianMixture(2, dtype=np.float16).fit(X)


def test_max_iter_zero_only_initialises():
    X = make_blobs(22)
    gm = GaussianMixture(3, max_iter=0, random_state=0).fit(X)
    assert gm.n_iter_ == 0 and gm.lower_bound_ == -np.inf and not gm.converged_
    np.testing.assert_allclose(np.sort(gm.means_[:, 0]), [-4, 0, 5], atol=0.5)


def test_frequency_weights_equal_repeated_rows():
    X = make_blobs(23)
    w = (np.arange(X.shape[0]) % 3).astype(float)  # 0, 1 and 2 copies
    repeated = np.repeat(X, w.astype(int), axis=0)
    start = GaussianMixture(3, max_iter=0, random_state=0).fit(X)
    kw = dict(
        weights_init=start.weights_, means_init=start.means_, precisions_init=start.precisions_, tol=0, max_iter=8
    )
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        a = GaussianMixture(3, **kw).fit(X, sample_weight=w)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        b = GaussianMixture(3, **kw).fit(repeated)
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=1e-9)
    assert a.lower_bound_ == pytest.approx(b.lower_bound_, rel=1e-12)


def test_warm_start_continues_from_the_last_fit():
    X = make_blobs(24)
    gm = GaussianMixture(3, warm_start=True, max_iter=2, tol=0, random_state=0)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        gm.fit(X)
    first = gm.means_.copy()
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        gm.fit(X)
    assert gm.n_iter_ == 2 and not np.allclose(gm.means_, first, rtol=0, atol=0)
    cold = GaussianMixture(3, max_iter=4, tol=0, random_state=0)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        cold.fit(X)
    np.testing.assert_allclose(gm.means_, cold.means_, rtol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_sample_draws_from_the_fitted_mixture(covariance_type):
    X = make_blobs(25)
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    Xs, ys = gm.sample(30000)
    assert Xs.shape == (30000, 3) and ys.shape == (30000,)
    np.testing.assert_allclose(np.bincount(ys, minlength=3) / 30000, gm.weights_, atol=0.01)
    # Each component's rows have its mean and its covariance (in its type's shape, expanded: zero off the
    # diagonal for diag and spherical); ~10,000 rows each: about 3% of a variance.
    c = gm.covariances_
    dense = {
        "full": lambda: c,
        "tied": lambda: [c] * 3,
        "diag": lambda: [np.diag(v) for v in c],
        "spherical": lambda: [v * np.eye(3) for v in c],
    }[covariance_type]()
    for k in range(3):
        rows = Xs[ys == k]
        np.testing.assert_allclose(rows.mean(axis=0), gm.means_[k], atol=0.1)
        scale = np.sqrt(np.outer(np.diag(dense[k]), np.diag(dense[k])))
        np.testing.assert_allclose(np.cov(rows, rowvar=False) / scale, dense[k] / scale, atol=0.06)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_save_and_load_round_trip_exactly(tmp_path, covariance_type):
    X = make_blobs(26)
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    gm.save(tmp_path / "m")
    back = load_model(tmp_path / "m")
    for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
        np.testing.assert_array_equal(getattr(back, attr), getattr(gm, attr))
    assert (back.converged_, back.n_iter_, back.lower_bound_) == (gm.converged_, gm.n_iter_, gm.lower_bound_)
    np.testing.assert_array_equal(back.predict(X), gm.predict(X))
    with np.load(tmp_path / "m" / "model.npz", allow_pickle=False) as npz:
        # the parameters, and what the fit learnt from (to learn more: update)
        assert set(npz.files) == {"weights", "means", "covariances", "precisions_cholesky", *MOMENT_ARRAYS}


def test_fit_predict_and_params_follow_sklearn():
    X = make_blobs(27)
    gm = GaussianMixture(3, random_state=0)
    labels = gm.fit_predict(X)
    np.testing.assert_array_equal(labels, gm.predict(X))
    assert gm.set_params(n_components=2, tol=1e-4) is gm and gm.get_params()["n_components"] == 2
    assert repr(gm) == "GaussianMixture(n_components=2, random_state=0, tol=0.0001)"  # sorted, as scikit-learn
    assert gm.set_params(dtype=np.float32).get_params()["dtype"] is np.float32
    with pytest.raises(ValueError, match="Invalid parameter 'n_clusters'"):
        gm.set_params(n_clusters=3)


def test_nan_in_dask_input_is_refused_or_marginalised():
    X = make_blobs(28)
    X[[3, 500], 1] = np.nan
    dX = da.from_array(X, chunks=(250, 3))
    with pytest.raises(ValueError, match=r"Input X contains NaN \(2 values\)"):
        GaussianMixture(3).fit(dX)
    dropped = GaussianMixture(3, random_state=0, nan_policy="drop").fit(dX)
    assert dropped.n_samples_ == X.shape[0] - 2
    kept = GaussianMixture(3, random_state=0, nan_policy="marginalize").fit(dX)
    assert kept.n_samples_ == X.shape[0] and np.isfinite(kept.means_).all()
    np.testing.assert_allclose(kept.score_samples(dX).compute(), kept.score_samples(X), rtol=1e-12)
    # predictions of a model that takes no NaN refuse them in Dask input too (as each block is computed)
    for method in ("predict", "predict_proba", "score_samples"):
        with pytest.raises(
            ValueError, match=r"Input X contains NaN\. .* with nan_policy='drop': fit with nan_policy='marginalize'"
        ):
            getattr(dropped, method)(dX).compute()
        with pytest.raises(ValueError, match=r"Input X contains infinity"):
            getattr(kept, method)(da.from_array(np.where(np.isnan(X), np.inf, X), chunks=(250, 3))).compute()


def test_the_nan_error_gives_advice_each_estimator_can_follow():
    X = make_blobs(0, n_per=20)
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"set nan_policy='marginalize' \(use each row's observed values\) or 'drop'"):
        GaussianMixture(2).fit(X)
    with pytest.raises(ValueError, match=r"BayesianGaussianMixture has no nan_policy: drop or impute") as caught:
        BayesianGaussianMixture(n_components=2).fit(X)
    assert "set nan_policy" not in str(caught.value)
    with pytest.raises(ValueError, match=r"BayesianGaussianMixture has no nan_policy"):
        BayesianGaussianMixture(n_components=2).fit(da.from_array(X, chunks=20))
