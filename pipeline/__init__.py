"""gmm-pipeline: Gaussian-mixture EM on partitioned Parquet with Dask.

>>> from pipeline import BayesianGaussianMixture, GaussianMixture, load_model
"""

from pipeline.estimator import BayesianGaussianMixture, GaussianMixture, load_model

__all__ = ["BayesianGaussianMixture", "GaussianMixture", "load_model"]
