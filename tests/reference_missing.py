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


# ---------------------------------------------------------------------------
# Self-checks (python tests/reference_missing.py)
# ---------------------------------------------------------------------------


def _random_parameters(rng, K, D, covariance_type):
    """Random well-conditioned parameters in scikit-learn's shapes."""
    weights = rng.dirichlet(np.full(K, 5.0))
    means = rng.normal(scale=3.0, size=(K, D))
    if covariance_type == "full":
        covs = np.empty((K, D, D))
        for k in range(K):
            A = rng.normal(size=(D, D))
            covs[k] = A @ A.T / D + 0.5 * np.eye(D)
    elif covariance_type == "tied":
        A = rng.normal(size=(D, D))
        covs = A @ A.T / D + 0.5 * np.eye(D)
    elif covariance_type == "diag":
        covs = rng.uniform(0.5, 2.0, size=(K, D))
    else:
        covs = rng.uniform(0.5, 2.0, size=K)
    return weights, means, covs


def _sample(rng, n, weights, means, dense):
    """Draw ``n`` rows from a Gaussian mixture given dense covariances."""
    labels = rng.choice(len(weights), size=n, p=weights)
    X = np.empty((n, means.shape[1]))
    for i, k in enumerate(labels):
        X[i] = rng.multivariate_normal(means[k], dense[k])
    return X


