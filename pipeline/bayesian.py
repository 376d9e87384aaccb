"""``BayesianGaussianMixture``: scikit-learn's variational Gaussian mixture, fitted through the distributed passes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from pipeline import em
from pipeline.choices import VARIATIONAL_PRIOR_KEYS
from pipeline.engine import Warm
from pipeline.kernels.params import PARAM_ARRAYS
from pipeline.kernels.variational import (
    VARIATIONAL_ARRAYS,
    VariationalState,
    VariationalStep,
    estep_log_weights,
)
from pipeline.mixture import MixtureEstimator
from pipeline.spec import ModelSpec


class BayesianGaussianMixture(MixtureEstimator):
    """Variational Bayesian Gaussian mixture fitted through the distributed passes, with scikit-learn's interface.

    A Dirichlet-process (or Dirichlet-distribution) prior on the weights lets a
    fit with a generous ``n_components`` switch off the components the data
    does not need: their ``weights_`` fall to nearly 0.  Parameters, defaults,
    fitted attributes and their meanings are
    :class:`sklearn.mixture.BayesianGaussianMixture`'s; ``lower_bound_`` is its
    variational bound (constants left out), not a mean log-likelihood.

    Parameters
    ----------
    n_components : int, default=1
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
    tol, reg_covar, max_iter, n_init, init_params, random_state, warm_start, verbose, verbose_interval
        As :class:`GaussianMixture`'s.
    weight_concentration_prior_type : {"dirichlet_process", "dirichlet_distribution"}, default="dirichlet_process"
    weight_concentration_prior : float, optional
        Default ``1 / n_components``.
    mean_precision_prior : float, optional
        Default 1.
    mean_prior : array-like of shape (n_features,), optional
        Default: the data's mean.
    degrees_of_freedom_prior : float, optional
        Default ``n_features``.
    covariance_prior : float or array-like, optional
        Default: the data's covariance, in the covariance type's shape.
    dtype : {"float64", "float32"}, default="float64"
        Extra, as :class:`GaussianMixture`'s.

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_, weight_concentration_, mean_precision_,
    degrees_of_freedom_, converged_, n_iter_, lower_bound_, lower_bounds_, n_features_in_, feature_names_in_,
    weight_concentration_prior_, mean_precision_prior_, mean_prior_, degrees_of_freedom_prior_, covariance_prior_
        As in :class:`sklearn.mixture.BayesianGaussianMixture`.
    """

    nan_policy = "error"  # not a parameter: marginalised missing values are EM's only

    def __init__(
        self,
        *,
        n_components=1,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=None,
        mean_precision_prior=None,
        mean_prior=None,
        degrees_of_freedom_prior=None,
        covariance_prior=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        dtype="float64",
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
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior

    def _spec(self) -> ModelSpec:
        priors = {key: getattr(self, key) for key in ("weight_concentration_prior_type", *VARIATIONAL_PRIOR_KEYS)}
        return replace(super()._spec(), algorithm="variational", variational_priors=priors)

    def _warm(self) -> Warm:  # priors of this data and these parameters, as scikit-learn's
        return Warm(self._state(), self.lower_bound_, self.lower_bound_)

    def _step(self) -> VariationalStep:
        return VariationalStep(self.covariance_type, self.reg_covar, self._priors)

    def _state(self) -> VariationalState:
        """The variational posterior, from the fitted attributes."""
        self._check_is_fitted()
        arrays = {name: np.asarray(getattr(self, f"{name}_")) for name in (*PARAM_ARRAYS, *VARIATIONAL_ARRAYS)}
        return self._step().from_arrays(arrays)

    def _log_weights(self) -> np.ndarray:
        return estep_log_weights(self._state(), self.weight_concentration_prior_type)

    def _set_state(self, run: em.EMRun) -> None:
        state: VariationalState = run.state
        concentration = state.weight_concentration
        self.weight_concentration_ = tuple(concentration) if concentration.ndim == 2 else concentration
        self.mean_precision_ = state.mean_precision
        dof = np.asarray(state.degrees_of_freedom)
        self.degrees_of_freedom_ = float(dof) if dof.ndim == 0 else dof
        self._priors = run.algorithm.priors
        for key in VARIATIONAL_PRIOR_KEYS:
            value = getattr(self._priors, key)
            setattr(self, f"{key}_", float(value) if np.ndim(value) == 0 else value)

    def save(self, path: str | Path, storage_options: dict | None = None) -> None:
        """Write the fitted model as a model directory (model.yaml + model.npz with the variational arrays)."""
        state = self._state()
        arrays = self._step().arrays(state)
        self._save(
            path,
            storage_options,
            state.params,
            {name: arrays[name] for name in VARIATIONAL_ARRAYS},
            algorithm="variational",
            variational=self._priors.as_dict(),
        )
