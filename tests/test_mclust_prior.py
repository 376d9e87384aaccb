"""mclust's conjugate prior with its covariance models (``covariance_type="VEV", prior="default"``) against mclust.

Fixtures: tests/data/mclust_prior (scripts/mclust_prior_fixtures.R: faithful, iris, diabetes; G = 2, 3; the ten
models mclust gives a prior), each with mclust's MAP fit under ``priorControl()``, the prior it resolved, and one
M-step of its EM from seeded responsibilities, with shrinkage 0.01 and 0.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers import fixture_fits, json_fixtures, make_blobs
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from pipeline import GaussianMixture
from pipeline.errors import ConvergenceWarning
from pipeline.kernels import mclust_prior
from pipeline.kernels.params import make_params
from pipeline.kernels.prior import Prior, log_prior, map_covariances, map_means

FIXTURES = json_fixtures("mclust_prior")
FITS = fixture_fits(FIXTURES, lambda fit: fit["fitted"])
STEPS = [
    pytest.param(name, i, id=f"{name}-{step['model']}-G{step['G']}-kappa{step['shrinkage']}")
    for name, doc in FIXTURES.items()
    for i, step in enumerate(doc["steps"])
]
# mclust stops (on the log-likelihood) with one component still emptying (weight 1e-9, shrinking a tenth a step):
# its mean and covariance are no one's fixed point yet; only the others' are compared
VANISHING = {("faithful", "EVI", 3), ("faithful", "VVI", 3)}


def _prior(entry) -> dict:
    return {key: entry["prior"][key] for key in ("shrinkage", "mean", "dof", "scale")}


def _theirs(entry):
    return tuple(np.asarray(entry[key], float) for key in ("pro", "mean", "sigma"))


def _close(X, ours, theirs, atol, live=slice(None)):
    """Weights, and means and covariances of the ``live`` components in units of the data's spread, to ``atol``."""
    (w, m, s), (tw, tm, ts) = ours, theirs
    spread = X.std(axis=0)
    outer = np.outer(spread, spread)
    np.testing.assert_allclose(w, tw, rtol=0, atol=atol)
    np.testing.assert_allclose(m[live] / spread, tm[live] / spread, rtol=0, atol=atol)
    np.testing.assert_allclose(s[live] / outer, ts[live] / outer, rtol=0, atol=atol)


