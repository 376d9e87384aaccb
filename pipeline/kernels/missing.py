"""Rows with missing values (NaN): exact EM on their observed coordinates, grouped by missingness pattern.

Values are assumed missing at random.  Under component ``k`` a row's observed
part ``x_o`` has the marginal Gaussian ``N(mu_o, S_oo)``, which gives its log
density (the E-step); the missing part given the observed one is Gaussian
with mean ``mu_m + S_mo S_oo^{-1} (x_o - mu_o)`` and covariance
``S_mm - S_mo S_oo^{-1} S_om``, which give the expected first and second
moments of the row (the M-step's statistics: the conditional covariance is
added to the second moments, so this is exact EM, not imputation by the mean)
(Ghahramani & Jordan 1994; Little & Rubin, ch. 8 and 11).

The rows of a block that share a pattern of missing coordinates share every
factorisation, so the cost grows with the number of patterns in a block, not
with the number of rows; complete rows never come here (see ``stats``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import logsumexp

from pipeline.kernels.arrays import Array, IntArray
from pipeline.kernels.covtypes import layout_of
from pipeline.kernels.params import Params

_LOG_2PI = math.log(2.0 * math.pi)
# Rows x components x features of one piece of work: keeps the temporaries of a pattern within a few MiB.
_PIECE_VALUES = 1 << 19
# Responsibilities of rows with holes: ``rule(log_prob (K, n), rows) -> (log p(x_o) (n,) or None, resp (K, n))``,
# ``rows`` the rows' global indices (for responsibilities keyed by them).
HoleRule = Callable[[Array, IntArray], tuple[Array | None, Array]]


@dataclass(frozen=True)
class MarginalModel:
    """What rows with holes need of the parameters: every component's mean and covariance, and log weight.

    Attributes
    ----------
    means : ndarray of shape (n_components, n_features)
    covariances : ndarray
        (n_components, n_features, n_features) when ``dense``, else the variances (n_components, n_features).
    log_weights : ndarray of shape (n_components,)
    dense : bool
    """

    means: Array
    covariances: Array
    log_weights: Array
    dense: bool


def marginal_model(params: Params, log_weights: Array) -> MarginalModel:
    """The MarginalModel of ``params``; unit parameters (the starts') give nearest-centre distances."""
    layout, k, d = layout_of(params.covariance_type), params.n_components, params.n_features
    if layout.dense:
        covariances = layout.dense_form(params.covariances, k, d)
    else:
        covariances = np.array(layout.per_component(params.covariances, k, d))
    return MarginalModel(params.means, covariances, np.asarray(log_weights, dtype=float), layout.dense)


def patterns(missing: npt.NDArray[np.bool_]) -> Iterator[tuple[npt.NDArray[np.bool_], IntArray]]:
    """Groups of rows by their pattern of missing values.

    Parameters
    ----------
    missing : ndarray of shape (n_rows, n_features), bool

    Yields
    ------
    observed : ndarray of shape (n_features,), bool
    rows : ndarray of int
        The rows with that pattern (at least one value observed).
    """
    if missing.shape[0] == 0:
        return
    if missing.shape[1] <= 63:  # each row's pattern as the bits of one integer: a fast one-dimensional unique
        codes = missing.astype(np.int64) @ (np.int64(1) << np.arange(missing.shape[1], dtype=np.int64))
        _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
        unique = missing[first]
    else:
        unique, inverse = np.unique(missing, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(unique.shape[0] + 1))
    for p, pattern in enumerate(unique):
        if not pattern.all():
            yield ~pattern, order[bounds[p] : bounds[p + 1]]


@dataclass
class _Conditional:
    """One pattern under every component: log densities of its rows, and the completed rows' moments."""

    log_prob: Array  # (K, n): log w_k + log N(x_o | mu_ko, S_koo)
    completed: Array  # (K, n, D): observed values, and each component's conditional means in the holes
    covariance: Array  # (K, d_m, d_m) conditional covariances, or (K, d_m) variances when not dense


def _conditional(Xp: Array, observed: npt.NDArray[np.bool_], model: MarginalModel) -> _Conditional:
    o, m = observed, ~observed
    mu = model.means
    diff = Xp[:, o][None, :, :] - mu[:, None, o]  # (K, n, d_o)
    if model.dense:
        S = model.covariances
        lower = np.linalg.cholesky(S[:, o][:, :, o])  # S_oo = L L^T
        # One solve gives all: z = L^{-1} (x_o - mu_o) and Z = L^{-1} S_om, so the Mahalanobis distance is |z|^2,
        # the conditional mean mu_m + Z^T z and the conditional covariance S_mm - Z^T Z.
        n = Xp.shape[0]
        solved = np.linalg.solve(lower, np.concatenate([np.swapaxes(diff, 1, 2), S[:, o][:, :, m]], axis=2))
        z, coefficients = solved[:, :, :n], solved[:, :, n:]
        mahalanobis = np.square(z).sum(axis=1)
        log_det = 2.0 * np.log(np.diagonal(lower, axis1=1, axis2=2)).sum(axis=1)
        conditional_mean = mu[:, None, m] + np.swapaxes(z, 1, 2) @ coefficients
        covariance = S[:, m][:, :, m] - np.swapaxes(coefficients, 1, 2) @ coefficients
    else:
        var = model.covariances
        mahalanobis = (np.square(diff) / var[:, None, o]).sum(axis=2)
        log_det = np.log(var[:, o]).sum(axis=1)
        conditional_mean = np.broadcast_to(mu[:, None, m], (mu.shape[0], Xp.shape[0], int(m.sum())))
        covariance = var[:, m]
    log_prob = model.log_weights[:, None] - 0.5 * (o.sum() * _LOG_2PI + log_det[:, None] + mahalanobis)
    completed = np.empty((mu.shape[0], Xp.shape[0], Xp.shape[1]))
    completed[:, :, o] = Xp[:, o][None]
    completed[:, :, m] = conditional_mean
    return _Conditional(log_prob, completed, covariance)


def _pieces(rows: IntArray, n_components: int, n_features: int) -> Iterator[IntArray]:
    step = max(1, _PIECE_VALUES // max(1, n_components * n_features))
    for start in range(0, rows.size, step):
        yield rows[start : start + step]


def pattern_sums(
    X: Array,
    sample_weight: Array | None,
    model: MarginalModel,
    shift: Array,
    rule: HoleRule,
    global_rows: IntArray | None = None,
    conditional_covariance: bool = True,
) -> tuple[float, Array, Array, Array]:
    """Sums of the rows of ``X`` with holes (every row has at least one hole and one value).

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features), NaN where missing
    sample_weight : ndarray of shape (n_rows,) or None
    model : MarginalModel
    shift : ndarray of shape (n_components, n_features)
        The points the moments of each component are taken about.
    rule : HoleRule
        How the rows' responsibilities are made.
    global_rows : ndarray of shape (n_rows,), optional
        The global index of each row of ``X``.
    conditional_covariance : bool
        Add the conditional covariance to the second moments (False for the starts, whose unit
        covariances are not estimates).

    Returns
    -------
    log_likelihood, nk (K,), s1 (K, D), s2 per component (K, D, D) when dense else (K, D)
    """
    k, d = model.means.shape
    log_likelihood = 0.0
    nk, s1 = np.zeros(k), np.zeros((k, d))
    s2 = np.zeros((k, d, d) if model.dense else (k, d))
    for observed, rows in patterns(np.isnan(X)):
        m = ~observed
        for piece in _pieces(rows, k, d):
            cond = _conditional(X[piece], observed, model)
            log_norm, resp = rule(cond.log_prob, piece if global_rows is None else global_rows[piece])
            w = None if sample_weight is None else sample_weight[piece]
            if log_norm is not None:
                log_likelihood += float(log_norm.sum() if w is None else log_norm @ w)
            a = resp if w is None else resp * w
            nk_piece = a.sum(axis=1)
            y = cond.completed
            y -= shift[:, None, :]
            weighted = y * a[:, :, None]
            nk += nk_piece
            s1 += weighted.sum(axis=1)
            if model.dense:
                s2 += np.matmul(np.swapaxes(weighted, 1, 2), y)  # one product per component
                if conditional_covariance:
                    s2[:, m[:, None] & m[None, :]] += (nk_piece[:, None, None] * cond.covariance).reshape(k, -1)
            else:
                s2 += (weighted * y).sum(axis=1)
                if conditional_covariance:
                    s2[:, m] += nk_piece[:, None] * cond.covariance
    return log_likelihood, nk, s1, s2


def soft(log_prob: Array, rows: IntArray) -> tuple[Array, Array]:
    """Posterior responsibilities from the marginal log densities, and ``log p(x_o)``."""
    top = log_prob.max(axis=0)
    resp = np.exp(log_prob - top)
    total = resp.sum(axis=0)
    resp /= total
    return top + np.log(total), resp


def hard(log_prob: Array, rows: IntArray) -> tuple[None, Array]:
    """Each row wholly to its most likely component (with unit parameters: the nearest centre on its values)."""
    resp = np.zeros_like(log_prob)
    resp[log_prob.argmax(axis=0), np.arange(log_prob.shape[1])] = 1.0
    return None, resp


def log_resp(X: Array, model: MarginalModel) -> tuple[Array, Array]:
    """``log p(x_o)`` and log responsibilities of rows with holes; a row with no value has ``log p = 0`` and the
    weights as its responsibilities (the marginal over nothing).

    Returns
    -------
    log_prob_norm : ndarray of shape (n_rows,)
    log_resp : ndarray of shape (n_rows, n_components)
    """
    k = model.means.shape[0]
    log_prob_norm = np.zeros(X.shape[0])
    out = np.tile(model.log_weights - logsumexp(model.log_weights), (X.shape[0], 1))
    for observed, rows in patterns(np.isnan(X)):
        for piece in _pieces(rows, k, X.shape[1]):
            cond = _conditional(X[piece], observed, model)
            norm = logsumexp(cond.log_prob, axis=0)
            log_prob_norm[piece] = norm
            out[piece] = (cond.log_prob - norm).T
    return log_prob_norm, out


def impute(X: Array, model: MarginalModel) -> Array:
    """X with each missing value replaced by its conditional mean under the mixture,
    ``sum_k p(k | x_o) E_k[x_m | x_o]`` (the mixture's mean for a row with no value)."""
    out = np.array(X, dtype=float)
    k = model.means.shape[0]
    weights = np.exp(model.log_weights - logsumexp(model.log_weights))
    empty = np.isnan(X).all(axis=1)
    out[empty] = weights @ model.means
    for observed, rows in patterns(np.isnan(X)):
        for piece in _pieces(rows, k, X.shape[1]):
            cond = _conditional(X[piece], observed, model)
            resp = np.exp(cond.log_prob - logsumexp(cond.log_prob, axis=0))
            out[np.ix_(piece, ~observed)] = np.einsum("kn,knd->nd", resp, cond.completed[:, :, ~observed])
    return out
