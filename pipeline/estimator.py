"""``GaussianMixture``: scikit-learn's estimator, fitted by the distributed EM driver; loading a model directory."""

from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipeline import em, engine, kernels, storage
from pipeline.bayesian import BayesianGaussianMixture
from pipeline.choices import SKLEARN_COVARIANCE_TYPES
from pipeline.engine import Candidate, Warm
from pipeline.errors import CollapsedComponentsWarning, InputError
from pipeline.inputs import check_feature_names, feature_names
from pipeline.kernels.covtypes import layout_of
from pipeline.kernels.mstep import ComponentMoments
from pipeline.kernels.online import Learned, moments_arrays, moments_from_arrays, stepwise_rate
from pipeline.kernels.params import PARAM_ARRAYS
from pipeline.kernels.prior import PRIOR_KEYS
from pipeline.mixture import FITTED, MixtureEstimator, n_rows
from pipeline.model import YAML_NAME, Kept, SavedModel, StreamRecord, load_saved_model, what_nan_policy_did
from pipeline.spec import ModelSpec

__all__ = ["BayesianGaussianMixture", "GaussianMixture", "load_model"]


class GaussianMixture(MixtureEstimator):
    """Gaussian mixture fitted by distributed EM, with scikit-learn's interface.

    The parameters, defaults, methods and fitted attributes are
    :class:`sklearn.mixture.GaussianMixture`'s, with the same meanings; ``dtype``,
    ``prior``, ``nan_policy``, ``fit``'s ``sample_weight``, ``icl``, ``save``,
    ``to_sklearn``, ``partial_fit`` (stepwise online EM, with ``learning_offset``
    and ``learning_decay``), ``update`` (new rows, the old counted by the
    statistics the model kept), ``n_samples_``, ``weight_sum_`` and ``prior_``
    are extra.
    Each EM iteration is one pass over the data, for every start at once, on the
    active ``distributed.Client`` if there is one, else on Dask's default
    scheduler; the estimator never starts a cluster.  How it treats its inputs,
    its starts and what a loaded model keeps is in :doc:`/guide/python-api`.

    Parameters
    ----------
    n_components : int, default=1
        The number of mixture components, at least 1.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        Each component's covariance:

        - ``"full"``: each component has its own general covariance matrix;
        - ``"tied"``: all components share one general covariance matrix;
        - ``"diag"``: each component has its own diagonal covariance matrix;
        - ``"spherical"``: each component has its own single variance.
    tol : float, default=1e-3
        Stop when the mean log-likelihood (or, with a prior, log-posterior) changes by less than this; at least 0.
    reg_covar : float, default=1e-6
        Added to the diagonal of the covariances, at least 0; keeps them positive definite.
    max_iter : int, default=100
        The most EM iterations, at least 0.  ``0`` only initialises.
    n_init : int, default=1
        The number of starts, at least 1; they share each pass over the data, the best lower bound wins.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        How each start is made:

        - ``"kmeans"``: k-means++ seeding and Lloyd iterations on a seeded sample of up to 100,000 rows, then
          every row assigned to its nearest centre for the first M-step;
        - ``"k-means++"``: the same centres without Lloyd iterations, every row assigned;
        - ``"random"``: random responsibilities, hashed from each row's index;
        - ``"random_from_data"``: centres drawn at random from the sample, every row assigned.

        Unlike scikit-learn's ``"k-means++"`` and ``"random_from_data"`` (one row per component), every row is
        assigned.  The starts do not depend on the partitioning or the number of workers.
    weights_init : array-like of shape (n_components,), default=None
        The starts' weights, in [0, 1] and summing to 1; None: made as ``init_params`` says.
    means_init : array-like of shape (n_components, n_features), default=None
        The starts' means; None: made as ``init_params`` says.
    precisions_init : array-like, default=None
        The starts' precisions (the inverses of the covariances), symmetric positive definite; None: made as
        ``init_params`` says.  The shape depends on ``covariance_type``::

            (n_components,)                        if "spherical",
            (n_features, n_features)               if "tied",
            (n_components, n_features)             if "diag",
            (n_components, n_features, n_features) if "full"

        A part given takes the place of the computed one in every start; with all three given, the fit has
        one start and no start pass.
    random_state : int, numpy Generator, RandomState or None, default=None
        The seed of every start, and of ``sample``: an int (at least 0) gives the same starts every time, a
        Generator or RandomState gives a seed drawn from it, None fresh entropy on every fit.
    warm_start : bool, default=False
        If True, each ``fit`` of a fitted estimator starts from the last fit's parameters, as one run
        (``n_init`` is then not used), as scikit-learn's.
    verbose : int, default=0
        1 prints the iterations, 2 also their time and change.
    verbose_interval : int, default=10
        Iterations between two printed ones, at least 1.
    dtype : {"float64", "float32"} or numpy dtype, default="float64"
        Extra over scikit-learn: the arithmetic of the E-step and of each
        chunk's moments.  ``"float32"`` is 1.5 to 1.9 times as fast per block
        (measured); sums over chunks and the M-step stay float64.  An M-step
        in float32 gives means within 1e-5 of a standard deviation and
        covariances within 1e-3 (relative, in each component's own units) of
        float64's, typically 1e-5; an iteration in which a component lies too
        far from the mixture's mean for that runs in float64.
    prior : None, "default" or dict, default=None
        Extra: mclust's conjugate prior (MAP EM); None fits by maximum likelihood.  ``"default"`` is mclust's
        ``defaultPrior``: ``shrinkage`` 0.01, ``mean`` the data's mean, ``dof`` n_features + 2, ``scale``
        (1/n_components)^(2/n_features) times the data's covariance (full, tied; its diagonal when n_samples <=
        n_features) or mean variance (diag, spherical).  A dict with any of these keys replaces those of the
        default:

        - ``shrinkage``: float, at least 0: how many rows' worth of weight the prior mean has;
        - ``mean``: array-like of shape (n_features,);
        - ``dof``: float, the degrees of freedom, more than n_features - 1 (full, tied) or than 0 (diag,
          spherical);
        - ``scale``: array-like of shape (n_features, n_features), positive semi-definite (full, tied), or a
          float greater than 0 (diag, spherical).

        The prior used is ``prior_``; see :doc:`/guide/priors-and-variational`.
    nan_policy : {"error", "drop", "marginalize"}, default="error"
        Extra: rows with NaN are refused, dropped, or used with their observed values.  ``"error"`` raises a
        ValueError, ``"drop"`` leaves them out of the fit, ``"marginalize"`` fits each by its observed values
        (a row with none observed is left out) and lets the predictions and scores take NaN too.  See
        :doc:`/guide/missing-values`.
    acceleration : {"none", "squarem"}, default="none"
        Extra: ``"squarem"`` extrapolates EM's iteration (SQUAREM, Varadhan & Roland 2008), with a safeguard
        that rejects a step lowering the objective: fewer passes over the data to the same optimum where
        components overlap.  Every pass counts in ``n_iter_``; the convergence test is made on plain EM steps
        only, so ``tol`` means what it means for ``"none"``.  Not for :meth:`partial_fit`.  See
        :doc:`/guide/fitting-at-scale`.
    learning_offset : float, default=10.0
        Extra, for :meth:`partial_fit`: at least 1; the ``t``-th batch after the first has the weight
        ``rho_t = (learning_offset + t) ** -learning_decay`` (scikit-learn's ``LatentDirichletAllocation`` names
        and defaults).  Larger: the first batches keep their say longer.
    learning_decay : float, default=0.7
        Extra, for :meth:`partial_fit`: in [0, 1]; how fast the batches' weight falls.  In (0.5, 1] the
        stepwise EM converges (Cappé & Moulines 2009); 0 weighs every batch alike.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        The weight of each component; they sum to 1.
    means_ : ndarray of shape (n_components, n_features)
        The mean of each component.
    covariances_ : ndarray
        The covariance of each component.  The shape depends on ``covariance_type``::

            (n_components,)                        if "spherical",
            (n_features, n_features)               if "tied",
            (n_components, n_features)             if "diag",
            (n_components, n_features, n_features) if "full"
    precisions_ : ndarray
        The precisions, the inverses of ``covariances_``, of the same shape.
    precisions_cholesky_ : ndarray
        The Cholesky factors of ``precisions_`` as scikit-learn holds them (the square roots, for diag and
        spherical), of the same shape as ``covariances_``.
    converged_ : bool
        Whether the best run's lower bound changed by less than ``tol`` within ``max_iter`` iterations.
    n_iter_ : int
        The number of iterations of the best run.
    lower_bound_ : float
        The training data's mean log-likelihood per row (per unit of weight, with ``sample_weight``) at the
        best run's last E-step, so of the parameters before its last M-step, as scikit-learn's.  With a prior
        it is still the log-likelihood.  ``-inf`` with ``max_iter=0``.
    lower_bounds_ : list of float of length ``n_iter_``
        ``lower_bound_`` at each iteration of the best run.
    n_features_in_ : int
        The number of features seen by ``fit``.
    feature_names_in_ : ndarray of shape (``n_features_in_``,), dtype object
        The column names seen by ``fit``.  Only when X had column names that are all strings.
    n_samples_ : int
        Extra: the number of rows the fit used (rows of weight 0 included, rows that ``nan_policy`` leaves out
        not).  Set by ``fit`` (``partial_fit`` and ``update``: every row learnt from), and by
        :func:`load_model` when model.yaml records it.
    weight_sum_ : float
        Extra: the sum of ``sample_weight`` over those rows (``n_samples_`` without weights); after ``update``,
        the weight the model counts now (the past's times ``decay``, and the new rows'); set as ``n_samples_``.
    prior_ : dict
        Extra, with a prior only: its resolved hyperparameters as plain numbers: ``"shrinkage"`` (float),
        ``"mean"`` (list of n_features floats), ``"dof"`` (float) and ``"scale"`` (nested lists of shape
        (n_features, n_features) for full and tied, a float for diag and spherical).

    See Also
    --------
    BayesianGaussianMixture : The variational mixture, which can switch off the components the data do not need.
    load_model : A fitted estimator from a model directory.

    Examples
    --------
    >>> import numpy as np
    >>> from pipeline import GaussianMixture
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(0, 1, (100, 2)), rng.normal(5, 1, (100, 2))])
    >>> gm = GaussianMixture(n_components=2, random_state=0).fit(X)
    >>> gm.means_.round(1)
    array([[-0.1,  0.1],
           [ 4.9,  4.9]])
    >>> gm.predict([[0, 0], [5, 5]])
    array([0, 1])
    >>> gm.bic(X) < GaussianMixture(n_components=1, random_state=0).fit(X).bic(X)
    True

    A fitted model is saved as a model directory and loaded back as it was:

    >>> import tempfile
    >>> from pipeline import load_model
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     gm.save(f"{tmp}/model")
    ...     loaded = load_model(f"{tmp}/model")
    >>> loaded
    GaussianMixture(n_components=2, random_state=0)
    >>> np.array_equal(loaded.means_, gm.means_)
    True
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
        acceleration="none",
        learning_offset=10.0,
        learning_decay=0.7,
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
        self.acceleration = acceleration
        self.learning_offset = learning_offset
        self.learning_decay = learning_decay

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
            acceleration=self.acceleration,
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

    def partial_fit(self, X, y=None, sample_weight=None):
        """One step of stepwise online EM on a batch of rows (Cappé & Moulines 2009; Liang & Klein 2009).

        The first call of a stream starts it: on an unfitted estimator, from its batch as :meth:`fit` starts
        (``init_params`` or the ``*_init`` parameters); after :meth:`fit` (or on a loaded model that was not
        streamed), the E-step of that first step is under the fitted parameters but its M-step takes the batch
        alone (to add rows to what a fit learnt, use :meth:`update`).  Every call takes one step: the batch's E-step
        under the current parameters gives its moments per unit weight ``s_b``, the running moments become
        ``s <- (1 - rho_t) s + rho_t s_b`` (``s = s_b`` at the first step), with
        ``rho_t = (learning_offset + t) ** -learning_decay`` at the ``t``-th step after the first, and the
        M-step takes the parameters from ``s`` (under ``prior``, counted as every unit of weight seen, so
        that the prior weighs as in a fit of all those rows; the prior is resolved at the stream's first batch
        and kept).  A step reads its batch twice (a scan, then the E-step and statistics in one pass); the
        first call of a stream on an unfitted estimator adds its start's passes.

        Parameters
        ----------
        X : array-like, pandas or Dask DataFrame, or Dask array of shape (n_samples, n_features)
            The batch; the same columns (and names, if any) at every call.
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Frequency weights of the batch's rows.

        Returns
        -------
        self : GaussianMixture
            ``n_iter_`` counts the steps since the stream began (a :meth:`fit` begins none), ``lower_bound_``
            is the batch's mean log-likelihood under the parameters before its step (``lower_bounds_`` one per
            step), ``converged_`` is False (a stream has no end); ``n_samples_`` and ``weight_sum_`` count
            every row seen.

        Raises
        ------
        ValueError
            A parameter out of range, a batch with NaN (unless ``nan_policy`` allows it), other columns than
            the model's, fewer rows than ``n_components`` at the first step, ``n_components`` or
            ``covariance_type`` changed since the model was fitted.
        """
        self._check_parameters()
        fitted = self.__sklearn_is_fitted__()
        names = feature_names(X)
        if fitted:
            check_feature_names(self, X)
            self._check_same_model()
        d, source, summary, n_dropped = self._rows(
            X, sample_weight, min_samples=1 if fitted else 2, n_features=self.n_features_in_ if fitted else None
        )
        naming, candidate = self._naming(d), Candidate(self.n_components, self.covariance_type)
        spec = self._spec()
        # before weight_sum is used; a batch after the first may have fewer rows than components, and no value in a
        # column (under marginalize)
        engine.check_summary(summary, spec, naming, None if fitted else self.n_components)
        if fitted:
            params, prior = self._params(), getattr(self, "prior_", None)
        else:  # the start, from this batch (nothing is set on the estimator until the step is done)
            start = replace(spec, max_iter=0)
            (outcome,) = engine.fit(source, summary, start, [candidate], naming, with_criteria=False).outcomes
            params, prior = outcome.run.params, outcome.run.algorithm.hyperparameters()
        online = getattr(self, "_online", None) if fitted else None
        if online is None:
            rho, past, steps, seen, history = 1.0, None, 0, 0.0, []
        else:
            steps, seen, history = online.steps, online.seen, list(self.lower_bounds_)
            rho = stepwise_rate(steps, self.learning_offset, self.learning_decay)
            past = online.moments.scaled(1.0 - rho)
        seen += summary.weight_sum
        (outcome,) = engine.fit(
            source,
            summary,
            replace(spec, max_iter=1, tol=0.0),
            [candidate],
            naming,
            warm=Warm(Learned(params, None if online is None else online.moments)),
            learning=engine.Learning(past, weight=rho / summary.weight_sum, count=seen, prior=prior),
            with_criteria=False,
        ).outcomes
        run = outcome.run
        run.n_iter, run.history, run.converged = steps + 1, history + run.history, False
        self._set_fitted(run, d)
        self._online, self._kept = _Online(run.state.moments, seen, steps + 1), None
        self._missing_values = what_nan_policy_did(
            self.nan_policy, summary, n_dropped, getattr(self, "_missing_values", None) if online is not None else None
        )
        before = (self.n_samples_, self.weight_sum_) if online is not None else (0, 0.0)
        self.n_samples_ = before[0] + sum(summary.n_rows)
        self.weight_sum_ = before[1] + summary.weight_sum
        if not fitted and names is not None:
            self.feature_names_in_ = names
        if outcome.collapsed:
            warning = engine.collapse_warning(outcome.candidate, outcome.collapsed, naming)
            warnings.warn(warning["message"], CollapsedComponentsWarning, stacklevel=2)
        return self

    def update(self, X, y=None, sample_weight=None, decay=1.0):
        """Learn from new rows without the old ones: EM over ``X`` in which the rows learnt before count through
        the statistics the model kept of them (incremental EM with frozen statistics, Neal & Hinton 1998).

        The model keeps, from its last fit or update, each component's weight, mean and scatter of the rows it
        learnt from (their responsibilities frozen at its last M-step).  Each M-step here takes the parameters
        from ``decay`` times those statistics plus the new rows' under the current parameters, starting from the
        fitted model, until the new rows' mean log-likelihood changes by less than ``tol`` (or ``max_iter``), as
        :meth:`fit` does; the statistics kept are then the sum at the last M-step, so updates chain.  Not
        ``partial_fit``, scikit-learn's name for one step of a stream per call; this is ``gmm update``'s
        run to convergence on each new batch.

        Parameters
        ----------
        X : array-like, pandas or Dask DataFrame, or Dask array of shape (n_samples, n_features)
            The new rows (at least one), with the model's columns (and names, if it has them).
        y : None
            Ignored.
        sample_weight : array-like of shape (n_samples,) or float, default=None
            Frequency weights of the new rows, as :meth:`fit` takes them.
        decay : float, default=1.0
            In (0, 1]: the factor of the old rows' statistics.  1 keeps all of the past; below 1 forgets it
            geometrically (an update of equal weight after ``n`` more updates counts ``decay ** n``), for data
            that drift.

        Returns
        -------
        self : GaussianMixture
            ``n_iter_``, ``converged_``, ``lower_bound_`` and ``lower_bounds_`` are the update's (the bound is the
            new rows' mean log-likelihood); ``n_samples_`` counts every row learnt from; ``weight_sum_`` is the
            weight the model counts now (the past's times ``decay``, and the new rows').

        Raises
        ------
        ValueError
            ``decay`` outside (0, 1]; ``max_iter`` 0; a model that kept no statistics (saved before models kept
            them, or fitted with ``max_iter=0`` from given parameters); ``n_components`` or ``covariance_type``
            changed since the fit; ``X`` as :meth:`partial_fit` refuses it.
        NotFittedError
            The estimator is not fitted yet.

        Warns
        -----
        pipeline.errors.ConvergenceWarning
            The update stopped at ``max_iter`` before converging.
        """
        self._check_parameters()
        self._check_is_fitted()
        if self.max_iter < 1:
            raise ValueError(f"update takes at least one iteration: max_iter is {self.max_iter}; set max_iter >= 1")
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay <= 1:
            raise ValueError(f"The 'decay' parameter of update must be a float in the range (0, 1]. Got {decay!r}.")
        check_feature_names(self, X)
        self._check_same_model()
        past = self._what_was_learnt()
        d, source, summary, n_dropped = self._rows(X, sample_weight, min_samples=1, n_features=self.n_features_in_)
        prior = getattr(self, "prior_", None)
        (outcome,) = engine.fit(
            source,
            summary,
            self._spec(),
            [Candidate(self.n_components, self.covariance_type)],
            self._naming(d),
            warm=Warm(Learned(self._params(), None)),
            learning=engine.Learning(past.moments.scaled(float(decay)), prior=prior),
            on_iteration=self._verbose_reporter(),
            with_criteria=False,
        ).outcomes
        self._finish(outcome, d, None, summary, n_dropped, past=past, decay=float(decay))
        return self

    def _what_was_learnt(self) -> Kept:
        """The statistics this model kept of the rows it learnt from (a stream's, as sums); ValueError if none."""
        online: _Online | None = getattr(self, "_online", None)
        if online is not None:
            return Kept.of_stream(online.moments, online.seen, self.n_samples_)
        kept: Kept | None = getattr(self, "_kept", None)
        if kept is None:
            raise ValueError(
                "This GaussianMixture kept no statistics of the rows it learnt from (saved before models kept "
                "them, or fitted with max_iter=0 from given parameters): fit it on its data again to update it"
            )
        return kept

    def _check_same_model(self) -> None:
        """ValueError if ``n_components`` or ``covariance_type`` changed since the model was fitted (partial_fit
        goes on with the fitted model: it cannot change its shape)."""
        online: _Online | None = getattr(self, "_online", None)
        fitted_type = online.moments.covariance_type if online is not None else self.covariance_type
        shape = layout_of(self.covariance_type).shape(self.n_components, self.n_features_in_)
        if self.means_.shape[0] != self.n_components or fitted_type != self.covariance_type:
            changed = "n_components" if self.means_.shape[0] != self.n_components else "covariance_type"
        elif np.shape(self.covariances_) != shape:
            changed = "covariance_type"
        else:
            return
        raise ValueError(
            f"{changed} was changed since the model was fitted: partial_fit goes on with the fitted model; call "
            "fit (or fit a clone) to fit another"
        )

    def _n_parameters(self) -> int:
        return kernels.n_parameters(self.covariance_type, self.n_components, self.n_features_in_)

    def bic(self, X):
        """Compute the Bayesian information criterion of the fitted mixture on X.

        ``-2 * score(X) * n_samples + n_parameters * log(n_samples)``, with scikit-learn's count of free
        parameters (weights, means, covariances).  Under a prior it is the log-likelihood's, as mclust's.

        Parameters
        ----------
        X : array-like, pandas or Dask DataFrame, or Dask array of shape (n_samples, n_features)
            Rows as :meth:`score` takes them.

        Returns
        -------
        bic : float
            Lower is better.

        Raises
        ------
        NotFittedError, ValueError, TypeError
            As :meth:`score` raises them.

        See Also
        --------
        aic : Akaike's criterion.
        icl : BIC plus the classification's entropy.
        """
        n = n_rows(X)
        return -2 * self.score(X) * n + self._n_parameters() * math.log(n)

    def aic(self, X):
        """Compute the Akaike information criterion of the fitted mixture on X.

        ``-2 * score(X) * n_samples + 2 * n_parameters``, with the count of free parameters of :meth:`bic`.

        Parameters
        ----------
        X : array-like, pandas or Dask DataFrame, or Dask array of shape (n_samples, n_features)
            Rows as :meth:`score` takes them.

        Returns
        -------
        aic : float
            Lower is better.

        Raises
        ------
        NotFittedError, ValueError, TypeError
            As :meth:`score` raises them.

        See Also
        --------
        bic : The Bayesian information criterion.
        """
        return -2 * self.score(X) * n_rows(X) + 2 * self._n_parameters()

    def icl(self, X):
        """Compute the integrated completed likelihood on X, mclust's ICL in BIC's sign (lower is better).

        ``bic(X) - 2 sum_i log max_k r_ik``: BIC plus the entropy of the hard classification, never below BIC
        (``r_ik`` is :meth:`predict_proba`'s).  ``gmm select`` can choose by it.

        Parameters
        ----------
        X : array-like, pandas or Dask DataFrame, or Dask array of shape (n_samples, n_features)
            Rows as :meth:`score` takes them.

        Returns
        -------
        icl : float
            Lower is better.

        Raises
        ------
        NotFittedError, ValueError, TypeError
            As :meth:`score` raises them.

        See Also
        --------
        bic : The Bayesian information criterion.
        """
        log_max = np.log(self.predict_proba(X).max(axis=1)).sum()
        return self.bic(X) - 2 * float(log_max.compute() if hasattr(log_max, "compute") else log_max)

    def to_sklearn(self):
        """A fitted :class:`sklearn.mixture.GaussianMixture` with these parameters (needs scikit-learn).

        Its parameters are scikit-learn's, as this estimator has them (not ``dtype``, ``prior``, ``nan_policy``,
        ``learning_offset`` or ``learning_decay``, which scikit-learn's has not), with a ``random_state`` that is
        not an int or None given as None.  Its fitted attributes are this
        estimator's (``weights_`` to ``feature_names_in_``, the same arrays, not copies), so it predicts and
        scores as this one does on rows without NaN.  A fit under a prior keeps its MAP estimates; refitting the
        copy drops the prior.

        Returns
        -------
        sklearn.mixture.GaussianMixture
            Fitted.

        Raises
        ------
        ImportError
            scikit-learn is not installed (``pip install gmm-pipeline[sklearn]``).
        NotFittedError
            This estimator is not fitted yet.
        """
        try:
            from sklearn.mixture import GaussianMixture as SkGaussianMixture
        except ImportError:
            raise ImportError("to_sklearn needs scikit-learn: pip install gmm-pipeline[sklearn]") from None
        self._check_is_fitted()
        seed = self.random_state if isinstance(self.random_state, (int, type(None))) else None
        theirs = inspect.signature(SkGaussianMixture).parameters  # ours but the extras (dtype, prior, ...)
        ours = {name: value for name, value in self.get_params().items() if name in theirs}
        if ours["covariance_type"] not in SKLEARN_COVARIANCE_TYPES:  # mclust's models: (K, D, D) as full's
            ours["covariance_type"] = "full"
        sk = SkGaussianMixture(**{**ours, "random_state": seed})
        for attr in FITTED:
            if hasattr(self, attr):
                setattr(sk, attr, getattr(self, attr))
        return sk

    def save(self, path: str | Path, storage_options: dict | None = None) -> None:
        """Write the fitted model as a model directory (model.yaml + model.npz), local or fsspec URL.

        model.yaml records the parameters (:meth:`recorded_parameters`), the fit (convergence, lower bounds,
        ``n_samples_``, ``weight_sum_``), the resolved prior and what ``nan_policy`` did; model.npz the arrays
        (and, after :meth:`partial_fit`, the stream's running moments, so that a loaded model goes on with the
        same stream).  :func:`load_model` reads it back, and ``gmm score``, ``gmm report`` and ``gmm inspect``
        take it.  A local directory is written whole beside ``path``, then renamed into place: an existing
        ``path`` is replaced only if it is an empty directory or a model directory.  On an object store the
        files are written one by one, model.yaml last.

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
        online: _Online | None = getattr(self, "_online", None)
        kept: Kept | None = getattr(self, "_kept", None)
        if online is not None:  # a stream: its averages, and where it stands
            learning = {"stream": StreamRecord(steps=online.steps, weight_seen=online.seen)}
            moments = moments_arrays(online.moments)
        elif kept is not None:  # a fit or update: the sums it learnt, and what from
            learning, moments = {"lineage": kept.lineage}, moments_arrays(kept.moments)
        else:
            learning, moments = {}, None
        self._save(
            path,
            storage_options,
            self._params(),
            moments,
            prior=getattr(self, "prior_", None),
            missing=getattr(self, "_missing_values", None),
            **learning,
        )


@dataclass(frozen=True)
class _Online:
    """Where a stream of :meth:`GaussianMixture.partial_fit` calls stands: the running moments (per unit weight),
    the weight seen, the steps taken."""

    moments: ComponentMoments
    seen: float
    steps: int


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
    if info.stream is not None:  # a stream of partial_fit calls goes on where it stood
        moments = moments_from_arrays(saved.extra_arrays, p.covariance_type)
        model._online = _Online(moments, info.stream.weight_seen, info.stream.steps)
    elif info.lineage is not None:  # what a fit or update learnt: it can learn more
        model._kept = Kept(moments_from_arrays(saved.extra_arrays, p.covariance_type), list(info.lineage))
    if info.n_samples is not None:  # recorded by gmm fit and by save() of a fitted estimator
        model.n_samples_, model.weight_sum_ = info.n_samples, info.weight_sum
    if info.named_features:
        model.feature_names_in_ = np.array(info.feature_names, dtype=object)
    return model


def load_model(path: str | Path, storage_options: dict | None = None) -> GaussianMixture | BayesianGaussianMixture:
    """Load a model directory written by ``gmm fit`` or ``.save`` (local path or fsspec URL).

    The estimator is a :class:`GaussianMixture`, or a :class:`BayesianGaussianMixture` for a variational model,
    with the parameters it was fitted with (``get_params()`` equals the saved estimator's; a model written by
    ``gmm fit`` or ``gmm select`` has the config's resolved ``model.*`` values) and its fitted attributes, so it
    predicts, scores and samples as the saved one did, and ``clone(model).fit(X)`` refits it.
    ``n_samples_`` and ``weight_sum_`` are set where model.yaml records them (a model written by ``gmm fit``,
    ``gmm select`` or ``save``), and a saved :meth:`GaussianMixture.partial_fit` stream goes on where it stood.

    Parameters
    ----------
    path : str or pathlib.Path
        The model directory: a local path or an fsspec URL (``s3://bucket/models/m``).
    storage_options : dict, optional
        Options for the URL's fsspec file system (credentials, endpoint), as fsspec takes them.

    Returns
    -------
    model : GaussianMixture or BayesianGaussianMixture
        Fitted.

    Raises
    ------
    ValueError
        (``pipeline.errors.InputError``, its message naming the file) ``path`` is not a model directory;
        its model.yaml or model.npz cannot be read, is invalid, of a newer format than this version reads, or
        disagrees with the other; or the recorded parameters are not the estimator's.

    See Also
    --------
    GaussianMixture.save, BayesianGaussianMixture.save

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from pipeline import GaussianMixture, load_model
    >>> X = np.random.default_rng(0).normal(size=(100, 2))
    >>> gm = GaussianMixture(n_components=2, random_state=0).fit(X)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     gm.save(f"{tmp}/model")
    ...     model = load_model(f"{tmp}/model")
    >>> model.get_params() == gm.get_params()
    True
    >>> np.array_equal(model.predict(X), gm.predict(X))
    True
    """
    place = storage.Place.of(path, storage_options)
    return from_saved(load_saved_model(place), place.join(YAML_NAME).name)