@pytest.mark.parametrize("name, i", FITS)
def test_mclusts_map_optimum_is_a_fixed_point_of_our_map_em(name, i):
    X = np.asarray(FIXTURES[name]["X"], float)
    fit = FIXTURES[name]["fits"][i]
    pro, mean, sigma = _theirs(fit)
    start = dict(weights_init=pro, means_init=mean, precisions_init=np.linalg.inv(sigma))
    gm = GaussianMixture(
        fit["G"], covariance_type=fit["model"], prior=_prior(fit), reg_covar=0.0, tol=0.0, max_iter=1, **start
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(X)
    assert gm.lower_bound_ * len(X) == pytest.approx(fit["loglik"], rel=1e-9)  # mclust reports the likelihood
    live = pro > 1e-6
    assert (~live).sum() == ((name, fit["model"], fit["G"]) in VANISHING)
    _close(X, (gm.weights_, gm.means_, gm.covariances_), (pro, mean, sigma), atol=1e-6, live=live)


def _statistics(X, resp):
    nk = resp.sum(axis=0)
    means = resp.T @ X / nk[:, None]
    scatter = np.stack([(resp[:, k, None] * (X - means[k])).T @ (X - means[k]) for k in range(len(nk))])
    return nk, means, scatter


def _as_prior(entry) -> Prior:
    p = _prior(entry)
    return Prior(p["shrinkage"], np.asarray(p["mean"], float), p["dof"], np.asarray(p["scale"], float))


@pytest.mark.parametrize("name, i", STEPS)
def test_one_map_m_step_is_mclusts(name, i):
    doc = FIXTURES[name]
    X, step = np.asarray(doc["X"], float), doc["steps"][i]
    nk, data_means, scatter = _statistics(X, np.asarray(doc["z"][str(step["G"])], float))
    prior, model = _as_prior(step), step["model"]
    ours = (
        nk / nk.sum(),
        map_means(nk, data_means, prior, model),
        map_covariances(nk, data_means - prior.mean, scatter, model, prior),
    )
    _close(X, ours, _theirs(step), atol=1e-12)


@pytest.mark.parametrize("model", mclust_prior.MODELS)
def test_the_default_prior_is_mclusts(model):
    X = np.asarray(FIXTURES["iris"]["X"], float)
    (fit,) = [f for f in FIXTURES["iris"]["fits"] if (f["model"], f["G"]) == (model, 3)]
    gm = GaussianMixture(3, covariance_type=model, prior="default", random_state=0, max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(X)
    theirs = _prior(fit)
    assert gm.prior_["shrinkage"] == theirs["shrinkage"] and gm.prior_["dof"] == theirs["dof"]
    np.testing.assert_allclose(gm.prior_["mean"], theirs["mean"], rtol=1e-12)
    assert np.shape(gm.prior_["scale"]) == np.shape(theirs["scale"]) == (() if model[2] == "I" else (4, 4))
    np.testing.assert_allclose(gm.prior_["scale"], theirs["scale"], rtol=1e-12)


def _log_posteriors(name, model, n_iter):
    """Log-likelihood + :func:`log_prior` after each of ``n_iter`` MAP EM steps (our M-step, scipy's E-step) from
    the fixture's random responsibilities, G = 3, shrinkage 0.01."""
    doc = FIXTURES[name]
    X, resp = np.asarray(doc["X"], float), np.asarray(doc["z"]["3"], float)
    (step,) = [s for s in doc["steps"] if (s["model"], s["G"], s["shrinkage"]) == (model, 3, 0.01)]
    prior = _as_prior(step)
    values = []
    for _ in range(n_iter):
        nk, data_means, scatter = _statistics(X, resp)
        means = map_means(nk, data_means, prior, model)
        cov = map_covariances(nk, data_means - prior.mean, scatter, model, prior)
        log_joint = np.column_stack(
            [np.log(w) + multivariate_normal(m, s).logpdf(X) for w, m, s in zip(nk / nk.sum(), means, cov)]
        )
        resp = np.exp(log_joint - logsumexp(log_joint, axis=1)[:, None])
        params = make_params(nk / nk.sum(), means, cov, model)
        values.append(logsumexp(log_joint, axis=1).sum() + log_prior(params, prior))
    return np.asarray(values)


@pytest.mark.parametrize("model", [m for m in mclust_prior.MODELS if m not in mclust_prior.UNSHRUNK_MEANS])
def test_map_em_never_lowers_the_log_posterior(model):
    for name in FIXTURES:
        values = _log_posteriors(name, model, 25)
        assert (np.diff(values) >= -1e-12 * abs(values[-1])).all(), (name, np.diff(values).min())
        assert values[-1] > values[0]


def test_eei_keeps_the_data_means_so_its_log_posterior_can_fall_a_little():
    # mclust's meeeip counts the prior mean's pull in the covariance but leaves the means unshrunk: its update
    # maximises no fixed objective, and the log posterior falls at some steps, by at most ~1e-7 of itself
    values = _log_posteriors("iris", "EEI", 80)
    assert -1e-6 < np.diff(values).min() / abs(values[-1]) < -1e-12


def test_the_prior_with_mclusts_models_is_checked_before_any_work():
    X = make_blobs(4, n_per=50)
    with pytest.raises(ValueError, match="prior scale must be one number for covariance_type 'EEI', got shape"):
        GaussianMixture(2, covariance_type="EEI", prior={"scale": np.eye(3)}).fit(X)
    with pytest.raises(ValueError, match="prior scale must be a 3 x 3 matrix for covariance_type 'EEV'"):
        GaussianMixture(2, covariance_type="EEV", prior={"scale": 1.0}).fit(X)
    with pytest.raises(ValueError, match="prior dof must be > 2 for covariance_type 'VEV'"):
        GaussianMixture(2, covariance_type="VEV", prior={"dof": 1.5}).fit(X)
