"""gmm-pipeline: Gaussian-mixture EM on partitioned Parquet with Dask.

>>> from pipeline import GaussianMixture, load_model
"""

from pipeline.estimator import GaussianMixture, load_model

__all__ = ["GaussianMixture", "load_model"]
