"""The E-step over chunks of rows: log densities and responsibilities in log space.

Work happens on a chunk of rows in the layout of columns, ``xt`` of shape
(n_features, n), so that reductions run along the long axis.  For every
component the E-step forms the whitened differences ``y_k = U_k^T (x - mu_k)``
(shape (n_components, n_features, n)), whose squared norms are the
Mahalanobis distances; the M-step moments reuse them (see ``stats``).

All temporaries live in a :class:`Workspace` allocated once per block and
reused for every chunk: a fresh large allocation costs page faults, and Dask
workers return freed memory to the system eagerly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from pipeline.kernels.params import Params

_LOG_2PI = math.log(2.0 * math.pi)
# Temporaries of a chunk stay around this many float64 values (2 MiB): cache-sized.
_CHUNK_VALUES = 1 << 18
_MIN_CHUNK_ROWS = 512


@dataclass(frozen=True)
class Prepared:
    """Per-parameter constants of the E-step, computed once per block."""

    params: Params
    offset: np.ndarray  # (K, 1): log weight + log det U - D/2 log 2 pi
    whiten: np.ndarray  # full: (K*D, D+1) stacked [U_k^T | -U_k^T mu_k]; tied: (D, D) U^T; diag/spherical: U
    centres: np.ndarray | None  # tied: (K, D, 1) U^T mu_k; diag/spherical: (K, D, 1) means; full: None


def _log_det(prec_chol: np.ndarray, covariance_type: str, d: int) -> np.ndarray:
    if covariance_type == "full":
        return np.log(np.diagonal(prec_chol, axis1=1, axis2=2)).sum(axis=1)
    if covariance_type == "tied":
        return np.log(np.diagonal(prec_chol)).sum()
    if covariance_type == "diag":
        return np.log(prec_chol).sum(axis=1)
    return d * np.log(prec_chol)


def prepare(params: Params) -> Prepared:
    """Constants of the E-step for ``params``."""
    ct, u = params.covariance_type, params.precisions_cholesky
    k, d = params.n_components, params.n_features
    with np.errstate(divide="ignore"):  # a weight of 0 gives log 0 = -inf
        offset = np.log(params.weights) + _log_det(u, ct, d) - 0.5 * d * _LOG_2PI
    if ct == "full":
        # The ones row of the chunk turns the subtraction of U_k^T mu_k into part of the product.
        stacked = np.transpose(u, (0, 2, 1)).reshape(k * d, d)
        shifts = np.einsum("kd,kde->ke", params.means, u).reshape(k * d, 1)
        whiten = np.ascontiguousarray(np.hstack([stacked, -shifts]))
        centres = None
    elif ct == "tied":
        whiten = np.ascontiguousarray(u.T)
        centres = (params.means @ u)[:, :, None]
    else:
        whiten = u
        centres = params.means[:, :, None]
    return Prepared(params, offset[:, None], whiten, centres)


class Workspace:
    """Buffers for chunks of up to ``rows`` rows, reused chunk after chunk.

    ``views(n)`` gives contiguous arrays for a chunk of ``n`` rows:
    ``xt1`` (D + 1, n) (the chunk's columns and a row of ones), ``y`` (K, D, n),
    ``weighted`` (K, n), ``resp`` (K, n), ``top`` (n,), ``norm`` (n,), ``tmp`` (D, n).
    """

    def __init__(self, n_components: int, n_features: int, rows: int):
        k, d = n_components, n_features
        self.k, self.d = k, d
        self._flat = {
            "xt1": np.empty((d + 1) * rows), "y": np.empty(k * d * rows), "weighted": np.empty(k * rows),
            "resp": np.empty(k * rows), "top": np.empty(rows), "norm": np.empty(rows), "tmp": np.empty(d * rows),
        }

    def views(self, n: int) -> dict[str, np.ndarray]:
        k, d = self.k, self.d
        shapes = {"xt1": (d + 1, n), "y": (k, d, n), "weighted": (k, n), "resp": (k, n), "top": (n,), "norm": (n,),
                  "tmp": (d, n)}
        return {name: self._flat[name][: math.prod(shape)].reshape(shape) for name, shape in shapes.items()}


def chunks(X: np.ndarray, n_components: int):
    """Split rows of X into cache-sized chunks.

    Yields
    ------
    rows : slice
    xt1 : ndarray of shape (n_features + 1, n)
        The chunk's columns (copied into the workspace, where they stay in cache) and a row of ones.
    buffers : dict of ndarray
        The workspace's views for this chunk (see :class:`Workspace`).
    """
    n_rows, d = X.shape
    step = max(_MIN_CHUNK_ROWS, _CHUNK_VALUES // max(n_components * d, 1))
    workspace = Workspace(n_components, d, max(1, min(step, n_rows)))
    columns = X.T
    for start in range(0, n_rows, step):
        rows = slice(start, min(start + step, n_rows))
        buffers = workspace.views(rows.stop - start)
        xt1 = buffers["xt1"]
        np.copyto(xt1[:d], columns[:, rows])
        xt1[d] = 1.0
        yield rows, xt1, buffers


def _whiten_full(xt1, prep, y, tmp):
    np.matmul(prep.whiten, xt1, out=y.reshape(-1, xt1.shape[1]))


def _whiten_tied(xt1, prep, y, tmp):
    np.matmul(prep.whiten, xt1[:-1], out=tmp)
    np.subtract(tmp[None, :, :], prep.centres, out=y)


def _whiten_diag(xt1, prep, y, tmp):
    np.subtract(xt1[None, :-1, :], prep.centres, out=y)
    y *= prep.whiten[:, :, None]


def _whiten_spherical(xt1, prep, y, tmp):
    np.subtract(xt1[None, :-1, :], prep.centres, out=y)
    y *= prep.whiten[:, None, None]


_WHITEN = {"full": _whiten_full, "tied": _whiten_tied, "diag": _whiten_diag, "spherical": _whiten_spherical}


def chunk_log_prob(xt1: np.ndarray, prep: Prepared, buffers: dict) -> tuple[np.ndarray, np.ndarray]:
    """Whitened differences (K, D, n) and weighted log densities (K, n) of a chunk, in ``buffers``."""
    y, weighted = buffers["y"], buffers["weighted"]
    _WHITEN[prep.params.covariance_type](xt1, prep, y, buffers["tmp"])
    np.einsum("kdn,kdn->kn", y, y, out=weighted)
    weighted *= -0.5
    weighted += prep.offset
    return y, weighted


def normalise(weighted: np.ndarray, buffers: dict) -> tuple[np.ndarray, np.ndarray]:
    """Log-sum-exp over components: ``log p(x)`` (n,) and responsibilities (K, n), with one exp."""
    top, norm, resp = buffers["top"], buffers["norm"], buffers["resp"]
    np.max(weighted, axis=0, out=top)
    np.subtract(weighted, top, out=resp)
    np.exp(resp, out=resp)
    np.sum(resp, axis=0, out=norm)
    resp /= norm
    np.log(norm, out=norm)
    norm += top
    return norm, resp


def log_gaussian_prob(X: np.ndarray, params: Params) -> np.ndarray:
    """Log density of every row under every component.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    params : Params

    Returns
    -------
    log_prob : ndarray of shape (n_samples, n_components)
    """
    prep = prepare(replace(params, weights=np.ones(params.n_components)))
    out = np.empty((X.shape[0], params.n_components))
    for rows, xt1, buffers in chunks(X, params.n_components):
        out[rows] = chunk_log_prob(xt1, prep, buffers)[1].T
    return out


def estimate_log_resp(X: np.ndarray, params: Params) -> tuple[np.ndarray, np.ndarray]:
    """Log-likelihood of every row and its log responsibilities (log-sum-exp).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    params : Params

    Returns
    -------
    log_prob_norm : ndarray of shape (n_samples,)
        ``log p(x_i)``.
    log_resp : ndarray of shape (n_samples, n_components)
        ``log p(z_i = k | x_i)``.
    """
    prep = prepare(params)
    log_prob_norm = np.empty(X.shape[0])
    log_resp = np.empty((X.shape[0], params.n_components))
    for rows, xt1, buffers in chunks(X, params.n_components):
        weighted = chunk_log_prob(xt1, prep, buffers)[1]
        norm = normalise(weighted, buffers)[0]
        log_prob_norm[rows] = norm
        log_resp[rows] = (weighted - norm).T
    return log_prob_norm, log_resp
