"""mclust's fourteen covariance models: maximum-likelihood covariances from the components' scatter (pure NumPy).

A model writes each covariance as ``Sigma_k = lambda_k D_k A_k D_k^T``: volume ``lambda_k = det(Sigma_k)^(1/d)``,
shape ``A_k`` (diagonal, determinant 1), orientation ``D_k`` (orthogonal), each Equal across components, Variable,
or the Identity (``I``: axis-aligned, or round for the shape).  Its name gives the three letters in that order:
``VEI`` has variable volumes, an equal shape, axis-aligned orientation (Celeux & Govaert 1995, Pattern
Recognition 28(5), 781-793; Fraley & Raftery 2002, JASA 97; mclust's ``mstep*`` functions).

Each function takes ``nk`` (K,) the components' weights and ``scatter`` (K, D, D) their weighted scatter matrices
``W_k = sum_i s_i r_ik (x_i - xbar_k)(x_i - xbar_k)^T``, and returns the covariances (K, D, D) that maximise the
likelihood under the model's constraints: in closed form where one exists, otherwise by mclust's alternations
(``VEI``, ``VEE``, ``VEV``), each round lowering ``sum_k n_k log det Sigma_k + tr(Sigma_k^-1 W_k)``, until no
entry changes by more than :data:`INNER_TOL` of the largest or :data:`INNER_MAX_ITER` rounds (model.yaml records
both: :func:`inner_solver`).  Every inner
iteration starts from the same closed form, so the result depends on the statistics alone (bit-identical on any
cluster).

``EVE`` and ``VVE`` (a common orientation with variable shapes) are solved over the orientation alone by
:mod:`~pipeline.kernels.common_orientation` (Jacobi sweeps and trust-region Newton steps from several starts, the
last M-step's covariances among them), not by the MM algorithm of Browne & McNicholas (2014, ADAC 8) that mclust
runs, which takes thousands of rounds and, for ``VVE``, leaves out ``1 / lambda_k`` (its fixed point is not the
maximum-likelihood one unless the volumes are equal).  Every estimator takes ``previous``, the covariances the
E-step was computed with (None at a start): only these two use it, as a start, so that their estimate is never
worse than the previous M-step's and EM's likelihood never falls for a lost minimum.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from pipeline.kernels import common_orientation
from pipeline.kernels.arrays import Array

INNER_TOL = 1e-12
INNER_MAX_ITER = 1000
_ALTERNATION = {"tol": INNER_TOL, "max_iter": INNER_MAX_ITER}
_ORIENTATION = {
    "method": "Jacobi sweeps and trust-region Newton steps on the common orientation, from several starts",
    "tol": common_orientation.ANGLE_TOL,  # radians: the largest rotation of a last Newton step
    "max_iter": common_orientation.MAX_ROUNDS,
}
# The models whose M-step iterates (no closed form): what model.yaml records of its inner solver.
ITERATIVE: dict[str, dict[str, object]] = {
    "VEI": {"method": "alternation of volumes and shape", **_ALTERNATION},
    "VEE": {"method": "alternation of volumes and shape-orientation", **_ALTERNATION},
    "EVE": _ORIENTATION,
    "VVE": _ORIENTATION,
    "VEV": {"method": "alternation of volumes and shape", **_ALTERNATION},
}


def _geometric_mean(values: Array) -> Array:
    """``prod(values) ** (1/d)`` over the last axis, through logs (no overflow for large d)."""
    root: Array = np.exp(np.log(values).mean(axis=-1))
    return root


def _diagonals(scatter: Array) -> Array:
    return np.diagonal(scatter, axis1=1, axis2=2)


def _from_diagonals(diagonals: Array) -> Array:
    """(K, D) -> (K, D, D) diagonal matrices."""
    return diagonals[:, :, None] * np.eye(diagonals.shape[1])


def _rotate(orientation: Array, diagonals: Array) -> Array:
    """``D_k diag(a_k) D_k^T`` for each component: ``orientation`` (K, D, D), ``diagonals`` (K, D)."""
    rotated: Array = (orientation * diagonals[:, None, :]) @ np.swapaxes(orientation, 1, 2)
    return rotated


def _iterate(first: Array, step: Callable[[Array], Array]) -> Array:
    """``step`` applied from ``first`` until no covariance entry changes by more than INNER_TOL of the largest."""
    cov = first
    for _ in range(INNER_MAX_ITER):
        new = step(cov)
        if np.abs(new - cov).max() <= INNER_TOL * np.abs(new).max():
            return new
        cov = new
    return cov


# -------------------------------------------------------------------------------------------- spherical, diagonal
def eii(nk: Array, scatter: Array) -> Array:
    """``lambda I``: ``lambda = tr(W) / (n d)``."""
    k, d = nk.shape[0], scatter.shape[-1]
    variance = np.trace(scatter, axis1=1, axis2=2).sum() / (nk.sum() * d)
    return np.broadcast_to(variance * np.eye(d), (k, d, d)).copy()


def vii(nk: Array, scatter: Array) -> Array:
    """``lambda_k I``: ``lambda_k = tr(W_k) / (n_k d)``."""
    d = scatter.shape[-1]
    cov: Array = (np.trace(scatter, axis1=1, axis2=2) / (nk * d))[:, None, None] * np.eye(d)
    return cov


def eei(nk: Array, scatter: Array) -> Array:
    """``lambda A``: ``diag(W) / n``."""
    return np.broadcast_to(np.diag(_diagonals(scatter).sum(axis=0) / nk.sum()), scatter.shape).copy()


def vvi(nk: Array, scatter: Array) -> Array:
    """``lambda_k A_k``: ``diag(W_k) / n_k``."""
    return _from_diagonals(_diagonals(scatter) / nk[:, None])


def evi(nk: Array, scatter: Array) -> Array:
    """``lambda A_k``: ``A_k = diag(W_k) / det(diag W_k)^(1/d)``, ``lambda = sum_k det(diag W_k)^(1/d) / n``."""
    diagonals = _diagonals(scatter)
    volumes = _geometric_mean(diagonals)
    return _from_diagonals(volumes.sum() / nk.sum() * diagonals / volumes[:, None])


def vei(nk: Array, scatter: Array) -> Array:
    """``lambda_k A``: alternately ``A = diag(sum_k W_k / lambda_k)`` normalised and ``lambda_k = tr(W_k A^-1) /
    (d n_k)``, from ``lambda_k = tr(W_k) / (d n_k)`` (mclust's ``mstepVEI``)."""
    diagonals, d = _diagonals(scatter), scatter.shape[-1]

    def step(cov: Array) -> Array:
        volumes = _geometric_mean(_diagonals(cov))
        shape = (diagonals / volumes[:, None]).sum(axis=0)
        shape = shape / _geometric_mean(shape)
        return _from_diagonals(((diagonals / shape).sum(axis=1) / (d * nk))[:, None] * shape)

    return _iterate(vii(nk, scatter), step)


# ---------------------------------------------------------------------------------------- ellipsoidal, one axis set
def eee(nk: Array, scatter: Array) -> Array:
    """``lambda D A D^T``: ``W / n``."""
    return np.broadcast_to(scatter.sum(axis=0) / nk.sum(), scatter.shape).copy()


def vee(nk: Array, scatter: Array) -> Array:
    """``lambda_k C`` (``det C = 1``): alternately ``C = sum_k W_k / lambda_k`` normalised and ``lambda_k =
    tr(W_k C^-1) / (d n_k)``, from ``lambda_k = tr(W_k) / (d n_k)`` (mclust's ``mstepVEE``)."""
    d = scatter.shape[-1]

    def step(cov: Array) -> Array:
        volumes = np.exp(np.linalg.slogdet(cov)[1] / d)
        common = (scatter / volumes[:, None, None]).sum(axis=0)
        common = common / np.exp(np.linalg.slogdet(common)[1] / d)
        inverse = np.linalg.inv(common)
        volumes = np.einsum("kij,ji->k", scatter, inverse) / (d * nk)
        new: Array = volumes[:, None, None] * common
        return new

    return _iterate(vii(nk, scatter), step)


# ------------------------------------------------------------------------------------- ellipsoidal, own axis sets
def _eigen(scatter: Array) -> tuple[Array, Array]:
    """Eigenvalues (K, D), largest first, and eigenvectors (K, D, D) of each ``W_k``."""
    values, vectors = np.linalg.eigh(scatter)
    return values[:, ::-1], vectors[:, :, ::-1]


def eev(nk: Array, scatter: Array) -> Array:
    """``lambda D_k A D_k^T``: ``D_k`` the eigenvectors of ``W_k``, ``A lambda = sum_k Omega_k / n`` (their
    eigenvalues, largest first)."""
    values, vectors = _eigen(scatter)
    common = values.sum(axis=0) / nk.sum()
    return _rotate(vectors, np.broadcast_to(common, values.shape))


def vev(nk: Array, scatter: Array) -> Array:
    """``lambda_k D_k A D_k^T``: ``D_k`` the eigenvectors of ``W_k``; alternately ``A = sum_k Omega_k / lambda_k``
    normalised and ``lambda_k = tr(Omega_k A^-1) / (d n_k)`` (mclust's ``mstepVEV``)."""
    values, vectors = _eigen(scatter)
    d = scatter.shape[-1]

    def step(cov: Array) -> Array:
        volumes = np.exp(np.linalg.slogdet(cov)[1] / d)
        shape = (values / volumes[:, None]).sum(axis=0)
        shape = shape / _geometric_mean(shape)
        volumes = (values / shape).sum(axis=1) / (d * nk)
        return _rotate(vectors, volumes[:, None] * shape)

    return _iterate(vii(nk, scatter), step)


def evv(nk: Array, scatter: Array) -> Array:
    """``lambda C_k`` (``det C_k = 1``): ``C_k = W_k / det(W_k)^(1/d)``, ``lambda = sum_k det(W_k)^(1/d) / n``."""
    d = scatter.shape[-1]
    volumes = np.exp(np.linalg.slogdet(scatter)[1] / d)
    cov: Array = volumes.sum() / nk.sum() * scatter / volumes[:, None, None]
    return cov


def vvv(nk: Array, scatter: Array) -> Array:
    """General: ``W_k / n_k``."""
    return scatter / nk[:, None, None]


class Estimator(Protocol):
    """A model's covariances from ``nk`` (K,) and ``scatter`` (K, D, D), given the ``previous`` covariances (K, D, D)
    the E-step used (None at a start); returns (K, D, D)."""

    def __call__(self, nk: Array, scatter: Array, previous: Array | None = None) -> Array: ...


@dataclass(frozen=True)
class _FromScatter:
    """An estimator that needs no start: the previous covariances are not used."""

    estimate: Callable[[Array, Array], Array]

    def __call__(self, nk: Array, scatter: Array, previous: Array | None = None) -> Array:
        return self.estimate(nk, scatter)


ESTIMATORS: dict[str, Estimator] = {
    "EII": _FromScatter(eii),
    "VII": _FromScatter(vii),
    "EEI": _FromScatter(eei),
    "VEI": _FromScatter(vei),
    "EVI": _FromScatter(evi),
    "VVI": _FromScatter(vvi),
    "EEE": _FromScatter(eee),
    "VEE": _FromScatter(vee),
    "EVE": common_orientation.eve,
    "VVE": common_orientation.vve,
    "EEV": _FromScatter(eev),
    "VEV": _FromScatter(vev),
    "EVV": _FromScatter(evv),
    "VVV": _FromScatter(vvv),
}


def inner_solver(model: str) -> dict[str, object] | None:
    """What model.yaml records of the model's M-step when it iterates (its method, tolerance and cap), else None."""
    return ITERATIVE.get(model)


def covariance_parameters(model: str, n_components: int, n_features: int) -> float:
    """Free parameters of the model's covariances (mclust's ``nVarParams``)."""
    k, d = n_components, n_features
    rotation = d * (d - 1) / 2  # an orientation
    volume = {"E": 1, "V": k}[model[0]]
    if model[1] == "I":  # round: no shape, no orientation
        return volume
    shape = {"E": d - 1, "V": k * (d - 1)}[model[1]]
    orientation = {"I": 0, "E": rotation, "V": k * rotation}[model[2]]
    return volume + shape + orientation
