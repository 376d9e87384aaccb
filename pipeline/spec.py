"""What a fit is asked to do: the declaration of every hyperparameter, and the record both faces build from it.

:data:`HYPERPARAMETERS` declares each hyperparameter once: its name (the
estimator's parameter and the config's key), what values it takes, its
defaults in both faces (and why they differ, where they do) and its meaning.
The config schema (:mod:`pipeline.config`) takes its bounds, defaults and
descriptions from it, and the estimators check their parameters by it.

``gmm fit``/``gmm select`` build a :class:`ModelSpec` from the config's
``model`` section (and ``data.nan_policy``); the estimators build one from
their parameters.  The fitting core (:mod:`pipeline.engine`) reads nothing
else: which algorithm runs, how starts are made and seeded, the priors, the
stopping rule.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from pipeline.choices import (
    ACCELERATIONS,
    COVARIANCE_TYPES,
    DTYPES,
    INIT_METHODS,
    NAN_POLICIES,
    VARIATIONAL_PRIOR_KEYS,
    WEIGHT_PRIOR_TYPES,
    NanPolicy,
)

_SAME: Any = object()


@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter, as both faces take it.

    Attributes
    ----------
    name : str
        The estimators' parameter, and the config's key in ``section``.
    kind : {"int", "float", "choice", "seed", "dtype"}
        An int or a float (never a bool) of at least ``low``; one of ``choices``; a seed (an int >= 0 or None,
        in the estimators also a NumPy Generator or RandomState); a dtype name (in the estimators also
        ``np.float32`` or ``np.dtype``).
    default
        The estimators' default (scikit-learn's).
    description : str
        Its meaning, as the config reference shows it.
    low : float, optional
        The least value of an int or float, included (or, with ``low_open``, excluded).
    high : float, optional
        The greatest value of a float, included.
    choices : tuple of str
        The values of a choice (of a dtype).
    optional : bool
        None is accepted too (takes a default resolved from the data).
    section : str
        The config's section holding the key ("" for a parameter the config does not have).
    config_default, config_low
        The config's, where they differ from the estimators' (``why`` says why).
    """

    name: str
    kind: str
    default: Any
    description: str
    low: float | None = None
    low_open: bool = False
    high: float | None = None
    choices: tuple[str, ...] = ()
    optional: bool = False
    section: str = "model"
    config_default: Any = _SAME
    config_low: Any = _SAME
    why: str = ""

    @property
    def key(self) -> str:
        """The config's key (``model.tol``), or "" where the config has none."""
        return f"{self.section}.{self.name}" if self.section else ""

    @property
    def in_config(self) -> bool:
        return bool(self.section)

    def default_in_config(self) -> Any:
        return self.default if self.config_default is _SAME else self.config_default

    def low_in_config(self) -> Any:
        return self.low if self.config_low is _SAME else self.config_low

    def expected(self, low: float | None = None) -> str:
        """What the estimators accept, in scikit-learn's words ("an int in the range [1, inf)")."""
        low = self.low if low is None else low
        if self.kind in ("int", "float"):
            shown = (float(low) if self.kind == "float" else int(low)) if low is not None else "-inf"
            bracket = "(" if self.low_open or low is None else "["
            top = "inf)" if self.high is None else f"{float(self.high)}]"
            text = f"a{'n' if self.kind == 'int' else ''} {self.kind} in the range {bracket}{shown}, {top}"
        elif self.kind == "seed":
            text = "None, an int >= 0, a numpy Generator or RandomState"
        else:
            text = f"a str among {list(self.choices)}"
        return f"None or {text}" if self.optional else text

    def accepts(self, value: Any) -> bool:
        """Whether the estimators accept ``value`` for this parameter."""
        if value is None and (self.optional or self.kind == "seed"):
            return True
        if self.kind == "choice":
            return isinstance(value, str) and value in self.choices
        if self.kind == "dtype":
            return dtype_name(value) in self.choices
        if self.kind == "seed":
            return _is_int(value) and value >= 0 or type(value).__name__ in ("Generator", "RandomState")
        number = _is_int(value) if self.kind == "int" else _is_real(value)
        if not number:
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        return bool(above and (self.high is None or value <= self.high))

    def check(self, value: Any, owner: str) -> None:
        """ValueError in scikit-learn's words if ``owner`` (an estimator's class name) cannot take ``value``."""
        if not self.accepts(value):
            raise ValueError(
                f"The {self.name!r} parameter of {owner} must be {self.expected()}. Got {value!r} instead."
            )


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def dtype_name(value: Any) -> str | None:
    """``"float32"`` for "float32", np.float32 or np.dtype("float32"); None for what is not a dtype."""
    import numpy as np

    try:
        return None if value is None else np.dtype(value).name
    except TypeError:
        return None


