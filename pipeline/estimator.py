"""``GaussianMixture``: scikit-learn's estimator, fitted by the distributed EM driver.

It runs on the current Dask scheduler (an active ``distributed.Client`` if
there is one, else Dask's default) and never starts a cluster itself.
scikit-learn is not needed to use it; when scikit-learn calls it (Pipeline,
clone, GridSearchCV, ``check_estimator``) it answers scikit-learn's protocol:
``get_params``/``set_params``, ``__sklearn_tags__`` (and ``_more_tags`` for
scikit-learn before 1.6), ``__sklearn_is_fitted__``, feature-name checks.
"""

from __future__ import annotations

import inspect
import math
import numbers
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from pipeline import em, init, kernels
from pipeline.choices import COVARIANCE_TYPES, DTYPES, INIT_METHODS, NAN_POLICIES, WEIGHT_PRIOR_TYPES
from pipeline.errors import CollapsedComponentsWarning, ConvergenceWarning, not_fitted
from pipeline.inputs import check_feature_names, check_rows, check_sample_weight, feature_names, is_dask
from pipeline.kernels.algorithms import EMStep, collapsed_components
from pipeline.kernels.params import PARAM_ARRAYS
from pipeline.kernels.prior import PRIOR_KEYS, Prior, check_prior, default_prior
from pipeline.kernels.variational import PRIOR_KEYS as VARIATIONAL_PRIOR_KEYS
from pipeline.kernels.variational import (
    VARIATIONAL_ARRAYS,
    VariationalPriors,
    VariationalState,
    VariationalStep,
    estep_log_weights,
    resolve_priors,
)
from pipeline.model import MissingValues, SavedModel, describe, load_saved_model, save_model
from pipeline.passes import BlockSource, blocks_from_arrays, scan


def _same(a, b) -> bool:
    try:
        return bool(a is b or a == b)
    except ValueError:
        return False


def _dtype_name(value) -> str | None:
    """``"float32"`` for "float32", np.float32 or np.dtype("float32"); None for what is not a dtype."""
    try:
        return None if value is None else np.dtype(value).name
    except TypeError:
        return None


