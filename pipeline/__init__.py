"""gmm-pipeline: Gaussian-mixture EM on partitioned Parquet with Dask.

>>> from pipeline import BayesianGaussianMixture, GaussianMixture, load_model

The three names are loaded on first use (PEP 562): importing ``pipeline`` or any
of its modules (the ``gmm`` command, a Dask worker configuring its logging)
loads neither Dask nor SciPy until an estimator is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.estimator import BayesianGaussianMixture, GaussianMixture, load_model

__all__ = ["BayesianGaussianMixture", "GaussianMixture", "load_model"]


def __getattr__(name: str) -> Any:
    """One of ``__all__``, imported when first asked for and then kept as an ordinary attribute."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from pipeline import estimator

    value = getattr(estimator, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
