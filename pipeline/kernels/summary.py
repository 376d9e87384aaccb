"""The validation scan's summary of some blocks: row counts, weights, column extremes and moments, missing values."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline.kernels.arrays import Array

# A column's squared spread times the weight sum must stay below this, so that second moments stay finite.
MAX_SQUARED_SPREAD = 1e300
# The same for the E-step's float32 arithmetic (whose largest number is 3.4e38), with room for sums over a chunk.
MAX_SQUARED_SPREAD_FLOAT32 = 1e33


@dataclass(frozen=True)
class Summary:
    """What a validation scan learns of some blocks; ``+`` concatenates in block order.

    Attributes
    ----------
    n_rows : tuple of int
        Rows of each block, in order.
    weight_sum : float
    max_weight : float
    minimum, maximum : ndarray of shape (n_features,)
        Column extremes over rows of positive weight (observed values only).
    n_missing : int
        Missing values (NaN) in the rows kept.
    n_incomplete : int
        Rows kept with at least one missing value.
    column_weight, column_mean, column_m2 : ndarray of shape (n_features,)
        Each column's weight of observed values, weighted mean, and weighted sum of squared deviations about
        that mean; blocks combine by Chan's pairwise update, never as ``E[x^2] - E[x]^2``.
    """

    n_rows: tuple[int, ...]
    weight_sum: float
    max_weight: float
    minimum: Array
    maximum: Array
    n_missing: int
    n_incomplete: int
    column_weight: Array
    column_mean: Array
    column_m2: Array

    @property
    def variance(self) -> Array:
        """Each column's weighted variance over its observed values (the data's own scale, for collapse checks).

        Returns
        -------
        ndarray of shape (n_features,); NaN for a column with no observed value.
        """
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.column_m2 / self.column_weight

    def problem(
        self, columns: list[str], weights: str, float32: str | None = None, every_column: bool = True
    ) -> str | None:
        """What the arithmetic cannot carry, in words (None if nothing): weights that sum past float64's range or
        to 0, a column with no value or an infinite one, a column whose squared spread, times the weight sum,
        overflows float64, or (with ``float32``) whose squared spread comes near float32's range, where the E-step
        computes its squares.

        ``columns`` names each feature (e.g. "column 'x0'"), ``weights`` the weights (e.g. "sample_weight"),
        ``float32`` how float32 arithmetic was asked for (e.g. "model.dtype: float32"), None for float64;
        ``every_column``: whether a column with no value is a problem (not when learning goes on from moments
        that hold every column: missing values are then filled in by the current parameters).
        """
        if not math.isfinite(self.weight_sum):
            return (
                f"{weights} sums to more than float64 holds (largest weight {self.max_weight:.3g}); rescale the weights"
            )
        if self.weight_sum <= 0:
            return f"{weights} sums to zero; no row would count"
        with np.errstate(over="ignore", invalid="ignore"):
            spread = self.maximum - self.minimum
            load = np.square(spread) * max(self.weight_sum, 1.0)
        for j, name in enumerate(columns):
            if self.minimum[j] > self.maximum[j]:  # no value seen: every row missing it, or weighing 0
                if not every_column:
                    continue
                return f"{name} has no value in any row that counts (all missing); drop the column or fill it"
            if not (math.isfinite(self.minimum[j]) and math.isfinite(self.maximum[j])):
                return f"{name} has infinite values; a missing value is NaN, an infinite one is an error: clean them"
            if not (math.isfinite(load[j]) and load[j] < MAX_SQUARED_SPREAD):
                return (
                    f"{name} spans {spread[j]:.3g} (from {self.minimum[j]:.3g} to {self.maximum[j]:.3g}); its "
                    f"squares, weighted by a weight sum of {self.weight_sum:.3g}, overflow float64: rescale it"
                    + (f" or the {weights}" if self.weight_sum > sum(self.n_rows) else "")
                )
        if float32 is not None:
            for j, name in enumerate(columns):
                if not np.square(spread[j]) < MAX_SQUARED_SPREAD_FLOAT32:
                    return (
                        f"{name} spans {spread[j]:.3g} (from {self.minimum[j]:.3g} to {self.maximum[j]:.3g}); its "
                        f"squares pass what float32 arithmetic holds ({float32}): use float64 or rescale it"
                    )
        return None

    def __add__(self, other: Summary) -> Summary:
        wa, wb = self.column_weight, other.column_weight
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            total = wa + wb
            share = np.where(total > 0, wb / np.where(total > 0, total, 1.0), 0.0)
            delta = other.column_mean - self.column_mean
            merged = np.where(wa > 0, self.column_mean + delta * share, other.column_mean)
            mean = np.where(wb > 0, merged, self.column_mean)
            m2 = self.column_m2 + other.column_m2 + np.where((wa > 0) & (wb > 0), np.square(delta) * wa * share, 0.0)
        return Summary(
            self.n_rows + other.n_rows,
            self.weight_sum + other.weight_sum,
            max(self.max_weight, other.max_weight),
            np.fmin(self.minimum, other.minimum),
            np.fmax(self.maximum, other.maximum),
            self.n_missing + other.n_missing,
            self.n_incomplete + other.n_incomplete,
            total,
            mean,
            m2,
        )


def block_summary(X: Array, sample_weight: Array | None) -> Summary:
    """Row count, weights, column extremes and missing values of a block.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features); NaN marks a missing value
    sample_weight : ndarray of shape (n_samples,) or None
    """
    rows = X if sample_weight is None else X[sample_weight > 0]
    d = X.shape[1]
    with np.errstate(invalid="ignore"):
        minimum = np.fmin.reduce(rows, axis=0) if rows.shape[0] else np.full(d, np.inf)
        maximum = np.fmax.reduce(rows, axis=0) if rows.shape[0] else np.full(d, -np.inf)
    missing = np.isnan(X)
    if sample_weight is None:
        weight_sum, max_weight = float(X.shape[0]), 1.0 if X.shape[0] else 0.0
    else:
        with np.errstate(over="ignore"):  # a sum past float64's range is reported by Summary.problem
            weight_sum = float(sample_weight.sum())
        max_weight = float(sample_weight.max()) if sample_weight.size else 0.0
    column_weight, column_mean, column_m2 = _column_moments(X, missing, sample_weight)
    return Summary(
        (int(X.shape[0]),),
        weight_sum,
        max_weight,
        np.nan_to_num(minimum, nan=np.inf, posinf=np.inf, neginf=-np.inf),  # an infinite value stays infinite
        np.nan_to_num(maximum, nan=-np.inf, posinf=np.inf, neginf=-np.inf),
        int(missing.sum()),
        int(missing.any(axis=1).sum()),
        column_weight,
        column_mean,
        column_m2,
    )


def _column_moments(
    X: Array, missing: npt.NDArray[np.bool_], sample_weight: Array | None
) -> tuple[Array, Array, Array]:
    """Each column's weight of observed values, weighted mean and sum of squared deviations (one block)."""
    w = np.ones(X.shape[0]) if sample_weight is None else sample_weight
    observed = np.where(missing, 0.0, w[:, None])
    values = np.where(missing, 0.0, X)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # overflow is Summary.problem's to report
        weight = observed.sum(axis=0)
        mean = np.where(weight > 0, (observed * values).sum(axis=0) / np.where(weight > 0, weight, 1.0), 0.0)
        m2 = (observed * np.square(values - mean)).sum(axis=0)
    return weight, mean, m2
