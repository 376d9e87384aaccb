"""The seam between the EM driver and an algorithm: the :class:`Step` protocol and what an iteration reports.

The driver (:mod:`pipeline.em`) advances runs of any algorithm the same way: the E-step constants of a run's state
(``prepare``) go to every block, and the merged statistics come back to ``advance``, which gives the next state and
the :class:`Scores` the driver reports and tests for convergence.  An algorithm of one M-step a pass
(:class:`OneStep`) advances by that M-step (:class:`Advances`): maximum likelihood and MAP EM
(:class:`~pipeline.kernels.algorithms.EMStep`) keep :class:`~pipeline.kernels.params.Params` as their state, the
variational mixture (:class:`~pipeline.kernels.variational.VariationalStep`) its posterior.  SQUAREM
(:class:`~pipeline.kernels.acceleration.Squarem`) advances around EM's steps by a cycle of its own.
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


class OneStep(Protocol[State]):
    """An algorithm that makes one M-step a pass (EM, MAP EM, the variational mixture): its state from merged
    statistics, and what an iteration reports.  :class:`Advances` makes its ``advance`` of them."""

    def m_step(self, stats: Stats, shift: Array, previous: State | None = None) -> State:
        """The next state from the merged statistics of all rows (a start's, or an iteration's), taken about
        ``shift`` (K, D); ``previous``: the state whose E-step gave them (None at a start), a start for an M-step
        that searches (mclust's ``EVE``, ``VVE``)."""
        ...

    def scores(self, stats: Stats, state: State, new_state: State) -> Scores:
        """What the iteration from ``state`` (whose E-step gave ``stats``) to ``new_state`` reports."""
        ...


class Advances:
    """``advance`` as the M-step and its scores: what every algorithm but an accelerated one does."""

    def advance(self: OneStep[State], stats: Stats, shift: Array, state: State) -> tuple[State, Scores]:
        new_state = self.m_step(stats, shift, state)
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

    def advance(self, stats: Stats, shift: Array, state: State) -> tuple[State, Scores]:
        """The state after a pass from ``state`` gave ``stats``, and its scores (:class:`Advances`: the M-step;
        an accelerated algorithm also chooses where the next pass goes)."""
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
