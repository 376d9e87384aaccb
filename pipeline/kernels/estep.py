"""The E-step over chunks of rows: log densities and responsibilities in log space.

Two routes to the same numbers; :func:`prepare` picks one per set of parameters.

expanded (fast)
    Every row ``x`` gives quadratic features ``z = [1, x', q(x')]`` about a
    shift ``c`` shared by all components (the mixture's mean), ``x' = x - c``,
    where ``q`` holds the products the covariance type needs: ``x'_i x'_j``
    for ``i <= j`` (full, tied), ``x'_i^2`` (diag) or ``|x'|^2`` (spherical).
    Every component's log density is linear in ``z``, so one matrix product
    gives all of them for a chunk, and the M-step moments of all components
    are one more product (see ``stats``).
centred (careful)
    For every component the whitened differences ``y_k = U_k^T (x - mu_k)``;
    their squared norms are the Mahalanobis distances, and the M-step moments
    are taken about each component's own mean.  Used when a component lies so
    far from ``c``, in its own units, that the expanded form would lose more
    than about 6 of float64's 16 digits to cancellation (:data:`MAX_SHIFT_DISTANCE2`).

float32
    On request, the expanded route runs in float32 (features, both products,
    the log-sum-exp), each chunk's moments then added into float64 sums, when
    every component is near enough ``c`` for float32's 7 digits
    (:data:`MAX_SHIFT_DISTANCE2_FLOAT32`); otherwise in float64.

Work happens on chunks of rows in the layout of columns (features by rows), so
that reductions run along the long axis.  All temporaries live in a
:class:`Workspace` kept per thread and reused chunk after chunk and block after
block: a fresh large allocation costs page faults, and Dask workers return freed
memory to the system eagerly.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from pipeline.kernels.arrays import Array, Floats
from pipeline.kernels.covtypes import layout_of
from pipeline.kernels.missing import MarginalModel, marginal_model
from pipeline.kernels.missing import log_resp as missing_log_resp
from pipeline.kernels.params import Params

_LOG_2PI = math.log(2.0 * math.pi)
# Temporaries of a chunk take about this many bytes: within the last-level cache, and long enough rows for the
# products (measured best from 4 to 16 MiB on the benchmark shapes).  Narrow data reach the row cap first: 8192
# rows (about 1.7 MiB for 8 features, diag) made shape C's kernel 35% faster than 16384 on an EPYC (2026-12-03).
_CHUNK_BYTES = 8 << 20
_MIN_CHUNK_ROWS, _MAX_CHUNK_ROWS = 256, 8192
# Largest squared Mahalanobis distance of a component's mean from the shared shift for the expanded route:
# its cancellation then costs at most ~6 of 16 digits.
MAX_SHIFT_DISTANCE2 = 1e6
# The same for float32 arithmetic: measured, a component at squared distance r from the shift gets a covariance
# off by up to ~2e-7 r in its own units (float32's rounding, summed over a chunk, times the cancellation), so this
# limit keeps that under 1e-3, with a mean under 1e-5 of a standard deviation off.
MAX_SHIFT_DISTANCE2_FLOAT32 = 4e3
# Responsibilities are kept above exp(tiny) relative to the largest: values this small change no sum, while
# subnormal numbers (below ~2e-308 in float64, ~1e-38 in float32) would slow every product that touches them
# many times over.  The margin keeps them normal after division by the sum over up to ~1e5 components.
_LOG_TINY: dict[np.dtype[np.floating], float] = {np.dtype(np.float64): -690.0, np.dtype(np.float32): -75.0}


@dataclass(frozen=True)
class Prepared:
    """Per-parameter constants of the E-step: computed once per iteration, on the client.

    Only what the blocks need goes in, since it is sent to every fold task.

    Attributes
    ----------
    covariance_type : str
        Its layout (:mod:`~pipeline.kernels.covtypes`) decides the shapes below and the whitening.
    n_components, n_features : int
    expanded : bool
        Which route (see the module docstring).
    shift : ndarray of shape (n_components, n_features)
        The points the moments of each component are taken about: ``c`` for
        every component (expanded) or each component's mean (centred).
    offset : ndarray of shape (n_components, 1)
        Log weight + log det U - D/2 log 2 pi, and for the expanded route also
        the mean's term ``-|U^T (mu - c)|^2 / 2``.
    matrix : ndarray
        Expanded: (n_components, n_features + n_quadratic) coefficients of ``[x', q(x')]``.
        Centred: full (K*D, D+1) stacked ``[U_k^T | -U_k^T mu_k]``; tied (D, D) ``U^T``;
        diag (K, D) and spherical (K,) ``U``.
    centres : ndarray or None
        Centred tied: (K, D, 1) ``U^T mu_k``; centred diag and spherical: (K, D, 1) means.
    precisions_cholesky : ndarray or None
        Centred route: ``U``, to map the whitened moments back (see ``stats``).
    dtype : numpy dtype
        Of the chunk arithmetic (features, log densities, responsibilities and a
        chunk's moments); float32 only on the expanded route.  Sums over chunks
        are float64 whatever it is.
    with_entropy : bool
        Whether the statistics also sum ``r log r`` (the variational bound needs it).
    """

    covariance_type: str
    n_components: int
    n_features: int
    expanded: bool
    shift: Array
    offset: Floats
    matrix: Floats
    centres: Array | None = None
    precisions_cholesky: Array | None = None
    dtype: np.dtype[np.floating] = np.dtype(np.float64)
    with_entropy: bool = False
    missing: MarginalModel | None = None


def log_det_cholesky(prec_chol: Array, covariance_type: str, d: int) -> Array:
    """``log |U_k|`` of each component's precision factor (= ``-1/2 log |Sigma_k|``); one value for tied."""
    match layout_of(covariance_type).name:
        case "full":
            per_component: Array = np.log(np.diagonal(prec_chol, axis1=1, axis2=2)).sum(axis=1)
            return per_component
        case "tied":
            return np.asarray(np.log(np.diagonal(prec_chol)).sum())
        case "diag":
            per_feature: Array = np.log(prec_chol).sum(axis=1)
            return per_feature
    return d * np.log(prec_chol)


def _whitened(vectors: Array, prec_chol: Array, covariance_type: str) -> Array:
    """``U_k^T v_k`` for every row ``v_k`` of ``vectors`` (n_components, n_features)."""
    match layout_of(covariance_type).name:
        case "full":
            whitened: Array = np.einsum("kd,kde->ke", vectors, prec_chol)
            return whitened
        case "tied":
            return vectors @ prec_chol
        case "diag":
            return vectors * prec_chol
    return vectors * prec_chol[:, None]


def n_quadratic(covariance_type: str, n_features: int) -> int:
    """Number of quadratic features ``q(x')`` of the expanded route."""
    return layout_of(covariance_type).n_quadratic(n_features)


def _quadratic_coefficients(prec_chol: Array, covariance_type: str, k: int) -> Array:
    """(K, n_quadratic): the log density's coefficients of ``q(x')``, ``-P_ij / 2`` (off-diagonal twice)."""
    layout = layout_of(covariance_type)
    if layout.dense:
        d = prec_chol.shape[-1]
        rows, cols = np.triu_indices(d)
        precision = prec_chol @ np.swapaxes(prec_chol, -1, -2)
        coef = -0.5 * np.where(rows == cols, 1.0, 2.0) * precision[..., rows, cols]
        return np.broadcast_to(coef, (k, rows.size))
    precision = prec_chol**2
    return -0.5 * (precision[:, None] if layout.isotropic else precision)


def _linear_coefficients(whitened: Array, prec_chol: Array, covariance_type: str) -> Array:
    """(K, D): ``P_k (mu_k - c) = U_k (U_k^T (mu_k - c))``."""
    match layout_of(covariance_type).name:
        case "full":
            coefficients: Array = np.einsum("kde,ke->kd", prec_chol, whitened)
            return coefficients
        case "tied":
            return whitened @ prec_chol.T
        case "diag":
            return whitened * prec_chol
    return whitened * prec_chol[:, None]


def prepare(
    params: Params,
    allow_expanded: bool = True,
    dtype: npt.DTypeLike = "float64",
    log_weights: Array | None = None,
    with_entropy: bool = False,
    with_missing: bool = False,
) -> Prepared:
    """Constants of the E-step for ``params``, on the expanded route when it is accurate enough.

    Parameters
    ----------
    params : Params
    allow_expanded : bool, default True
        False forces the centred route (the starts use it: their moments are about the given centres).
    dtype : {"float64", "float32"}, default "float64"
        Arithmetic of the chunks.  float32 is used when the expanded route is
        accurate enough in it (:data:`MAX_SHIFT_DISTANCE2_FLOAT32`), float64 otherwise.
    log_weights : ndarray of shape (n_components,), optional
        What is added to each component's log density: ``log(params.weights)``
        by default; the variational E-step passes its expected log weights and
        precision terms.
    with_entropy : bool, default False
        Also sum ``r log r`` in the statistics.
    with_missing : bool, default False
        Also carry what rows with missing values need (``nan_policy="marginalize"``, see ``missing``).

    Returns
    -------
    Prepared
    """
    log_weights = _log_weights(params, log_weights)
    prep = _prepare(params, allow_expanded, dtype, log_weights, with_entropy)
    return replace(prep, missing=marginal_model(params, log_weights)) if with_missing else prep


def _log_weights(params: Params, log_weights: Array | None) -> Array:
    if log_weights is not None:
        return log_weights
    with np.errstate(divide="ignore"):  # a weight of 0 gives log 0 = -inf
        return np.log(params.weights)


def _prepare(
    params: Params, allow_expanded: bool, dtype: npt.DTypeLike, log_weights: Array, with_entropy: bool
) -> Prepared:
    ct, u = params.covariance_type, params.precisions_cholesky
    k, d = params.n_components, params.n_features
    offset = log_weights + log_det_cholesky(u, ct, d) - 0.5 * d * _LOG_2PI
    centre = params.weights @ params.means / params.weights.sum()
    whitened = _whitened(params.means - centre, u, ct)
    distance2 = np.square(whitened).sum(axis=1)
    if allow_expanded and distance2.max() <= MAX_SHIFT_DISTANCE2:
        matrix = np.hstack([_linear_coefficients(whitened, u, ct), _quadratic_coefficients(u, ct, k)])
        shift = np.broadcast_to(centre, (k, d))
        offset = (offset - 0.5 * distance2)[:, None]
        if np.dtype(dtype) == np.float32 and distance2.max() <= MAX_SHIFT_DISTANCE2_FLOAT32:
            single = np.dtype(np.float32)
            return Prepared(
                ct,
                k,
                d,
                True,
                shift,
                offset.astype(single),
                matrix.astype(single),
                dtype=single,
                with_entropy=with_entropy,
            )
        return Prepared(ct, k, d, True, shift, offset, matrix, with_entropy=with_entropy)
    layout = layout_of(ct).name
    if layout == "full":
        # The ones row of the chunk turns the subtraction of U_k^T mu_k into part of the product.
        stacked = np.transpose(u, (0, 2, 1)).reshape(k * d, d)
        shifts = _whitened(params.means, u, ct).reshape(k * d, 1)
        matrix, centres = np.ascontiguousarray(np.hstack([stacked, -shifts])), None
    elif layout == "tied":
        matrix, centres = np.ascontiguousarray(u.T), _whitened(params.means, u, ct)[:, :, None]
    else:
        matrix, centres = u, params.means[:, :, None]
    return Prepared(ct, k, d, False, params.means, offset[:, None], matrix, centres, u, with_entropy=with_entropy)


_THREAD = threading.local()
# A chunk's named buffers (see Workspace.views): of the chunk arithmetic's dtype, float32 or float64.
Buffers = dict[str, Floats]


class Workspace:
    """Named buffers for chunks of up to ``rows`` rows, reused chunk after chunk and block after block.

    ``views(n)`` gives contiguous arrays of shape ``(*leading, n)`` for every
    name in ``leading``.  The memory is kept per thread (a few MiB) for the
    next block: Dask workers hand freed large arrays back to the system at
    once, so a fresh allocation per block would pay its page faults every time.
    """

    def __init__(self, leading: dict[str, tuple[int, ...]], rows: int, dtype: np.dtype[np.floating]):
        pool: dict[tuple[str, np.dtype[np.floating]], Floats]
        pool = _THREAD.__dict__.setdefault("buffers", {})
        self._leading = leading
        self._flat = {}
        for name, lead in leading.items():
            size = math.prod(lead) * rows
            if pool.get((name, dtype), np.empty(0)).size < size:
                pool[(name, dtype)] = np.empty(size, dtype)
            self._flat[name] = pool[(name, dtype)]

    def views(self, n: int) -> Buffers:
        return {name: self._flat[name][: math.prod(lead) * n].reshape(*lead, n) for name, lead in self._leading.items()}


def _buffers(prep: Prepared) -> dict[str, tuple[int, ...]]:
    k, d = prep.n_components, prep.n_features
    common = {"weighted": (k,), "resp": (k,), "top": (), "norm": ()}
    if prep.expanded:
        return {"z": (1 + d + n_quadratic(prep.covariance_type, d),), **common}
    return {"z": (d + 1,), "y": (k, d), "tmp": (d,), **common}


def _fill_expanded(z: Floats, columns: Array, prep: Prepared) -> None:
    d = prep.n_features
    x = z[1 : d + 1]
    np.subtract(columns, prep.shift[0][:, None], out=x)
    q = z[d + 1 :]
    layout = layout_of(prep.covariance_type)
    if layout.dense:  # x'_i x'_j for i <= j, in np.triu_indices order (stats._unpack_quadratic reads it so)
        start = 0
        for i in range(d):
            np.multiply(x[i], x[i:], out=q[start : start + d - i])
            start += d - i
    elif layout.isotropic:
        np.einsum("dn,dn->n", x, x, out=q[0])
    else:
        np.square(x, out=q)


def chunks(X: Array, prep: Prepared) -> Iterator[tuple[slice, Buffers]]:
    """Split rows of X into cache-sized chunks, each loaded into its workspace.

    Yields
    ------
    rows : slice
    buffers : dict of ndarray
        The workspace's views for this chunk; ``z`` holds the chunk: the
        features ``[1; x'; q(x')]`` (expanded) or ``[x; 1]`` (centred), each of
        shape (n_values, n).
    """
    n_rows = X.shape[0]
    leading = _buffers(prep)
    per_row = sum(math.prod(lead) for lead in leading.values())
    step = min(_MAX_CHUNK_ROWS, max(_MIN_CHUNK_ROWS, _CHUNK_BYTES // (per_row * prep.dtype.itemsize)))
    workspace = Workspace(leading, max(1, min(step, n_rows)), prep.dtype)
    columns = X.T
    for start in range(0, n_rows, step):
        rows = slice(start, min(start + step, n_rows))
        buffers = workspace.views(rows.stop - start)
        z = buffers["z"]
        if prep.expanded:
            z[0] = 1.0
            _fill_expanded(z, columns[:, rows], prep)
        else:
            np.copyto(z[:-1], columns[:, rows])
            z[-1] = 1.0
        yield rows, buffers


def _whiten_full(z: Floats, prep: Prepared, y: Floats, tmp: Floats) -> None:
    np.matmul(prep.matrix, z, out=y.reshape(-1, z.shape[1]))


def _whiten_tied(z: Floats, prep: Prepared, y: Floats, tmp: Floats) -> None:
    assert prep.centres is not None  # the centred route's
    np.matmul(prep.matrix, z[:-1], out=tmp)
    np.subtract(tmp[None, :, :], prep.centres, out=y)


def _whiten_diag(z: Floats, prep: Prepared, y: Floats, tmp: Floats) -> None:
    assert prep.centres is not None  # the centred route's
    np.subtract(z[None, :-1, :], prep.centres, out=y)
    y *= prep.matrix[:, :, None]


def _whiten_spherical(z: Floats, prep: Prepared, y: Floats, tmp: Floats) -> None:
    assert prep.centres is not None  # the centred route's
    np.subtract(z[None, :-1, :], prep.centres, out=y)
    y *= prep.matrix[:, None, None]


# The centred route's whitening, by layout (see Prepared.matrix and Prepared.centres).
_WHITEN: dict[str, Callable[[Floats, Prepared, Floats, Floats], None]] = {
    "full": _whiten_full,
    "tied": _whiten_tied,
    "diag": _whiten_diag,
    "spherical": _whiten_spherical,
}


def chunk_log_prob(prep: Prepared, buffers: Buffers) -> Floats:
    """Weighted log densities ``log w_k + log N(x | mu_k, Sigma_k)`` (K, n) of a chunk, in ``buffers``.

    On the centred route the whitened differences (K, D, n) are left in ``buffers["y"]``.
    """
    weighted, z = buffers["weighted"], buffers["z"]
    if prep.expanded:
        np.matmul(prep.matrix, z[1:], out=weighted)
    else:
        y = buffers["y"]
        _WHITEN[layout_of(prep.covariance_type).name](z, prep, y, buffers["tmp"])
        np.einsum("kdn,kdn->kn", y, y, out=weighted)
        weighted *= -0.5
    weighted += prep.offset
    return weighted


def normalise(weighted: Floats, buffers: Buffers) -> tuple[Floats, Floats]:
    """Log-sum-exp over components: ``log p(x)`` (n,) and responsibilities (K, n), with one exp."""
    top, norm, resp = buffers["top"], buffers["norm"], buffers["resp"]
    np.max(weighted, axis=0, out=top)
    np.subtract(weighted, top, out=resp)
    np.maximum(resp, _LOG_TINY[resp.dtype], out=resp)
    np.exp(resp, out=resp)
    np.sum(resp, axis=0, out=norm)
    resp /= norm
    np.log(norm, out=norm)
    norm += top
    return norm, resp


def estimate_log_resp(X: Array, params: Params, log_weights: Array | None = None) -> tuple[Array, Array]:
    """Log-likelihood of every row and its log responsibilities (log-sum-exp).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    params : Params
    log_weights : ndarray of shape (n_components,), optional
        In place of ``log(params.weights)`` (a variational model's expected log weights and precision terms).

    Returns
    -------
    log_prob_norm : ndarray of shape (n_samples,)
        ``log p(x_i)``.
    log_resp : ndarray of shape (n_samples, n_components)
        ``log p(z_i = k | x_i)``.
    """
    holes = np.isnan(X).any(axis=1)
    if holes.any():  # rows with missing values: scored on their observed values (see ``missing``)
        log_prob_norm, log_resp = np.empty(X.shape[0]), np.empty((X.shape[0], params.n_components))
        log_prob_norm[holes], log_resp[holes] = missing_log_resp(
            X[holes], marginal_model(params, _log_weights(params, log_weights))
        )
        log_prob_norm[~holes], log_resp[~holes] = estimate_log_resp(np.asfortranarray(X[~holes]), params, log_weights)
        return log_prob_norm, log_resp
    prep = prepare(params, log_weights=log_weights)
    log_prob_norm = np.empty(X.shape[0])
    log_resp = np.empty((X.shape[0], params.n_components))
    for rows, buffers in chunks(X, prep):
        weighted = chunk_log_prob(prep, buffers)
        norm = normalise(weighted, buffers)[0]
        log_prob_norm[rows] = norm
        log_resp[rows] = (weighted - norm).T
    return log_prob_norm, log_resp