def _self_check():  # pragma: no cover - run by hand
    """Print the results of the self-checks described in the module brief."""
    from scipy import integrate
    from sklearn.mixture import GaussianMixture
    from sklearn.mixture._gaussian_mixture import (
        _compute_precision_cholesky,
        _estimate_gaussian_parameters,
    )

    rng = np.random.default_rng(0)
    K, D, n = 3, 4, 300

    print("(a) complete data: reference E/M-step vs sklearn _estimate_gaussian_parameters (sklearn's responsibilities)")
    for ct in COVARIANCE_TYPES:
        w, mu, cov = _random_parameters(rng, K, D, ct)
        dense = dense_covariances(cov, ct, K, D)
        X = _sample(rng, n, w, mu, dense)
        # Responsibilities and log-likelihood from scikit-learn itself.
        gm = GaussianMixture(n_components=K, covariance_type=ct)
        gm.weights_, gm.means_, gm.covariances_ = w, mu, cov
        gm.precisions_cholesky_ = _compute_precision_cholesky(cov, ct)
        sk_ll, log_resp = gm._estimate_log_prob_resp(X)
        resp = np.exp(log_resp)
        own = estep_statistics(X, w, mu, cov, ct)
        print(f"  {ct:9s} log-likelihood vs sklearn score_samples: {abs(own['log_likelihood'] - sk_ll.sum()):.1e}")
        for reg in (0.0, 1e-3):
            stats = own
            rw, rmu, rcov = m_step(stats, ct, reg)
            sk_nk, sk_mu, sk_cov = _estimate_gaussian_parameters(X, resp, reg, ct)
            print(
                f"  {ct:9s} reg={reg:g}:"
                f" max|nk|={np.abs(stats['nk'] - sk_nk).max():.1e}"
                f" max|w|={np.abs(rw - sk_nk / sk_nk.sum()).max():.1e}"
                f" max|mu|={np.abs(rmu - sk_mu).max():.1e}"
                f" max|cov|={np.abs(rcov - sk_cov).max():.1e}"
            )

    print("(b) 20% missing at random: observed-data mean log-likelihood over EM")
    for ct in COVARIANCE_TYPES:
        w, mu, cov = _random_parameters(rng, K, D, ct)
        dense = dense_covariances(cov, ct, K, D)
        X = _sample(rng, 200, w, mu, dense)
        Xm = X.copy()
        Xm[rng.random(X.shape) < 0.2] = np.nan
        Xm[:3] = np.nan  # a few fully missing rows, which must be dropped
        # Start away from the truth.
        w0 = np.full(K, 1.0 / K)
        mu0 = X[rng.choice(len(X), size=K, replace=False)]
        cov0 = {
            "full": np.array([np.eye(D)] * K),
            "tied": np.eye(D),
            "diag": np.ones((K, D)),
            "spherical": np.ones(K),
        }[ct]
        for reg in (0.0, 1e-6):
            *_, ll = em(Xm, w0, mu0, cov0, ct, n_iter=30, reg_covar=reg)
            steps = np.diff(ll)
            print(
                f"  {ct:9s} reg={reg:g}: ll[0]={ll[0]:.4f} ll[-1]={ll[-1]:.4f}"
                f" min step={steps.min():+.2e} (decreases: {(steps < 0).sum()})"
            )
        stats = estep_statistics(Xm, w0, mu0, cov0, ct)
        print(
            f"  {'':9s} n_rows={stats['n_rows']} n_dropped={stats['n_dropped']}"
            f" missing fraction={np.isnan(Xm[3:]).mean():.3f}"
        )

    print("(c) row_log_densities vs direct marginalisation of a dense Gaussian")
    for ct in COVARIANCE_TYPES:
        w, mu, cov = _random_parameters(rng, K, D, ct)
        dense = dense_covariances(cov, ct, K, D)
        worst = 0.0
        for _ in range(20):
            x = _sample(rng, 1, w, mu, dense)[0]
            mask = rng.random(D) < 0.5
            if mask.all():
                mask[rng.integers(D)] = False
            x[mask] = np.nan
            got = row_log_densities(x, w, mu, cov, ct)
            # Marginal by a selection matrix and a hand-written log-density.
            obs = np.flatnonzero(~mask)
            P = np.eye(D)[obs]
            for k in range(K):
                S = P @ dense[k] @ P.T
                r = x[obs] - P @ mu[k]
                L = np.linalg.cholesky(S)
                z = np.linalg.solve(L, r)
                expect = np.log(w[k]) - 0.5 * len(obs) * np.log(2 * np.pi) - np.log(np.diag(L)).sum() - 0.5 * z @ z
                worst = max(worst, abs(got[k] - expect))
        print(f"  {ct:9s} selection-matrix formula: max abs diff {worst:.1e}")

    # Numerical integration of the dense joint density over one missing
    # coordinate (D = 3, coordinate 1 missing).
    D3 = 3
    worst = 0.0
    for ct in COVARIANCE_TYPES:
        w, mu, cov = _random_parameters(rng, 2, D3, ct)
        dense = dense_covariances(cov, ct, 2, D3)
        x = _sample(rng, 1, w, mu, dense)[0]
        x[1] = np.nan
        got = row_log_densities(x, w, mu, cov, ct)
        for k in range(2):
            joint = multivariate_normal(mu[k], dense[k])
            sd = np.sqrt(dense[k][1, 1])

            def integrand(t, x=x, joint=joint):
                return joint.pdf(np.array([x[0], t, x[2]]))

            val, _ = integrate.quad(
                integrand, mu[k][1] - 40 * sd, mu[k][1] + 40 * sd, epsabs=0, epsrel=1e-12, limit=200
            )
            worst = max(worst, abs(got[k] - (np.log(w[k]) + np.log(val))))
    print(f"  all types, quadrature over a missing coordinate: max abs diff {worst:.1e}")

    print("extra checks")
    # With nothing observed, the moments are the prior ones.
    w, mu, cov = _random_parameters(rng, 2, 4, "full")
    ex, exx = conditional_moments(np.full(4, np.nan), mu[0], cov[0])
    print(f"  all-missing moments = prior moments: {np.abs(exx - cov[0] - np.outer(mu[0], mu[0])).max():.1e}")
    # Conditional moments vs a least-squares regression of the missing
    # coordinates on the observed ones over many draws (for a Gaussian the
    # regression line is the conditional mean, the residual covariance the
    # conditional covariance).
    x = np.array([mu[0][0] + 0.7, np.nan, mu[0][2] - 0.3, np.nan])
    ex, exx = conditional_moments(x, mu[0], cov[0])
    draws = rng.multivariate_normal(mu[0], cov[0], size=400_000)
    o, m = [0, 2], [1, 3]
    Zo = np.column_stack([np.ones(len(draws)), draws[:, o]])
    beta, *_ = np.linalg.lstsq(Zo, draws[:, m], rcond=None)
    resid = draws[:, m] - Zo @ beta
    mc_mean = np.array([1.0, x[0], x[2]]) @ beta
    mc_cov = resid.T @ resid / len(draws)
    print(
        f"  conditional mean vs regression on 400k draws: "
        f"{np.abs(ex[m] - mc_mean).max():.1e}; conditional cov: "
        f"{np.abs(exx[np.ix_(m, m)] - np.outer(ex[m], ex[m]) - mc_cov).max():.1e}"
    )
    # Frequency weights equal row duplication.
    X = _sample(rng, 40, w, mu, cov)
    X[rng.random(X.shape) < 0.2] = np.nan
    s = rng.integers(0, 4, size=len(X))
    a = estep_statistics(X, w, mu, cov, "full", sample_weight=s)
    b = estep_statistics(np.repeat(X, s, axis=0), w, mu, cov, "full")
    d_ll = abs(a["log_likelihood"] - b["log_likelihood"])
    d_xx = np.abs(a["sum_xx"] - b["sum_xx"]).max()
    print(f"  sample_weight == duplication: ll {d_ll:.1e}, sum_xx {d_xx:.1e}")
    # Imputation with diagonal covariances is the posterior-weighted mean.
    wd, mud, covd = _random_parameters(rng, 3, 4, "diag")
    Xd = _sample(rng, 30, wd, mud, dense_covariances(covd, "diag", 3, 4))
    Xd[rng.random(Xd.shape) < 0.3] = np.nan
    Xi = impute(Xd, wd, mud, covd, "diag")
    worst = 0.0
    for i in range(len(Xd)):
        miss = np.isnan(Xd[i])
        if miss.all() or not miss.any():
            continue
        ld = row_log_densities(Xd[i], wd, mud, covd, "diag")
        p = np.exp(ld - logsumexp(ld))
        worst = max(worst, np.abs(Xi[i, miss] - (p @ mud)[miss]).max())
    kept = np.array_equal(Xi[~np.isnan(Xd)], Xd[~np.isnan(Xd)])
    print(f"  impute (diag) vs sum_k p(k|x_o) mu_k,m: {worst:.1e}; observed unchanged: {kept}")
    try:
        row_log_densities(np.full(4, np.nan), w, mu, cov, "full")
    except ValueError as exc:
        print(f"  all-missing row -> ValueError: {exc}")


if __name__ == "__main__":  # pragma: no cover
    _self_check()
