"""Naive NumPy reference for MAP EM under mclust's conjugate prior.

This module is an *independent* reference implementation used by the tests.
It favours clarity over speed: it loops over mixture components and writes
every quantity straight from its definition.  It imports nothing from the
``pipeline`` package.

The prior is the one of Fraley & Raftery (2007), "Bayesian regularization
for normal mixture estimation and model-based clustering", Journal of
Classification 24:155-181, as implemented by R mclust 6.1.x
(``defaultPrior()``, ``priorControl()``, the Fortran routines ``mevvvp`` /
``msvvvp``, ``meeeep`` / ``mseeep``, ``mevvip`` / ``msvvip``, ``meviip`` /
``msviip`` in ``src/mclust.f``).  The derivation and the sources are written
up in ``/work/notes/mclust_prior.md``.

Covariance types and their mclust names:

=============  ======  ===============================
type           mclust  ``covariances`` shape
=============  ======  ===============================
``full``       VVV     ``(K, D, D)``
``tied``       EEE     ``(D, D)``
``diag``       VVI     ``(K, D)``
``spherical``  VII     ``(K,)``
=============  ======  ===============================

with ``weights`` of shape ``(K,)`` and ``means`` of shape ``(K, D)``.

Hyperparameters (a ``dict`` as returned by :func:`default_prior`):

* ``shrinkage`` -- kappa_P >= 0 (mclust default 0.01; 0 means a flat,
  improper prior on the means);
* ``mean`` -- mu_P, shape ``(D,)`` (default: column means of the data);
* ``dof`` -- nu_P (default ``D + 2``);
* ``scale`` -- Lambda_P, ``(D, D)`` for full/tied; zeta_P, a positive
  scalar, for diag/spherical.

The prior (per component ``k``; for ``tied`` the covariance prior is taken
once, the mean prior once per component):

* full / tied: ``mu_k | Sigma ~ N(mu_P, Sigma / kappa_P)`` and
  ``Sigma ~ InverseWishart(nu_P, Lambda_P)``, density
  ``|Lambda|^(nu/2) / (2^(nu D / 2) Gamma_D(nu/2)) |Sigma|^(-(nu+D+1)/2)
  exp(-tr(Lambda Sigma^-1) / 2)`` (``scipy.stats.invwishart(df=nu,
  scale=Lambda)``).
* spherical: ``mu_k | s_k ~ N(mu_P, (s_k / kappa_P) I)`` and
  ``s_k ~ InverseGamma(shape=nu_P/2, scale=zeta_P/2)``.
* diag: independently for every coordinate ``j``:
  ``mu_kj | s_kj ~ N(mu_Pj, s_kj / kappa_P)`` and
  ``s_kj ~ InverseGamma(shape=nu_P/2, scale=zeta_P/2)``.
* mixing proportions: no prior (a flat Dirichlet(1, ..., 1), whose constant
  log density is dropped).

Frequency weights (``sample_weight``): a row of weight ``w`` counts as ``w``
copies of that row everywhere (``n_k = sum_i w_i z_ik`` etc.).

Only :mod:`numpy` and :mod:`scipy` are imported.
"""

import numpy as np
from scipy.special import gammaln, logsumexp, multigammaln
from scipy.stats import multivariate_normal

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def _check_covariance_type(covariance_type):
    """Raise ``ValueError`` if ``covariance_type`` is not a known type."""
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")


def _weights_or_ones(X, sample_weight):
    """Return the frequency weights as a float array of shape ``(N,)``."""
    if sample_weight is None:
        return np.ones(X.shape[0])
    w = np.asarray(sample_weight, dtype=float)
    if w.shape != (X.shape[0],):
        raise ValueError("sample_weight must have shape (n_samples,)")
    if np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError("sample_weight must be finite and non-negative")
    return w


def full_covariances(covariances, covariance_type, n_components, n_features):
    """Expand covariances of any type to an array of shape ``(K, D, D)``.

    Parameters
    ----------
    covariances : ndarray
        Covariances in scikit-learn's shape for ``covariance_type``.
    covariance_type : {"full", "tied", "diag", "spherical"}
        The covariance type.
    n_components : int
        Number of components ``K``.
    n_features : int
        Dimension ``D``.

    Returns
    -------
    ndarray of shape (K, D, D)
        One full covariance matrix per component.
    """
    _check_covariance_type(covariance_type)
    c = np.asarray(covariances, dtype=float)
    out = np.empty((n_components, n_features, n_features))
    for k in range(n_components):
        if covariance_type == "full":
            out[k] = c[k]
        elif covariance_type == "tied":
            out[k] = c
        elif covariance_type == "diag":
            out[k] = np.diag(c[k])
        else:
            out[k] = c[k] * np.eye(n_features)
    return out


