"""The vocabulary shared by the config, the estimators and the kernels: one home for each list of choices."""

import enum

# scikit-learn's four, then mclust's fourteen models (volume, shape, orientation: Equal, Variable or I).
SKLEARN_COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
MCLUST_MODELS = ("EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV")
COVARIANCE_TYPES = SKLEARN_COVARIANCE_TYPES + MCLUST_MODELS


def covariance_in_words(covariance_type: str) -> str:
    """An mclust model in words, as its letters say ("diagonal: variable volume, equal shape" for ``VEI``); a
    scikit-learn type as its name."""
    if covariance_type not in MCLUST_MODELS:
        return covariance_type
    volume, shape, orientation = covariance_type
    family = "spherical" if shape == "I" else "diagonal" if orientation == "I" else "ellipsoidal"
    word = {"E": "equal", "V": "variable"}
    parts = [f"{word[volume]} volume"]
    parts += [f"{word[shape]} shape"] if shape != "I" else []
    parts += [f"{word[orientation]} orientation"] if orientation != "I" else []
    return f"{covariance_type} ({family}: {', '.join(parts)})"


INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")
# Arithmetic the E-step can run in (see ``kernels.prepare``).
DTYPES = ("float64", "float32")
ALGORITHMS = ("em", "variational")
# How EM's iteration is accelerated (see ``kernels.acceleration``).
ACCELERATIONS = ("none", "squarem")
WEIGHT_PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")
CRITERIA = ("bic", "aic", "icl")
# The variational mixture's priors (scikit-learn's BayesianGaussianMixture parameters); None takes its default.
VARIATIONAL_PRIOR_KEYS = (
    "weight_concentration_prior",
    "mean_precision_prior",
    "mean_prior",
    "degrees_of_freedom_prior",
    "covariance_prior",
)


class NanPolicy(enum.StrEnum):
    """What a fit does with rows holding NaN (a missing value) in the selected columns: refuse them, drop them, or
    use their observed values (``marginalize``).  Compares equal to its name, as the config and the estimators
    write it."""

    ERROR = "error"
    DROP = "drop"
    MARGINALIZE = "marginalize"

    @property
    def accepts_nan(self) -> bool:
        """Whether NaN may reach the fit's input (it is dropped or marginalised, not refused)."""
        return self is not NanPolicy.ERROR

    @property
    def marginalizes(self) -> bool:
        """Whether rows with missing values take part with their observed values."""
        return self is NanPolicy.MARGINALIZE

    def unusable(self, X):
        """Which rows of a Parquet partition ``X`` (shape (n_rows, n_features)) the fit cannot take: with
        ``marginalize`` those with no value observed, otherwise those with any value NaN or infinite (``drop``
        drops them; ``error`` refuses them).  Returns a bool array of shape (n_rows,)."""
        import numpy as np

        return np.isnan(X).all(axis=1) if self.marginalizes else ~np.isfinite(X).all(axis=1)

    def missing(self, X):
        """Which rows of an array ``X`` (shape (n_rows, n_features)) the fit leaves out for their NaN: with
        ``marginalize`` those with no value observed, with ``drop`` those with any NaN, with ``error`` none.  An
        infinite value is not missing: it is refused, as scikit-learn refuses it in an array.  Returns a bool
        array of shape (n_rows,)."""
        import numpy as np

        if not self.accepts_nan:
            return np.zeros(len(X), dtype=bool)
        return np.isnan(X).all(axis=1) if self.marginalizes else np.isnan(X).any(axis=1)


NAN_POLICIES = tuple(policy.value for policy in NanPolicy)

# Keys of the config's model section under their old names: each still works, with a RenamedKeyWarning (and a
# checkpoint or model.yaml that records an old name is read under the new one).
RENAMED = {"init": "init_params"}