class _Mixture:
    """What every estimator of this package shares: scikit-learn's protocol, input checks, prediction."""

    _estimator_type = "DensityEstimator"  # scikit-learn before 1.6 reads this; later ones, __sklearn_tags__

    # ------------------------------------------------------------------ scikit-learn's protocol
    @classmethod
    def _get_param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return sorted(p.name for p in signature.parameters.values() if p.name != "self" and p.kind != p.VAR_KEYWORD)

    def get_params(self, deep=True) -> dict:
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params):
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for estimator {type(self).__name__}. Valid parameters are: {valid!r}."
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = type(self)().get_params()
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if not _same(v, defaults[k])]
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self):
        from sklearn.utils import InputTags, Tags, TargetTags

        return Tags(
            estimator_type="density_estimator",
            target_tags=TargetTags(required=False),
            input_tags=InputTags(allow_nan=self.nan_policy != "error"),
        )

    def _more_tags(self) -> dict:  # scikit-learn before 1.6
        return {"allow_nan": self.nan_policy != "error", "requires_y": False}

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "means_")

    def _check_is_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise not_fitted(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )

    def _rng(self) -> np.random.Generator:
        if isinstance(self.random_state, np.random.Generator):
            return self.random_state
        if isinstance(self.random_state, np.random.RandomState):
            return np.random.default_rng(self.random_state.randint(2**31))
        return np.random.default_rng(self.random_state)

    def _seed(self) -> int:
        """The seed of every start: an int random_state itself, else drawn from it (or fresh entropy)."""
        if isinstance(self.random_state, numbers.Integral) and not isinstance(self.random_state, bool):
            return int(self.random_state)
        if self.random_state is None:
            return int(np.random.SeedSequence().entropy)
        return int(self._rng().integers(2**63))

    def _check_common(self) -> None:
        name = type(self).__name__
        checks = [
            (
                isinstance(self.n_components, numbers.Integral)
                and not isinstance(self.n_components, bool)
                and self.n_components >= 1,
                "n_components",
                "an int in the range [1, inf)",
            ),
            (self.covariance_type in COVARIANCE_TYPES, "covariance_type", f"a str among {list(COVARIANCE_TYPES)}"),
            (
                isinstance(self.tol, numbers.Real) and math.isfinite(self.tol) and self.tol >= 0,
                "tol",
                "a float in the range [0.0, inf)",
            ),
            (
                isinstance(self.reg_covar, numbers.Real) and math.isfinite(self.reg_covar) and self.reg_covar >= 0,
                "reg_covar",
                "a float in the range [0.0, inf)",
            ),
            (
                isinstance(self.max_iter, numbers.Integral) and self.max_iter >= 0,
                "max_iter",
                "an int in the range [0, inf)",
            ),
            (isinstance(self.n_init, numbers.Integral) and self.n_init >= 1, "n_init", "an int in the range [1, inf)"),
            (self.init_params in INIT_METHODS, "init_params", f"a str among {list(INIT_METHODS)}"),
            (isinstance(self.verbose, numbers.Integral) and self.verbose >= 0, "verbose", "an int >= 0"),
            (
                isinstance(self.verbose_interval, numbers.Integral) and self.verbose_interval >= 1,
                "verbose_interval",
                "an int in the range [1, inf)",
            ),
            (_dtype_name(self.dtype) in DTYPES, "dtype", f"one of {DTYPES}"),
            (self.nan_policy in NAN_POLICIES, "nan_policy", f"a str among {list(NAN_POLICIES)}"),
            (
                self.random_state is None
                or isinstance(self.random_state, (np.random.Generator, np.random.RandomState))
                or (isinstance(self.random_state, numbers.Integral) and self.random_state >= 0),
                "random_state",
                "None, an int >= 0, a numpy Generator or RandomState",
            ),
        ]
        for ok, param, expected in checks:
            if not ok:
                raise ValueError(
                    f"The {param!r} parameter of {name} must be {expected}. Got {getattr(self, param)!r} instead."
                )

    # ------------------------------------------------------------------ fitting
    def _source(self, X, sample_weight) -> tuple[BlockSource, kernels.Summary, int]:
        """The rows as a persisted BlockSource, scanned and checked."""
        source = blocks_from_arrays(X, sample_weight, nan_policy=self.nan_policy).persist()
        source, summary = scan(source)
        n_rows = sum(summary.n_rows)
        if n_rows < max(2, self.n_components):
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = {self.n_components}, n_samples = {n_rows}"
            )
        problem = summary.problem([f"column {j}" for j in range(X.shape[1])], "sample_weight")
        if problem:
            raise ValueError(problem)
        return source, summary, n_rows

    def _verbose_reporter(self):
        if not self.verbose:
            return None
        started = time.perf_counter()
        print(f"Initialization {self.n_init} start(s), advancing together", file=sys.stdout)

        def report(rep: em.IterationReport) -> None:
            if rep.iteration % self.verbose_interval == 0:
                best = max(range(len(rep.runs)), key=lambda i: rep.runs[i].lower_bound)
                if self.verbose == 1:
                    print(f"  Iteration {rep.iteration}")
                else:
                    print(
                        f"  Iteration {rep.iteration}\t time lapse {time.perf_counter() - started:.5f}s\t "
                        f"ll change {rep.changes[best]:.5f}"
                    )

        return report

    def _finish(self, runs: list[em.EMRun], n_features: int, names, summary: kernels.Summary, n_rows: int) -> None:
        best = em.best_run(runs) if self.max_iter > 0 else runs[-1]
        self._set_fitted(best, n_features)
        self.n_samples_, self.weight_sum_ = n_rows, summary.weight_sum
        if names is not None:
            self.feature_names_in_ = names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        if self.verbose:
            state = "converged" if self.converged_ else "did not converge"
            print(f"Initialization {state}." + (f" lower bound {self.lower_bound_:.5f}." if self.verbose >= 2 else ""))
        collapsed = collapsed_components(best.params, self.reg_covar)
        if collapsed.size:
            warnings.warn(
                f"{collapsed.size} of {self.n_components} components collapsed onto single points or none "
                f"({collapsed.tolist()}); reg_covar alone keeps their covariances positive definite. Set "
                "prior='default' or reduce n_components.",
                CollapsedComponentsWarning,
                stacklevel=3,
            )
        if not self.converged_ and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. Try different init parameters, "
                "or increase max_iter, tol, or check for degenerate data.",
                ConvergenceWarning,
                stacklevel=3,
            )

    def fit(self, X, y=None, sample_weight=None):
        """Fit the mixture.

        Parameters
        ----------
        X : array-like, pandas or Dask DataFrame, or Dask array of shape (n_samples, n_features)
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
            Frequency weights: a row of weight 2 counts as two copies of it.

        Returns
        -------
        self
        """
        self._check_parameters()
        names = feature_names(X)
        X = check_rows(X, type(self).__name__, min_samples=2, allow_nan=self.nan_policy != "error")
        sample_weight = check_sample_weight(sample_weight, X)
        source, summary, n_rows = self._source(X, sample_weight)
        runs = self._runs(source, X.shape[1])
        em.run_em(
            source, runs, tol=self.tol, max_iter=self.max_iter, dtype=self.dtype, on_iteration=self._verbose_reporter()
        )
        self._finish(runs, X.shape[1], names, summary, n_rows)
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then predict the labels of X (consistent with ``fit(X).predict(X)``)."""
        return self.fit(X, sample_weight=sample_weight).predict(X)

    # ------------------------------------------------------------------ using a fitted model
    def _params(self) -> kernels.Params:
        self._check_is_fitted()
        return kernels.Params(
            self.weights_, self.means_, self.covariances_, self.precisions_cholesky_, self.covariance_type
        )

    def _log_weights(self) -> np.ndarray | None:
        """What predictions add to each component's Gaussian log density in place of ``log weights_`` (None)."""
        return None

    def _rowwise(self, X, fn, columns: int | None, dtype):
        params, log_weights = self._params(), self._log_weights()
        check_feature_names(self, X)
        X = check_rows(
            X, type(self).__name__, n_features=self.n_features_in_, allow_nan=self.nan_policy == "marginalize"
        )
        if is_dask(X):
            X = X.rechunk({1: -1})
            if columns is not None:
                return X.map_blocks(fn, params, log_weights, dtype=dtype, chunks=(X.chunks[0], (columns,)))
            return X.map_blocks(fn, params, log_weights, dtype=dtype, drop_axis=1)
        return fn(X, params, log_weights)

    def score_samples(self, X):
        """Log-likelihood of each row. Returns ndarray (or Dask array) of shape (n_samples,)."""
        return self._rowwise(X, _log_prob_norm, None, np.float64)

    def predict_proba(self, X):
        """Responsibilities. Returns ndarray (or Dask array) of shape (n_samples, n_components)."""
        return self._rowwise(X, _resp, self.n_components, np.float64)

    def predict(self, X):
        """Most likely component of each row. Returns ndarray (or Dask array) of shape (n_samples,)."""
        return self._rowwise(X, _labels, None, np.int64)

    def score(self, X, y=None):
        """Mean log-likelihood per row (a float)."""
        values = self.score_samples(X)
        return float(values.mean().compute() if is_dask(values) else values.mean())

    def sample(self, n_samples=1):
        """Draw rows from the fitted mixture.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)
        """
        params = self._params()
        if not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(f"Invalid value for 'n_samples': {n_samples}. The sampling requires at least one sample.")
        rng = self._rng()
        counts = rng.multinomial(n_samples, params.weights / params.weights.sum())
        covariances = kernels.dense_covariances(params)
        parts = [rng.multivariate_normal(params.means[k], covariances[k], size=count) for k, count in enumerate(counts)]
        return np.vstack(parts), np.repeat(np.arange(self.n_components), counts)


