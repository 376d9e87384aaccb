"""Pure NumPy kernels of Gaussian-mixture EM over one block of rows.

No Dask and no I/O here: every function takes arrays and returns arrays.  The
Dask layer (:mod:`pipeline.passes`) maps them over partitions and adds up their
results.  Notation follows scikit-learn: ``X`` is (n_samples, n_features),
``resp`` and ``log_resp`` are (n_samples, n_components), ``nk`` is
(n_components,).

- :mod:`~pipeline.kernels.params`: parameters, Cholesky factors of the precisions, the covariance types;
- :mod:`~pipeline.kernels.estep`: log densities and responsibilities, in log space;
- :mod:`~pipeline.kernels.stats`: block statistics and their merge;
- :mod:`~pipeline.kernels.mstep`: the M-step (maximum likelihood, or MAP under :mod:`~pipeline.kernels.prior`).
"""

from pipeline.kernels.estep import (
    DTYPES,
    MAX_SHIFT_DISTANCE2,
    MAX_SHIFT_DISTANCE2_FLOAT32,
    Prepared,
    estimate_log_resp,
    prepare,
)
from pipeline.kernels.mstep import m_step
from pipeline.kernels.params import (
    COVARIANCE_TYPES,
    Params,
    check_params,
    compute_precision_cholesky,
    covariance_shape,
    covariances_from_precision_cholesky,
    dense_covariances,
    is_dense,
    make_params,
    n_parameters,
    precision_cholesky_from_precisions,
    precisions_from_cholesky,
    unit_params,
)
from pipeline.kernels.prior import DataMoments, Prior, default_prior, log_prior
from pipeline.kernels.stats import (
    Fit,
    Stats,
    Summary,
    block_fit,
    block_statistics,
    block_summary,
    empty_stats,
    hard_assignment_statistics,
    nearest_centre,
    random_resp_statistics,
    row_uniforms,
)

__all__ = [
    "COVARIANCE_TYPES",
    "DTYPES",
    "MAX_SHIFT_DISTANCE2",
    "MAX_SHIFT_DISTANCE2_FLOAT32",
    "DataMoments",
    "Fit",
    "Params",
    "Prepared",
    "Prior",
    "Stats",
    "Summary",
    "block_fit",
    "block_statistics",
    "block_summary",
    "check_params",
    "compute_precision_cholesky",
    "covariance_shape",
    "covariances_from_precision_cholesky",
    "default_prior",
    "dense_covariances",
    "empty_stats",
    "is_dense",
    "estimate_log_resp",
    "hard_assignment_statistics",
    "log_prior",
    "m_step",
    "make_params",
    "n_parameters",
    "nearest_centre",
    "precision_cholesky_from_precisions",
    "precisions_from_cholesky",
    "prepare",
    "random_resp_statistics",
    "row_uniforms",
    "unit_params",
]
