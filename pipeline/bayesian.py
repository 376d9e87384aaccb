"""``BayesianGaussianMixture``: scikit-learn's variational Gaussian mixture, fitted through the distributed passes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from pipeline import em
from pipeline.choices import SKLEARN_COVARIANCE_TYPES, VARIATIONAL_PRIOR_KEYS
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
    ``dtype``, ``fit``'s ``sample_weight``, ``save``, ``n_samples_`` and
    ``weight_sum_`` are extra.  It runs where :class:`GaussianMixture` runs (the
    active ``distributed.Client``, else Dask's default scheduler), one pass over
    the data per iteration.  It has no ``nan_policy``: rows with NaN are refused
    (drop or impute them, or fit ``GaussianMixture(nan_policy="marginalize")``).
    See :doc:`/guide/priors-and-variational`.

    Parameters
    ----------
    n_components : int, default=1
        The most components, at least 1; the fit can leave some with weights near 0.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        Each component's covariance, as :class:`GaussianMixture`'s.
    tol : float, default=1e-3
        Stop when the lower bound (a total over the rows, as scikit-learn's) changes by less than this; at least
        0.  A Dirichlet process switches components off slowly: give it a tighter ``tol`` than EM needs.
    reg_covar : float, default=1e-6
        Added to the diagonal of the covariances, at least 0.
    max_iter : int, default=100
        The most iterations, at least 0.  ``0`` only initialises.
    n_init : int, default=1
        The number of starts, at least 1; they share each pass over the data, the best lower bound wins.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        How each start is made, as :class:`GaussianMixture`'s.
    weight_concentration_prior_type : {"dirichlet_process", "dirichlet_distribution"}, default="dirichlet_process"
        The weights' prior: a stick-breaking Dirichlet process, or a Dirichlet distribution.
    weight_concentration_prior : float, default=None
        The weights' concentration, greater than 0; smaller leaves fewer components active.  None:
        ``1 / n_components``.
    mean_precision_prior : float, default=None
        How strongly the means are pulled to ``mean_prior``, greater than 0.  None: 1.
    mean_prior : array-like of shape (n_features,), default=None
        The means' prior mean.  None: the data's mean.
    degrees_of_freedom_prior : float, default=None
        The covariances' degrees of freedom, more than n_features - 1.  None: ``n_features``.
    covariance_prior : float or array-like, default=None
        The covariances' prior.  None: the data's covariance, in the covariance type's shape::

            (n_features, n_features) if "full" or "tied",
            (n_features,)            if "diag",
            float                    if "spherical"
    random_state : int, numpy Generator, RandomState or None, default=None
        The seed of every start, and of ``sample``, as :class:`GaussianMixture`'s.
    warm_start : bool, default=False
        If True, each ``fit`` of a fitted estimator starts from the last fit's posterior, as one run.
    verbose : int, default=0
        1 prints the iterations, 2 also their time and change.
    verbose_interval : int, default=10
        Iterations between two printed ones, at least 1.
    dtype : {"float64", "float32"} or numpy dtype, default="float64"
        Extra, as :class:`GaussianMixture`'s.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        The weight of each component, from ``weight_concentration_``; they sum to 1.
    means_ : ndarray of shape (n_components, n_features)
        The mean of each component.
    covariances_ : ndarray
        The covariance of each component, shaped as :class:`GaussianMixture`'s ``covariances_`` by
        ``covariance_type``.
    precisions_ : ndarray
        The precisions, the inverses of ``covariances_``, of the same shape.
    precisions_cholesky_ : ndarray
        The Cholesky factors of ``precisions_`` as scikit-learn holds them, of the same shape.
    weight_concentration_ : tuple of two ndarrays of shape (n_components,), or ndarray of shape (n_components,)
        The posterior's concentration of the weights: the Beta distributions' two parameters for
        ``"dirichlet_process"``, the Dirichlet's for ``"dirichlet_distribution"``.
    mean_precision_ : ndarray of shape (n_components,)
        The posterior's precision of each component's mean.
    degrees_of_freedom_ : ndarray of shape (n_components,), or float
        The posterior's degrees of freedom of each component (one float for ``"tied"``).
    converged_ : bool
        Whether the best run's lower bound changed by less than ``tol`` within ``max_iter`` iterations.
    n_iter_ : int
        The number of iterations of the best run.
    lower_bound_ : float
        The variational lower bound (constants left out, as scikit-learn's) of the best run at its last
        iteration: a total over the rows, not a mean.  ``-inf`` with ``max_iter=0``.
    lower_bounds_ : list of float of length ``n_iter_``
        ``lower_bound_`` at each iteration of the best run.
    n_features_in_ : int
        The number of features seen by ``fit``.
    feature_names_in_ : ndarray of shape (``n_features_in_``,), dtype object
        The column names seen by ``fit``.  Only when X had column names that are all strings.
    n_samples_ : int
        Extra: the number of rows the fit used (rows of weight 0 included).  Set by ``fit``, and by
        :func:`load_model` when model.yaml records it.
    weight_sum_ : float
        Extra: the sum of ``sample_weight`` over those rows; set as ``n_samples_``.
    weight_concentration_prior_ : float
        The ``weight_concentration_prior`` used (its default resolved).
    mean_precision_prior_ : float
        The ``mean_precision_prior`` used.
    mean_prior_ : ndarray of shape (n_features,)
        The ``mean_prior`` used.
    degrees_of_freedom_prior_ : float
        The ``degrees_of_freedom_prior`` used.
    covariance_prior_ : ndarray of shape (n_features, n_features) or (n_features,), or float
        The ``covariance_prior`` used, in the shape of ``covariance_type`` (above).

    See Also
    --------
    GaussianMixture : The finite mixture fitted by EM (or MAP EM under a prior).
    load_model : A fitted estimator from a model directory.

    Examples
    --------
    >>> import numpy as np
    >>> from pipeline import BayesianGaussianMixture
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(0, 1, (100, 2)), rng.normal(5, 1, (100, 2))])
    >>> bgm = BayesianGaussianMixture(n_components=5, random_state=0).fit(X)
    >>> bgm.weights_.round(2)
    array([0.5, 0.5, 0. , 0. , 0. ])
    >>> int((bgm.weights_ > 0.01).sum())
    2
    >>> bgm.predict([[0, 0], [5, 5]])
    array([0, 1])
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

    def _check_parameters(self) -> None:
        super()._check_parameters()
        if self.covariance_type not in SKLEARN_COVARIANCE_TYPES:  # mclust's models are not the variational mixture's
            raise ValueError(
                f"The 'covariance_type' parameter of BayesianGaussianMixture must be a str among "
                f"{list(SKLEARN_COVARIANCE_TYPES)}. Got {self.covariance_type!r} instead."
            )

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
        """Write the fitted model as a model directory (model.yaml + model.npz with the variational arrays).

        model.yaml records ``algorithm: variational``, the parameters (:meth:`recorded_parameters`), the fit and
        the resolved priors; model.npz adds ``weight_concentration``, ``mean_precision`` and
        ``degrees_of_freedom`` to the mixture's arrays.  :func:`load_model` reads it back as a
        BayesianGaussianMixture.  Where and how it is written (and what it may replace) is as
        :meth:`GaussianMixture.save`.

        Parameters
        ----------
        path : str or pathlib.Path
            The directory: a local path or an fsspec URL (``s3://bucket/models/m``).
        storage_options : dict, optional
            Options for the URL's fsspec file system (credentials, endpoint), as fsspec takes them.

        Raises
        ------
        NotFittedError
            The estimator is not fitted yet.
        ValueError
            A local ``path`` that exists and is neither an empty directory nor a model directory; nothing is
            written.
        pipeline.errors.EnvironmentFault
            The directory cannot be written (a RuntimeError naming it).

        See Also
        --------
        load_model : Read it back.
        """
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
