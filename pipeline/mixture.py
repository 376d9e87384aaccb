"""What the estimators share: scikit-learn's protocol, its input checks, the fit loop, predictions, saving.

The estimators run on the current Dask scheduler (an active
``distributed.Client`` if there is one, else Dask's default) and never start a
cluster themselves.  scikit-learn is not needed to use them; when scikit-learn
calls them (Pipeline, clone, GridSearchCV, ``check_estimator``) they answer its
protocol: ``get_params``/``set_params``, ``__sklearn_tags__`` (and
``_more_tags`` for scikit-learn before 1.6), ``__sklearn_is_fitted__``, and
feature-name checks.
"""

from __future__ import annotations

import inspect
import numbers
import sys
import time
import warnings

import numpy as np

from pipeline import em, engine, kernels, outputs, storage
from pipeline.choices import NAN_POLICIES, NanPolicy
from pipeline.engine import Candidate, Naming, Outcome, Warm
from pipeline.errors import CollapsedComponentsWarning, ConvergenceWarning, not_fitted
from pipeline.inputs import (
    check_feature_names,
    check_finite,
    check_rows,
    check_sample_weight,
    feature_names,
    is_dask,
    nan_advice,
)
from pipeline.model import Kept, describe, is_model_directory, learnt, save_model, what_nan_policy_did
from pipeline.passes import BlockSource, blocks_from_arrays, scan
from pipeline.spec import HYPERPARAMETERS, ModelSpec, dtype_name

# The fitted attributes of every estimator, scikit-learn's (the variational mixture adds its own).
FITTED = (
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
)


def _same(a, b) -> bool:
    try:
        return bool(a is b or a == b)
    except ValueError:
        return False


