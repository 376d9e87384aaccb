"""The estimators as scikit-learn citizens: check_estimator, Pipeline, clone, GridSearchCV, cross_val_score,
feature names and scikit-learn's input handling.

scripts/test runs this file twice: with the newest scikit-learn (the test extra's) and with the oldest the
project supports (SKLEARN_OLDEST in scripts/test), so both keep working.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
from helpers import make_blobs
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline import BayesianGaussianMixture, GaussianMixture
from pipeline.errors import ConvergenceWarning
from pipeline.inputs import FeatureNamesWarning

SKLEARN = tuple(int(part) for part in sklearn.__version__.split(".")[:2])
# check_estimator checks that cannot apply, with the reason for each.
WEIGHTED_STARTS = (
    "k-means++ starts draw rows by index, so a row of weight 2 and two copies of that row are different draws "
    "and may start EM (and end it, at a local optimum) elsewhere; the passes themselves count a weight of 2 "
    "exactly as two copies (test_frequency_weights_equal_repeated_rows, test_weight_column_counts_like_repeated_rows)"
)
# The same check before scikit-learn 1.6 (with rows of weight zero) and since.
WEIGHT_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data": WEIGHTED_STARTS,
    "check_sample_weights_invariance": WEIGHTED_STARTS,
}
ESTIMATORS = [
    (GaussianMixture(), {}),  # one component: the start does not matter, every check passes
    (
        GaussianMixture(2, covariance_type="diag", prior="default"),
        WEIGHT_CHECKS,
    ),
    (BayesianGaussianMixture(), {}),
    (
        BayesianGaussianMixture(
            n_components=3, covariance_type="tied", weight_concentration_prior_type="dirichlet_distribution"
        ),
        WEIGHT_CHECKS,
    ),
]


def _check_name(check) -> str:
    return getattr(check, "func", check).__name__


# scikit-learn is optional here (see README), so the estimators do not inherit its BaseEstimator; it says so.
@pytest.mark.filterwarnings("ignore:Estimator .* does not inherit from `sklearn.base.BaseEstimator`")
@pytest.mark.parametrize(("estimator", "expected_failed_checks"), ESTIMATORS, ids=lambda v: repr(v)[:60])
def test_check_estimator_passes(estimator, expected_failed_checks):
    from sklearn.utils.estimator_checks import check_estimator

    warnings.simplefilter("ignore", ConvergenceWarning)  # a check's small data need not converge in its max_iter
    if SKLEARN >= (1, 6):
        results = check_estimator(estimator, expected_failed_checks=expected_failed_checks, on_fail=None)
        failed = [(r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"]
        assert not failed, failed
        assert sum(r["status"] == "passed" for r in results) >= 40
        return
    ran = 0
    for est, check in check_estimator(estimator, generate_only=True):  # scikit-learn before 1.6
        if _check_name(check) in expected_failed_checks:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            check(est)
        ran += 1
    assert ran >= 30


def blobs_frame(seed=40):
    return pd.DataFrame(make_blobs(seed), columns=["a", "b", "c"])


def test_pipeline_clone_and_cross_validation():
    X = make_blobs(41)
    pipe = make_pipeline(StandardScaler(), GaussianMixture(3, random_state=0)).fit(X)
    scaled = StandardScaler().fit_transform(X)
    alone = GaussianMixture(3, random_state=0).fit(scaled)
    np.testing.assert_array_equal(pipe.predict(X), alone.predict(scaled))
    assert pipe.score(X) == pytest.approx(alone.score(scaled), rel=1e-12)
    copy = clone(pipe)
    assert copy.get_params()["gaussianmixture__n_components"] == 3 and not hasattr(copy[-1], "means_")
    folds = KFold(3, shuffle=True, random_state=0)
    scores = cross_val_score(GaussianMixture(3, random_state=0), X, cv=folds)
    manual = [GaussianMixture(3, random_state=0).fit(X[train]).score(X[test]) for train, test in folds.split(X)]
    np.testing.assert_allclose(scores, manual, rtol=1e-12)


def test_grid_search_scores_every_candidate():
    X = make_blobs(42)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Scoring failed" and every other warning would fail here
        warnings.simplefilter("ignore", ConvergenceWarning)
        search = GridSearchCV(
            GaussianMixture(random_state=0), {"n_components": [1, 2, 3], "covariance_type": ["full", "spherical"]}, cv=3
        ).fit(X)
    scores = search.cv_results_["mean_test_score"]
    assert np.isfinite(scores).all()
    assert search.best_score_ == max(scores)
    assert search.best_params_["n_components"] == 3  # three well-separated blobs


@pytest.mark.parametrize("method", ["predict", "predict_proba", "score_samples", "score", "bic", "aic"])
def test_feature_names_are_checked_as_scikit_learn_checks_them(method):
    frame = blobs_frame()
    gm = GaussianMixture(3, random_state=0).fit(frame)
    np.testing.assert_array_equal(gm.feature_names_in_, ["a", "b", "c"])
    reordered = frame[["c", "a", "b"]]
    with pytest.raises(ValueError, match="The feature names should match those that were passed during fit"):
        getattr(gm, method)(reordered)
    with pytest.raises(ValueError, match="Feature names unseen at fit time:\n- d"):
        getattr(gm, method)(frame.rename(columns={"c": "d"}))
    with pytest.warns(
        FeatureNamesWarning,
        match="X does not have valid feature names, but GaussianMixture was fitted with feature names",
    ):
        getattr(gm, method)(frame.to_numpy())
    plain = GaussianMixture(3, random_state=0).fit(frame.to_numpy())
    with pytest.warns(FeatureNamesWarning, match="X has feature names, but GaussianMixture was fitted without"):
        getattr(plain, method)(frame)


def test_weights_as_series_list_and_array_agree():
    X = make_blobs(43)
    w = np.arange(X.shape[0]) % 3 + 1.0
    fits = [
        GaussianMixture(3, random_state=0).fit(X, sample_weight=weights)
        for weights in (w, pd.Series(w, index=np.arange(X.shape[0]) + 1000), list(w))
    ]
    for gm in fits[1:]:
        np.testing.assert_array_equal(gm.means_, fits[0].means_)
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(3,\), expected \(900,\)!"):
        GaussianMixture(3).fit(X, sample_weight=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
        GaussianMixture(3).fit(X, sample_weight=-w)


def test_complex_sparse_and_object_input_as_scikit_learn():
    import scipy.sparse

    X = make_blobs(44)
    with pytest.raises(ValueError, match="Complex data not supported"):
        GaussianMixture(2).fit(X + 1j)
    with pytest.raises(TypeError, match="Sparse data was passed for X, but dense data is required"):
        GaussianMixture(2).fit(scipy.sparse.csr_matrix(X))
    numbers = GaussianMixture(3, random_state=0).fit(X.astype(object))
    np.testing.assert_allclose(numbers.means_, GaussianMixture(3, random_state=0).fit(X).means_)
    words = X.astype(object)
    words[0, 0] = "text"
    with pytest.raises(ValueError, match="could not convert string to float: 'text'"):
        GaussianMixture(2).fit(words)


def test_verbose_prints_iterations(capsys):
    X = make_blobs(45)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        GaussianMixture(3, random_state=0, verbose=2, verbose_interval=2, tol=0.0, max_iter=4).fit(X)
    out = capsys.readouterr().out
    assert "Iteration 2\t time lapse" in out and "Iteration 4\t" in out and "Iteration 3" not in out
    assert "Initialization did not converge." in out
    GaussianMixture(3, random_state=0, verbose=0).fit(X)
    assert capsys.readouterr().out == ""