class GaussianMixture(_Mixture):
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
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.dtype = dtype
        self.prior = prior
        self.nan_policy = nan_policy

    def _check_parameters(self) -> None:
        self._check_common()
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

    def _algorithm(self, moments: kernels.DataMoments | None) -> EMStep:
        missing = self.nan_policy == "marginalize"
        if self.prior is None:
            return EMStep(self.covariance_type, self.reg_covar, missing=missing)
        given = {} if isinstance(self.prior, str) else dict(self.prior)
        prior = default_prior(moments, self.n_components, self.covariance_type, **given)
        check_prior(prior, self.covariance_type, moments.mean.shape[0])
        return EMStep(self.covariance_type, self.reg_covar, prior, missing=missing)

    def _runs(self, source: BlockSource, n_features: int) -> list[em.EMRun]:
        k, ct = self.n_components, self.covariance_type
        if self.warm_start and self.__sklearn_is_fitted__():
            algorithm = (
                self._algorithm(self._moments(source, self.means_))
                if self.prior is not None
                else (self._algorithm(None))
            )
            objective = self.lower_bound_ if self.prior is None else -math.inf
            return [em.EMRun(algorithm, self._params(), self.lower_bound_, objective)]
        whole = init.explicit_params(None, ct, k, n_features, self.weights_init, self.means_init, self.precisions_init)
        if whole is not None:
            moments = self._moments(source, whole.means) if self.prior is not None else None
            return [em.EMRun(self._algorithm(moments), whole)]
        starts = init.start_statistics(
            source,
            [(k, ct)],
            init_params=self.init_params,
            n_init=self.n_init,
            seed=self._seed(),
            with_moments=self.prior is not None,
        )
        algorithm = self._algorithm(starts.moments)
        runs = []
        for spec, stats in zip(starts.specs[0], starts.stats[0]):
            start = init.explicit_params(
                algorithm.m_step(stats, spec.shift),
                ct,
                k,
                n_features,
                self.weights_init,
                self.means_init,
                self.precisions_init,
            )
            runs.append(em.EMRun(algorithm, start))
        return runs

    @staticmethod
    def _moments(source: BlockSource, means: np.ndarray) -> kernels.DataMoments:
        return init.data_moments(source, np.asarray(means).mean(axis=0))

    def _set_fitted(self, run: em.EMRun, n_features: int) -> None:
        params = run.params
        self.weights_ = params.weights
        self.means_ = params.means
        self.covariances_ = params.covariances
        self.precisions_cholesky_ = params.precisions_cholesky
        self.precisions_ = kernels.precisions_from_cholesky(params.precisions_cholesky, params.covariance_type)
        self.converged_ = bool(run.converged)
        self.n_iter_ = int(run.n_iter)
        self.lower_bound_ = float(run.lower_bound)
        self.lower_bounds_ = list(run.history)
        self.n_features_in_ = int(n_features)
        hyper = run.algorithm.hyperparameters()
        if hyper is not None:
            self.prior_ = hyper
        elif hasattr(self, "prior_"):
            del self.prior_

    def _n_parameters(self) -> int:
        return kernels.n_parameters(self.covariance_type, self.n_components, self.n_features_in_)

    def bic(self, X):
        """Bayesian information criterion on X (lower is better)."""
        n = _n_rows(X)
        return -2 * self.score(X) * n + self._n_parameters() * math.log(n)

    def aic(self, X):
        """Akaike information criterion on X (lower is better)."""
        return -2 * self.score(X) * _n_rows(X) + 2 * self._n_parameters()

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
        for attr in (
            "weights_",
            "means_",
            "covariances_",
            "precisions_",
            "precisions_cholesky_",
            "converged_",
            "n_iter_",
            "lower_bound_",
            "lower_bounds_",
            "n_features_in_",
            "feature_names_in_",
        ):
            if hasattr(self, attr):
                setattr(sk, attr, getattr(self, attr))
        return sk

    def save(self, path: str | Path, storage_options: dict | None = None) -> None:
        """Write the fitted model as a model directory (model.yaml + model.npz), local or fsspec URL.

        An existing ``path`` is replaced only if it is a model directory.
        """
        params = self._params()
        names = getattr(self, "feature_names_in_", None)
        info = describe(
            params,
            [f"x{i}" for i in range(self.n_features_in_)] if names is None else list(names),
            named_features=names is not None,
            converged=self.converged_,
            n_iter=self.n_iter_,
            lower_bound=self.lower_bound_,
            history=self.lower_bounds_,
            n_samples=getattr(self, "n_samples_", None),
            weight_sum=getattr(self, "weight_sum_", None),
            prior=getattr(self, "prior_", None),
            missing=None if self.nan_policy == "error" else MissingValues(nan_policy=self.nan_policy),
        )
        save_model(path, params, info, storage_options)


