"""The covariance types in one table: each type's storage, parameter count and M-steps, declared once (pure NumPy).

A covariance type is a :class:`Layout` (how its covariances are stored) and its estimators (how its covariances are
formed from the components' scatter matrices).  The four layouts are named after the scikit-learn type that stores
its covariances so:

=========  =====================  =====  ======  =========  ==========================================
layout     shape                  dense  shared  isotropic  per component
=========  =====================  =====  ======  =========  ==========================================
full       (n_components, D, D)   yes    no      no         one matrix per component
tied       (D, D)                 yes    yes     no         full's matrices, shared: their sum
diag       (n_components, D)      no     no      no         full's diagonals
spherical  (n_components,)        no     no      yes        diag's mean over features
=========  =====================  =====  ======  =========  ==========================================

Every layout is a reduction of ``full``: per-component quantities (matrices when dense, diagonals otherwise) map to
the layout's shape by :meth:`Layout.reduce` and back by :meth:`Layout.per_component`.  The E-step, the statistics,
the Cholesky factors, the checks and the priors' shapes ask only the layout; what differs between two types of one
layout is in their :class:`CovarianceType` entry: the parameter count and the M-steps (maximum likelihood, mclust's
MAP under the conjugate prior, the variational Gaussian-Wishart posterior), each a pure function.

mclust's fourteen models (:mod:`~pipeline.kernels.mclust`: ``EII`` ... ``VVV``) are entries over the ``full``
layout, as mclust and the issue that asked for them store them: every covariance a (D, D) matrix, estimated from
the components' scatter matrices under the model's constraints; mclust's MAP M-steps for the ten it gives a prior
(:mod:`~pipeline.kernels.mclust_prior`), no variational M-step (None: a fit that asks for one is refused before it
starts).  Adding a type is one entry in :data:`COVARIANCE_TYPES` with its
layout, parameter count and M-steps, and its name in :data:`pipeline.choices.COVARIANCE_TYPES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from pipeline.kernels import mclust, mclust_prior
from pipeline.kernels.arrays import Array


@dataclass(frozen=True)
class Layout:
    """How a type's covariances (and their precision factors, and ``Stats.s2``) are stored.

    Attributes
    ----------
    name : {"full", "tied", "diag", "spherical"}
        The scikit-learn type whose covariances are stored this way.
    dense : bool
        Matrices (D, D), rather than variances.
    shared : bool
        One for all components (summed over them from per-component quantities).
    isotropic : bool
        One variance for all features (summed over them from per-component diagonals).
    """

    name: str
    dense: bool
    shared: bool = False
    isotropic: bool = False

    def shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        """Shape of the covariances, their precision factors and ``Stats.s2``."""
        component = self.component_shape(n_features)
        return component if self.shared else (n_components, *component)

    def component_shape(self, n_features: int) -> tuple[int, ...]:
        """Shape of one component's covariance: (D, D), (D,) or () (also the variational ``covariance_prior``'s)."""
        if self.dense:
            return (n_features, n_features)
        return () if self.isotropic else (n_features,)

    def reduce(self, per_component: Array) -> Array:
        """The layout's shape from per-component quantities: (K, D, D) when dense, else (K, D).

        Shared layouts sum over components, isotropic ones over features.  Covariances are
        ``reduce(scatter) / reduce(counts)``: the pooled scatter over the pooled count (tied), the mean
        diagonal (spherical).
        """
        if self.shared:
            per_component = per_component.sum(axis=0)
        if self.isotropic:
            per_component = per_component.sum(axis=-1)
        return per_component

    def per_component(self, values: Array, n_components: int, n_features: int) -> Array:
        """The layout's array broadcast to per-component shape: (K, D, D) when dense, else (K, D)."""
        if not (self.shared or self.isotropic):
            return values
        if self.isotropic:
            values = np.asarray(values)[..., None]
        d = n_features
        return np.broadcast_to(values, (n_components, d, d) if self.dense else (n_components, d))

    def dense_form(self, values: Array, n_components: int, n_features: int) -> Array:
        """Every component's covariance as a (D, D) matrix: (n_components, D, D), a new array."""
        per_component = self.per_component(values, n_components, n_features)
        if self.dense:
            return np.array(per_component)
        return per_component[:, :, None] * np.eye(n_features)

    def identity(self, n_components: int, n_features: int) -> Array:
        """Unit covariances in the layout's shape (whitening is then just ``x - c_k``)."""
        if not self.dense:
            return np.ones(self.shape(n_components, n_features))
        eye = np.eye(n_features)
        return eye if self.shared else np.tile(eye, (n_components, 1, 1))

    def n_quadratic(self, n_features: int) -> int:
        """Number of quadratic features ``q(x')`` of the E-step's expanded route: ``x'_i x'_j`` for ``i <= j``
        (dense), ``x'_i^2``, or ``|x'|^2`` (isotropic)."""
        if self.dense:
            return n_features * (n_features + 1) // 2
        return 1 if self.isotropic else n_features