# ---------------------------------------------------------------------------
# Prior hyperparameters
# ---------------------------------------------------------------------------


def default_prior(
    X, n_components, covariance_type, sample_weight=None, shrinkage=0.01, mean=None, dof=None, scale=None
):
    """Hyperparameters of mclust's ``defaultPrior(data, G, modelName)``.

    Parameters
    ----------
    X : array-like of shape (N, D)
        The data the prior is derived from (mclust uses the whole data set).
    n_components : int
        Number of mixture components ``G``.
    covariance_type : {"full", "tied", "diag", "spherical"}
        Covariance type (mclust VVV, EEE, VVI, VII).
    sample_weight : array-like of shape (N,), optional
        Frequency weights: a row of weight ``w`` counts as ``w`` copies, so
        the column means and the (``n - 1``)-denominator variances are those
        of the expanded data set (mclust itself has no weights here).
    shrinkage : float, default 0.01
        kappa_P.  ``0`` (or ``None``) means no prior on the means.
    mean : array-like of shape (D,), optional
        mu_P; defaults to the (weighted) column means.
    dof : float, optional
        nu_P; defaults to ``D + 2``.
    scale : float or array-like of shape (D, D), optional
        Lambda_P (full/tied) or zeta_P (diag/spherical); defaults as below.

    Returns
    -------
    dict
        ``shrinkage`` (float), ``mean`` ((D,) array), ``dof`` (float) and
        ``scale`` ((D, D) array for full/tied, float for diag/spherical).

    Notes
    -----
    With ``n = sum of weights`` rows, ``D`` columns, ``G`` components,
    ``fac = (1 / G) ** (2 / D)`` and ``var`` the sample covariance with
    denominator ``n - 1`` (R's ``var``):

    * full, tied: ``scale = fac * var(X)`` if ``n > D``, otherwise
      ``fac * diag(column variances)`` (mclust's fallback);
    * diag, spherical: ``scale = fac * sum(column variances) / D``, a scalar.

    In one dimension these reduce to mclust's univariate ``"E"``/``"V"``
    defaults, ``dof = 3`` and ``scale = var(x) / G**2``.
    """
    _check_covariance_type(covariance_type)
    X = np.asarray(X, dtype=float)
    if X.ndim != 2:
        raise ValueError("X must be two-dimensional")
    w = _weights_or_ones(X, sample_weight)
    n = w.sum()
    d = X.shape[1]

    if shrinkage is None or not shrinkage:
        shrinkage = 0.0
    if shrinkage < 0:
        raise ValueError("negative shrinkage")

    column_mean = (w[:, None] * X).sum(axis=0) / n
    if mean is None:
        mean = column_mean
    else:
        if shrinkage == 0:
            raise ValueError("prior mean specified but not shrinkage")
        mean = np.asarray(mean, dtype=float).reshape(d)

    if dof is None:
        dof = d + 2.0

    if scale is None:
        centred = X - column_mean
        # Sample covariance with the (n - 1) denominator, written as a sum of
        # weighted outer products.
        cov = np.zeros((d, d))
        for i in range(X.shape[0]):
            cov += w[i] * np.outer(centred[i], centred[i])
        cov /= n - 1.0
        column_var = np.diag(cov).copy()
        fac = (1.0 / n_components) ** (2.0 / d)
        if covariance_type in ("full", "tied"):
            if n > d:
                scale = fac * cov
            else:
                scale = fac * np.diag(column_var)
        else:
            scale = fac * column_var.sum() / d
    elif covariance_type in ("full", "tied"):
        scale = np.asarray(scale, dtype=float).reshape(d, d)
    else:
        scale = float(scale)

    return {"shrinkage": float(shrinkage), "mean": np.asarray(mean, dtype=float), "dof": float(dof), "scale": scale}