class BayesianGaussianMixture(_Mixture):
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
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.dtype = dtype

    def _check_parameters(self) -> None:
        self._check_common()
        if self.weight_concentration_prior_type not in WEIGHT_PRIOR_TYPES:
            raise ValueError(
                f"The 'weight_concentration_prior_type' parameter of BayesianGaussianMixture must be a "
                f"str among {list(WEIGHT_PRIOR_TYPES)}. Got {self.weight_concentration_prior_type!r} "
                "instead."
            )

    def _algorithm(self, moments: kernels.DataMoments) -> VariationalStep:
        given = {key: getattr(self, key) for key in VARIATIONAL_PRIOR_KEYS}
        priors = resolve_priors(
            moments, self.n_components, self.covariance_type, self.weight_concentration_prior_type, **given
        )
        return VariationalStep(self.covariance_type, self.reg_covar, priors)

    def _runs(self, source: BlockSource, n_features: int) -> list[em.EMRun]:
        if self.warm_start and self.__sklearn_is_fitted__():
            algorithm = VariationalStep(self.covariance_type, self.reg_covar, self._priors)
            return [em.EMRun(algorithm, self._state(), self.lower_bound_, self.lower_bound_)]
        k, ct = self.n_components, self.covariance_type
        starts = init.start_statistics(
            source, [(k, ct)], init_params=self.init_params, n_init=self.n_init, seed=self._seed(), with_moments=True
        )
        algorithm = self._algorithm(starts.moments)
        return [
            em.EMRun(algorithm, algorithm.m_step(stats, spec.shift))
            for spec, stats in zip(starts.specs[0], starts.stats[0])
        ]

    def _state(self) -> VariationalState:
        concentration = np.asarray(self.weight_concentration_)
        return VariationalState(
            self._params(), concentration, self.mean_precision_, np.asarray(self.degrees_of_freedom_)
        )

    def _log_weights(self) -> np.ndarray:
        return estep_log_weights(self._state(), self.weight_concentration_prior_type)

    def _set_fitted(self, run: em.EMRun, n_features: int) -> None:
        state: VariationalState = run.state
        params = state.params
        self.weights_ = params.weights
        self.means_ = params.means
        self.covariances_ = params.covariances
        self.precisions_cholesky_ = params.precisions_cholesky
        self.precisions_ = kernels.precisions_from_cholesky(params.precisions_cholesky, params.covariance_type)
        concentration = state.weight_concentration
        self.weight_concentration_ = tuple(concentration) if concentration.ndim == 2 else concentration
        self.mean_precision_ = state.mean_precision
        dof = np.asarray(state.degrees_of_freedom)
        self.degrees_of_freedom_ = float(dof) if dof.ndim == 0 else dof
        self.converged_ = bool(run.converged)
        self.n_iter_ = int(run.n_iter)
        self.lower_bound_ = float(run.lower_bound)
        self.lower_bounds_ = list(run.history)
        self.n_features_in_ = int(n_features)
        self._priors = run.algorithm.priors
        for key in VARIATIONAL_PRIOR_KEYS:
            value = getattr(self._priors, key)
            setattr(self, f"{key}_", float(value) if np.ndim(value) == 0 else value)

    def save(self, path: str | Path, storage_options: dict | None = None) -> None:
        """Write the fitted model as a model directory (model.yaml + model.npz with the variational arrays)."""
        state = self._state()
        names = getattr(self, "feature_names_in_", None)
        info = describe(
            state.params,
            [f"x{i}" for i in range(self.n_features_in_)] if names is None else list(names),
            named_features=names is not None,
            converged=self.converged_,
            n_iter=self.n_iter_,
            lower_bound=self.lower_bound_,
            history=self.lower_bounds_,
            n_samples=getattr(self, "n_samples_", None),
            weight_sum=getattr(self, "weight_sum_", None),
            algorithm="variational",
            variational=self._priors.as_dict(),
        )
        arrays = VariationalStep(self.covariance_type, self.reg_covar, self._priors).arrays(state)
        save_model(
            path, state.params, info, storage_options, extra_arrays={name: arrays[name] for name in VARIATIONAL_ARRAYS}
        )


