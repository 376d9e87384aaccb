"""The vocabulary shared by the config, the estimators and the kernels: one home for each list of choices."""

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")
# Arithmetic the E-step can run in (see ``kernels.prepare``).
DTYPES = ("float64", "float32")
# Rows with NaN/inf in the selected columns: refuse, drop them, or use their observed values.
NAN_POLICIES = ("error", "drop", "marginalize")
ALGORITHMS = ("em", "variational")
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