# ---------------------------------------------------------------------------
# MAP M-step
# ---------------------------------------------------------------------------


def component_statistics(X, resp, sample_weight=None):
    """Weighted counts, means and scatter matrices of every component.

    Parameters
    ----------
    X : array-like of shape (N, D)
        Data.
    resp : array-like of shape (N, K)
        Responsibilities ``z_ik``.
    sample_weight : array-like of shape (N,), optional
        Frequency weights ``w_i`` (default all ones).

    Returns
    -------
    nk : ndarray of shape (K,)
        ``n_k = sum_i w_i z_ik``.
    xbar : ndarray of shape (K, D)
        ``xbar_k = sum_i w_i z_ik x_i / n_k`` (``nan`` where ``n_k == 0``).
    scatter : ndarray of shape (K, D, D)
        ``W_k = sum_i w_i z_ik (x_i - xbar_k)(x_i - xbar_k)^T`` (zero where
        ``n_k == 0``).
    """
    X = np.asarray(X, dtype=float)
    resp = np.asarray(resp, dtype=float)
    w = _weights_or_ones(X, sample_weight)
    n, d = X.shape
    k_count = resp.shape[1]
    nk = np.zeros(k_count)
    xbar = np.full((k_count, d), np.nan)
    scatter = np.zeros((k_count, d, d))
    for k in range(k_count):
        wz = w * resp[:, k]
        nk[k] = wz.sum()
        if nk[k] <= 0:
            continue
        xbar[k] = (wz[:, None] * X).sum(axis=0) / nk[k]
        for i in range(n):
            diff = X[i] - xbar[k]
            scatter[k] += wz[i] * np.outer(diff, diff)
    return nk, xbar, scatter


def map_m_step(X, resp, prior, covariance_type, sample_weight=None):
    """MAP M-step under mclust's conjugate prior.

    Parameters
    ----------
    X : array-like of shape (N, D)
        Data.
    resp : array-like of shape (N, K)
        Responsibilities ``z_ik`` (rows normally sum to one).
    prior : dict
        Hyperparameters as returned by :func:`default_prior`.
    covariance_type : {"full", "tied", "diag", "spherical"}
        Covariance type.
    sample_weight : array-like of shape (N,), optional
        Frequency weights (default all ones).

    Returns
    -------
    weights : ndarray of shape (K,)
        ``n_k / sum_i w_i`` (no prior on the mixing proportions, as mclust).
    means : ndarray of shape (K, D)
        ``(n_k xbar_k + kappa mu_P) / (n_k + kappa)``.
    covariances : ndarray
        scikit-learn's shape for ``covariance_type``.

    Notes
    -----
    With ``kappa = shrinkage``, ``nu = dof``, ``d = D``, ``G = K``,
    ``[kappa>0]`` = 1 if ``kappa > 0`` else 0, and
    ``C_k = (n_k kappa / (n_k + kappa)) (xbar_k - mu_P)(xbar_k - mu_P)^T``:

    * full (VVV):
      ``Sigma_k = (Lambda + W_k + C_k) / (nu + n_k + d + 1 + [kappa>0])``
    * tied (EEE):
      ``Sigma = (Lambda + sum_k (W_k + C_k)) / (nu + sum_k n_k + d + 1 + G [kappa>0])``
    * diag (VVI):
      ``s_kj = (zeta + W_k[j, j] + C_k[j, j]) / (nu + n_k + 2 + [kappa>0])``
    * spherical (VII):
      ``s_k = (zeta + tr W_k + tr C_k) / (nu + n_k d + 2 + d [kappa>0])``

    These are the exact maximisers of the expected complete-data log
    posterior and agree with mclust's ``mstep*`` Fortran (``msvvvp``,
    ``mseeep``, ``msvvip``, ``msviip``).  (mclust's ``mevvvp``, used by
    ``me``/``Mclust`` for VVV, always uses ``+ 2``, i.e. also when
    ``kappa == 0``; see the notes file.)

    A component with ``n_k == 0`` gets the prior mode: mean ``mu_P`` and the
    covariance formula above with ``W_k = C_k = 0``.
    """
    _check_covariance_type(covariance_type)
    X = np.asarray(X, dtype=float)
    w = _weights_or_ones(X, sample_weight)
    n, d = X.shape
    nk, xbar, scatter = component_statistics(X, resp, w)
    k_count = nk.shape[0]

    kappa = float(prior["shrinkage"])
    mu_p = np.asarray(prior["mean"], dtype=float)
    nu = float(prior["dof"])
    scale = prior["scale"]
    has_mean_prior = 1.0 if kappa > 0 else 0.0

    weights = nk / w.sum()

    means = np.empty((k_count, d))
    shrink = np.zeros((k_count, d, d))  # the C_k matrices
    for k in range(k_count):
        if nk[k] <= 0:
            means[k] = mu_p
            continue
        means[k] = (nk[k] * xbar[k] + kappa * mu_p) / (nk[k] + kappa)
        diff = xbar[k] - mu_p
        shrink[k] = (nk[k] * kappa / (nk[k] + kappa)) * np.outer(diff, diff)

    if covariance_type == "full":
        lam = np.asarray(scale, dtype=float)
        covariances = np.empty((k_count, d, d))
        for k in range(k_count):
            denominator = nu + nk[k] + d + 1.0 + has_mean_prior
            covariances[k] = (lam + scatter[k] + shrink[k]) / denominator
    elif covariance_type == "tied":
        lam = np.asarray(scale, dtype=float)
        total = lam.copy()
        for k in range(k_count):
            total += scatter[k] + shrink[k]
        denominator = nu + nk.sum() + d + 1.0 + k_count * has_mean_prior
        covariances = total / denominator
    elif covariance_type == "diag":
        zeta = float(scale)
        covariances = np.empty((k_count, d))
        for k in range(k_count):
            denominator = nu + nk[k] + 2.0 + has_mean_prior
            for j in range(d):
                covariances[k, j] = (zeta + scatter[k, j, j] + shrink[k, j, j]) / denominator
    else:
        zeta = float(scale)
        covariances = np.empty(k_count)
        for k in range(k_count):
            denominator = nu + nk[k] * d + 2.0 + d * has_mean_prior
            covariances[k] = (zeta + np.trace(scatter[k]) + np.trace(shrink[k])) / denominator
    return weights, means, covariances


