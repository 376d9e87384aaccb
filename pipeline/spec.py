"""What a fit is asked to do: every hyperparameter of the model, in one record both faces build.

``gmm fit``/``gmm select`` build a :class:`ModelSpec` from the config's
``model`` section (and ``data.nan_policy``); the estimators build one from
their parameters.  The fitting core (:mod:`pipeline.engine`) reads nothing
else: which algorithm runs, how starts are made and seeded, the priors, the
stopping rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.choices import VARIATIONAL_PRIOR_KEYS


@dataclass(frozen=True)
class ModelSpec:
    """Every hyperparameter of a fit, as the core reads it (validated by the face that built it).

    Attributes
    ----------
    n_components, covariance_type, tol, reg_covar, max_iter, n_init, init_params, dtype
        As :class:`pipeline.GaussianMixture`'s parameters.
    random_state : int or None
        The seed of every start; None takes fresh entropy.
    nan_policy : {"error", "drop", "marginalize"}
    algorithm : {"em", "variational"}
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

    n_components: int = 1
    covariance_type: str = "full"
    tol: float = 1e-3
    reg_covar: float = 1e-6
    max_iter: int = 100
    n_init: int = 1
    init_params: str = "kmeans"
    random_state: int | None = None
    dtype: str = "float64"
    nan_policy: str = "error"
    algorithm: str = "em"
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

    @property
    def marginalize(self) -> bool:
        """Whether rows with missing values take part with their observed values."""
        return self.nan_policy == "marginalize"

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