FULL = Layout("full", dense=True)
TIED = Layout("tied", dense=True, shared=True)
DIAG = Layout("diag", dense=False)
SPHERICAL = Layout("spherical", dense=False, isotropic=True)


class MlCovariances(Protocol):
    """Maximum-likelihood covariances of a type that is not the layout's plain reduction (e.g. mclust's ``EEI``)."""

    def __call__(self, nk: Array, scatter: Array, n_features: int, previous: Array | None = None) -> Array:
        """``nk`` (K,) the components' weights, ``scatter`` about their data means in the layout's shape,
        ``previous`` the covariances the E-step used (None at a start); returns the covariances in the layout's
        shape."""
        ...


class MapCovariances(Protocol):
    """MAP covariances under mclust's conjugate prior (Fraley & Raftery 2007; ``msvvvp`` etc. in mclust's source)."""

    def __call__(self, nk: Array, scatter: Array, pull: Array, flat: float, scale: Array, dof: float) -> Array:
        """``nk`` (K,) the components' weights; ``scatter`` about their data means, in the layout's shape;
        ``pull`` (K, D, D) or (K, D) per component, ``kappa n_k / (kappa + n_k) (xbar_k - mean)(...)^T`` (or its
        diagonal); ``flat`` 1 when the prior on the means is proper (``kappa > 0``), else 0; ``scale`` and
        ``dof`` the prior's.  Returns the covariances in the layout's shape."""
        ...


class WishartPosterior(Protocol):
    """The variational M-step's Gaussian-Wishart posterior (scikit-learn's ``_estimate_wishart_*``)."""

    def __call__(
        self,
        nk: Array,
        covariances: Array,
        diff: Array,
        mean_precision: Array,
        covariance_prior: Array,
        degrees_of_freedom_prior: float,
        mean_precision_prior: float,
    ) -> tuple[Array, Array]:
        """``nk`` (K,); ``covariances`` the components' maximum-likelihood covariances (``reg_covar`` added),
        in the layout's shape; ``diff`` (K, D) ``xbar_k - mean_prior``; ``mean_precision`` (K,) the posterior's
        ``beta_k``; then the priors.  Returns ``(degrees_of_freedom, covariances)``: (K,) or () when shared, and
        the Wishart scale over its degrees of freedom in the layout's shape."""
        ...


class LogPriorDensity(Protocol):
    """A type's own log prior density (up to a constant) for MAP EM's objective."""

    def __call__(
        self, means: Array, precisions: Array, log_dets: Array, mean: Array, shrinkage: float, scale: Array, dof: float
    ) -> float:
        """``means`` (K, D), ``precisions`` (K, D, D), ``log_dets`` (K,); the prior's hyperparameters."""
        ...


class _Count(Protocol):
    """A number of free parameters from (n_components, n_features)."""

    def __call__(self, n_components: int, n_features: int) -> float: ...


@dataclass(frozen=True)
class CovarianceType:
    """One covariance type: its layout, its number of free covariance parameters and its M-steps.

    Attributes
    ----------
    name : str
    layout : Layout
    covariance_parameters : callable
        ``(n_components, n_features) -> float``: free parameters of the covariances (for BIC and AIC).
    map_covariances : MapCovariances or None
        None: no conjugate prior for this type.
    wishart : WishartPosterior or None
        None: not a type of the variational mixture.
    ml : MlCovariances, optional
        None (the four of scikit-learn): the layout's reduction of full, see :meth:`ml_covariances`.
    log_prior : LogPriorDensity, optional
        The prior's log density that :attr:`map_covariances` raises, where it is not the layout's conjugate one
        (mclust's models: :class:`~pipeline.kernels.mclust_prior.LogPrior`).
    """

    name: str
    layout: Layout
    covariance_parameters: _Count
    map_covariances: MapCovariances | None
    wishart: WishartPosterior | None
    ml: MlCovariances | None = None
    log_prior: LogPriorDensity | None = None

    def n_parameters(self, n_components: int, n_features: int) -> int:
        """Free parameters of a mixture of this type: covariances, means and the weights (which sum to 1)."""
        k, d = n_components, n_features
        return int(self.covariance_parameters(k, d) + k * d + k - 1)

    def ml_covariances(self, nk: Array, scatter: Array, n_features: int, previous: Array | None = None) -> Array:
        """Maximum-likelihood covariances: the type's own (:attr:`ml`, given the ``previous`` covariances), else the
        scatter (in the layout's shape) over its weight, reduced alike."""
        if self.ml is not None:
            return self.ml(nk, scatter, n_features, previous)
        k, d, dense = nk.shape[0], n_features, self.layout.dense
        counts = np.broadcast_to(nk[:, None, None] if dense else nk[:, None], (k, d, d) if dense else (k, d))
        return scatter / self.layout.reduce(counts)

    @property
    def prior_scale_is_number(self) -> bool:
        """The conjugate prior's scale is one number (``diag``, ``spherical``, mclust's axis-aligned models), not
        a (D, D) matrix."""
        return not self.layout.dense or self.name in mclust_prior.NUMBER_SCALE


