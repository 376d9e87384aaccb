"""Naive NumPy reference for exact Gaussian-mixture EM with missing values.

This module is an *independent* reference implementation used by the tests.
It deliberately favours clarity over speed: it loops over rows and over
mixture components, and it computes every quantity straight from its
textbook definition.

Missing values are encoded as ``NaN`` and are assumed to be missing at
random.  A row takes part with its observed coordinates only: its
log-density under component ``k`` is the log-density of the *marginal*
Gaussian of the observed coordinates, and the E-step fills in the expected
complete-data sufficient statistics ``E[x]`` and ``E[x x^T]`` using the
conditional Gaussian of the missing coordinates given the observed ones
(Ghahramani & Jordan, 1994; Little & Rubin, *Statistical Analysis with
Missing Data*, ch. 8 and 11).

Parameters follow scikit-learn's shapes by covariance type:

=============  ===============================
type           ``covariances`` shape
=============  ===============================
``full``       ``(K, D, D)``
``tied``       ``(D, D)``
``diag``       ``(K, D)``
``spherical``  ``(K,)``
=============  ===============================

with ``weights`` of shape ``(K,)`` and ``means`` of shape ``(K, D)``.

Conventions chosen where the brief left room (documented here so tests can
rely on them):

* A row whose values are all missing is skipped by the E-step (counted in
  ``n_dropped``) and rejected by :func:`row_log_densities` (``ValueError``).
* :func:`impute` fills an all-missing row with the mixture mean
  ``sum_k w_k mu_k`` (the posterior given no observation is the prior).
* :func:`estep_statistics` also returns ``sum_weights``, the total frequency
  weight of the rows used, which :func:`em` uses to normalise the
  log-likelihood.

Only :mod:`numpy` and :mod:`scipy` are imported.
"""

import numpy as np
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


# ---------------------------------------------------------------------------
# Parameter helpers
# ---------------------------------------------------------------------------


def _check_covariance_type(covariance_type):
    """Raise ``ValueError`` if ``covariance_type`` is not a known type."""
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")


def dense_covariances(covariances, covariance_type, K, D):
    """Expand covariances of any type to one dense matrix per component.

    Parameters
    ----------
    covariances : ndarray
        Covariances in scikit-learn's shape for ``covariance_type``:
        ``(K, D, D)`` for ``'full'``, ``(D, D)`` for ``'tied'``,
        ``(K, D)`` for ``'diag'`` and ``(K,)`` for ``'spherical'``.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
        How ``covariances`` is parametrised.
    K : int
        Number of mixture components.
    D : int
        Number of features.

    Returns
    -------
    dense : ndarray of shape (K, D, D)
        ``dense[k]`` is the full covariance matrix of component ``k``.

    Raises
    ------
    ValueError
        If ``covariance_type`` is unknown or ``covariances`` has the wrong
        shape.
    """
    _check_covariance_type(covariance_type)
    covariances = np.asarray(covariances, dtype=float)
    expected_shape = {
        "full": (K, D, D),
        "tied": (D, D),
        "diag": (K, D),
        "spherical": (K,),
    }[covariance_type]
    if covariances.shape != expected_shape:
        raise ValueError(f"{covariance_type!r} covariances must have shape {expected_shape}, got {covariances.shape}")

    dense = np.zeros((K, D, D))
    for k in range(K):
        if covariance_type == "full":
            dense[k] = covariances[k]
        elif covariance_type == "tied":
            dense[k] = covariances
        elif covariance_type == "diag":
            dense[k] = np.diag(covariances[k])
        else:  # spherical
            dense[k] = covariances[k] * np.eye(D)
    return dense


def _as_parameters(weights, means, covariances, covariance_type):
    """Validate parameters and return ``(weights, means, dense_covs, K, D)``."""
    weights = np.asarray(weights, dtype=float)
    means = np.asarray(means, dtype=float)
    if means.ndim != 2:
        raise ValueError(f"means must have shape (K, D), got {means.shape}")
    K, D = means.shape
    if weights.shape != (K,):
        raise ValueError(f"weights must have shape ({K},), got {weights.shape}")
    dense = dense_covariances(covariances, covariance_type, K, D)
    return weights, means, dense, K, D


# ---------------------------------------------------------------------------
# One row
# ---------------------------------------------------------------------------


