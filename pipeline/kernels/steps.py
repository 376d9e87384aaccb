"""The seam between the EM driver and an algorithm: the :class:`Step` protocol and what an iteration reports.

The driver (:mod:`pipeline.em`) advances runs of any algorithm the same way: the E-step constants of a run's state
(``prepare``) go to every block, the merged statistics come back to the M-step (``m_step``), and ``scores`` give the
numbers it reports and tests for convergence.  Maximum likelihood and MAP EM
(:class:`~pipeline.kernels.algorithms.EMStep`) keep :class:`~pipeline.kernels.params.Params` as their state; the
variational mixture (:class:`~pipeline.kernels.variational.VariationalStep`) keeps its posterior.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

from pipeline.kernels.arrays import Array
from pipeline.kernels.estep import Prepared
from pipeline.kernels.params import Params
from pipeline.kernels.stats import Stats

State = TypeVar("State")
# Plain numbers (floats, strings, nested lists of floats) for model.yaml and checkpoints.
Hyperparameters = dict[str, object]


@dataclass(frozen=True)
class Scores:
    """What an iteration reports: ``lower_bound`` (as scikit-learn's ``lower_bound_``) and the objective
    whose change is tested against ``tol`` (the same, or the log-posterior under a prior).

    ``kind`` says what the pass was: "em", a step of the algorithm from the state it reached (the only kind whose
    change is tested against ``tol``); "extrapolated", a pass at an extrapolated point, kept; "rejected", a pass at
    an extrapolated point whose objective fell, reporting the scores of the state the run goes on from
    (:mod:`~pipeline.kernels.acceleration`).
    """

    lower_bound: float
    objective: float
    kind: str = "em"


class _Stepping(Protocol[State]):
    def m_step(self, stats: Stats, shift: Array) -> State: ...

    def scores(self, stats: Stats, state: State, new_state: State) -> Scores: ...


class Advances:
    """``advance`` as the M-step and its scores: what every algorithm but an accelerated one does."""

    def advance(self: _Stepping[State], stats: Stats, shift: Array, state: State) -> tuple[State, Scores]:
        new_state = self.m_step(stats, shift)
        return new_state, self.scores(stats, state, new_state)


class Step(Protocol[State]):
    """One algorithm's iteration, for the driver; ``State`` is what it iterates on (``Params`` for EM)."""

    @property
    def covariance_type(self) -> str: ...

    @property
    def reg_covar(self) -> float:
        """Added to the diagonal of every covariance at the M-step (also the floor of the collapse checks)."""
        ...

    def prepare(self, state: State, dtype: str = "float64") -> Prepared:
        """The E-step's constants of ``state``, sent to every block (``dtype``: the chunks' arithmetic)."""
        ...

    def m_step(self, stats: Stats, shift: Array) -> State:
        """The next state from the merged statistics of all rows, taken about ``shift`` (K, D)."""
        ...

    def scores(self, stats: Stats, state: State, new_state: State) -> Scores:
        """What the iteration from ``state`` (whose E-step gave ``stats``) to ``new_state`` reports."""
        ...

    def advance(self, stats: Stats, shift: Array, state: State) -> tuple[State, Scores]:
        """The state after a pass from ``state`` gave ``stats``, and its scores (:class:`Advances`: the M-step)."""
        ...

    def params(self, state: State) -> Params:
        """The mixture a state scores and predicts with."""
        ...

    def arrays(self, state: State) -> dict[str, Array]:
        """The state as named arrays (model.npz, checkpoints)."""
        ...

    def from_arrays(self, arrays: Mapping[str, Array]) -> State:
        """The state of :meth:`arrays`'s arrays."""
        ...

    def hyperparameters(self) -> Hyperparameters | None:
        """The resolved priors' numbers (model.yaml, checkpoints), or None without a prior."""
        ...
