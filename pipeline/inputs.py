"""Input checks of the estimators, with scikit-learn's semantics and messages (without needing scikit-learn).

Rows come as NumPy arrays, anything ``np.asarray`` takes, pandas or Dask
DataFrames (whose column names are the feature names) or Dask arrays.
Sparse and complex input are refused as scikit-learn refuses them; object
arrays are converted to float64, or refused when they hold what is not a number.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from pipeline.errors import PipelineWarning


class FeatureNamesWarning(PipelineWarning):
    """Rows with or without feature names given to a model fitted the other way (as scikit-learn warns)."""


def is_dask(X) -> bool:
    return hasattr(X, "__dask_graph__")


def _is_sparse(X) -> bool:
    try:
        import scipy.sparse

        return scipy.sparse.issparse(X)
    except ImportError:  # pragma: no cover - scipy is a dependency
        return False


def feature_names(X) -> np.ndarray | None:
    """The column names of a DataFrame when they are all strings (scikit-learn's rule), else None.

    Raises
    ------
    TypeError
        Names mixing strings and other types, as scikit-learn.
    """
    columns = getattr(X, "columns", None)
    if columns is None or not hasattr(X, "dtypes"):
        return None
    names = np.asarray(list(columns), dtype=object)
    if len(names) == 0:
        return None
    types = sorted({type(v).__qualname__ for v in names})
    if len(types) > 1 and "str" in types:
        raise TypeError(
            "Feature names are only supported if all input features have string names, but your input has "
            f"{types} as feature name / column name types. If you want feature names to be stored and validated, "
            "you must convert them all to strings, by using X.columns = X.columns.astype(str) for example. "
            "Otherwise you can remove feature / column names from your input data, or convert them all to a "
            "non-string data type."
        )
    return names if types == ["str"] else None


def check_feature_names(estimator, X) -> None:
    """Raise or warn, as scikit-learn, when X's feature names disagree with those seen at fit."""
    fitted = getattr(estimator, "feature_names_in_", None)
    given = feature_names(X)
    name = type(estimator).__name__
    if fitted is None and given is None:
        return
    if fitted is None:
        warnings.warn(
            f"X has feature names, but {name} was fitted without feature names", FeatureNamesWarning, stacklevel=3
        )
        return
    if given is None:
        warnings.warn(
            f"X does not have valid feature names, but {name} was fitted with feature names",
            FeatureNamesWarning,
            stacklevel=3,
        )
        return
    if len(fitted) == len(given) and (fitted == given).all():
        return
    message = "The feature names should match those that were passed during fit.\n"
    unexpected, missing = sorted(set(given) - set(fitted)), sorted(set(fitted) - set(given))

    def listed(names):
        return "".join(f"- {n}\n" for n in names[:5]) + ("- ...\n" if len(names) > 5 else "")

    if unexpected:
        message += "Feature names unseen at fit time:\n" + listed(unexpected)
    if missing:
        message += "Feature names seen at fit time, yet now missing:\n" + listed(missing)
    if not unexpected and not missing:
        message += "Feature names must be in the same order as they were in fit.\n"
    raise ValueError(message)


def _to_float(X, name: str) -> np.ndarray:
    if hasattr(X, "dtypes") and hasattr(X, "to_numpy"):  # a pandas DataFrame or Series
        X = X.to_numpy()
    array = np.asarray(X)
    if np.iscomplexobj(array):
        raise ValueError(f"Complex data not supported\n{array}\n")
    return np.asarray(array, dtype=np.float64)  # what is not a number fails as in scikit-learn (TypeError, ValueError)


def check_rows(
    X,
    estimator_name: str,
    *,
    n_features: int | None = None,
    min_samples: int = 1,
    allow_nan: bool = False,
    nan_policy: str | None = "error",
):
    """Rows as a float64 NumPy array (or Dask array), checked as scikit-learn's ``check_array``.

    Parameters
    ----------
    X : array-like, DataFrame or Dask collection of shape (n_samples, n_features)
    estimator_name : str
    n_features : int, optional
        The number of features seen at fit (then X must have as many).
    min_samples : int
        2 when fitting, 1 otherwise.
    allow_nan : bool
        NaN marks a missing value; infinity is never allowed.
    nan_policy : str
        The estimator's, for the message when NaN is not allowed.

    Returns
    -------
    ndarray or dask.array.Array of shape (n_samples, n_features), float64
    """
    if _is_sparse(X):
        raise TypeError(
            "Sparse data was passed for X, but dense data is required. Use '.toarray()' to convert to "
            "a dense numpy array."
        )
    if is_dask(X):
        if hasattr(X, "to_dask_array"):  # Dask DataFrame: every column, as pandas
            dtypes = list(X.dtypes)
            if not all(
                np.issubdtype(np.dtype(str(t)), np.number) or str(t) == "bool"
                for t in dtypes
                if str(t) not in ("category",)
            ):
                raise ValueError("X must hold numbers convertible to float64: a column of X is not numeric")
            X = X.to_dask_array(lengths=True)
        array = X
        if np.issubdtype(array.dtype, np.complexfloating):
            raise ValueError("Complex data not supported")
    else:
        array = _to_float(X, "X")
    if array.ndim != 2:
        if array.ndim == 1:
            raise ValueError(
                f"Expected 2D array, got 1D array instead:\narray={array!r}.\nReshape your data either using "
                "array.reshape(-1, 1) if your data has a single feature or array.reshape(1, -1) if it contains a "
                "single sample."
            )
        raise ValueError(f"Found array with dim {array.ndim}. {estimator_name} expected <= 2.")
    n, d = array.shape
    if isinstance(n, numbers.Integral) and n < min_samples:
        raise ValueError(
            f"Found array with {n} sample(s) (shape={tuple(array.shape)}) while a minimum of "
            f"{min_samples} is required by {estimator_name}."
        )
    if d < 1:
        raise ValueError(
            f"Found array with 0 feature(s) (shape={tuple(array.shape)}) while a minimum of 1 is "
            f"required by {estimator_name}."
        )
    if n_features is not None and d != n_features:
        raise ValueError(f"X has {d} features, but {estimator_name} is expecting {n_features} features as input.")
    if is_dask(array):
        return array.astype(np.float64)
    return check_finite(array, estimator_name, allow_nan, nan_policy)


def nan_advice(estimator_name: str, nan_policy: str | None) -> str:
    """What a user with NaN in X can do, for an estimator with ``nan_policy`` (None: it has no such parameter)."""
    if nan_policy is None:
        return (
            f"{estimator_name} has no nan_policy: drop or impute the rows with NaN first, or fit "
            "GaussianMixture(nan_policy='marginalize'), which uses each row's observed values"
        )
    if nan_policy == "error":
        return "set nan_policy='marginalize' (use each row's observed values) or 'drop' (leave those rows out)"
    return "fit with nan_policy='marginalize'"


def check_finite(X: np.ndarray, estimator_name: str, allow_nan: bool, nan_policy: str | None = "error") -> np.ndarray:
    """``X`` itself, or ValueError for infinity, or for NaN unless ``allow_nan`` (also one block of Dask input).

    ``nan_policy`` is the estimator's (None for one without that parameter), for the advice.
    """
    if np.isinf(X).any():
        raise ValueError("Input X contains infinity or a value too large for dtype('float64').")
    if not allow_nan and np.isnan(X).any():
        policy = "" if nan_policy is None else f" with nan_policy={nan_policy!r}"
        raise ValueError(
            f"Input X contains NaN. {estimator_name} does not accept missing values encoded as NaN"
            f"{policy}: {nan_advice(estimator_name, nan_policy)}."
        )
    return X


def check_sample_weight(sample_weight, X):
    """Frequency weights as a float64 array of shape (n_samples,) (or a Dask array), checked as scikit-learn's."""
    if sample_weight is None:
        return None
    if is_dask(sample_weight) and not hasattr(sample_weight, "to_dask_array"):
        return sample_weight.astype(np.float64)
    if hasattr(sample_weight, "to_dask_array"):  # a Dask Series
        return sample_weight.to_dask_array(lengths=True).astype(np.float64)
    if isinstance(sample_weight, numbers.Number):
        sample_weight = np.full(X.shape[0], sample_weight, dtype=np.float64)
    weights = _to_float(sample_weight, "sample_weight")
    if weights.ndim != 1:
        raise ValueError("Sample weights must be 1D array or scalar")
    if not is_dask(X) and weights.shape != (X.shape[0],):
        raise ValueError(f"sample_weight.shape == {weights.shape}, expected {(X.shape[0],)}!")
    if not np.isfinite(weights).all():
        raise ValueError("Input sample_weight contains NaN or infinity.")
    if (weights < 0).any():
        raise ValueError("Negative values in data passed to `sample_weight`")
    return weights