def row_log_densities(x, weights, means, covariances, covariance_type):
    """Joint log-density of one partially observed row and each component.

    Parameters
    ----------
    x : array_like of shape (D,)
        One row; ``NaN`` marks a missing value.
    weights : array_like of shape (K,)
        Mixture weights.
    means : array_like of shape (K, D)
        Component means.
    covariances : array_like
        Component covariances, shape depending on ``covariance_type``
        (see :func:`dense_covariances`).
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
        How ``covariances`` is parametrised.

    Returns
    -------
    log_dens : ndarray of shape (K,)
        ``log_dens[k] = log w_k + log N(x_o | mu_{k,o}, Sigma_{k,oo})`` where
        ``o`` are the observed coordinates of ``x``.

    Raises
    ------
    ValueError
        If every value of ``x`` is missing, or if shapes do not match.
    """
    weights, means, dense, K, D = _as_parameters(weights, means, covariances, covariance_type)
    x = np.asarray(x, dtype=float)
    if x.shape != (D,):
        raise ValueError(f"x must have shape ({D},), got {x.shape}")
    observed = ~np.isnan(x)
    if not observed.any():
        raise ValueError("row has no observed value")

    x_o = x[observed]
    log_dens = np.empty(K)
    for k in range(K):
        mean_o = means[k][observed]
        cov_oo = dense[k][np.ix_(observed, observed)]
        log_pdf = multivariate_normal(mean=mean_o, cov=cov_oo).logpdf(x_o)
        log_dens[k] = np.log(weights[k]) + float(log_pdf)
    return log_dens


def conditional_moments(x, mean, cov):
    """First and second moments of one row given its observed part.

    Under a single Gaussian ``N(mean, cov)``, the missing block ``m`` given
    the observed block ``o`` is Gaussian with

    * mean ``mu_m + S_mo S_oo^{-1} (x_o - mu_o)``,
    * covariance ``C = S_mm - S_mo S_oo^{-1} S_om``.

    Parameters
    ----------
    x : array_like of shape (D,)
        One row; ``NaN`` marks a missing value.  If every value is missing
        the moments are the unconditional ones (``mean`` and
        ``cov + mean mean^T``).
    mean : array_like of shape (D,)
        Mean of the Gaussian component.
    cov : array_like of shape (D, D)
        Dense covariance of the Gaussian component.

    Returns
    -------
    ex : ndarray of shape (D,)
        ``E[x | x_o]``: observed values where observed, conditional mean of
        the missing values elsewhere.
    exx : ndarray of shape (D, D)
        ``E[x x^T | x_o]``: ``x_o x_o^T`` on the observed block,
        ``x_o E[x_m]^T`` (and its transpose) on the cross blocks and
        ``E[x_m] E[x_m]^T + C`` on the missing block.
    """
    x = np.asarray(x, dtype=float)
    mean = np.asarray(mean, dtype=float)
    cov = np.asarray(cov, dtype=float)
    D = x.shape[0]
    if mean.shape != (D,) or cov.shape != (D, D):
        raise ValueError("mean must have shape (D,) and cov shape (D, D)")

    observed = ~np.isnan(x)
    missing = ~observed
    o = np.flatnonzero(observed)
    m = np.flatnonzero(missing)

    ex = x.copy()
    cond_cov = np.zeros((len(m), len(m)))
    if len(m) > 0:
        if len(o) > 0:
            S_oo = cov[np.ix_(o, o)]
            S_mo = cov[np.ix_(m, o)]
            S_mm = cov[np.ix_(m, m)]
            # Solve instead of inverting: S_oo^{-1} S_om, shape (n_o, n_m).
            A = np.linalg.solve(S_oo, S_mo.T)
            ex[m] = mean[m] + A.T @ (x[o] - mean[o])
            cond_cov = S_mm - S_mo @ A
        else:
            ex[m] = mean[m]
            cond_cov = cov[np.ix_(m, m)].copy()
        cond_cov = 0.5 * (cond_cov + cond_cov.T)  # remove rounding asymmetry

    # E[x x^T] = E[x] E[x]^T + Cov[x | x_o]; the conditional covariance is
    # zero everywhere except on the missing block.
    exx = np.outer(ex, ex)
    exx[np.ix_(m, m)] += cond_cov
    return ex, exx


# ---------------------------------------------------------------------------
# E-step and M-step
# ---------------------------------------------------------------------------


def _check_X_and_weights(X, sample_weight):
    """Return ``X`` as a 2-D float array and the frequency weights."""
    X = np.asarray(X, dtype=float)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}")
    n = X.shape[0]
    if sample_weight is None:
        sample_weight = np.ones(n)
    else:
        sample_weight = np.asarray(sample_weight, dtype=float)
        if sample_weight.shape != (n,):
            raise ValueError(f"sample_weight must have shape ({n},), got {sample_weight.shape}")
        if np.any(sample_weight < 0) or not np.all(np.isfinite(sample_weight)):
            raise ValueError("sample_weight must be finite and non-negative")
    return X, sample_weight


