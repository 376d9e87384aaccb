"""mclust's ``EVE`` and ``VVE`` models: one orientation common to all components, by Jacobi sweeps and Newton steps.

``EVE`` writes each covariance as ``Sigma_k = lambda D A_k D^T`` (one volume, own shapes, one orientation) and
``VVE`` as ``Sigma_k = lambda_k D A_k D^T`` (own volumes), that is ``D Lambda_k D^T`` with ``Lambda_k`` diagonal.
Given the orientation ``D`` the rest is closed form: with ``b_k = diag(D^T W_k D)``, ``VVE`` has ``Lambda_k = b_k /
n_k`` and ``EVE`` has ``A_k = b_k / g_k``, ``lambda = sum_k g_k / n`` where ``g_k = prod(b_k)^(1/d)``.  So
``F = sum_k n_k log det Sigma_k + tr(Sigma_k^-1 W_k)`` is minimised over orthogonal ``D`` alone, of

* ``VVE``: ``f(D) = sum_k n_k sum_l log b_kl`` (Flury's common principal components), ``F = f - d sum_k n_k log n_k
  + n d``;
* ``EVE``: ``f(D) = sum_k g_k``, ``F = n d log(f / n) + n d``.

Starts: the identity, the eigenvectors of ``sum_k W_k``, of ``sum_k W_k / n_k`` and of each ``W_k`` (and, given the
last M-step's covariances, their orientation, so that ``F`` ends no higher than there).  One Jacobi sweep from each;
the :data:`KEEP` lowest (the given start among them) are run to a stationary point, and if their ends differ in
``F`` by more than :data:`AGREE` times ``n d`` (more than one minimum) the others too; the lowest end is kept.  Two
kinds of move, each taken only if it lowers ``f`` by more than a bound on the round-off of the computed change
(``F`` never increases):

* a Jacobi sweep, in rounds of disjoint pairs of columns ``(i, j)``: each pair is rotated by the angle ``t`` that
  minimises its change of ``f`` over all angles.  With ``psi = 4 t``, ``b_ki b_kj = p_k q_k (1 + e_k)`` where ``e_k
  = a_k (1 - cos psi) - v_k sin psi`` and ``b_ki + b_kj`` stays, so the change is a sum over components of one
  concave function of ``e_k``: minimised on a grid of :data:`GRID` angles, the best point refined by :data:`REFINE`
  Newton steps.  ``VVE``'s ``f`` is a sum over columns, so disjoint pairs are independent; ``EVE``'s is not, and
  there each pair minimises its term of the arithmetic-geometric-mean bound of the round's change (its factor
  raised to the number of pairs in the round: exact for ``d <= 3``);
* a trust-region Newton step on the ``d (d - 1) / 2`` rotation angles, with the exact gradient and Hessian of
  ``f(D expm(X))`` at ``X = 0``, the step taken through the Cayley transform: the Newton step where the Hessian is
  positive definite and the step within the radius, else the step of a shifted Hessian (Moré & Sorensen 1983, by
  Cholesky factorisations).  The radius shrinks fourfold until a step lowers ``f``, and grows where the model
  predicted the change well; after :data:`SHRINKS` shrinkings a sweep instead.

A start has converged when a Newton step at a positive definite Hessian moves no angle by more than :data:`ANGLE_TOL`
radians, or when neither a trust-region step nor the sweep after it lowers ``f`` (a minimum flat in some directions:
equal eigenvalues); it stops after :data:`MAX_ROUNDS` rounds (a trust-region step, and the sweep if it stalled)
otherwise.  Plain NumPy and LAPACK on the statistics alone, in a fixed order: the same input gives the same bits.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg.lapack

from pipeline.kernels.arrays import Array, IntArray

ANGLE_TOL = 1e-10
MAX_ROUNDS = 100
KEEP = 4
AGREE = 1e-9
SHRINKS = 10
TRUST_ITERATIONS = 10
MAX_RADIUS = 1.0
GRID = 32
REFINE = 3

_EPS = float(np.finfo(np.float64).eps)
_GRID_ANGLES = 2 * np.pi * np.arange(GRID) / GRID
_GRID_ANGLES[GRID // 2 + 1 :] -= 2 * np.pi  # in (-pi, pi]: the rotation angle psi / 4 in (-pi/4, pi/4]
_GRID_SIN, _GRID_ONE_MINUS_COS = np.sin(_GRID_ANGLES), 1 - np.cos(_GRID_ANGLES)


class Orientation(NamedTuple):
    """A common orientation and how it was found.

    Attributes
    ----------
    directions : ndarray of shape (D, D)
        ``D``, orthogonal: the principal axes as columns.
    diagonals : ndarray of shape (K, D)
        ``b_k = diag(D^T W_k D)``.
    objective : float
        ``F = sum_k n_k log det Sigma_k + tr(Sigma_k^-1 W_k)`` at the model's covariances for ``directions``.
    history : ndarray of shape (n_rounds + 2,)
        ``F`` at the chosen start, after its first sweep and after each of its rounds.
    converged : bool
        Whether the chosen start stopped by :data:`ANGLE_TOL` (or a flat minimum) rather than :data:`MAX_ROUNDS`.
    start : int
        The chosen start: 0 the identity, 1 the eigenvectors of ``sum_k W_k``, 2 those of ``sum_k W_k / n_k``,
        ``3 + k`` those of ``W_k``, ``3 + K`` the given start.
    """

    directions: Array
    diagonals: Array
    objective: float
    history: Array
    converged: bool
    start: int


def eve(nk: Array, scatter: Array, previous: Array | None = None) -> Array:
    """``lambda D A_k D^T``: common volume and orientation, own shapes.

    Parameters
    ----------
    nk : ndarray of shape (K,)
        The components' weights ``n_k``.
    scatter : ndarray of shape (K, D, D)
        Their scatter matrices ``W_k``, symmetric positive definite.
    previous : ndarray of shape (K, D, D), optional
        Covariances with one orientation (the last M-step's): their orientation is a start too, so ``F`` ends no
        higher than there (EM's likelihood cannot fall for a lost minimum).

    Returns
    -------
    ndarray of shape (K, D, D)
        The covariances ``D diag(lambda b_k / g_k) D^T``, ``g_k = prod(b_k)^(1/d)``, ``lambda = sum_k g_k / n``.
    """
    found = common_orientation(nk, scatter, common_volume=True, start=_orientation_of(previous))
    roots = _geometric_mean(found.diagonals)
    return _rotate(found.directions, roots.sum() / nk.sum() * found.diagonals / roots[:, None])


def vve(nk: Array, scatter: Array, previous: Array | None = None) -> Array:
    """``lambda_k D A_k D^T``: common orientation, own volumes and shapes.

    Parameters
    ----------
    nk : ndarray of shape (K,)
        The components' weights ``n_k``.
    scatter : ndarray of shape (K, D, D)
        Their scatter matrices ``W_k``, symmetric positive definite.
    previous : ndarray of shape (K, D, D), optional
        Covariances with one orientation (the last M-step's): their orientation is a start too, as in :func:`eve`.

    Returns
    -------
    ndarray of shape (K, D, D)
        The covariances ``D diag(b_k / n_k) D^T``.
    """
    found = common_orientation(nk, scatter, common_volume=False, start=_orientation_of(previous))
    return _rotate(found.directions, found.diagonals / nk[:, None])


def common_orientation(nk: Array, scatter: Array, *, common_volume: bool, start: Array | None = None) -> Orientation:
    """The orientation ``D`` that minimises ``F`` under ``EVE`` (``common_volume=True``) or ``VVE``.

    Parameters
    ----------
    nk : ndarray of shape (K,)
        The components' weights ``n_k``.
    scatter : ndarray of shape (K, D, D)
        Their scatter matrices ``W_k``, symmetric positive definite.
    common_volume : bool
        ``EVE`` (one volume) or ``VVE`` (a volume per component).
    start : ndarray of shape (D, D), optional
        An orthogonal matrix to start from as well, always run to its end.

    Returns
    -------
    Orientation
        The lowest of the starts' ends (the first of equals).
    """
    model = _Model(nk, scatter, common_volume)
    starts = _starts(nk, scatter) if start is None else np.concatenate([_starts(nk, scatter), start[None]])
    swept = model.sweep(starts)[0]
    order = np.argsort(model.value(swept), kind="stable")
    if start is not None:  # the given start (the last) first, then the others from the lowest
        given = starts.shape[0] - 1
        order = np.concatenate([[given], order[order != given]])
    runs = [_descend(model, starts[order[:KEEP]], swept[order[:KEEP]])]
    ends = model.full_objective(model.value(runs[0][0]))
    if ends.max() - ends.min() > AGREE * nk.sum() * scatter.shape[-1]:  # more than one minimum: all the starts
        runs.append(_descend(model, starts[order[KEEP:]], swept[order[KEEP:]]))
    directions, done = (np.concatenate([run[i] for run in runs]) for i in (0, 1))
    histories = [history for run in runs for history in run[2]]
    values = model.value(directions)
    best = int(np.argmin(values))
    return Orientation(
        directions[best],
        _diagonals(model.project(directions[best][None]))[0],
        float(model.full_objective(values[best])),
        model.full_objective(np.array(histories[best])),
        bool(done[best]),
        int(order[best]),
    )


def _descend(model: _Model, starts: Array, swept: Array) -> tuple[Array, Array, list[list[float]]]:
    """Each start (S, D, D), after its first sweep ``swept``, run to a stationary point: the ends, whether each
    converged, and each one's ``f`` at the start, after the sweep and after each of its rounds."""
    directions = swept.copy()
    n_starts = directions.shape[0]
    histories = [[float(first), float(second)] for first, second in zip(model.value(starts), model.value(directions))]
    done = np.full(n_starts, starts.shape[-1] == 1)  # one dimension: no angles, D = 1
    radius = np.full(n_starts, MAX_RADIUS / 4)
    for _ in range(MAX_ROUNDS):
        todo = np.flatnonzero(~done)
        if not todo.size:
            break
        directions[todo], radius[todo], done[todo], stalled = model.trust_step(directions[todo], radius[todo])
        sweeping = todo[stalled]
        if sweeping.size:
            directions[sweeping], largest = model.sweep(directions[sweeping])
            done[sweeping] = largest <= ANGLE_TOL
            radius[sweeping] = MAX_RADIUS / 4
        for start, value in zip(todo, model.value(directions[todo])):
            histories[start].append(float(value))
    return directions, done, histories


class _Model:
    """``f`` of one model over a stack of orientations (S, D, D), its derivatives and the two kinds of move."""

    def __init__(self, nk: Array, scatter: Array, common_volume: bool) -> None:
        self.nk, self.scatter, self.common_volume = nk, scatter, common_volume
        self.magnitude = np.abs(scatter)
        self.size = self.magnitude.sum(axis=2).max(axis=1)[None]  # (1, K): |W_k|'s largest row sum
        d = scatter.shape[-1]
        self.rounds = _round_robin(d)
        self.first, self.second = np.triu_indices(d, 1)
        self.relations = _relations(self.first, self.second)

    def project(self, directions: Array) -> Array:
        """``C_sk = D_s^T W_k D_s``, shape (S, K, D, D)."""
        projected: Array = np.swapaxes(directions, 1, 2)[:, None] @ self.scatter[None] @ directions[:, None]
        return projected

    def value(self, directions: Array) -> Array:
        """``f`` (S,) at orientations (S, D, D)."""
        diagonals = (directions[:, None] * (self.scatter[None] @ directions[:, None])).sum(axis=2)
        values: Array = (
            _geometric_mean(diagonals).sum(axis=1)
            if self.common_volume
            else (self.nk[:, None] * np.log(diagonals)).sum(axis=(1, 2))
        )
        return values

    def full_objective(self, values: Array) -> Array:
        """``F`` from ``f``."""
        n, d = self.nk.sum(), self.scatter.shape[-1]
        objective: Array = (
            n * d * np.log(values / n) + n * d
            if self.common_volume
            else values - d * (self.nk * np.log(self.nk)).sum() + n * d
        )
        return objective

    def sweep(self, directions: Array) -> tuple[Array, Array]:
        """A Jacobi sweep from each orientation (S, D, D): the new orientations and each one's largest angle (S,)."""
        directions = directions.copy()
        projected = self.project(directions)
        largest = np.zeros(directions.shape[0])
        d = directions.shape[-1]
        for i, j in self.rounds:
            p, q, r = projected[:, :, i, i], projected[:, :, j, j], projected[:, :, i, j]  # (S, K, P)
            half, pq = (p - q) / 2, p * q
            a, v = (half * half - r * r) / (2 * pq), half * r / pq
            if self.common_volume:
                power = len(i) / d
                weight = power * _geometric_mean(_diagonals(projected))[:, :, None] * np.ones_like(a)
            else:
                power, weight = 0.0, np.broadcast_to(self.nk[:, None], a.shape)
            psi, change = _pair_minimum(a, v, weight, power)
            error = 4 * _EPS * self.size[:, :, None] * (np.abs(half) + np.abs(r) + _EPS * self.size[:, :, None]) / pq
            reach = (1 - np.cos(psi) + np.abs(np.sin(psi)))[:, None]
            angle = np.where(change < -(weight * error * reach).sum(axis=1), psi / 4, 0.0)  # (S, P)
            largest = np.maximum(largest, np.abs(angle).max(axis=1))
            c, s = np.cos(angle), np.sin(angle)
            _rotate_columns(directions, i, j, c[:, None], s[:, None])
            _rotate_columns(projected, i, j, c[:, None, None], s[:, None, None])
            _rotate_columns(np.swapaxes(projected, 2, 3), i, j, c[:, None, None], s[:, None, None])
        return directions, largest

    def derivatives(self, diagonals: Array) -> tuple[Array, Array, Array, Array]:
        """``df/db`` (S, K, D) and ``d2f/db2`` as ``diag(curvature) + weight u u^T`` per component: ``curvature``
        (S, K, D), ``weight`` (S, K), ``u`` (S, K, D)."""
        if self.common_volume:
            d = self.scatter.shape[-1]
            roots = _geometric_mean(diagonals)[:, :, None]
            inverse = 1 / diagonals
            return roots * inverse / d, -roots * inverse**2 / d, roots[:, :, 0] / d**2, inverse
        nk = self.nk[None, :, None]
        return nk / diagonals, -nk / diagonals**2, np.zeros(diagonals.shape[:2]), np.zeros_like(diagonals)

    def gradient_hessian(self, projected: Array) -> tuple[Array, Array]:
        """The gradient (S, P) and Hessian (S, P, P) of ``f(D expm(X))`` at ``X = 0`` in the angles ``x_ij = X_ji =
        -X_ij`` (``i < j``, in ``np.triu_indices`` order), from ``C = D^T W_k D`` (S, K, D, D).

        With ``F_kl = df/db_kl`` and ``P_k,ij = 2 C_k,ij = d b_ki / d x_ij``, the gradient is ``sum_k P_k,ij (F_ki -
        F_kj)``.  The Hessian is nonzero where two angles share an index ``l`` (their others ``x`` and ``y``):
        ``+-(Q_lxy - G_xy)`` with ``Q_l = 2 sum_k F_kl C_k`` (the second derivatives of the ``b_kl``) plus ``sum_k
        P_k,lx P_k,ly d2f/db_kl^2`` (of ``f``'s diagonal curvature), and ``G`` the symmetric part of ``2 sum_k C_k
        diag(F_k)`` (the rotation's own curvature); ``EVE`` adds the rank-``K`` part of its curvature.
        """
        i, j = self.first, self.second
        n_starts, _, d, _ = projected.shape
        slope, curvature, weight, vector = self.derivatives(_diagonals(projected))
        coupling = 2 * projected[:, :, i, j]  # (S, K, P)
        gradient = (coupling * (slope[:, :, i] - slope[:, :, j])).sum(axis=1)
        rows = np.swapaxes(projected, 1, 2)  # (S, D, K, D): row l of every C_k
        second = 4 * np.swapaxes(rows * curvature.swapaxes(1, 2)[..., None], 2, 3) @ rows
        second += 2 * (np.swapaxes(slope, 1, 2) @ projected.reshape(n_starts, -1, d * d)).reshape(n_starts, d, d, d)
        rotation = 2 * (projected * slope[:, :, None, :]).sum(axis=1)
        rotation = (rotation + np.swapaxes(rotation, 1, 2)) / 2
        sign, entry, shared, x, y = self.relations
        values = sign * (second[:, shared, x, y] - rotation[:, x, y])
        size = i.size * i.size
        entries = (entry + size * np.arange(n_starts)[:, None]).ravel()
        hessian = np.asarray(np.bincount(entries, values.ravel(), n_starts * size), dtype=np.float64)
        hessian = hessian.reshape(n_starts, i.size, i.size)
        if self.common_volume:
            rank = coupling * (vector[:, :, i] - vector[:, :, j]) * np.sqrt(weight)[:, :, None]
            hessian += np.swapaxes(rank, 1, 2) @ rank
        return gradient, hessian

    def trust_step(self, directions: Array, radius: Array) -> tuple[Array, Array, Array, Array]:
        """A trust-region Newton step from each orientation (S, D, D) with its radius (S,): the new orientations and
        radii, whether each has converged, and whether it stalled (no step within :data:`SHRINKS` shrinkings of the
        radius lowered ``f``)."""
        projected = self.project(directions)
        gradient, hessian = self.gradient_hessian(projected)
        diagonals = _diagonals(projected)
        out, radius = directions.copy(), radius.copy()
        n_starts = directions.shape[0]
        converged, stalled = np.zeros(n_starts, dtype=bool), np.ones(n_starts, dtype=bool)
        for s in range(n_starts):
            subproblem = _TrustRegion(gradient[s], hessian[s])
            for _ in range(SHRINKS):
                step, predicted, newton = subproblem.step(radius[s])
                moved = self._move(directions[s], step)
                change, noise = self._change(diagonals[s], directions[s], moved)
                if newton and np.abs(step).max() <= ANGLE_TOL:  # the last step: taken if it does not raise f
                    converged[s], stalled[s] = True, False
                    if change <= 0:
                        out[s] = directions[s] + moved
                    break
                if change < -noise:
                    out[s], stalled[s] = directions[s] + moved, False
                    if change > predicted / 4:
                        radius[s] /= 4
                    elif change < 3 * predicted / 4 and not newton:
                        radius[s] = min(2 * radius[s], MAX_RADIUS)
                    break
                radius[s] /= 4
        return out, radius, converged, stalled

    def _move(self, directions: Array, step: Array) -> Array:
        """``D (Q - I)`` for the Cayley transform ``Q = (I - X/2)^-1 (I + X/2)`` of the angles ``step`` (P,)."""
        d = directions.shape[0]
        skew = np.zeros((d, d))
        skew[self.second, self.first] = step
        skew -= skew.T
        moved: Array = directions @ np.linalg.solve(np.eye(d) - skew / 2, skew)
        return moved

    def _change(self, diagonals: Array, directions: Array, moved: Array) -> tuple[float, float]:
        """The change of ``f`` from ``D`` to ``D + moved``, computed from ``moved`` (not as the difference of two
        values of ``f``), and a bound on its round-off."""
        ratio = (moved * (self.scatter @ (2 * directions + moved))).sum(axis=1) / diagonals
        error = 4 * _EPS * (np.abs(moved) * (self.magnitude @ (2 * np.abs(directions) + np.abs(moved)))).sum(axis=1)
        if self.common_volume:
            roots = _geometric_mean(diagonals)
            change = (roots * np.expm1(np.log1p(ratio).mean(axis=1))).sum()
            noise = (roots[:, None] * error / diagonals).sum() / diagonals.shape[1]
        else:
            change = (self.nk[:, None] * np.log1p(ratio)).sum()
            noise = (self.nk[:, None] * error / diagonals).sum()
        return float(change), float(noise)


class _TrustRegion:
    """Steps that lower ``m(s) = g s + s H s / 2`` within ``|s| <= radius`` (Moré & Sorensen 1983): the Newton step
    where ``H`` is positive definite and the step within the radius, else ``-(H + mu I)^-1 g`` for a shift ``mu``
    that makes ``H + mu I`` positive definite, found by Cholesky factorisations and Newton's method on ``1 / |s(mu)|
    = 1 / radius`` (kept within a bracket), the step cut back to the radius if still longer."""

    def __init__(self, gradient: Array, hessian: Array) -> None:
        self.gradient, self.hessian = gradient, hessian
        self.identity = np.eye(gradient.size)
        rows = np.abs(hessian).sum(axis=1)
        self.low = max(0.0, -np.diagonal(hessian).min())  # no shift below this (nor -lambda_min) is definite
        self.high = rows.max() + self.low  # beyond -lambda_min, by Gershgorin
        self.newton = self.factorised(0.0)
        if self.newton is not None:
            self.low = 0.0
        self.shift = self.low

    def factorised(self, shift: float) -> Array | None:
        """The Cholesky factor of ``H + shift I``, or None if it is not positive definite."""
        factor, info = scipy.linalg.lapack.dpotrf(self.hessian + shift * self.identity, lower=1, clean=1)
        return None if info else factor

    def step(self, radius: float) -> tuple[Array, float, bool]:
        """The step (P,), ``m`` there, and whether it is the Newton step."""
        gradient = self.gradient
        if self.newton is not None:
            newton = -scipy.linalg.lapack.dpotrs(self.newton, gradient, lower=1)[0]
            if np.sqrt(newton @ newton) <= radius:
                return newton, float(gradient @ newton / 2), True
        low, high = self.low, max(self.high, np.sqrt(gradient @ gradient) / radius)
        shift, step = max(self.shift, low), None
        for _ in range(TRUST_ITERATIONS):
            factor = self.factorised(shift) if shift > 0 or self.newton is None else self.newton
            if factor is None:
                low = shift
                shift = max(np.sqrt(low * high), low + 1e-3 * (high - low))
                continue
            step = -scipy.linalg.lapack.dpotrs(factor, gradient, lower=1)[0]
            norm = np.sqrt(step @ step)
            if norm == 0 or abs(norm - radius) <= radius / 10:
                break
            if norm < radius:
                high = shift
            else:
                low = shift
            solved = scipy.linalg.lapack.dtrtrs(factor, step, lower=1)[0]
            shift += (norm / np.sqrt(solved @ solved)) ** 2 * (norm - radius) / radius
            if not low < shift < high:
                shift = max(np.sqrt(low * high), low + 1e-3 * (high - low))
        if step is None:  # no shift tried was definite: the bracket is too wide, a sweep instead
            return np.zeros_like(gradient), 0.0, False
        self.shift = shift
        norm = np.sqrt(step @ step)
        if norm > radius:
            step *= radius / norm
        return step, float(gradient @ step + step @ self.hessian @ step / 2), False


def _pair_minimum(a: Array, v: Array, weight: Array, power: float) -> tuple[Array, Array]:
    """Each pair's minimising angle ``psi`` (S, P) and its change of ``f`` there (S, P).

    The change is ``sum_k w_k phi(1 + e_k)``, ``e_k = a_k (1 - cos psi) - v_k sin psi``, ``phi(z) = (z^power - 1) /
    power`` (``log z`` at power 0), with ``a``, ``v`` and the weights ``w`` (S, K, P).  The best of the grid is
    refined by Newton steps that stay within a grid step of it, and kept if they do not raise the change.
    """
    e = a[..., None] * _GRID_ONE_MINUS_COS - v[..., None] * _GRID_SIN
    values = (weight[..., None] * _phi(np.log1p(e), power)).sum(axis=1)  # (S, P, GRID)
    best = np.argmin(values, axis=-1)
    start = _GRID_ANGLES[best]
    psi = start
    for _ in range(REFINE):
        sin, cos = np.sin(psi)[:, None], np.cos(psi)[:, None]
        z = 1 + a * (1 - cos) - v * sin
        slope, bend = a * sin - v * cos, a * cos + v * sin
        first = z ** (power - 1)
        second = (power - 1) * first / z
        gradient = (weight * first * slope).sum(axis=1)
        curvature = (weight * (second * slope * slope + first * bend)).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = psi - gradient / curvature
        psi = np.where((curvature > 0) & (np.abs(newton - start) < 2 * np.pi / GRID), newton, psi)
    e = a * 2 * np.sin(psi / 2)[:, None] ** 2 - v * np.sin(psi)[:, None]
    change = (weight * _phi(np.log1p(e), power)).sum(axis=1)
    grid_change = np.take_along_axis(values, best[..., None], axis=-1)[..., 0]
    better = change <= grid_change
    return np.where(better, psi, start), np.where(better, change, grid_change)


def _phi(logs: Array, power: float) -> Array:
    """``(z^power - 1) / power`` from ``log z`` (``log z`` at power 0)."""
    return np.expm1(power * logs) / power if power else logs


def _round_robin(d: int) -> list[tuple[IntArray, IntArray]]:
    """The pairs ``i < j`` of ``range(d)`` in ``d - 1`` rounds (``d`` if ``d`` is odd) of disjoint pairs (the
    circle method)."""
    players = list(range(d + d % 2))
    rounds = []
    for _ in range(len(players) - 1):
        half = len(players) // 2
        pairs = sorted((min(x, y), max(x, y)) for x, y in zip(players[:half], players[::-1][:half]) if max(x, y) < d)
        if pairs:
            rounds.append(
                (np.array([x for x, _ in pairs], dtype=np.intp), np.array([y for _, y in pairs], dtype=np.intp))
            )
        players = [players[0], players[-1], *players[1:-1]]
    return rounds


def _relations(first: IntArray, second: IntArray) -> tuple[Array, IntArray, IntArray, IntArray, IntArray]:
    """The pairs of angles ``a = (i, j)``, ``b = (m, n)`` that share an index: the sign of their Hessian entry
    (``+`` where the shared index is first in both or second in both), the entry ``a P + b``, the shared index and the
    two others (the one of ``a``, the one of ``b``).  The diagonal (``i = m`` and ``j = n``) comes twice."""
    signs, entries, indices, xs, ys = [], [], [], [], []
    for sign, mine, theirs in ((1.0, 0, 0), (-1.0, 0, 1), (-1.0, 1, 0), (1.0, 1, 1)):
        own, others = (first, second)[mine], (first, second)[1 - mine]
        shared, other = (first, second)[theirs], (first, second)[1 - theirs]
        a, b = np.nonzero(own[:, None] == shared[None, :])
        signs.append(np.full(a.size, sign))
        entries.append(a * first.size + b)
        indices.append(own[a])
        xs.append(others[a])
        ys.append(other[b])
    return (
        np.concatenate(signs),
        np.concatenate(entries),
        np.concatenate(indices),
        np.concatenate(xs),
        np.concatenate(ys),
    )


def _orientation_of(covariances: Array | None) -> Array | None:
    """The common eigenvectors (D, D) of covariances (K, D, D) that have them: those of ``sum_k sqrt(k + 2) Sigma_k
    / tr(Sigma_k)`` (distinct weights: its eigenvalues tie only where every ``Sigma_k``'s do)."""
    if covariances is None:
        return None
    weights = np.sqrt(np.arange(covariances.shape[0]) + 2) / np.trace(covariances, axis1=1, axis2=2)
    axes: Array = np.linalg.eigh((weights[:, None, None] * covariances).sum(axis=0))[1]
    return axes


def _starts(nk: Array, scatter: Array) -> Array:
    """The starting orientations (K + 3, D, D): the identity, the eigenvectors of ``sum_k W_k``, of ``sum_k W_k /
    n_k`` and of each ``W_k``."""
    d = scatter.shape[-1]
    pooled = np.stack([scatter.sum(axis=0), (scatter / nk[:, None, None]).sum(axis=0)])
    return np.concatenate([np.eye(d)[None], np.linalg.eigh(pooled)[1], np.linalg.eigh(scatter)[1]])


def _rotate_columns(array: Array, i: IntArray, j: IntArray, c: Array, s: Array) -> None:
    """Columns ``i`` and ``j`` (disjoint index arrays) of ``array`` (..., D) become ``c x_i + s x_j`` and ``c x_j -
    s x_i``, in place; ``c`` and ``s`` broadcast against ``array[..., i]``."""
    first, second = array[..., i], array[..., j]
    array[..., i], array[..., j] = c * first + s * second, c * second - s * first


def _diagonals(matrices: Array) -> Array:
    diagonals: Array = np.diagonal(matrices, axis1=-2, axis2=-1).copy()
    return diagonals


def _geometric_mean(values: Array) -> Array:
    """``prod(values) ** (1/d)`` over the last axis, through logs (no overflow for large d)."""
    root: Array = np.exp(np.log(values).mean(axis=-1))
    return root


def _rotate(directions: Array, diagonals: Array) -> Array:
    """``D diag(a_k) D^T`` for each component, exactly symmetric: ``directions`` (D, D), ``diagonals`` (K, D)."""
    rotated = (directions * diagonals[:, None, :]) @ directions.T
    symmetric: Array = (rotated + np.swapaxes(rotated, 1, 2)) / 2
    return symmetric