def _n_rows(X) -> int:
    n = X.shape[0]
    return int(n) if isinstance(n, numbers.Integral) else int(len(X))


def _log_prob_norm(X, params, log_weights):
    return kernels.estimate_log_resp(X, params, log_weights)[0]


def _resp(X, params, log_weights):
    return np.exp(kernels.estimate_log_resp(X, params, log_weights)[1])


def _labels(X, params, log_weights):
    return kernels.estimate_log_resp(X, params, log_weights)[1].argmax(axis=1)


def from_saved(saved: SavedModel) -> GaussianMixture | BayesianGaussianMixture:
    """A fitted GaussianMixture (or BayesianGaussianMixture) from a stored model."""
    p, info = saved.params, saved.info
    if info.algorithm == "variational":
        priors = VariationalPriors.from_dict(info.variational)
        algorithm = VariationalStep(p.covariance_type, 0.0, priors)
        state = algorithm.from_arrays({**{name: getattr(p, name) for name in PARAM_ARRAYS}, **saved.extra_arrays})
        model = BayesianGaussianMixture(
            n_components=p.n_components,
            covariance_type=p.covariance_type,
            weight_concentration_prior_type=priors.weight_concentration_prior_type,
        )
    else:
        policy = info.missing.nan_policy if info.missing is not None else "error"
        prior = None if info.prior is None else Prior.from_dict(info.prior)
        algorithm, state = EMStep(p.covariance_type, 0.0, prior, missing=policy == "marginalize"), p
        model = GaussianMixture(
            n_components=p.n_components, covariance_type=p.covariance_type, prior=info.prior, nan_policy=policy
        )
    lower_bound = -math.inf if info.lower_bound is None else info.lower_bound
    model._set_fitted(
        em.EMRun(
            algorithm,
            state,
            lower_bound,
            history=list(info.history),
            n_iter=info.n_iter or 0,
            converged=bool(info.converged),
        ),
        p.n_features,
    )
    if info.named_features:
        model.feature_names_in_ = np.array(info.feature_names, dtype=object)
    return model


def load_model(path: str | Path, storage_options: dict | None = None) -> GaussianMixture | BayesianGaussianMixture:
    """Load a model directory written by ``gmm fit`` or ``.save`` (local path or fsspec URL)."""
    return from_saved(load_saved_model(path, storage_options))