_POSITIVE = {"kind": "float", "low": 0.0, "low_open": True, "optional": True, "default": None}
_VARIATIONAL_ONLY = " (variational only)"

HYPERPARAMETERS: dict[str, Hyperparameter] = {
    h.name: h
    for h in (
        Hyperparameter(
            "n_components",
            "int",
            1,
            "K, the number of components",
            low=1,
            config_default=3,
            why="a config that leaves it out is a first look at the data, where 3 shows more than 1; "
            "the estimators keep scikit-learn's 1",
        ),
        Hyperparameter("covariance_type", "choice", "full", "each component's covariance", choices=COVARIANCE_TYPES),
        Hyperparameter(
            "tol",
            "float",
            1e-3,
            "stop when the mean log-likelihood changes by less than this",
            low=0.0,
        ),
        Hyperparameter("reg_covar", "float", 1e-6, "added to every covariance's diagonal", low=0.0),
        Hyperparameter(
            "max_iter",
            "int",
            100,
            "the most EM iterations",
            low=0,
            config_low=1,
            why="a command-line fit writes a fitted model, so it runs at least one iteration; the estimators' "
            "max_iter=0 only initialises, as scikit-learn's",
        ),
        Hyperparameter("n_init", "int", 1, "starts; they share every pass, the best lower bound wins", low=1),
        Hyperparameter(
            "init_params",
            "choice",
            "kmeans",
            f"how each start is made: {' | '.join(INIT_METHODS)}, or (the config only) the path of a model directory",
            choices=INIT_METHODS,
        ),
        Hyperparameter(
            "random_state",
            "seed",
            None,
            "seed of every start (null: fresh entropy every run)",
            low=0,
            config_default=0,
            why="a scheduled command-line fit is repeatable unless asked otherwise; the estimators keep "
            "scikit-learn's None",
        ),
        Hyperparameter(
            "dtype",
            "dtype",
            "float64",
            "arithmetic of the E-step and of a chunk's moments; sums and the M-step stay float64",
            choices=DTYPES,
        ),
        Hyperparameter(
            "acceleration",
            "choice",
            "none",
            "none: plain EM, one step a pass; squarem: EM extrapolated (SQUAREM), fewer passes to the same optimum "
            "(EM and MAP EM)",
            choices=ACCELERATIONS,
        ),
        Hyperparameter(
            "nan_policy",
            "choice",
            "error",
            "rows with NaN: fail, drop them, or use their observed values (marginalize)",
            choices=NAN_POLICIES,
            section="data",
        ),
        Hyperparameter(
            "weight_concentration_prior_type",
            "choice",
            "dirichlet_process",
            "the weights' prior" + _VARIATIONAL_ONLY,
            choices=WEIGHT_PRIOR_TYPES,
        ),
        Hyperparameter(
            "weight_concentration_prior",
            **_POSITIVE,
            description="the weights' concentration; smaller: fewer active components (null: 1 / n_components)"
            + _VARIATIONAL_ONLY,
        ),
        Hyperparameter(
            "mean_precision_prior",
            **_POSITIVE,
            description="how strongly the means are pulled to mean_prior (null: 1)" + _VARIATIONAL_ONLY,
        ),
        Hyperparameter(
            "degrees_of_freedom_prior",
            **_POSITIVE,
            description="the covariances' degrees of freedom, more than n_features - 1 (null: n_features)"
            + _VARIATIONAL_ONLY,
        ),
        Hyperparameter(
            "learning_offset",
            "float",
            10.0,
            "partial_fit: rho_t = (learning_offset + t) ** -learning_decay weights the t-th batch after the first",
            low=1.0,
            section="",
        ),
        Hyperparameter(
            "learning_decay",
            "float",
            0.7,
            "partial_fit: how fast the batches' weight falls",
            low=0.0,
            high=1.0,
            section="",
        ),
        Hyperparameter("verbose", "int", 0, "1 prints the iterations, 2 also their time and change", low=0, section=""),
        Hyperparameter("verbose_interval", "int", 10, "iterations between two printed ones", low=1, section=""),
    )
}
"""Every hyperparameter both faces check the same way, by name (arrays and priors are checked where resolved)."""