# ---------------------------------------------------------------------------
# Log prior density
# ---------------------------------------------------------------------------


def _log_normal(x, mean, cov):
    """Log density of ``N(mean, cov)`` at ``x`` (all constants kept)."""
    x = np.atleast_1d(x)
    d = x.shape[0]
    cov = np.atleast_2d(cov)
    sign, logdet = np.linalg.slogdet(cov)
    if sign <= 0:
        return -np.inf
    diff = x - mean
    quad = diff @ np.linalg.solve(cov, diff)
    return -0.5 * (d * np.log(2.0 * np.pi) + logdet + quad)


def _log_inverse_wishart(sigma, nu, lam):
    """Log density of ``InverseWishart(nu, Lambda)`` at ``Sigma`` (constants kept).

    ``nu/2 log|Lambda| - nu d/2 log 2 - log Gamma_d(nu/2)
    - (nu + d + 1)/2 log|Sigma| - tr(Lambda Sigma^-1)/2``.
    """
    d = sigma.shape[0]
    sign_s, logdet_s = np.linalg.slogdet(sigma)
    sign_l, logdet_l = np.linalg.slogdet(lam)
    if sign_s <= 0 or sign_l <= 0:
        return -np.inf
    trace = np.trace(lam @ np.linalg.inv(sigma))
    return (
        0.5 * nu * logdet_l
        - 0.5 * nu * d * np.log(2.0)
        - multigammaln(0.5 * nu, d)
        - 0.5 * (nu + d + 1.0) * logdet_s
        - 0.5 * trace
    )


def _log_inverse_gamma(s, shape, scale):
    """Log density of ``InverseGamma(shape, scale)`` at ``s`` (constants kept).

    ``shape log(scale) - log Gamma(shape) - (shape + 1) log s - scale / s``.
    """
    if s <= 0:
        return -np.inf
    return shape * np.log(scale) - gammaln(shape) - (shape + 1.0) * np.log(s) - scale / s