def estep_statistics(X, weights, means, covariances, covariance_type, sample_weight=None):
    """Expected complete-data sufficient statistics of a data set.

    Parameters
    ----------
    X : array_like of shape (n, D)
        Data; ``NaN`` marks a missing value.
    weights : array_like of shape (K,)
        Mixture weights.
    means : array_like of shape (K, D)
        Component means.
    covariances : array_like
        Component covariances, shape depending on ``covariance_type``.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
        How ``covariances`` is parametrised.
    sample_weight : array_like of shape (n,), optional
        Non-negative frequency weights ``s_i``; all ones by default.

    Returns
    -------
    stats : dict
        ``log_likelihood`` : float
            ``sum_i s_i log sum_k exp(row_log_densities(x_i))``, the
            observed-data log-likelihood of the rows used.
        ``nk`` : ndarray of shape (K,)
            ``sum_i s_i r_ik`` with ``r_ik = p(k | x_{i,o})``.
        ``sum_x`` : ndarray of shape (K, D)
            ``sum_i s_i r_ik E_k[x_i | x_{i,o}]``.
        ``sum_xx`` : ndarray of shape (K, D, D)
            ``sum_i s_i r_ik E_k[x_i x_i^T | x_{i,o}]``.
        ``n_rows`` : int
            Number of rows used (rows with at least one observed value).
        ``n_dropped`` : int
            Number of rows with every value missing (skipped).
        ``sum_weights`` : float
            ``sum_i s_i`` over the rows used.
    """
    weights, means, dense, K, D = _as_parameters(weights, means, covariances, covariance_type)
    X, sample_weight = _check_X_and_weights(X, sample_weight)
    if X.shape[1] != D:
        raise ValueError(f"X has {X.shape[1]} features, parameters have {D}")

    log_likelihood = 0.0
    nk = np.zeros(K)
    sum_x = np.zeros((K, D))
    sum_xx = np.zeros((K, D, D))
    n_rows = 0
    n_dropped = 0
    sum_weights = 0.0

    for i in range(X.shape[0]):
        x = X[i]
        s = sample_weight[i]
        if np.all(np.isnan(x)):
            n_dropped += 1
            continue
        n_rows += 1
        sum_weights += s

        log_dens = row_log_densities(x, weights, means, dense, "full")
        log_px = logsumexp(log_dens)
        resp = np.exp(log_dens - log_px)
        log_likelihood += s * log_px

        for k in range(K):
            ex, exx = conditional_moments(x, means[k], dense[k])
            nk[k] += s * resp[k]
            sum_x[k] += s * resp[k] * ex
            sum_xx[k] += s * resp[k] * exx

    return {
        "log_likelihood": float(log_likelihood),
        "nk": nk,
        "sum_x": sum_x,
        "sum_xx": sum_xx,
        "n_rows": n_rows,
        "n_dropped": n_dropped,
        "sum_weights": float(sum_weights),
    }


def m_step(stats, covariance_type, reg_covar):
    """Parameters maximising the expected complete-data log-likelihood.

    Follows scikit-learn's conventions: ``weights = nk / sum(nk)``,
    ``means = sum_x / nk``, and ``reg_covar`` is added to the diagonal of
    each covariance after the division.

    Parameters
    ----------
    stats : dict
        Output of :func:`estep_statistics` (keys ``nk``, ``sum_x``,
        ``sum_xx`` are used).
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
        Parametrisation of the returned covariances.
    reg_covar : float
        Non-negative value added to the diagonal of each covariance.

    Returns
    -------
    weights : ndarray of shape (K,)
        ``nk / sum(nk)``.
    means : ndarray of shape (K, D)
        ``sum_x / nk``.
    covariances : ndarray
        In scikit-learn's shape for ``covariance_type``:

        * ``full``: ``sum_xx_k / nk_k - mean_k mean_k^T + reg I``;
        * ``tied``: ``sum_k (sum_xx_k - nk_k mean_k mean_k^T) / sum(nk)
          + reg I``;
        * ``diag``: the diagonal of the full one (``+ reg``);
        * ``spherical``: the mean of that diagonal (``+ reg``).
    """
    _check_covariance_type(covariance_type)
    nk = np.asarray(stats["nk"], dtype=float)
    sum_x = np.asarray(stats["sum_x"], dtype=float)
    sum_xx = np.asarray(stats["sum_xx"], dtype=float)
    K, D = sum_x.shape

    weights = nk / nk.sum()
    means = np.zeros((K, D))
    full = np.zeros((K, D, D))  # un-regularised per-component scatter / nk
    for k in range(K):
        means[k] = sum_x[k] / nk[k]
        full[k] = sum_xx[k] / nk[k] - np.outer(means[k], means[k])

    if covariance_type == "full":
        covariances = np.zeros((K, D, D))
        for k in range(K):
            covariances[k] = full[k] + reg_covar * np.eye(D)
    elif covariance_type == "tied":
        scatter = np.zeros((D, D))
        for k in range(K):
            scatter += sum_xx[k] - nk[k] * np.outer(means[k], means[k])
        covariances = scatter / nk.sum() + reg_covar * np.eye(D)
    elif covariance_type == "diag":
        covariances = np.zeros((K, D))
        for k in range(K):
            covariances[k] = np.diag(full[k]) + reg_covar
    else:  # spherical
        covariances = np.zeros(K)
        for k in range(K):
            covariances[k] = np.mean(np.diag(full[k])) + reg_covar
    return weights, means, covariances


