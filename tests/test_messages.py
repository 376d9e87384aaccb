"""Messages that name what the user wrote: the estimators' parameters, as they spell them, and the JSON log lines.

The ``gmm`` faces of the same checks are in test_bad_input.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import make_blobs

from pipeline import BayesianGaussianMixture, GaussianMixture
from pipeline.kernels.prior import MAX_PRIOR_COUNT, NoSpreadError

X = make_blobs(70, n_per=60)


# --------------------------------------------------------------------------- priors
@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
def test_the_default_prior_on_rows_without_spread_says_so(covariance_type):
    same = np.tile([1.0, 2.0, 3.0], (30, 1))
    gm = GaussianMixture(1, covariance_type=covariance_type, prior="default")
    with pytest.raises(NoSpreadError, match=r"no spread \(every column is constant: 0, 1, 2\)") as caught:
        gm.fit(same)
    assert caught.value.columns == [0, 1, 2]
    one = GaussianMixture(1, covariance_type=covariance_type, prior="default")
    with pytest.raises(NoSpreadError, match=r"no spread \(column 0 is constant\)"):
        one.fit(same[:, :1])
    given = GaussianMixture(1, covariance_type=covariance_type, prior={"scale": 1.0}).fit(same)  # what it advises
    assert np.allclose(given.means_, [[1.0, 2.0, 3.0]])


@pytest.mark.parametrize(
    ("params", "pattern"),
    [
        (
            {"covariance_prior": np.eye(2)},
            r"^covariance_prior must be a 3 x 3 matrix for covariance_type 'full', got shape \(2, 2\)$",
        ),
        (
            {"covariance_type": "tied", "covariance_prior": np.diag([1.0, 0.0, 1.0])},
            r"^covariance_prior must be positive definite for covariance_type 'tied', got a matrix with smallest "
            r"eigenvalue 0$",
        ),
        (
            {"covariance_prior": [[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]},
            r"^covariance_prior must be symmetric for covariance_type 'full'$",
        ),
        (
            {"covariance_type": "diag", "covariance_prior": [1.0, -1.0, 1.0]},
            r"^covariance_prior must be > 0 for covariance_type 'diag', got \[ 1\. -1\.  1\.\]$",
        ),
        (
            {"covariance_type": "spherical", "covariance_prior": [1.0, 1.0, 1.0]},
            r"^covariance_prior must be one number for covariance_type 'spherical', got shape \(3,\)$",
        ),
        ({"mean_prior": [0.0, 0.0]}, r"^mean_prior must be 3 numbers \(one per feature\), got shape \(2,\)$"),
        ({"mean_prior": [0.0, np.nan, 0.0]}, r"^mean_prior must be finite, got \[ 0\. nan  0\.\]$"),
        ({"degrees_of_freedom_prior": 1.5}, r"^degrees_of_freedom_prior must be > 2 \(n_features - 1\), got 1\.5$"),
        ({"mean_precision_prior": -1.0}, r"^mean_precision_prior must be a number > 0, got -1\.0$"),
    ],
)
def test_variational_priors_are_named_as_the_parameters(params, pattern):
    with pytest.raises(ValueError, match=pattern):
        BayesianGaussianMixture(n_components=2, **params).fit(X)


@pytest.mark.parametrize(
    ("estimator", "name"),
    [
        (lambda v: BayesianGaussianMixture(n_components=2, degrees_of_freedom_prior=v), "degrees_of_freedom_prior"),
        (lambda v: BayesianGaussianMixture(n_components=2, mean_precision_prior=v), "mean_precision_prior"),
        (
            lambda v: BayesianGaussianMixture(
                n_components=2, weight_concentration_prior_type="dirichlet_distribution", weight_concentration_prior=v
            ),
            "weight_concentration_prior",
        ),
        (lambda v: GaussianMixture(2, prior={"dof": v}), "prior dof"),
        (lambda v: GaussianMixture(2, covariance_type="diag", prior={"shrinkage": v}), "prior shrinkage"),
    ],
)
@pytest.mark.filterwarnings("ignore::pipeline.errors.ConvergenceWarning")  # three iterations are enough here
@pytest.mark.filterwarnings("ignore::pipeline.errors.CollapsedComponentsWarning")  # what so strong a prior does
def test_a_prior_count_that_overflows_is_refused_and_a_large_one_fits(estimator, name):
    with pytest.raises(ValueError, match=rf"^{name} must be at most 1e\+100, got 1e\+308: .* overflows"):
        estimator(1e308).fit(X)
    with np.errstate(all="raise"):  # neither a large nor the largest accepted count overflows anywhere
        for value in (1e12, MAX_PRIOR_COUNT):
            fitted = estimator(value).set_params(max_iter=3).fit(X)
            assert np.isfinite(fitted.means_).all() and np.isfinite(fitted.lower_bound_)
