"""mclust's conjugate prior for its covariance models: MAP M-steps as its EM computes them (pure NumPy).

mclust 6 takes a prior (``priorControl()``, ``defaultPrior``; Fraley & Raftery 2007, J. Classification 24) with ten
of its fourteen models: ``EII VII EEI VEI EVI VVI EEE EEV VEV VVV``.  Its EM (the Fortran ``me*p`` routines that
``Mclust`` runs) estimates every one of them the same way: the model's maximum-likelihood estimate of
:mod:`pipeline.kernels.mclust`, taken from statistics the prior augments, a pseudo-count ``a_k`` added to each
component's weight and a pseudo-scatter ``S_k`` to its scatter::

    Sigma = ESTIMATORS[model](n_k + a_k, S_k + W_k + C_k)

``W_k`` the scatter about the component's data mean, ``C_k = kappa n_k / (kappa + n_k) (xbar_k - m)(xbar_k - m)^T``
the pull of the prior mean ``m``.  ``a_k`` and ``S_k`` are read off mclust's Fortran term by term
(:func:`pseudo_statistics`; ``nu`` the dof, ``zeta`` the one-number scale of the six axis-aligned models,
``Lambda`` the matrix scale of the four others, ``f`` 1 when ``kappa > 0`` else 0, ``G`` components, ``d``
features):

=====  ==========================  ==========================
model  ``a_k``                     ``S_k``
=====  ==========================  ==========================
EII    ``1 + (nu + 2) / (G d)``    0 (mclust leaves ``zeta`` out)
VII    ``(nu + 2) / d + f``        ``zeta / d I``
EEI    ``(nu + 1 + f) / G``        ``zeta / G I``
VEI    ``(nu + 2 + f) / d``        ``zeta I``
EVI    ``(nu + 1 + f) / G``        ``zeta I``
VVI    ``nu + 2 + f``              ``zeta I``
EEE    ``(nu + d + 1) / G + f``    ``Lambda / G``
EEV    ``(nu + d + 1 + f) / G``    ``Lambda``
VEV    0 (mclust leaves ``nu`` out) ``Lambda``
VVV    ``nu + d + 2`` (any kappa)  ``Lambda``
=====  ==========================  ==========================

The means are ``(n_k xbar_k + kappa m) / (n_k + kappa)``, but ``EEI``'s, which mclust leaves at the data means
(:data:`UNSHRUNK_MEANS`).  So MAP EM never lowers ``log-likelihood + log prior`` with the log prior of
:class:`LogPrior`, the objective these updates maximise (for ``VII VVI EEE VVV`` with ``kappa > 0``, the
normal-inverse-gamma/-Wishart density of :func:`pipeline.kernels.prior.log_prior`; for the others what mclust's
update maximises, not a conjugate density) -- except under ``EEI``, whose update no fixed objective has as its
maximiser: its MAP objective can fall by about 1e-7 of itself at a step (measured on R's data sets), the price of
mclust's fixed points.  scikit-learn-named types keep their own formulas (``full`` divides by
``nu + n_k + d + 1 + f``, ``VVV`` as mclust by ``nu + n_k + d + 2``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.kernels.arrays import Array
from pipeline.kernels.mclust import ESTIMATORS

MODELS = ("EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "EEV", "VEV", "VVV")
# The axis-aligned models take one number as the prior's scale (defaultPrior's (1/G)^(2/d) sum_j var(X_j) / d), the
# four others a d x d matrix ((1/G)^(2/d) var(X), its diagonal when n <= d).
NUMBER_SCALE = tuple(model for model in MODELS if model[2] == "I")
# mclust's meeeip counts the prior mean's pull in EEI's covariance but never shrinks its means towards it.
UNSHRUNK_MEANS = ("EEI",)


def pseudo_statistics(
    model: str, n_components: int, n_features: int, flat: float, scale: Array, dof: float
) -> tuple[Array, Array]:
    """The prior's pseudo-counts and pseudo-scatters under a model (the module's table).

    Parameters
    ----------
    model : str
        One of :data:`MODELS`.
    n_components, n_features : int
    flat : float
        1 when the prior on the means is proper (``shrinkage > 0``), else 0.
    scale : ndarray of shape () for :data:`NUMBER_SCALE`, else (n_features, n_features)
    dof : float

    Returns
    -------
    counts : ndarray of shape (n_components,)
        ``a_k``, added to each component's weight.
    scatters : ndarray of shape (n_components, n_features, n_features)
        ``S_k``, added to each component's scatter.
    """
    k, d, nu, f = n_components, n_features, dof, flat
    eye = np.eye(d)
    zeta = float(scale) if model in NUMBER_SCALE else 0.0
    count, matrix = {
        "EII": (1 + (nu + 2) / (k * d), 0.0 * eye),
        "VII": ((nu + 2) / d + f, zeta / d * eye),
        "EEI": ((nu + 1 + f) / k, zeta / k * eye),
        "VEI": ((nu + 2 + f) / d, zeta * eye),
        "EVI": ((nu + 1 + f) / k, zeta * eye),
        "VVI": (nu + 2 + f, zeta * eye),
        "EEE": ((nu + d + 1) / k + f, scale / k),
        "EEV": ((nu + d + 1 + f) / k, scale),
        "VEV": (0.0, scale),
        "VVV": (nu + d + 2, scale),
    }[model]
    return np.full(k, count), np.broadcast_to(matrix, (k, d, d))


@dataclass(frozen=True)
class MapEstimate:
    """mclust's MAP covariances of one model (its ``me*p``): the model's estimate from the augmented statistics."""

    model: str

    def __call__(self, nk: Array, scatter: Array, pull: Array, flat: float, scale: Array, dof: float) -> Array:
        """The arguments of :class:`~pipeline.kernels.covtypes.MapCovariances` (scatter and pull (K, D, D));
        returns (K, D, D)."""
        counts, scatters = pseudo_statistics(self.model, nk.shape[0], scatter.shape[-1], flat, scale, dof)
        return ESTIMATORS[self.model](nk + counts, scatters + scatter + pull)


MAP_ESTIMATORS = {model: MapEstimate(model) for model in MODELS}


@dataclass(frozen=True)
class LogPrior:
    """The log prior whose sum with the log-likelihood mclust's MAP EM raises under one model, up to a constant::

    -1/2 sum_k [a_k log det Sigma_k + tr(Sigma_k^-1 S_k) + kappa (mu_k - m)^T Sigma_k^-1 (mu_k - m)]
    """

    model: str

    def __call__(
        self, means: Array, precisions: Array, log_dets: Array, mean: Array, shrinkage: float, scale: Array, dof: float
    ) -> float:
        """``means`` (K, D), ``precisions`` (K, D, D), ``log_dets`` (K,) the covariances' log-determinants; the
        prior's ``mean``, ``shrinkage``, ``scale`` (as in :func:`pseudo_statistics`) and ``dof``."""
        k, d = means.shape
        counts, scatters = pseudo_statistics(self.model, k, d, 1.0 if shrinkage > 0 else 0.0, scale, dof)
        trace = np.einsum("kij,kji->k", precisions, scatters)
        centred = means - mean
        mahalanobis = np.einsum("ki,kij,kj->k", centred, precisions, centred)
        return float(-0.5 * (counts * log_dets + trace + shrinkage * mahalanobis).sum())


LOG_PRIORS = {model: LogPrior(model) for model in MODELS}