class MixtureEstimator:
    """What every estimator of this package shares: scikit-learn's protocol, input checks, prediction.

    Not used on its own: :class:`~pipeline.GaussianMixture` and :class:`~pipeline.BayesianGaussianMixture` inherit
    from it the methods their reference pages list (``fit``, ``predict``, ``score``, ``sample``, ...) and add their
    own parameters (``_spec``), starts (``_warm``) and fitted attributes (``_set_state``).
    """

    _estimator_type = "DensityEstimator"  # scikit-learn before 1.6 reads this; later ones, __sklearn_tags__

    def __init__(
        self,
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
    ):
        """The parameters every estimator takes (each one's own signature lists them, with their defaults)."""
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.dtype = dtype

    # ------------------------------------------------------------------ scikit-learn's protocol
    @classmethod
    def _get_param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return sorted(p.name for p in signature.parameters.values() if p.name != "self" and p.kind != p.VAR_KEYWORD)

    def get_params(self, deep=True) -> dict:
        """The estimator's parameters, as scikit-learn's ``clone`` and ``GridSearchCV`` read them.

        Parameters
        ----------
        deep : bool, default=True
            Ignored: these estimators hold no other estimators (accepted for scikit-learn's protocol).

        Returns
        -------
        params : dict
            Every parameter of the constructor, by name, with its value as given (not checked until ``fit``).

        See Also
        --------
        set_params : Change them.
        recorded_parameters : The same, as model.yaml records them.
        """
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params):
        """Set some of the estimator's parameters; they are checked by the next ``fit``, as scikit-learn's are.

        Parameters
        ----------
        **params : dict
            Parameter names and their new values (``n_components=3``).

        Returns
        -------
        self : object
            This estimator.

        Raises
        ------
        ValueError
            A name that is not one of the estimator's parameters (the message lists them).
        """
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
            input_tags=InputTags(allow_nan=self._policy().marginalizes),
        )

    def _more_tags(self) -> dict:  # scikit-learn before 1.6
        return {"allow_nan": self._policy().marginalizes, "requires_y": False}

    def _policy(self) -> NanPolicy:
        """``nan_policy`` as a NanPolicy (scikit-learn asks for the tags before any check: an unknown value is
        refused by ``fit``, and counts as "error" until then)."""
        return NanPolicy(self.nan_policy) if self.nan_policy in NAN_POLICIES else NanPolicy.ERROR

    def _nan_policy_parameter(self) -> str | None:
        """``nan_policy`` if it is one of this estimator's parameters (None: it only refuses NaN)."""
        return self.nan_policy if "nan_policy" in self._get_param_names() else None

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

    def _check_parameters(self) -> None:
        """ValueError, in scikit-learn's words, for a parameter outside its declared range
        (:data:`pipeline.spec.HYPERPARAMETERS`, which the config's schema follows too)."""
        for name in self._get_param_names():
            if name in HYPERPARAMETERS:
                HYPERPARAMETERS[name].check(getattr(self, name), type(self).__name__)

    # ------------------------------------------------------------------ fitting
    def _rows(
        self, X, sample_weight, min_samples: int, n_features: int | None = None
    ) -> tuple[int, BlockSource, kernels.Summary, int]:
        """X and ``sample_weight`` checked as scikit-learn checks them (at least ``min_samples`` rows, and
        ``n_features`` columns if given), then as a persisted BlockSource, scanned: the number of columns, the
        source, the summary, and the rows dropped (``nan_policy``)."""
        X = check_rows(
            X,
            type(self).__name__,
            min_samples=min_samples,
            n_features=n_features,
            allow_nan=self._policy().accepts_nan,
            nan_policy=self._nan_policy_parameter(),
        )
        sample_weight = check_sample_weight(sample_weight, X)
        source = blocks_from_arrays(X, sample_weight, nan_policy=self.nan_policy).persist()
        n_given = sum(source.n_rows)
        source, summary = scan(source)
        if summary.n_missing and not self._policy().accepts_nan:  # Dask input is checked only as it is read
            name = type(self).__name__
            raise ValueError(
                f"Input X contains NaN ({summary.n_missing} values). {name} does not accept missing values "
                f"encoded as NaN: {nan_advice(name, self._nan_policy_parameter())}."
            )
        return X.shape[1], source, summary, n_given - sum(summary.n_rows)

    def _naming(self, n_features: int) -> Naming:
        """scikit-learn's words for the core's messages: parameters by name, columns by position."""
        return Naming(
            data="",
            columns=[f"column {j}" for j in range(n_features)],
            weights="sample_weight",
            section="",
            float32="dtype='float32'",
            prior_default="prior='default'",
            too_few_rows=lambda n, k: f"Expected n_samples >= n_components but got n_components = {k}, n_samples = {n}",
            min_rows=2,
        )

    def _spec(self) -> ModelSpec:
        """The fit these parameters ask for (the subclass adds its own)."""
        return ModelSpec(
            n_components=self.n_components,
            covariance_type=self.covariance_type,
            tol=self.tol,
            reg_covar=self.reg_covar,
            max_iter=self.max_iter,
            n_init=self.n_init,
            init_params=self.init_params,
            random_state=self._seed(),
            dtype=dtype_name(self.dtype),
            nan_policy=self.nan_policy,
        )

    def _start(self) -> Warm | None:
        """A given start, or None for the computed ones: the last fit's with ``warm_start``."""
        return self._warm() if self.warm_start and self.__sklearn_is_fitted__() else None

    def _warm(self) -> Warm:
        """The start from the last fit (the subclass's state)."""
        raise NotImplementedError

    def _verbose_reporter(self):
        if not self.verbose:
            return None
        started = time.perf_counter()
        print(f"Initialization {self.n_init} start(s), advancing together", file=sys.stdout)

        def report(rep: em.IterationReport, groups) -> None:
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

    def _set_fitted(self, run: em.EMRun, n_features: int) -> None:
        """The fitted attributes of a run (:data:`FITTED` but ``feature_names_in_``), then the subclass's own."""
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
        self._set_state(run)

    def _set_state(self, run: em.EMRun) -> None:
        """The subclass's own fitted attributes: the resolved prior, the variational posterior."""
        raise NotImplementedError

    def _finish(
        self,
        outcome: Outcome,
        n_features: int,
        names,
        summary: kernels.Summary,
        n_dropped: int,
        past: Kept | None = None,
        decay: float | None = None,
    ) -> None:
        """Set what a fit (or, with ``past``, an update) learnt, and warn of collapse or no convergence."""
        self._set_fitted(outcome.run, n_features)
        self._online = None  # a fit ends any stream of partial_fit calls: the next one starts from this fit
        n_rows = sum(summary.n_rows)
        moments = getattr(outcome.run.state, "moments", None)  # EM keeps the moments of its last M-step
        entry = learnt("update" if past else "fit", n_rows, summary.weight_sum, decay=decay)
        self._kept = None if moments is None else Kept(moments, (past.lineage if past else []) + [entry])
        if past is None:
            self.n_samples_, self.weight_sum_ = n_rows, summary.weight_sum
            self._missing_values = what_nan_policy_did(self.nan_policy, summary, n_dropped)
        else:  # every row learnt from; the weight the model counts now (the past's times decay, and the new)
            self.n_samples_, self.weight_sum_ = self.n_samples_ + n_rows, moments.weight_sum
            self._missing_values = what_nan_policy_did(self.nan_policy, summary, n_dropped, self._missing_values)
        if past is None and names is not None:
            self.feature_names_in_ = names
        elif past is None and hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        if self.verbose:
            state = "converged" if self.converged_ else "did not converge"
            print(f"Initialization {state}." + (f" lower bound {self.lower_bound_:.5f}." if self.verbose >= 2 else ""))
        if outcome.collapsed:
            warning = engine.collapse_warning(outcome.candidate, outcome.collapsed, self._naming(n_features))
            warnings.warn(warning["message"], CollapsedComponentsWarning, stacklevel=3)
        if not self.converged_ and self.max_iter > 0:
            warnings.warn(
                ("The update did not converge" if past else "Best performing initialization did not converge")
                + ". Try different init parameters, or increase max_iter, tol, or check for degenerate data.",
                ConvergenceWarning,
                stacklevel=3,
            )

    def fit(self, X, y=None, sample_weight=None):
        """Estimate the mixture's parameters from X.

        ``n_init`` starts (made as ``init_params`` says) advance together, one pass over the data per iteration
        for all of them, until the lower bound changes by less than ``tol`` or ``max_iter`` iterations have run;
        the run with the highest lower bound sets the fitted attributes.  With ``warm_start=True`` a fitted
        estimator starts from its last fit instead, as one run.  The passes run on the active
        ``distributed.Client`` if there is one, else on Dask's default scheduler.

        Parameters
        ----------
        X : array-like, pandas or Dask DataFrame, or Dask array of shape (n_samples, n_features)
            The rows to fit, at least 2 and at least ``n_components``.  A DataFrame's column names, when all are
            strings, become ``feature_names_in_``.  NaN marks a missing value: refused unless ``nan_policy`` (a
            :class:`~pipeline.GaussianMixture` parameter) is ``"drop"`` or ``"marginalize"``.
        y : None
            Ignored; present for scikit-learn's API.
        sample_weight : array-like of shape (n_samples,) or float, default=None
            Frequency weights, finite and non-negative: a row of weight 2 counts as two copies of it.  None gives
            every row weight 1, a number gives every row that weight.  A NumPy array, list, pandas or Dask Series
            or Dask array.

        Returns
        -------
        self : object
            The fitted estimator.

        Raises
        ------
        ValueError
            A parameter outside its declared range (the message names it, in scikit-learn's words); X that is
            not 2-D, has fewer rows than 2 or than ``n_components``, complex values, infinity, or NaN that
            ``nan_policy`` refuses; ``sample_weight`` of another shape, negative or not finite; given starts or
            priors whose shape or values the data cannot take.  Dask input is checked as it is read, during the
            fit.  A component that collapses with nothing to hold it up (no prior, and ``reg_covar`` 0 or too
            small to) or an iteration that produces NaN or infinity stops the fit with a ValueError naming the
            cause and the remedies.
        TypeError
            Sparse X (dense data is required), or a DataFrame whose column names mix strings and other types.

        Warns
        -----
        pipeline.errors.ConvergenceWarning
            The best run stopped at ``max_iter`` before converging (not with ``max_iter=0``).
        pipeline.errors.CollapsedComponentsWarning
            Some components sit on single points or none, held up by ``reg_covar`` alone.

        See Also
        --------
        fit_predict : Fit, then the labels of the same rows.
        """
        self._check_parameters()
        names = feature_names(X)
        d, source, summary, n_dropped = self._rows(X, sample_weight, min_samples=2)
        (outcome,) = engine.fit(
            source,
            summary,
            self._spec(),
            [Candidate(self.n_components, self.covariance_type)],
            self._naming(d),
            warm=self._start(),
            on_iteration=self._verbose_reporter(),
            with_criteria=False,
        ).outcomes
        self._finish(outcome, d, names, summary, n_dropped)
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        """Estimate the mixture's parameters from X, then predict the component of each row of X.

        The same as ``fit(X, sample_weight=sample_weight).predict(X)``: X is read once more for the labels.

        Parameters
        ----------
        X : array-like, pandas or Dask DataFrame, or Dask array of shape (n_samples, n_features)
            The rows to fit, at least 2 and at least ``n_components``.  A DataFrame's column names, when all are
            strings, become ``feature_names_in_``.  NaN marks a missing value: refused unless ``nan_policy`` (a
            :class:`~pipeline.GaussianMixture` parameter) is ``"drop"`` or ``"marginalize"``.
        y : None
            Ignored; present for scikit-learn's API.
        sample_weight : array-like of shape (n_samples,) or float, default=None
            Frequency weights, finite and non-negative: a row of weight 2 counts as two copies of it.  None gives
            every row weight 1, a number gives every row that weight.  A NumPy array, list, pandas or Dask Series
            or Dask array.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            The most likely component of each row, an int in ``[0, n_components)``; a Dask array (computed when
            asked) for Dask input.

        Raises
        ------
        ValueError
            A parameter outside its declared range (the message names it, in scikit-learn's words); X that is
            not 2-D, has fewer rows than 2 or than ``n_components``, complex values, infinity, or NaN that
            ``nan_policy`` refuses; ``sample_weight`` of another shape, negative or not finite; given starts or
            priors whose shape or values the data cannot take.  Dask input is checked as it is read, during the
            fit.  A component that collapses with nothing to hold it up (no prior, and ``reg_covar`` 0 or too
            small to) or an iteration that produces NaN or infinity stops the fit with a ValueError naming the
            cause and the remedies.
        TypeError
            Sparse X (dense data is required), or a DataFrame whose column names mix strings and other types.

        Warns
        -----
        pipeline.errors.ConvergenceWarning
            The best run stopped at ``max_iter`` before converging (not with ``max_iter=0``).
        pipeline.errors.CollapsedComponentsWarning
            Some components sit on single points or none, held up by ``reg_covar`` alone.

        See Also
        --------
        fit, predict
        """
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
        allow_nan = self._policy().marginalizes
        name, policy = type(self).__name__, self._nan_policy_parameter()
        X = check_rows(X, name, n_features=self.n_features_in_, allow_nan=allow_nan, nan_policy=policy)
        if is_dask(X):  # checked as each block is computed
            X = X.rechunk({1: -1}).map_blocks(check_finite, name, allow_nan, policy, dtype=np.float64)
            if columns is not None:
                return X.map_blocks(fn, params, log_weights, dtype=dtype, chunks=(X.chunks[0], (columns,)))
            return X.map_blocks(fn, params, log_weights, dtype=dtype, drop_axis=1)
        return fn(X, params, log_weights)

    def score_samples(self, X):
        """Compute the log-likelihood of each row under the fitted mixture.

        For :class:`~pipeline.BayesianGaussianMixture` the weights and precisions are the variational posterior's
        expectations, as scikit-learn's.

        Parameters
        ----------
        X : array-like, pandas or Dask DataFrame, or Dask array of shape (n_samples, n_features)
            Rows with the ``n_features_in_`` features of the fit (a DataFrame with the fit's column names, in
            their order, when the fit had names).  NaN only with ``nan_policy="marginalize"`` (a
            :class:`~pipeline.GaussianMixture` parameter): such a row counts by its observed values.

        Returns
        -------
        log_prob : ndarray of shape (n_samples,)
            The log of the mixture's density at each row (its marginal density at the observed values, for a
            row with NaN; 0 for a row with none observed).  A Dask array (computed when asked) for Dask input.

        Raises
        ------
        NotFittedError
            The estimator is not fitted yet (``pipeline.errors.NotFittedError``: a ValueError and an
            AttributeError, and scikit-learn's ``NotFittedError`` when scikit-learn is loaded).
        ValueError
            X of another number of features, other column names or order than the fit's, complex values,
            infinity, or NaN that ``nan_policy`` refuses.  Dask input is checked as each block is computed.
        TypeError
            Sparse X.

        Warns
        -----
        pipeline.inputs.FeatureNamesWarning
            X has column names and the fit had none, or the other way round.

        See Also
        --------
        score : Their mean.
        """
        return self._rowwise(X, _log_prob_norm, None, np.float64)

    def predict_proba(self, X):
        """Compute each component's posterior probability (responsibility) for each row.

        Parameters
        ----------
        X : array-like, pandas or Dask DataFrame, or Dask array of shape (n_samples, n_features)
            Rows with the ``n_features_in_`` features of the fit (a DataFrame with the fit's column names, in
            their order, when the fit had names).  NaN only with ``nan_policy="marginalize"`` (a
            :class:`~pipeline.GaussianMixture` parameter): such a row counts by its observed values.

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components)
            The probability that each row comes from each component; each row sums to 1.  A Dask array (computed
            when asked) for Dask input.

        Raises
        ------
        NotFittedError
            The estimator is not fitted yet (``pipeline.errors.NotFittedError``: a ValueError and an
            AttributeError, and scikit-learn's ``NotFittedError`` when scikit-learn is loaded).
        ValueError
            X of another number of features, other column names or order than the fit's, complex values,
            infinity, or NaN that ``nan_policy`` refuses.  Dask input is checked as each block is computed.
        TypeError
            Sparse X.

        Warns
        -----
        pipeline.inputs.FeatureNamesWarning
            X has column names and the fit had none, or the other way round.

        See Also
        --------
        predict : The most likely component.
        """
        return self._rowwise(X, _resp, self.n_components, np.float64)

    def predict(self, X):
        """Predict the most likely component of each row.

        Parameters
        ----------
        X : array-like, pandas or Dask DataFrame, or Dask array of shape (n_samples, n_features)
            Rows with the ``n_features_in_`` features of the fit (a DataFrame with the fit's column names, in
            their order, when the fit had names).  NaN only with ``nan_policy="marginalize"`` (a
            :class:`~pipeline.GaussianMixture` parameter): such a row counts by its observed values.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            The component of highest responsibility for each row, an int in ``[0, n_components)``.  A Dask array
            (computed when asked) for Dask input.

        Raises
        ------
        NotFittedError
            The estimator is not fitted yet (``pipeline.errors.NotFittedError``: a ValueError and an
            AttributeError, and scikit-learn's ``NotFittedError`` when scikit-learn is loaded).
        ValueError
            X of another number of features, other column names or order than the fit's, complex values,
            infinity, or NaN that ``nan_policy`` refuses.  Dask input is checked as each block is computed.
        TypeError
            Sparse X.

        Warns
        -----
        pipeline.inputs.FeatureNamesWarning
            X has column names and the fit had none, or the other way round.

        See Also
        --------
        predict_proba : Every component's probability.
        """
        return self._rowwise(X, _labels, None, np.int64)

    def score(self, X, y=None):
        """Compute the mean log-likelihood of the rows of X.

        Parameters
        ----------
        X : array-like, pandas or Dask DataFrame, or Dask array of shape (n_samples, n_features)
            Rows with the ``n_features_in_`` features of the fit (a DataFrame with the fit's column names, in
            their order, when the fit had names).  NaN only with ``nan_policy="marginalize"`` (a
            :class:`~pipeline.GaussianMixture` parameter): such a row counts by its observed values.
        y : None
            Ignored; present for scikit-learn's API.

        Returns
        -------
        log_likelihood : float
            The mean of ``score_samples(X)`` over the rows (unweighted), computed also for Dask input.

        Raises
        ------
        NotFittedError
            The estimator is not fitted yet (``pipeline.errors.NotFittedError``: a ValueError and an
            AttributeError, and scikit-learn's ``NotFittedError`` when scikit-learn is loaded).
        ValueError
            X of another number of features, other column names or order than the fit's, complex values,
            infinity, or NaN that ``nan_policy`` refuses.  Dask input is checked as each block is computed.
        TypeError
            Sparse X.

        Warns
        -----
        pipeline.inputs.FeatureNamesWarning
            X has column names and the fit had none, or the other way round.

        See Also
        --------
        score_samples : Each row's.
        """
        values = self.score_samples(X)
        return float(values.mean().compute() if is_dask(values) else values.mean())

    def sample(self, n_samples=1):
        """Draw random rows from the fitted mixture.

        The number of rows of each component is drawn from the weights, then each component's rows from its
        Gaussian, with ``random_state``: an int draws the same rows on every call, a NumPy Generator or
        RandomState goes on from its state, None draws fresh ones.

        Parameters
        ----------
        n_samples : int, default=1
            The number of rows to draw, at least 1.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            The rows, grouped by component (those of component 0 first).
        y : ndarray of shape (n_samples,)
            The component of each row.

        Raises
        ------
        NotFittedError
            The estimator is not fitted yet.
        ValueError
            ``n_samples`` is not an int of at least 1.
        """
        params = self._params()
        if not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(f"Invalid value for 'n_samples': {n_samples}. The sampling requires at least one sample.")
        rng = self._rng()
        counts = rng.multinomial(n_samples, params.weights / params.weights.sum())
        covariances = kernels.dense_covariances(params)
        parts = [rng.multivariate_normal(params.means[k], covariances[k], size=count) for k, count in enumerate(counts)]
        return np.vstack(parts), np.repeat(np.arange(self.n_components), counts)

    def recorded_parameters(self) -> dict:
        """The constructor's parameters as model.yaml records them (what ``load_model(d).get_params()`` gives).

        Arrays (``means_init``, ``mean_prior`` ...) are written as lists and come back as NumPy arrays; a
        ``random_state`` that is a NumPy Generator or RandomState cannot be written and is recorded as None.
        The estimator need not be fitted.

        Returns
        -------
        parameters : dict
            Every parameter by name, as YAML holds it: arrays and NumPy numbers as lists and plain numbers,
            ``dtype`` as its name (``"float32"``).

        See Also
        --------
        get_params : The parameters as they are.
        """
        recorded = {name: _plain(value) for name, value in self.get_params().items()}
        if not (recorded["random_state"] is None or isinstance(recorded["random_state"], int)):
            recorded["random_state"] = None
        recorded["dtype"] = dtype_name(self.dtype) or recorded["dtype"]
        return recorded

    def to_onnx(self, outputs=None, dtype="float64"):
        """An ONNX graph that scores rows as this estimator does, for onnxruntime (needs the ``onnx`` extra).

        The graph takes one tensor ``X`` of shape (N, ``n_features_in_``): the features in the fit's order, as
        ``feature_names_in_`` (recorded in the graph's metadata as ``feature_names``) names them.  Its outputs are
        ``label`` (int64, as :meth:`predict`), ``probabilities`` (as :meth:`predict_proba`) and
        ``log_likelihood`` (as :meth:`score_samples`); a row with NaN or infinity gets label -1 and NaN scores.
        In float64 they equal this estimator's to 1e-9; see :doc:`/guide/export` for float32.

        Parameters
        ----------
        outputs : list of str, optional
            Some of ``"label"``, ``"probabilities"``, ``"log_likelihood"``; None: all three.
        dtype : {"float64", "float32"} or numpy dtype, default="float64"
            The graph's input and arithmetic.

        Returns
        -------
        onnx.ModelProto
            Save it with ``onnx.save(model, "model.onnx")``; ``gmm export`` writes the same graph from a model
            directory.

        Raises
        ------
        ImportError
            The ``onnx`` package is not installed (``pip install 'gmm-pipeline[onnx]'``).
        NotFittedError
            The estimator is not fitted yet.
        ValueError
            An unknown output or dtype, or ``nan_policy="marginalize"``: the graph cannot score a row by its
            observed values.
        """
        from pipeline.export import to_onnx

        params = self._params()
        names = getattr(self, "feature_names_in_", None)
        return to_onnx(
            params,
            self._log_weights(),
            [f"x{i}" for i in range(params.n_features)] if names is None else list(names),
            nan_policy=self._policy(),
            outputs=outputs,
            dtype=dtype,
            source=f"This {type(self).__name__}",
        )

    def _save(self, path, storage_options, params: kernels.Params, extra_arrays=None, **fields) -> None:
        """Write the fitted model as a model directory; ``fields`` are the subclass's own model.yaml keys."""
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
            parameters=self.recorded_parameters(),
            **fields,
        )
        place = storage.Place.of(path, storage_options)
        outputs.check_replaceable(place, "save(): path", is_model_directory, "model")  # before any work
        save_model(place, params, info, extra_arrays=extra_arrays)


def _plain(value):
    """``value`` as YAML can hold it: arrays and NumPy scalars as lists and numbers, mappings and lists within."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def n_rows(X) -> int:
    n = X.shape[0]
    return int(n) if isinstance(n, numbers.Integral) else int(len(X))


def _log_prob_norm(X, params, log_weights):
    return kernels.estimate_log_resp(X, params, log_weights)[0]


def _resp(X, params, log_weights):
    return np.exp(kernels.estimate_log_resp(X, params, log_weights)[1])


def _labels(X, params, log_weights):
    return kernels.estimate_log_resp(X, params, log_weights)[1].argmax(axis=1)