# ---------------------------------------------------------------------------
# Driver and imputation
# ---------------------------------------------------------------------------


def em(
    X,
    weights,
    means,
    covariances,
    covariance_type,
    n_iter,
    reg_covar=1e-6,
    sample_weight=None,
):
    """Run a fixed number of exact EM iterations with missing values.

    Parameters
    ----------
    X : array_like of shape (n, D)
        Data; ``NaN`` marks a missing value.
    weights, means, covariances : array_like
        Initial parameters in scikit-learn's shapes.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
        How ``covariances`` is parametrised.
    n_iter : int
        Number of E-step / M-step pairs.
    reg_covar : float, default=1e-6
        Added to the covariance diagonals by each M-step.
    sample_weight : array_like of shape (n,), optional
        Non-negative frequency weights; all ones by default.

    Returns
    -------
    weights : ndarray of shape (K,)
        Weights after ``n_iter`` iterations.
    means : ndarray of shape (K, D)
        Means after ``n_iter`` iterations.
    covariances : ndarray
        Covariances after ``n_iter`` iterations (shape by type).
    mean_log_likelihoods : list of float
        For each iteration, the observed-data log-likelihood computed by its
        E-step (i.e. under the parameters *before* that iteration's M-step)
        divided by the total frequency weight of the rows used.
    """
    weights = np.asarray(weights, dtype=float)
    means = np.asarray(means, dtype=float)
    covariances = np.asarray(covariances, dtype=float)
    mean_log_likelihoods = []
    for _ in range(n_iter):
        stats = estep_statistics(X, weights, means, covariances, covariance_type, sample_weight)
        if stats["sum_weights"] <= 0:
            raise ValueError("no rows with positive weight and an observed value")
        mean_log_likelihoods.append(stats["log_likelihood"] / stats["sum_weights"])
        weights, means, covariances = m_step(stats, covariance_type, reg_covar)
    return weights, means, covariances, mean_log_likelihoods


def impute(X, weights, means, covariances, covariance_type):
    """Replace each missing value by its conditional mean under the mixture.

    For a row with observed part ``x_o`` the imputed missing part is
    ``sum_k p(k | x_o) E_k[x_m | x_o]``.  Rows with every value missing are
    filled with the mixture mean ``sum_k w_k mu_k``.

    Parameters
    ----------
    X : array_like of shape (n, D)
        Data; ``NaN`` marks a missing value.
    weights : array_like of shape (K,)
        Mixture weights.
    means : array_like of shape (K, D)
        Component means.
    covariances : array_like
        Component covariances, shape depending on ``covariance_type``.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
        How ``covariances`` is parametrised.

    Returns
    -------
    X_imputed : ndarray of shape (n, D)
        A copy of ``X`` with no ``NaN``; observed values are unchanged.
    """
    weights, means, dense, K, D = _as_parameters(weights, means, covariances, covariance_type)
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] != D:
        raise ValueError(f"X must have shape (n, {D}), got {X.shape}")

    X_imputed = X.copy()
    for i in range(X.shape[0]):
        x = X[i]
        missing = np.isnan(x)
        if not missing.any():
            continue
        if missing.all():
            posterior = weights / weights.sum()
        else:
            log_dens = row_log_densities(x, weights, means, dense, "full")
            posterior = np.exp(log_dens - logsumexp(log_dens))
        filled = np.zeros(D)
        for k in range(K):
            ex, _ = conditional_moments(x, means[k], dense[k])
            filled += posterior[k] * ex
        X_imputed[i, missing] = filled[missing]
    return X_imputed
