"""Pure NumPy kernels of Gaussian-mixture EM over one block of rows.

No Dask and no I/O here: every function takes arrays and returns arrays.  The
Dask layer (:mod:`pipeline.passes`) maps them over partitions and adds up their
results.  Notation follows scikit-learn: ``X`` is (n_samples, n_features),
``resp`` and ``log_resp`` are (n_samples, n_components), ``nk`` is
(n_components,).

- :mod:`~pipeline.kernels.params`: parameters and Cholesky factors of the precisions;
- :mod:`~pipeline.kernels.estep`: log densities and responsibilities, in log space;
- :mod:`~pipeline.kernels.stats`: block statistics, their merge, the M-step.
"""

from pipeline.kernels.estep import (
    DTYPES,
    MAX_SHIFT_DISTANCE2,
    MAX_SHIFT_DISTANCE2_FLOAT32,
    Prepared,
    estimate_log_resp,
    log_gaussian_prob,
    prepare,
)
from pipeline.kernels.params import (
    COVARIANCE_TYPES,
    Params,
    compute_precision_cholesky,
    covariances_from_precision_cholesky,
    make_params,
    n_parameters,
    precision_cholesky_from_precisions,
    precisions_from_cholesky,
    second_moment_shape,
)
from pipeline.kernels.stats import (
    Stats,
    Summary,
    block_log_likelihood,
    block_statistics,
    block_summary,
    empty_stats,
    hard_assignment_statistics,
    m_step,
    nearest_centre,
    random_resp_statistics,
    row_uniforms,
)

__all__ = [
    "COVARIANCE_TYPES", "DTYPES", "MAX_SHIFT_DISTANCE2", "MAX_SHIFT_DISTANCE2_FLOAT32", "Params", "Prepared", "Stats",
    "Summary", "block_log_likelihood", "block_statistics", "block_summary", "compute_precision_cholesky", "covariances_from_precision_cholesky",
    "empty_stats", "estimate_log_resp", "hard_assignment_statistics", "log_gaussian_prob", "m_step", "make_params",
    "n_parameters", "nearest_centre", "precision_cholesky_from_precisions", "precisions_from_cholesky", "prepare",
    "random_resp_statistics", "row_uniforms", "second_moment_shape",
]
