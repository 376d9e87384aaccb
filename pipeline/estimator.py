"""``GaussianMixture``: scikit-learn's estimator, fitted by the distributed EM driver; loading a model directory."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from pipeline import em, engine, kernels, storage
from pipeline.bayesian import BayesianGaussianMixture
from pipeline.engine import Warm
from pipeline.errors import InputError
from pipeline.kernels.params import PARAM_ARRAYS
from pipeline.kernels.prior import PRIOR_KEYS
from pipeline.mixture import FITTED, MixtureEstimator, n_rows
from pipeline.model import YAML_NAME, SavedModel, load_saved_model
from pipeline.spec import ModelSpec

__all__ = ["BayesianGaussianMixture", "GaussianMixture", "load_model"]


class GaussianMixture(MixtureEstimator):
    """Gaussian mixture fitted by distributed EM, with scikit-learn's interface.

    Parameters
    ----------
    n_components : int, default=1
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
    tol : float, default=1e-3
        Stop when the mean log-likelihood (or, with a prior, log-posterior) changes by less than this.
    reg_covar : float, default=1e-6
        Added to the diagonal of the covariances.
    max_iter : int, default=100
        ``0`` only initialises.
    n_init : int, default=1
        Restarts; they share each pass over the data, the best lower bound wins.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
    weights_init : array-like of shape (n_components,), optional
    means_init : array-like of shape (n_components, n_features), optional
    precisions_init : array-like, optional
        Shape by covariance type, as scikit-learn's.
    random_state : int, numpy Generator, RandomState or None
    warm_start : bool, default=False
    verbose : int, default=0
        1 prints the iterations, 2 also their time and change.
    verbose_interval : int, default=10
        Iterations between two printed ones.
    dtype : {"float64", "float32"}, default="float64"
        Extra over scikit-learn: the arithmetic of the E-step and of each
        chunk's moments.  ``"float32"`` is 1.5 to 1.9 times as fast per block
        (measured); sums over chunks and the M-step stay float64.  An M-step
        in float32 gives means within 1e-5 of a standard deviation and
        covariances within 1e-3 (relative, in each component's own units) of
        float64's, typically 1e-5; an iteration in which a component lies too
        far from the mixture's mean for that runs in float64.
    prior : None, "default" or dict, default=None
        Extra: mclust's conjugate prior (MAP EM).  ``"default"`` is mclust's
        ``defaultPrior``; a dict with any of ``shrinkage``, ``mean``, ``dof``,
        ``scale`` replaces those of the default.
    nan_policy : {"error", "drop", "marginalize"}, default="error"
        Extra: rows with NaN are refused, dropped, or used with their observed values.

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_,
    converged_, n_iter_, lower_bound_, lower_bounds_, n_features_in_, feature_names_in_
        As in :class:`sklearn.mixture.GaussianMixture`.
    prior_ : dict
        With a prior: its resolved hyperparameters.
    """

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        dtype="float64",
        prior=None,
        nan_policy="error",
    ):
        super().__init__(
            n_components,
            covariance_type,
            tol,
            reg_covar,
            max_iter,
            n_init,
            init_params,
            random_state,
            warm_start,
            verbose,
            verbose_interval,
            dtype,
        )
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.prior = prior
        self.nan_policy = nan_policy

    def _check_parameters(self) -> None:
        super()._check_parameters()
        prior = self.prior
        if not (prior is None or (isinstance(prior, str) and prior == "default") or isinstance(prior, dict)):
            raise ValueError(
                f"The 'prior' parameter of GaussianMixture must be None, 'default' or a dict with keys "
                f"among {list(PRIOR_KEYS)}. Got {prior!r} instead."
            )
        if isinstance(prior, dict) and set(prior) - set(PRIOR_KEYS):
            raise ValueError(
                f"The 'prior' parameter of GaussianMixture has unknown keys "
                f"{sorted(set(prior) - set(PRIOR_KEYS))}; expected keys among {list(PRIOR_KEYS)}."
            )

    def _spec(self) -> ModelSpec:
        return replace(
            super()._spec(),
            prior=self.prior,
            weights_init=self.weights_init,
            means_init=self.means_init,
            precisions_init=self.precisions_init,
        )

    def _warm(self) -> Warm:
        # the first change is against the last fit's bound, as scikit-learn's; under a prior, the log-posterior's
        # bound is not kept, so the first iteration is not tested
        return Warm(self._params(), self.lower_bound_, self.lower_bound_ if self.prior is None else -math.inf)

    def _set_state(self, run: em.EMRun) -> None:
        hyper = run.algorithm.hyperparameters()
        if hyper is not None:
            self.prior_ = hyper
        elif hasattr(self, "prior_"):
            del self.prior_

    def _n_parameters(self) -> int:
        return kernels.n_parameters(self.covariance_type, self.n_components, self.n_features_in_)

    def bic(self, X):
        """Bayesian information criterion on X (lower is better)."""
        n = n_rows(X)
        return -2 * self.score(X) * n + self._n_parameters() * math.log(n)

    def aic(self, X):
        """Akaike information criterion on X (lower is better)."""
        return -2 * self.score(X) * n_rows(X) + 2 * self._n_parameters()

    def icl(self, X):
        """Integrated completed likelihood on X, mclust's ICL in BIC's sign (lower is better).

        ``bic(X) - 2 sum_i log max_k r_ik``: BIC plus the entropy of the hard classification, never below BIC.
        """
        log_max = np.log(self.predict_proba(X).max(axis=1)).sum()
        return self.bic(X) - 2 * float(log_max.compute() if hasattr(log_max, "compute") else log_max)

    def to_sklearn(self):
        """A fitted :class:`sklearn.mixture.GaussianMixture` with these parameters (needs scikit-learn)."""
        try:
            from sklearn.mixture import GaussianMixture as SkGaussianMixture
        except ImportError:
            raise ImportError("to_sklearn needs scikit-learn: pip install gmm-pipeline[sklearn]") from None
        self._check_is_fitted()
        seed = self.random_state if isinstance(self.random_state, (int, type(None))) else None
        ours = {
            name: value for name, value in self.get_params().items() if name not in ("dtype", "prior", "nan_policy")
        }
        sk = SkGaussianMixture(**{**ours, "random_state": seed})
        for attr in FITTED:
            if hasattr(self, attr):
                setattr(sk, attr, getattr(self, attr))
        return sk

    def save(self, path: str | Path, storage_options: dict | None = None) -> None:
        """Write the fitted model as a model directory (model.yaml + model.npz), local or fsspec URL.

        An existing ``path`` is replaced only if it is a model directory.
        """
        self._save(
            path, storage_options, self._params(), prior=getattr(self, "prior_", None), missing=self._missing_values
        )


# Parameters that hold arrays: recorded as lists, given back as arrays.
_ARRAY_PARAMETERS = ("weights_init", "means_init", "precisions_init", "mean_prior", "covariance_prior")


def _parameters(saved: SavedModel) -> dict:
    """The estimator's parameters of a stored model: as recorded, or (written before they were) as far as the
    stored model tells them."""
    info = saved.info
    if info.parameters is not None:
        parameters = {
            name: np.asarray(value) if name in _ARRAY_PARAMETERS and isinstance(value, list) else value
            for name, value in info.parameters.items()
        }
    elif info.algorithm == "variational":
        parameters = dict(info.variational or {})
    else:
        policy = info.missing.nan_policy if info.missing is not None else "error"
        parameters = {"prior": info.prior, "nan_policy": policy}
    parameters.update(n_components=info.n_components, covariance_type=info.covariance_type)
    return parameters


def from_saved(saved: SavedModel, where: str = "model.yaml") -> GaussianMixture | BayesianGaussianMixture:
    """A fitted GaussianMixture (or BayesianGaussianMixture) from a stored model, with the parameters it was fitted
    with.

    Raises
    ------
    InputError
        If the recorded parameters are not the estimator's (unknown names, values out of range).
    """
    p, info = saved.params, saved.info
    cls = BayesianGaussianMixture if info.algorithm == "variational" else GaussianMixture
    variational = info.algorithm == "variational"
    try:
        model = cls(**_parameters(saved))
        model._check_parameters()
        step = engine.make_step(
            model._spec(),
            engine.Candidate(p.n_components, p.covariance_type),
            None,
            model._naming(p.n_features),
            hyperparameters=info.variational if variational else info.prior,
        )
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: parameters: {str(exc)[:300]}") from None
    state = step.from_arrays({**{name: getattr(p, name) for name in PARAM_ARRAYS}, **saved.extra_arrays})
    lower_bound = -math.inf if info.lower_bound is None else info.lower_bound
    model._set_fitted(
        em.EMRun(
            step,
            state,
            lower_bound,
            history=list(info.history),
            n_iter=info.n_iter or 0,
            converged=bool(info.converged),
        ),
        p.n_features,
    )
    model._missing_values = info.missing
    if info.named_features:
        model.feature_names_in_ = np.array(info.feature_names, dtype=object)
    return model


def load_model(path: str | Path, storage_options: dict | None = None) -> GaussianMixture | BayesianGaussianMixture:
    """Load a model directory written by ``gmm fit`` or ``.save`` (local path or fsspec URL)."""
    place = storage.Place.of(path, storage_options)
    return from_saved(load_saved_model(place), place.join(YAML_NAME).name)