def log_prior(means, covariances, prior, covariance_type):
    """Log prior density of the component means and covariances.

    Parameters
    ----------
    means : array-like of shape (K, D)
        Component means.
    covariances : array-like
        Covariances in scikit-learn's shape for ``covariance_type``.
    prior : dict
        Hyperparameters as returned by :func:`default_prior`.
    covariance_type : {"full", "tied", "diag", "spherical"}
        Covariance type.

    Returns
    -------
    float
        ``sum_k log N(mu_k | mu_P, Sigma_k / kappa)`` plus the log density of
        the covariance prior (per component for full/diag/spherical, once
        for tied), *with all normalising constants kept*, so that this is
        the log of a proper density when ``kappa > 0``:

        * full/tied: inverse-Wishart ``IW(nu, Lambda)`` (scipy's
          ``invwishart(df=nu, scale=Lambda)``);
        * diag: ``InverseGamma(nu/2, zeta/2)`` for every ``s_kj`` and
          ``N(mu_Pj, s_kj / kappa)`` for every ``mu_kj``;
        * spherical: ``InverseGamma(nu/2, zeta/2)`` for every ``s_k`` and
          ``N(mu_P, (s_k / kappa) I)`` for every ``mu_k``.

        The only constants dropped are those of improper or flat factors:
        with ``kappa == 0`` the flat prior on the means contributes 0, and
        the mixing proportions have no prior (flat), contributing 0.

    Notes
    -----
    Only the terms depending on the parameters matter for optimisation:
    the normalising constants (``d/2 log(kappa / 2 pi)`` per mean,
    ``nu/2 log|Lambda| - nu d/2 log 2 - log Gamma_d(nu/2)`` per inverse
    Wishart, ``nu/2 log(zeta/2) - log Gamma(nu/2)`` per inverse gamma) are
    constants for a fixed prior and may be dropped by an implementation as
    long as it drops them consistently.
    """
    _check_covariance_type(covariance_type)
    means = np.asarray(means, dtype=float)
    k_count, d = means.shape
    kappa = float(prior["shrinkage"])
    mu_p = np.asarray(prior["mean"], dtype=float)
    nu = float(prior["dof"])
    scale = prior["scale"]
    sigmas = full_covariances(covariances, covariance_type, k_count, d)

    total = 0.0
    # Prior on the means: mu_k ~ N(mu_P, Sigma_k / kappa).  For diag this
    # equals the product over coordinates of N(mu_Pj, s_kj / kappa).
    if kappa > 0:
        for k in range(k_count):
            total += _log_normal(means[k], mu_p, sigmas[k] / kappa)

    # Prior on the covariances.
    if covariance_type == "full":
        lam = np.asarray(scale, dtype=float)
        for k in range(k_count):
            total += _log_inverse_wishart(sigmas[k], nu, lam)
    elif covariance_type == "tied":
        lam = np.asarray(scale, dtype=float)
        total += _log_inverse_wishart(sigmas[0], nu, lam)
    elif covariance_type == "diag":
        zeta = float(scale)
        cov = np.asarray(covariances, dtype=float)
        for k in range(k_count):
            for j in range(d):
                total += _log_inverse_gamma(cov[k, j], 0.5 * nu, 0.5 * zeta)
    else:
        zeta = float(scale)
        cov = np.asarray(covariances, dtype=float)
        for k in range(k_count):
            total += _log_inverse_gamma(cov[k], 0.5 * nu, 0.5 * zeta)
    return float(total)


# ---------------------------------------------------------------------------
# E-step, log-likelihood and MAP EM
# ---------------------------------------------------------------------------


def weighted_log_prob(X, weights, means, covariances, covariance_type):
    """``log w_k + log N(x_i | mu_k, Sigma_k)`` for every row and component.

    Parameters
    ----------
    X : array-like of shape (N, D)
        Data.
    weights : array-like of shape (K,)
        Mixing proportions.
    means : array-like of shape (K, D)
        Component means.
    covariances : array-like
        Covariances in scikit-learn's shape for ``covariance_type``.
    covariance_type : {"full", "tied", "diag", "spherical"}
        Covariance type.

    Returns
    -------
    ndarray of shape (N, K)
    """
    X = np.asarray(X, dtype=float)
    means = np.asarray(means, dtype=float)
    weights = np.asarray(weights, dtype=float)
    k_count, d = means.shape
    sigmas = full_covariances(covariances, covariance_type, k_count, d)
    out = np.empty((X.shape[0], k_count))
    for k in range(k_count):
        with np.errstate(divide="ignore"):
            log_w = np.log(weights[k])
        out[:, k] = log_w + multivariate_normal(means[k], sigmas[k]).logpdf(X).reshape(-1)
    return out


