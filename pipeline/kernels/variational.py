"""The variational Bayesian Gaussian mixture (scikit-learn's ``BayesianGaussianMixture``), from the same statistics.

Its E-step is the EM kernel's with other per-component constants (expected log
weights and the Wishart's expected log-determinant), plus ``sum r log r`` for
the bound; its M-step updates the Dirichlet (or Dirichlet-process stick
breaking) concentrations and the Gaussian-Wishart posterior from ``nk``, the
components' data means and their maximum-likelihood covariances.  The
formulas, their normalisations and the bound (constants left out) are
scikit-learn's (``sklearn/mixture/_bayesian_mixture.py``), so that from the
same responsibilities both give the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import betaln, digamma, gammaln

from pipeline.choices import VARIATIONAL_PRIOR_KEYS, WEIGHT_PRIOR_TYPES
from pipeline.kernels import covtypes
from pipeline.kernels.arrays import Array
from pipeline.kernels.covtypes import Layout, layout_of
from pipeline.kernels.estep import Prepared, log_det_cholesky, prepare
from pipeline.kernels.moments import DataMoments
from pipeline.kernels.mstep import component_moments, ml_covariances
from pipeline.kernels.params import PARAM_ARRAYS, Params, compute_precision_cholesky
from pipeline.kernels.prior import brief, check_count
from pipeline.kernels.stats import Stats
from pipeline.kernels.steps import Advances, Hyperparameters, Scores

VARIATIONAL_ARRAYS = ("weight_concentration", "mean_precision", "degrees_of_freedom")


@dataclass(frozen=True)
class VariationalPriors:
    """The priors, resolved (scikit-learn's ``*_prior_`` attributes).

    Attributes
    ----------
    weight_concentration_prior_type : {"dirichlet_process", "dirichlet_distribution"}
    weight_concentration_prior : float
    mean_precision_prior : float
    mean_prior : ndarray of shape (n_features,)
    degrees_of_freedom_prior : float
    covariance_prior : ndarray, shape by covariance type ((D, D) for full and tied, (D,) diag, () spherical)
    """

    weight_concentration_prior_type: str
    weight_concentration_prior: float
    mean_precision_prior: float
    mean_prior: Array
    degrees_of_freedom_prior: float
    covariance_prior: Array

    def as_dict(self) -> Hyperparameters:
        return {
            "weight_concentration_prior_type": self.weight_concentration_prior_type,
            "weight_concentration_prior": float(self.weight_concentration_prior),
            "mean_precision_prior": float(self.mean_precision_prior),
            "mean_prior": self.mean_prior.tolist(),
            "degrees_of_freedom_prior": float(self.degrees_of_freedom_prior),
            "covariance_prior": np.asarray(self.covariance_prior).tolist(),
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> VariationalPriors:
        return cls(
            values["weight_concentration_prior_type"],
            float(values["weight_concentration_prior"]),
            float(values["mean_precision_prior"]),
            np.asarray(values["mean_prior"], dtype=float),
            float(values["degrees_of_freedom_prior"]),
            np.asarray(values["covariance_prior"], dtype=float),
        )


def _default_covariance_prior(layout: Layout, covariance: Array) -> Array:
    """scikit-learn's default ``covariance_prior``: the data's covariance, its diagonal, or the diagonal's mean."""
    variances = np.diag(covariance)
    if layout.dense:
        return covariance
    return np.asarray(variances.mean()) if layout.isotropic else variances


def _described(shape: tuple[int, ...]) -> str:
    """A shape of a covariance prior in words, for a message."""
    if len(shape) == 2:
        return f"a {shape[0]} x {shape[1]} matrix"
    return f"{shape[0]} numbers (one per feature)" if shape else "one number"


def resolve_priors(
    moments: DataMoments, n_components: int, covariance_type: str, prior_type: str, **given: Any
) -> VariationalPriors:
    """scikit-learn's defaults for every prior not ``given`` (or given as None), checked as it checks them.

    Raises
    ------
    ValueError
        Naming the prior and what is wrong with it.
    """
    if covtypes.get(covariance_type).wishart is None:
        raise ValueError(
            f"the variational mixture takes covariance_type full, tied, diag or spherical, not {covariance_type!r}"
        )
    d, layout = moments.mean.shape[0], layout_of(covariance_type)
    defaults = {
        "weight_concentration_prior": 1.0 / n_components,
        "mean_precision_prior": 1.0,
        "mean_prior": moments.mean,
        "degrees_of_freedom_prior": float(d),
        "covariance_prior": _default_covariance_prior(layout, moments.covariance),
    }
    values: dict[str, Any] = {
        key: defaults[key] if given.get(key) is None else given[key] for key in VARIATIONAL_PRIOR_KEYS
    }
    for key in ("weight_concentration_prior", "mean_precision_prior"):
        if not (isinstance(values[key], (int, float, np.floating)) and math.isfinite(values[key]) and values[key] > 0):
            raise ValueError(f"{key} must be a number > 0, got {values[key]!r}")
        check_count(key, values[key])
    mean = np.asarray(values["mean_prior"], dtype=float)
    if mean.shape != (d,):
        raise ValueError(f"mean_prior must be {d} numbers (one per feature), got shape {mean.shape}")
    if not np.isfinite(mean).all():
        raise ValueError(f"mean_prior must be finite, got {brief(mean)}")
    dof = values["degrees_of_freedom_prior"]
    if not (math.isfinite(dof) and dof > d - 1.0):
        raise ValueError(f"degrees_of_freedom_prior must be > {d - 1} (n_features - 1), got {dof:g}")
    check_count("degrees_of_freedom_prior", dof)
    cov = np.asarray(values["covariance_prior"], dtype=float)
    shape = layout.component_shape(d)
    if cov.shape != shape:
        raise ValueError(
            f"covariance_prior must be {_described(shape)} for covariance_type {covariance_type!r}, "
            f"got shape {cov.shape}"
        )
    if not np.isfinite(cov).all():
        raise ValueError(f"covariance_prior must be finite, got {brief(cov)}")
    if given.get("covariance_prior") is None:  # the data's own, as scikit-learn takes it unchecked
        pass
    elif layout.dense:
        if not np.allclose(cov, cov.T):
            raise ValueError(f"covariance_prior must be symmetric for covariance_type {covariance_type!r}")
        if np.linalg.eigvalsh(cov).min() <= 0:
            raise ValueError(
                f"covariance_prior must be positive definite for covariance_type {covariance_type!r}, "
                f"got a matrix with smallest eigenvalue {np.linalg.eigvalsh(cov).min():.3g}"
            )
    elif (cov <= 0).any():
        raise ValueError(f"covariance_prior must be > 0 for covariance_type {covariance_type!r}, got {brief(cov)}")
    return VariationalPriors(
        prior_type,
        float(values["weight_concentration_prior"]),
        float(values["mean_precision_prior"]),
        mean,
        float(dof),
        cov,
    )


def check_stored(priors: VariationalPriors, arrays: Mapping[str, Array], covariance_type: str, k: int, d: int) -> None:
    """ValueError naming what a stored variational model (priors and posterior arrays) cannot be."""
    if priors.weight_concentration_prior_type not in WEIGHT_PRIOR_TYPES:
        raise ValueError(f"weight_concentration_prior_type {priors.weight_concentration_prior_type!r} is not known")
    layout = layout_of(covariance_type)
    shapes: dict[str, tuple[Array, tuple[int, ...]]] = {
        "mean_prior": (np.asarray(priors.mean_prior), (d,)),
        "covariance_prior": (np.asarray(priors.covariance_prior), layout.component_shape(d)),
        "weight_concentration": (
            arrays["weight_concentration"],
            (2, k) if priors.weight_concentration_prior_type == "dirichlet_process" else (k,),
        ),
        "mean_precision": (arrays["mean_precision"], (k,)),
        "degrees_of_freedom": (arrays["degrees_of_freedom"], () if layout.shared else (k,)),
    }
    for name, (array, shape) in shapes.items():
        if array.shape != shape:
            raise ValueError(f"{name} has shape {array.shape}, expected {shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"{name} holds NaN or inf")
    positive: dict[str, float | Array] = {
        "weight_concentration_prior": priors.weight_concentration_prior,
        "mean_precision_prior": priors.mean_precision_prior,
        "weight_concentration": arrays["weight_concentration"],
        "mean_precision": arrays["mean_precision"],
    }
    for name, value in positive.items():
        if not (np.asarray(value) > 0).all():
            raise ValueError(f"{name} must be > 0")
    for name, count in (
        ("degrees_of_freedom_prior", priors.degrees_of_freedom_prior),
        ("degrees_of_freedom", arrays["degrees_of_freedom"]),
    ):
        if not (np.asarray(count) > d - 1.0).all():
            raise ValueError(f"{name} must be > {d - 1} (n_features - 1)")


@dataclass(frozen=True)
class VariationalState:
    """The variational posterior: the plug-in mixture (``params``) and the distributions' parameters.

    Attributes
    ----------
    params : Params
        ``weights_`` (the expected weights), ``means_``, ``covariances_`` (the Wishart scale over its degrees of
        freedom, as scikit-learn normalises it) and their precision factors.
    weight_concentration : ndarray
        (2, K): the Beta distributions of the stick breaks (Dirichlet process); (K,): the Dirichlet's.
    mean_precision : ndarray of shape (n_components,)
    degrees_of_freedom : ndarray of shape (n_components,), or () for tied
    """

    params: Params
    weight_concentration: Array
    mean_precision: Array
    degrees_of_freedom: Array


def expected_weights(weight_concentration: Array, prior_type: str) -> Array:
    """scikit-learn's ``weights_``: the expected weights under the concentrations, normalised."""
    if prior_type == "dirichlet_process":
        a, b = weight_concentration
        total = a + b
        weights = a / total * np.hstack((1.0, np.cumprod(b / total)[:-1]))
        normalised: Array = weights / weights.sum()
        return normalised
    expected: Array = weight_concentration / weight_concentration.sum()
    return expected


def expected_log_weights(weight_concentration: Array, prior_type: str) -> Array:
    """``E[log pi_k]`` under the concentrations."""
    if prior_type == "dirichlet_process":
        a, b = weight_concentration
        digamma_sum = digamma(a + b)
        stick: Array = digamma(a) - digamma_sum + np.hstack((0.0, np.cumsum(digamma(b) - digamma_sum)[:-1]))
        return stick
    dirichlet: Array = digamma(weight_concentration) - digamma(weight_concentration.sum())
    return dirichlet


def estep_log_weights(state: VariationalState, prior_type: str) -> Array:
    """What the E-step adds to each component's Gaussian log density (scikit-learn's ``_estimate_log_prob`` and
    ``_estimate_log_weights`` beyond ``log N(x | mean, covariance)``)."""
    d = state.params.n_features
    nu = np.broadcast_to(state.degrees_of_freedom, (state.params.n_components,))
    log_lambda = d * math.log(2.0) + digamma(0.5 * (nu - np.arange(d)[:, None])).sum(axis=0)
    log_weights: Array = (
        expected_log_weights(state.weight_concentration, prior_type)
        - 0.5 * d * np.log(nu)
        + 0.5 * (log_lambda - d / state.mean_precision)
    )
    return log_weights


def _log_wishart_norm(nu: Array, log_det_chol: Array, d: int) -> Array:
    log_gamma = gammaln(0.5 * (nu - np.arange(d)[:, None])).sum(axis=0)
    norm: Array = -(nu * log_det_chol + nu * d * 0.5 * math.log(2.0) + log_gamma)
    return norm


@dataclass(frozen=True)
class VariationalStep(Advances):
    """The variational mixture's iteration: a :class:`~pipeline.kernels.steps.Step` over its posterior."""

    covariance_type: str
    reg_covar: float
    priors: VariationalPriors

    def prepare(self, state: VariationalState, dtype: str = "float64") -> Prepared:
        log_weights = estep_log_weights(state, self.priors.weight_concentration_prior_type)
        return prepare(state.params, dtype=dtype, log_weights=log_weights, with_entropy=True)

    def m_step(self, stats: Stats, shift: Array, previous: VariationalState | None = None) -> VariationalState:
        ct, p = self.covariance_type, self.priors
        nk, xk, scatter = component_moments(stats, shift, ct)
        d = xk.shape[1]
        sk = ml_covariances(nk, scatter, ct, d, self.reg_covar)
        if p.weight_concentration_prior_type == "dirichlet_process":
            concentration = np.stack(
                [1.0 + nk, p.weight_concentration_prior + np.hstack((np.cumsum(nk[::-1])[-2::-1], 0.0))]
            )
        else:
            concentration = p.weight_concentration_prior + nk
        beta = p.mean_precision_prior + nk
        means = (p.mean_precision_prior * p.mean_prior + nk[:, None] * xk) / beta[:, None]
        wishart = covtypes.get(ct).wishart
        assert wishart is not None  # refused by resolve_priors
        nu, cov = wishart(
            nk, sk, xk - p.mean_prior, beta, p.covariance_prior, p.degrees_of_freedom_prior, p.mean_precision_prior
        )
        params = Params(
            expected_weights(concentration, p.weight_concentration_prior_type),
            means,
            cov,
            compute_precision_cholesky(cov, ct),
            ct,
        )
        return VariationalState(params, concentration, beta, nu)

    def scores(self, stats: Stats, state: VariationalState, new_state: VariationalState) -> Scores:
        """scikit-learn's bound (its constants left out), at the new posterior with the E-step's responsibilities."""
        ct, params = self.covariance_type, new_state.params
        d = params.n_features
        nu = new_state.degrees_of_freedom
        log_det = log_det_cholesky(params.precisions_cholesky, ct, d) - 0.5 * d * np.log(nu)
        norms = _log_wishart_norm(nu, log_det, d)
        shared = layout_of(ct).shared  # one Wishart for all components
        log_wishart = params.n_components * float(norms[0]) if shared else float(np.sum(norms))
        concentration = new_state.weight_concentration
        if self.priors.weight_concentration_prior_type == "dirichlet_process":
            log_norm_weight = -float(np.sum(betaln(concentration[0], concentration[1])))
        else:
            log_norm_weight = float(gammaln(concentration.sum()) - gammaln(concentration).sum())
        bound = (
            -stats.resp_log_resp
            - log_wishart
            - log_norm_weight
            - 0.5 * d * float(np.sum(np.log(new_state.mean_precision)))
        )
        return Scores(bound, bound)

    @staticmethod
    def params(state: VariationalState) -> Params:
        return state.params

    @staticmethod
    def arrays(state: VariationalState) -> dict[str, Array]:
        return {
            **{name: getattr(state.params, name) for name in PARAM_ARRAYS},
            "weight_concentration": state.weight_concentration,
            "mean_precision": state.mean_precision,
            "degrees_of_freedom": np.asarray(state.degrees_of_freedom),
        }

    def from_arrays(self, arrays: Mapping[str, Array]) -> VariationalState:
        params = Params(covariance_type=self.covariance_type, **{name: arrays[name] for name in PARAM_ARRAYS})
        return VariationalState(
            params, arrays["weight_concentration"], arrays["mean_precision"], arrays["degrees_of_freedom"]
        )

    def hyperparameters(self) -> Hyperparameters:
        return self.priors.as_dict()


def scoring_log_weights(arrays: Mapping[str, Array], prior_type: str, params: Params) -> Array:
    """The E-step's per-component constants of a stored variational model (what scores and predictions use)."""
    state = VariationalState(
        params, arrays["weight_concentration"], arrays["mean_precision"], arrays["degrees_of_freedom"]
    )
    return estep_log_weights(state, prior_type)