@dataclass(frozen=True)
class ModelSpec:
    """Every hyperparameter of a fit, as the core reads it (validated by the face that built it).

    Attributes
    ----------
    n_components, covariance_type, tol, reg_covar, max_iter, n_init, init_params, dtype
        As :class:`pipeline.GaussianMixture`'s parameters.
    random_state : int or None
        The seed of every start; None takes fresh entropy.
    nan_policy : NanPolicy
        "error", "drop" or "marginalize" (given as either).
    algorithm : {"em", "variational"}
    acceleration : {"none", "squarem"}
        SQUAREM's extrapolation of EM's iteration (EM and MAP EM, not while learning from earlier moments).
    prior : None, "default" or dict
        mclust's conjugate prior (EM only); a dict holds the hyperparameters given, each in place of the default.
    variational_priors : dict
        ``weight_concentration_prior_type`` and the variational priors given (None takes the default).
    weights_init, means_init, precisions_init : array-like or None
        Explicit parts of the start (EM only).
    tol_per_row : bool
        The variational bound is a total: True tests its change divided by the weight sum against ``tol``
        (the CLI's ``model.tol``), False the change itself (scikit-learn's).
    """

    n_components: int
    covariance_type: str
    tol: float
    reg_covar: float
    max_iter: int
    n_init: int
    init_params: str
    random_state: int | None
    dtype: str
    nan_policy: NanPolicy
    algorithm: str = "em"
    acceleration: str = "none"
    prior: Any = None
    variational_priors: dict[str, Any] | None = None
    weights_init: Any = None
    means_init: Any = None
    precisions_init: Any = None
    tol_per_row: bool = False

    @property
    def variational(self) -> bool:
        return self.algorithm == "variational"

    @property
    def needs_moments(self) -> bool:
        """Whether the data's mean and covariance are needed (to resolve a prior's defaults)."""
        return self.prior is not None or self.variational

    def __post_init__(self) -> None:
        object.__setattr__(self, "nan_policy", NanPolicy(self.nan_policy))

    @property
    def marginalize(self) -> bool:
        """Whether rows with missing values take part with their observed values."""
        return self.nan_policy.marginalizes

    def given_prior(self) -> dict[str, Any]:
        """The mclust prior's hyperparameters given (the rest take mclust's defaults)."""
        if self.prior is None or isinstance(self.prior, str):
            return {}
        return {key: value for key, value in self.prior.items() if value is not None}

    def given_variational_priors(self) -> dict[str, Any]:
        """The variational priors, None where scikit-learn's default is to be taken."""
        given = self.variational_priors or {}
        return {key: given.get(key) for key in VARIATIONAL_PRIOR_KEYS}

    @property
    def weight_concentration_prior_type(self) -> str:
        return (self.variational_priors or {}).get("weight_concentration_prior_type", "dirichlet_process")

    def tolerance(self, weight_sum: float) -> float:
        """The change of the objective below which a run has converged, for data of this weight sum."""
        return self.tol * weight_sum if self.variational and self.tol_per_row else self.tol