def e_step(X, weights, means, covariances, covariance_type):
    """Responsibilities and per-row log-likelihoods.

    Parameters
    ----------
    X, weights, means, covariances, covariance_type
        As in :func:`weighted_log_prob`.

    Returns
    -------
    resp : ndarray of shape (N, K)
        Posterior membership probabilities.
    row_loglik : ndarray of shape (N,)
        ``log sum_k w_k N(x_i | mu_k, Sigma_k)``.
    """
    lp = weighted_log_prob(X, weights, means, covariances, covariance_type)
    row_loglik = logsumexp(lp, axis=1)
    resp = np.exp(lp - row_loglik[:, None])
    return resp, row_loglik


def log_posterior(X, weights, means, covariances, prior, covariance_type, sample_weight=None):
    """Total weighted log-likelihood, log prior and normalised log posterior.

    Parameters
    ----------
    X, weights, means, covariances, covariance_type
        As in :func:`weighted_log_prob`.
    prior : dict
        Hyperparameters as returned by :func:`default_prior`.
    sample_weight : array-like of shape (N,), optional
        Frequency weights (default all ones).

    Returns
    -------
    dict
        ``loglik`` -- ``sum_i w_i log p(x_i)`` (what mclust reports as
        ``loglik`` and uses in BIC); ``log_prior`` -- :func:`log_prior`;
        ``n`` -- ``sum_i w_i``; ``objective`` --
        ``(loglik + log_prior) / n``, the log posterior (up to the evidence)
        per unit of weight, the quantity MAP EM never decreases.
    """
    X = np.asarray(X, dtype=float)
    w = _weights_or_ones(X, sample_weight)
    _, row_loglik = e_step(X, weights, means, covariances, covariance_type)
    loglik = float(np.sum(w * row_loglik))
    lp = log_prior(means, covariances, prior, covariance_type)
    n = float(w.sum())
    return {"loglik": loglik, "log_prior": lp, "n": n, "objective": (loglik + lp) / n}


def map_em(X, weights, means, covariances, prior, covariance_type, n_iter, sample_weight=None):
    """Run ``n_iter`` iterations of MAP EM (E-step, then MAP M-step).

    Parameters
    ----------
    X : array-like of shape (N, D)
        Data.
    weights : array-like of shape (K,)
        Initial mixing proportions.
    means : array-like of shape (K, D)
        Initial means.
    covariances : array-like
        Initial covariances in scikit-learn's shape for ``covariance_type``.
    prior : dict
        Hyperparameters as returned by :func:`default_prior`.
    covariance_type : {"full", "tied", "diag", "spherical"}
        Covariance type.
    n_iter : int
        Number of EM iterations.
    sample_weight : array-like of shape (N,), optional
        Frequency weights (default all ones).

    Returns
    -------
    weights : ndarray of shape (K,)
    means : ndarray of shape (K, D)
    covariances : ndarray
        Parameters after ``n_iter`` iterations.
    history : list of float
        ``history[t]`` is the normalised log posterior
        ``(sum_i w_i log p(x_i | theta_t) + log_prior(theta_t)) / sum_i w_i``
        of the parameters ``theta_t`` produced by iteration ``t`` (so
        ``history[-1]`` belongs to the returned parameters); it is the
        ``objective`` of :func:`log_posterior` and never decreases.  Like
        mclust, which evaluates ``loglik`` after each M-step, the value is
        computed at the new parameters; to get the value at the starting
        parameters call :func:`log_posterior` on them.
    """
    X = np.asarray(X, dtype=float)
    w = _weights_or_ones(X, sample_weight)
    weights = np.asarray(weights, dtype=float)
    means = np.asarray(means, dtype=float)
    covariances = np.asarray(covariances, dtype=float)
    history = []
    for _ in range(n_iter):
        resp, _ = e_step(X, weights, means, covariances, covariance_type)
        weights, means, covariances = map_m_step(X, resp, prior, covariance_type, w)
        history.append(log_posterior(X, weights, means, covariances, prior, covariance_type, w)["objective"])
    return weights, means, covariances, history