def _map_full(nk: Array, scatter: Array, pull: Array, flat: float, scale: Array, dof: float) -> Array:
    d = scatter.shape[-1]
    cov: Array = (scale + scatter + pull) / (dof + nk + d + 1 + flat)[:, None, None]
    return cov


def _map_tied(nk: Array, scatter: Array, pull: Array, flat: float, scale: Array, dof: float) -> Array:
    k, d = pull.shape[0], pull.shape[-1]
    cov: Array = (scale + scatter + pull.sum(axis=0)) / (dof + nk.sum() + d + 1 + k * flat)
    return cov


def _map_diag(nk: Array, scatter: Array, pull: Array, flat: float, scale: Array, dof: float) -> Array:
    return (scale + scatter + pull) / (dof + nk + 2 + flat)[:, None]


def _map_spherical(nk: Array, scatter: Array, pull: Array, flat: float, scale: Array, dof: float) -> Array:
    d = pull.shape[-1]
    cov: Array = (scale + scatter + pull.sum(axis=1)) / (dof + nk * d + 2 + d * flat)
    return cov


def _wishart_full(
    nk: Array,
    covariances: Array,
    diff: Array,
    mean_precision: Array,
    covariance_prior: Array,
    degrees_of_freedom_prior: float,
    mean_precision_prior: float,
) -> tuple[Array, Array]:
    nu = degrees_of_freedom_prior + nk
    shrink = mean_precision_prior / mean_precision
    scatter = nk[:, None, None] * (covariances + shrink[:, None, None] * diff[:, :, None] * diff[:, None, :])
    return nu, (covariance_prior + scatter) / nu[:, None, None]


def _wishart_tied(
    nk: Array,
    covariances: Array,
    diff: Array,
    mean_precision: Array,
    covariance_prior: Array,
    degrees_of_freedom_prior: float,
    mean_precision_prior: float,
) -> tuple[Array, Array]:
    k = nk.shape[0]
    nu = np.asarray(degrees_of_freedom_prior + nk.sum() / k)
    pull = mean_precision_prior / k * ((nk / mean_precision) * diff.T) @ diff
    return nu, (covariance_prior + covariances * nk.sum() / k + pull) / nu


def _wishart_diag(
    nk: Array,
    covariances: Array,
    diff: Array,
    mean_precision: Array,
    covariance_prior: Array,
    degrees_of_freedom_prior: float,
    mean_precision_prior: float,
) -> tuple[Array, Array]:
    nu = degrees_of_freedom_prior + nk
    shrink = mean_precision_prior / mean_precision
    return nu, (covariance_prior + nk[:, None] * (covariances + shrink[:, None] * np.square(diff))) / nu[:, None]


def _wishart_spherical(
    nk: Array,
    covariances: Array,
    diff: Array,
    mean_precision: Array,
    covariance_prior: Array,
    degrees_of_freedom_prior: float,
    mean_precision_prior: float,
) -> tuple[Array, Array]:
    nu = degrees_of_freedom_prior + nk
    shrink = mean_precision_prior / mean_precision
    return nu, (covariance_prior + nk * (covariances + shrink * np.square(diff).mean(axis=1))) / nu


COVARIANCE_TYPES: dict[str, CovarianceType] = {
    ct.name: ct
    for ct in (
        CovarianceType("full", FULL, lambda k, d: k * d * (d + 1) / 2.0, _map_full, _wishart_full),
        CovarianceType("tied", TIED, lambda k, d: d * (d + 1) / 2.0, _map_tied, _wishart_tied),
        CovarianceType("diag", DIAG, lambda k, d: k * d, _map_diag, _wishart_diag),
        CovarianceType("spherical", SPHERICAL, lambda k, d: k, _map_spherical, _wishart_spherical),
        *(
            CovarianceType(
                name,
                FULL,
                lambda k, d, name=name: mclust.covariance_parameters(name, k, d),
                mclust_prior.MAP_ESTIMATORS.get(name),
                None,
                lambda nk, scatter, d, previous=None, estimate=estimate: estimate(nk, scatter, previous),
                mclust_prior.LOG_PRIORS.get(name),
            )
            for name, estimate in mclust.ESTIMATORS.items()
        ),
    )
}


def get(name: str) -> CovarianceType:
    """The registry's entry of a covariance type; KeyError naming the known ones if there is none."""
    try:
        return COVARIANCE_TYPES[name]
    except KeyError:
        raise KeyError(f"unknown covariance type {name!r}: one of {', '.join(COVARIANCE_TYPES)}") from None


def layout_of(name: str) -> Layout:
    """The layout of a covariance type, by name."""
    return get(name).layout
