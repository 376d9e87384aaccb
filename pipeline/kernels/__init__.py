"""Pure NumPy kernels of Gaussian-mixture EM over one block of rows.

No Dask and no I/O here: every function takes arrays and returns arrays.  The
Dask layer (:mod:`pipeline.passes`) maps them over partitions and adds up their
results.  Notation follows scikit-learn: ``X`` is (n_samples, n_features),
``resp`` and ``log_resp`` are (n_samples, n_components), ``nk`` is
(n_components,).

- :mod:`~pipeline.kernels.covtypes`: the covariance types in one table (layout, parameter count, M-steps);
- :mod:`~pipeline.kernels.mclust`: mclust's covariance models' maximum-likelihood covariances;
- :mod:`~pipeline.kernels.params`: parameters, Cholesky factors of the precisions, their checks;
- :mod:`~pipeline.kernels.estep`: log densities and responsibilities, in log space;
- :mod:`~pipeline.kernels.stats`: block statistics and their merge, block log-likelihoods;
- :mod:`~pipeline.kernels.summary`: the validation scan's summary of the blocks;
- :mod:`~pipeline.kernels.starts`: statistics for the starts (nearest centre, random responsibilities);
- :mod:`~pipeline.kernels.moments`: the data's moments;
- :mod:`~pipeline.kernels.mstep`: the maximum-likelihood M-step;
- :mod:`~pipeline.kernels.prior`: mclust's conjugate prior and the MAP M-step;
- :mod:`~pipeline.kernels.variational`: the variational (Dirichlet-process) mixture's priors, posterior, bound;
- :mod:`~pipeline.kernels.missing`: rows with missing values, marginalised (E-step, statistics, imputation);
- :mod:`~pipeline.kernels.steps`: the :class:`~pipeline.kernels.steps.Step` protocol the EM driver runs;
- :mod:`~pipeline.kernels.algorithms`: maximum-likelihood and MAP EM as a step, and the collapse checks;
- :mod:`~pipeline.kernels.acceleration`: SQUAREM around EM's step (``model.acceleration: squarem``).
"""

from pipeline.kernels.estep import (
    MAX_SHIFT_DISTANCE2,
    MAX_SHIFT_DISTANCE2_FLOAT32,
    Prepared,
    estimate_log_resp,
    prepare,
)
from pipeline.kernels.moments import DataMoments
from pipeline.kernels.mstep import ComponentMoments, m_step
from pipeline.kernels.params import (
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
from pipeline.kernels.prior import Prior, default_prior, log_prior
from pipeline.kernels.starts import hard_assignment_statistics, nearest_centre, random_resp_statistics
from pipeline.kernels.stats import Fit, Stats, block_fit, block_statistics, empty_stats
from pipeline.kernels.summary import Summary, block_summary

__all__ = [
    "MAX_SHIFT_DISTANCE2",
    "MAX_SHIFT_DISTANCE2_FLOAT32",
    "ComponentMoments",
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
    "unit_params",
]
