"""The E-step over chunks of rows: log densities and responsibilities in log space.

Two routes to the same numbers; :func:`prepare` picks one per set of parameters.

expanded (fast)
    Every row ``x`` gives quadratic features ``z = [1, x', q(x')]`` about a
    shift ``c`` shared by all components (the mixture's mean), ``x' = x - c``,
    where ``q`` holds the products the covariance type needs: ``x'_i x'_j``
    for ``i <= j`` (full, tied; in the order of :func:`quadratic_pairs`),
    ``x'_i^2`` (diag) or ``|x'|^2`` (spherical).
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
that reductions run along the long axis.  On the expanded route a chunk's
features stay in the core's own cache (L2) while both products read them: those
products are skinny (a row of coefficients per component), and measured on an
EPYC they ran at 50 GFLOP/s on one thread from L2 and at 20-25 from L3.  The
features are built a few chunks at a time (a *fill*), since each build is about
twenty NumPy calls whatever its length.  All temporaries live in a
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

from pipeline.kernels.arrays import Array, Floats, IntArray
from pipeline.kernels.covtypes import layout_of
from pipeline.kernels.missing import MarginalModel, marginal_model
from pipeline.kernels.missing import log_resp as missing_log_resp
from pipeline.kernels.params import Params

_LOG_2PI = math.log(2.0 * math.pi)
# Expanded route: a chunk's features take about _CHUNK_BYTES (within a core's L2 with the rest of the chunk), and
# are built _FILL_BYTES at a time (within L3).  Measured on an EPYC with 1 MiB of L2 a core (2026-12-03), shape A
# (16 features, 153 values a row): 512-row chunks built 2048 rows at a time took 13.6 ms a partition against 22 ms
# for 8192-row chunks.
_CHUNK_BYTES, _FILL_BYTES = 640 << 10, 5 << 19
# Centred route: its temporaries (K whitened copies of the chunk) take about this many bytes.  Narrow data reach
# the row cap first.
_CENTRED_BYTES = 8 << 20
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


def quadratic_pairs(n_features: int) -> tuple[IntArray, IntArray]:
    """``(i, j)`` with ``i <= j`` of the dense types' quadratic features ``x'_i x'_j``, in their order.

    Diagonal by diagonal (``j - i = 0, 1, ...``): each diagonal is one product
    of two slices of the chunk, ``x'[:D-o] * x'[o:]``, which NumPy runs about
    1.6 times as fast as the row-by-row ``x'_i * x'[i:]`` (a broadcast).
    """
    offsets = np.repeat(np.arange(n_features), np.arange(n_features, 0, -1))
    rows = np.concatenate([np.arange(n_features - o) for o in range(n_features)]).astype(np.intp)
    return rows, rows + offsets


def _quadratic_coefficients(prec_chol: Array, covariance_type: str, k: int) -> Array:
    """(K, n_quadratic): the log density's coefficients of ``q(x')``, ``-P_ij / 2`` (off-diagonal twice)."""
    layout = layout_of(covariance_type)
    if layout.dense:
        rows, cols = quadratic_pairs(prec_chol.shape[-1])
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
    # BLAS sums in an order that follows the memory layout: in C order the bits depend on the values only
    means, u = np.ascontiguousarray(params.means), np.ascontiguousarray(u)
    centre = params.weights @ means / params.weights.sum()
    whitened = _whitened(means - centre, u, ct)
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
        shifts = _whitened(means, u, ct).reshape(k * d, 1)
        matrix, centres = np.ascontiguousarray(np.hstack([stacked, -shifts])), None
    elif layout == "tied":
        matrix, centres = np.ascontiguousarray(u.T), _whitened(means, u, ct)[:, :, None]
    else:
        matrix, centres = u, means[:, :, None]
    return Prepared(ct, k, d, False, means, offset[:, None], matrix, centres, u, with_entropy=with_entropy)


_THREAD = threading.local()
# A chunk's named buffers (see Workspace.views): of the chunk arithmetic's dtype, float32 or float64.
Buffers = dict[str, Floats]


class Workspace:
    """Named buffers for chunks of up to ``rows`` rows, reused chunk after chunk and block after block.

    ``views(n)`` gives contiguous arrays of shape ``(*leading, n)`` for every
    name in ``leading``, and ``(n, *leading)`` for the names in ``rows_first``.
    The memory is kept per thread (a few MiB) for the next block: Dask workers
    hand freed large arrays back to the system at once, so a fresh allocation
    per block would pay its page faults every time.
    """

    def __init__(
        self,
        leading: dict[str, tuple[int, ...]],
        rows: int,
        dtype: np.dtype[np.floating],
        rows_first: tuple[str, ...] = (),
    ):
        pool: dict[tuple[str, np.dtype[np.floating]], Floats]
        pool = _THREAD.__dict__.setdefault("buffers", {})
        self._leading = leading
        self._rows_first = rows_first
        self._flat = {}
        for name, lead in leading.items():
            size = math.prod(lead) * rows
            if pool.get((name, dtype), np.empty(0)).size < size:
                pool[(name, dtype)] = np.empty(size, dtype)
            self._flat[name] = pool[(name, dtype)]

    def views(self, n: int) -> Buffers:
        return {
            name: self._flat[name][: math.prod(lead) * n].reshape(
                (n, *lead) if name in self._rows_first else (*lead, n)
            )
            for name, lead in self._leading.items()
        }


def _buffers(prep: Prepared) -> dict[str, tuple[int, ...]]:
    """A chunk's buffers but its features ``z``: (K, n) log densities and responsibilities, (n,) the log-sum-exp's;
    expanded route: (n, K) the responsibilities again by rows (for the moments' product, see ``stats``)."""
    k, d = prep.n_components, prep.n_features
    common = {"weighted": (k,), "resp": (k,), "top": (), "norm": ()}
    if prep.expanded:
        return {"resp_rows": (k,), **common}
    return {"y": (k, d), "tmp": (d,), **common}


def n_values(prep: Prepared) -> int:
    """Values of a row in the chunk's features ``z``."""
    d = prep.n_features
    return 1 + d + n_quadratic(prep.covariance_type, d) if prep.expanded else d + 1


def _fill_expanded(z: Floats, columns: Array, prep: Prepared) -> None:
    d = prep.n_features
    z[0] = 1.0
    x = z[1 : d + 1]
    np.subtract(columns, prep.shift[0][:, None], out=x)
    q = z[d + 1 :]
    layout = layout_of(prep.covariance_type)
    if layout.dense:  # x'_i x'_j in the order of quadratic_pairs: diagonal by diagonal
        start = 0
        for o in range(d):
            np.multiply(x[: d - o], x[o:], out=q[start : start + d - o])
            start += d - o
    elif layout.isotropic:
        np.einsum("dn,dn->n", x, x, out=q[0])
    else:
        np.square(x, out=q)


def _fill_centred(z: Floats, columns: Array, prep: Prepared) -> None:
    np.copyto(z[:-1], columns)
    z[-1] = 1.0


def _sizes(prep: Prepared, n_rows: int) -> tuple[int, int]:
    """Rows of a chunk, and rows of a fill (a multiple of the chunk's), for a block of ``n_rows``."""
    itemsize = prep.dtype.itemsize
    if prep.expanded:
        row = n_values(prep) * itemsize
        step = min(_MAX_CHUNK_ROWS, max(_MIN_CHUNK_ROWS, _CHUNK_BYTES // row))
        fill = step * max(1, _FILL_BYTES // (step * row))
    else:
        row = (n_values(prep) + sum(math.prod(lead) for lead in _buffers(prep).values())) * itemsize
        step = fill = min(_MAX_CHUNK_ROWS, max(_MIN_CHUNK_ROWS, _CENTRED_BYTES // row))
    return max(1, min(step, n_rows)), max(1, min(fill, n_rows))


def chunks(X: Array, prep: Prepared) -> Iterator[tuple[slice, Buffers]]:
    """Split rows of X into cache-sized chunks, each loaded into its workspace.

    Yields
    ------
    rows : slice
    buffers : dict of ndarray
        The workspace's views for this chunk; ``z`` holds the chunk: the
        features ``[1; x'; q(x')]`` (expanded) or ``[x; 1]`` (centred), each of
        shape (n_values, n) (a view of the fill's columns: not contiguous).
    """
    n_rows = X.shape[0]
    step, fill = _sizes(prep, n_rows)
    workspace = Workspace(_buffers(prep), step, prep.dtype, rows_first=("resp_rows",))
    features = Workspace({"z": (n_values(prep),)}, fill, prep.dtype)
    build = _fill_expanded if prep.expanded else _fill_centred
    columns = X.T
    for first in range(0, n_rows, fill):
        filled = features.views(min(fill, n_rows - first))["z"]
        build(filled, columns[:, first : first + filled.shape[1]], prep)
        for start in range(0, filled.shape[1], step):
            n = min(step, filled.shape[1] - start)
            buffers = workspace.views(n)
            buffers["z"] = filled[:, start : start + n]
            yield slice(first + start, first + start + n), buffers


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
