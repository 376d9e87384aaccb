"""The data's moments (weighted count, mean, covariance) from additive sums about a shift, missing values allowed.

The default priors (mclust's conjugate prior, the variational mixture's) and the starts take their scale from them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.kernels.arrays import Array


@dataclass(frozen=True)
class DataMoments:
    """Weighted row count, mean and (n - 1)-denominator covariance of the data, as R's ``colMeans`` and ``var``."""

    weight_sum: float
    mean: Array
    covariance: Array


@dataclass(frozen=True)
class MomentSums:
    """Sums for the data's moments about a shift ``c``; ``+`` adds.

    ``weight_sum``, ``s1``, ``s2``: ``sum w``, ``sum w (x - c)``, ``sum w (x - c)(x - c)^T`` of the complete
    rows; ``observed_*``: the same per column over every observed value (only the diagonal of ``s2``), which
    differ from them only where values are missing.
    """

    weight_sum: float
    s1: Array
    s2: Array
    observed_weight: Array
    observed_s1: Array
    observed_s2: Array

    def __add__(self, other: MomentSums) -> MomentSums:
        return MomentSums(
            self.weight_sum + other.weight_sum,
            self.s1 + other.s1,
            self.s2 + other.s2,
            self.observed_weight + other.observed_weight,
            self.observed_s1 + other.observed_s1,
            self.observed_s2 + other.observed_s2,
        )

    def moments(self, shift: Array) -> DataMoments:
        """The data's mean and (n - 1)-denominator covariance (R's ``var``; over the weight sum itself when that is
        at most 1).  With missing values: each column's mean and variance over its observed values, and the
        complete rows' covariance where they are more than ``d``, else only the diagonal."""
        d = shift.shape[0]
        if np.array_equal(self.observed_weight, np.full(d, self.weight_sum)):
            offset = self.s1 / self.weight_sum
            covariance = (self.s2 - np.outer(self.s1, offset)) / _denominator(self.weight_sum)
            return DataMoments(self.weight_sum, shift + offset, covariance)
        offset = self.observed_s1 / self.observed_weight
        variances = (self.observed_s2 - self.observed_s1 * offset) / np.vectorize(_denominator)(self.observed_weight)
        if self.weight_sum > d:
            complete = (self.s2 - np.outer(self.s1, self.s1 / self.weight_sum)) / _denominator(self.weight_sum)
            diagonal = np.diag(complete)
            scale = np.sqrt(variances / np.where(diagonal > 0, diagonal, 1.0))
            covariance = complete * np.outer(scale, scale)  # the complete rows' correlations, the columns' variances
        else:
            covariance = np.diag(variances)
        return DataMoments(float(self.observed_weight.min()), shift + offset, covariance)


def _denominator(weight_sum: float) -> float:
    return weight_sum - 1.0 if weight_sum > 1.0 else max(weight_sum, np.finfo(float).tiny)


def block_moment_sums(X: Array, sample_weight: Array | None, shift: Array) -> MomentSums:
    """MomentSums of a block about ``shift`` (see :class:`MomentSums` for rows with missing values)."""
    w = np.ones(X.shape[0]) if sample_weight is None else sample_weight
    observed = ~np.isnan(X)
    complete = observed.all(axis=1)
    centred = X[complete] - shift
    wc = w[complete]
    filled = np.where(observed, X - shift, 0.0)
    return MomentSums(
        float(wc.sum()),
        wc @ centred,
        (centred * wc[:, None]).T @ centred,
        w @ observed,
        w @ filled,
        w @ np.square(filled),
    )
