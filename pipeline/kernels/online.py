"""Learning that goes on: EM on new rows on top of the moments of rows learnt before, which are not read again.

Uses of one :class:`~pipeline.kernels.steps.Step`, :class:`IncrementalStep`:

* **Every EM fit** (nothing learnt before): the same arithmetic as :class:`~pipeline.kernels.algorithms.EMStep`,
  and the state keeps the moments of its last M-step, so that a fitted model can learn more.
* **Stepwise online EM** (Cappé & Moulines 2009, JRSS-B 71(3); Liang & Klein 2009), ``partial_fit``: the
  running moments ``s`` are an average per unit weight; a batch's E-step under the current parameters gives its
  moments ``s_b`` (per unit weight), ``s <- (1 - rho) s + rho s_b``, and the M-step is taken from ``s`` counted as
  every row seen so far.
* **Incremental EM with frozen statistics** (Neal & Hinton 1998), ``update``: the old rows count through the
  moments stored at the last fit (their responsibilities frozen there, scaled by a forgetting factor); EM runs
  over the new rows only, each M-step from the old moments plus the new rows' moments under the current
  parameters.

Either way the state carries the combined moments of the last M-step, so the model can keep learning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from pipeline.kernels.algorithms import EMStep
from pipeline.kernels.arrays import Array
from pipeline.kernels.estep import Prepared
from pipeline.kernels.mstep import ComponentMoments, m_step_moments
from pipeline.kernels.params import PARAM_ARRAYS, Params
from pipeline.kernels.stats import Stats
from pipeline.kernels.steps import Advances, Hyperparameters, Scores

# The moments' arrays in model.npz and checkpoints: counts (n_rows, weight_sum), nk, means, scatter.
MOMENT_ARRAYS = ("moments_counts", "moments_nk", "moments_means", "moments_scatter")


def stepwise_rate(step: int, learning_offset: float, learning_decay: float) -> float:
    """``rho_t = (learning_offset + t) ** -learning_decay``, the weight of the ``t``-th batch after the first
    (scikit-learn's ``LatentDirichletAllocation`` names; ``t >= 1``)."""
    return float((learning_offset + step) ** -learning_decay)


def moments_arrays(moments: ComponentMoments) -> dict[str, Array]:
    """The moments as named float64 arrays (:data:`MOMENT_ARRAYS`)."""
    return {
        "moments_counts": np.array([moments.n_rows, moments.weight_sum]),
        "moments_nk": moments.nk,
        "moments_means": moments.means,
        "moments_scatter": np.array(moments.scatter),
    }


def moments_from_arrays(arrays: Mapping[str, Array], covariance_type: str) -> ComponentMoments:
    """The moments of :func:`moments_arrays`'s arrays."""
    counts = np.asarray(arrays["moments_counts"], dtype=np.float64)
    if counts.shape != (2,):
        raise ValueError(f"moments_counts has shape {counts.shape}, expected (2,)")
    n_rows, weight_sum = (float(v) for v in counts)
    return ComponentMoments(
        covariance_type,
        n_rows,
        weight_sum,
        np.asarray(arrays["moments_nk"], dtype=np.float64),
        np.asarray(arrays["moments_means"], dtype=np.float64),
        np.asarray(arrays["moments_scatter"], dtype=np.float64),
    )


def check_moments(moments: ComponentMoments, n_components: int, n_features: int) -> None:
    """ValueError, naming the array, unless ``moments`` are those of ``n_components`` components in
    ``n_features`` dimensions: shapes, finite values, counts above 0, component weights not below 0 and adding up
    to the weight."""
    from pipeline.kernels.covtypes import layout_of

    k, d = n_components, n_features
    shapes = {
        "moments_nk": (moments.nk, (k,)),
        "moments_means": (moments.means, (k, d)),
        "moments_scatter": (moments.scatter, layout_of(moments.covariance_type).shape(k, d)),
    }
    for name, (array, shape) in shapes.items():
        if np.shape(array) != shape:
            raise ValueError(f"{name} has shape {np.shape(array)}, expected {shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"{name} holds non-finite values")
    if not (moments.n_rows > 0 and moments.weight_sum > 0 and np.isfinite([moments.n_rows, moments.weight_sum]).all()):
        raise ValueError("moments_counts must be two finite numbers above 0 (rows, weight)")
    if (moments.nk < 0).any():
        raise ValueError("moments_nk has negative weights")
    # the components' weights add up to the weight (but for the empty-component floor: far below this tolerance)
    if not abs(float(moments.nk.sum()) - moments.weight_sum) <= 1e-6 * moments.weight_sum:
        raise ValueError(f"moments_nk sums to {float(moments.nk.sum())!r}, not to the weight {moments.weight_sum!r}")


@dataclass(frozen=True)
class Learned:
    """Parameters, and the moments they were estimated from (in the step's units: see :class:`IncrementalStep`;
    None before the first step)."""

    params: Params
    moments: ComponentMoments | None


@dataclass(frozen=True)
class IncrementalStep(Advances):
    """EM (or MAP EM) on new rows on top of the moments of rows learnt before.

    Each M-step takes ``past + weight * (moments of the new rows under the current parameters)``, counted
    ``count`` times (:meth:`ComponentMoments.scaled`), and the state keeps that sum.

    Attributes
    ----------
    em : EMStep
        The algorithm: covariance type, ``reg_covar``, prior, missing values.
    past : ComponentMoments or None
        What the rows learnt before contribute, already weighted (by ``1 - rho`` or a forgetting factor); None:
        nothing yet.
    weight : float
        The factor of the new rows' moments: 1 (incremental EM), ``rho / their weight sum`` (stepwise EM).
    count : float
        The factor of the sum at the M-step: 1, or every unit of weight seen (stepwise EM's averages count as
        the rows they stand for, which matters to a prior and nothing else).
    """

    em: EMStep
    past: ComponentMoments | None
    weight: float = 1.0
    count: float = 1.0

    @property
    def covariance_type(self) -> str:
        return self.em.covariance_type

    @property
    def reg_covar(self) -> float:
        return self.em.reg_covar

    def prepare(self, state: Learned, dtype: str = "float64") -> Prepared:
        return self.em.prepare(state.params, dtype)

    def combine(self, stats: Stats, shift: Array) -> ComponentMoments:
        """``past + weight * moments(stats)``."""
        new = ComponentMoments.of(stats, shift, self.covariance_type).scaled(self.weight)
        return new if self.past is None else self.past + new

    def m_step(self, stats: Stats, shift: Array, previous: Learned | None = None) -> Learned:
        moments = self.combine(stats, shift)
        counted = moments if self.count == 1.0 else moments.scaled(self.count)
        before = None if previous is None else previous.params.covariances
        return Learned(m_step_moments(counted, self.reg_covar, self.em.prior, before), moments)

    def scores(self, stats: Stats, state: Learned, new_state: Learned) -> Scores:
        """The new rows' mean log-likelihood (with a prior, plus the log prior per unit of their weight)."""
        return self.em.scores(stats, state.params, new_state.params)

    @staticmethod
    def params(state: Learned) -> Params:
        return state.params

    @staticmethod
    def arrays(state: Learned) -> dict[str, Array]:
        arrays = {name: getattr(state.params, name) for name in PARAM_ARRAYS}
        return arrays if state.moments is None else {**arrays, **moments_arrays(state.moments)}

    def from_arrays(self, arrays: Mapping[str, Array]) -> Learned:
        moments = moments_from_arrays(arrays, self.covariance_type) if MOMENT_ARRAYS[0] in arrays else None
        return Learned(self.em.from_arrays(arrays), moments)

    def hyperparameters(self) -> Hyperparameters | None:
        return self.em.hyperparameters()
