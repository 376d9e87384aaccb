"""SQUAREM: EM's iteration extrapolated, with a monotone safeguard (Varadhan & Roland 2008, Scand. J. Stat. 35).

Plain EM converges linearly, slowly where components overlap.  SQUAREM takes two EM steps from ``p0`` (``p1 =
F(p0)``, ``p2 = F(p1)``) and tries the point ``p0 + 2 a r + a^2 v`` with ``r = p1 - p0``, ``v = p2 - 2 p1 + p0``
and the step length ``a = |r| / |v|`` (their scheme 3, in the sign convention where ``a = 1`` gives ``p2``).  A pass
over the data at that point gives its objective and one more EM step from it; the step is kept only if the
objective did not fall below that of ``p1`` (the safeguard), otherwise the cycle goes on from ``p2``.

:class:`Squarem` is a :class:`~pipeline.kernels.steps.Step` around EM's (:class:`~pipeline.kernels.online.
IncrementalStep`): every pass is one EM step from some parameters, so the driver runs it as any other algorithm, the
checkpoints hold its cycle (:meth:`Squarem.arrays`), and the convergence test is made only on the change of a plain
EM step (``Scores.kind == "em"``), so the stopping rule means what it means without acceleration.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from pipeline.errors import ComponentCollapseError
from pipeline.kernels.arrays import Array
from pipeline.kernels.estep import Prepared
from pipeline.kernels.online import IncrementalStep, Learned
from pipeline.kernels.params import PARAM_ARRAYS, Params, dense_covariances, make_params
from pipeline.kernels.stats import Stats
from pipeline.kernels.steps import Hyperparameters, Scores

# The step length's cap starts here and is multiplied by STEP_FACTOR each time a kept step reaches it (a cycle held
# to plain EM by a cap of 1 counts as one), as the SQUAREM package's ``mstep``; a rejected step sets it to that step
# over STEP_FACTOR (at least 1): measured on the overlapping mixture of scripts/converge.py, 499 passes to plain
# EM's optimum at tol 1e-10 instead of 748 with the package's rule (the cap divided only by a rejection at the cap).
FIRST_STEP_MAX = 4.0
STEP_FACTOR = 4.0
# Halvings of ``a - 1`` tried when the point is not a mixture (a weight <= 0, a covariance below reg_covar).
BACKTRACKS = 6

_PREFIX = "squarem_"


def _vector(params: Params) -> Array:
    return np.concatenate([params.weights.ravel(), params.means.ravel(), params.covariances.ravel()])


def _mixture(x: Array, like: Params, reg_covar: float) -> Params | None:
    """The parameters of the vector ``x`` (laid out as ``like``), or None if they are not a mixture the M-step could
    have made: every weight positive, every covariance at least ``reg_covar`` in every direction."""
    k, d = like.n_components, like.n_features
    weights = x[:k]
    if not (np.isfinite(x).all() and (weights > 0).all()):
        return None
    means = x[k : k + k * d].reshape(k, d)
    covariances = x[k + k * d :].reshape(like.covariances.shape)
    weights = weights / weights.sum()
    try:
        params = make_params(weights, means, covariances, like.covariance_type)
    except ComponentCollapseError:
        return None
    dense = dense_covariances(params)
    if np.linalg.eigvalsh(dense)[:, 0].min() < reg_covar:
        return None
    return params


def extrapolate(p0: Params, p1: Params, p2: Params, reg_covar: float, step_max: float) -> tuple[Params, float] | None:
    """SQUAREM's point from two EM steps ``p0 -> p1 -> p2``, and its step length ``a`` (1 < a <= ``step_max``).

    Where the point is not a mixture (a weight <= 0, a covariance below ``reg_covar``), ``a`` is moved halfway to 1,
    :data:`BACKTRACKS` times at most.

    Returns
    -------
    (Params, float) or None
        None where extrapolating brings nothing: ``a <= 1`` (the point would be ``p2``), or no valid point.
    """
    x0, x1, x2 = _vector(p0), _vector(p1), _vector(p2)
    r = x1 - x0
    v = x2 - 2.0 * x1 + x0
    norm_r, norm_v = float(np.linalg.norm(r)), float(np.linalg.norm(v))
    if not (norm_v > 0 and math.isfinite(norm_r) and math.isfinite(norm_v)):
        return None
    alpha = min(norm_r / norm_v, step_max)
    for _ in range(BACKTRACKS + 1):
        if alpha <= 1.0:
            return None
        point = _mixture(x0 + 2.0 * alpha * r + alpha * alpha * v, p0, reg_covar)
        if point is not None:
            return point, alpha
        alpha = (alpha + 1.0) / 2.0
    return None


@dataclass(frozen=True)
class Cycle:
    """Where a run is in its SQUAREM cycle.

    Attributes
    ----------
    state : Learned
        What EM reached: the run's model (``p0`` at phase 0, ``p1`` at 1, ``p2`` at 2).
    phase : {0, 1, 2}
        The next pass: from ``p0`` (0), from ``p1`` (1), or at the extrapolated ``point`` (2).
    previous : Params or None
        ``p0``, at phase 1.
    point : Params or None
        The extrapolated point, at phase 2.
    fallback : Scores or None
        At phase 2, the scores of ``p1``: what the run reports if the point is rejected.
    alpha : float
        At phase 2, the point's step length.
    step_max : float
        The step length's cap.
    """

    state: Learned
    phase: int = 0
    previous: Params | None = None
    point: Params | None = None
    fallback: Scores | None = None
    alpha: float = 1.0
    step_max: float = FIRST_STEP_MAX


@dataclass(frozen=True)
class Squarem:
    """EM (or MAP EM) accelerated by SQUAREM: a :class:`~pipeline.kernels.steps.Step` whose state is a
    :class:`Cycle` around ``inner``'s."""

    inner: IncrementalStep

    @property
    def covariance_type(self) -> str:
        return self.inner.covariance_type

    @property
    def reg_covar(self) -> float:
        return self.inner.reg_covar

    def prepare(self, state: Cycle, dtype: str = "float64") -> Prepared:
        at = state.state if state.point is None else Learned(state.point, None)
        return self.inner.prepare(at, dtype)

    def advance(self, stats: Stats, shift: Array, state: Cycle) -> tuple[Cycle, Scores]:
        new = self.inner.m_step(stats, shift, state.state if state.point is None else Learned(state.point, None))
        if state.phase == 2:
            assert state.point is not None and state.fallback is not None
            scores = self.inner.scores(stats, Learned(state.point, None), new)
            if scores.objective >= state.fallback.objective:
                step_max = state.step_max * (STEP_FACTOR if state.alpha == state.step_max else 1.0)
                return Cycle(new, step_max=step_max), replace(scores, kind="extrapolated")
            step_max = max(1.0, state.alpha / STEP_FACTOR)
            return Cycle(state.state, step_max=step_max), replace(state.fallback, kind="rejected")
        scores = self.inner.scores(stats, state.state, new)
        if state.phase == 0:
            return Cycle(new, 1, previous=state.state.params, step_max=state.step_max), scores
        assert state.previous is not None
        found = extrapolate(state.previous, state.state.params, new.params, self.reg_covar, state.step_max)
        if found is None:  # a cap of 1 (after rejections) held this cycle to plain EM: the next may go further
            return Cycle(new, step_max=state.step_max * (STEP_FACTOR if state.step_max <= 1.0 else 1.0)), scores
        point, alpha = found
        return Cycle(new, 2, point=point, fallback=scores, alpha=alpha, step_max=state.step_max), scores

    def params(self, state: Cycle) -> Params:
        return state.state.params

    def arrays(self, state: Cycle) -> dict[str, Array]:
        """The model's arrays, and the cycle's under names starting ``squarem_`` (checkpoints only)."""
        arrays = dict(self.inner.arrays(state.state))
        fallback = state.fallback or Scores(math.nan, math.nan)
        arrays[_PREFIX + "cycle"] = np.array(
            [state.phase, state.alpha, state.step_max, fallback.lower_bound, fallback.objective]
        )
        for name, params in (("previous", state.previous), ("point", state.point)):
            if params is not None:
                arrays.update({f"{_PREFIX}{name}_{key}": getattr(params, key) for key in PARAM_ARRAYS})
        return arrays

    def from_arrays(self, arrays: Mapping[str, Array]) -> Cycle:
        inner = self.inner.from_arrays({k: v for k, v in arrays.items() if not k.startswith(_PREFIX)})
        phase, alpha, step_max, lower_bound, objective = (float(x) for x in arrays[_PREFIX + "cycle"])
        kept = {}
        for name in ("previous", "point"):
            if f"{_PREFIX}{name}_weights" in arrays:
                stored = {key: arrays[f"{_PREFIX}{name}_{key}"] for key in PARAM_ARRAYS}
                kept[name] = Params(covariance_type=self.covariance_type, **stored)
        if phase not in (0, 1, 2) or (phase == 1) != ("previous" in kept) or (phase == 2) != ("point" in kept):
            raise ValueError("its SQUAREM cycle is inconsistent")
        fallback = Scores(lower_bound, objective) if phase == 2 else None
        return Cycle(inner, int(phase), kept.get("previous"), kept.get("point"), fallback, alpha, step_max)

    def hyperparameters(self) -> Hyperparameters | None:
        return self.inner.hyperparameters()
