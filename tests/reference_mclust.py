"""Naive NumPy reference for the maximum-likelihood M-step of R mclust's fourteen covariance models.

This module is an *independent* reference used by the tests: it imports nothing from the ``pipeline``
package, loops over components and writes every quantity straight from the papers' formulas.

Every covariance is decomposed as ``Sigma_k = lambda_k D_k A_k D_k^T`` (Banfield & Raftery 1993; Celeux &
Govaert 1995, "Gaussian parsimonious clustering models", Pattern Recognition 28(5):781-793): the volume
``lambda_k = det(Sigma_k)^(1/d)``, the shape ``A_k`` diagonal with ``det(A_k) = 1`` and the orientation
``D_k`` orthogonal.  A model's three letters say whether volume, shape and orientation are Equal across
components, Variable, or the Identity:

=====  ===========================  =====  ==============================
model  Sigma_k                      model  Sigma_k
=====  ===========================  =====  ==============================
EII    lambda I                     EEE    lambda D A D^T
VII    lambda_k I                   VEE    lambda_k D A D^T
EEI    lambda A                     EVE    lambda D A_k D^T
VEI    lambda_k A                   VVE    lambda_k D A_k D^T
EVI    lambda A_k                   EEV    lambda D_k A D_k^T
VVI    lambda_k A_k                 VEV    lambda_k D_k A D_k^T
                                    EVV    lambda D_k A_k D_k^T
                                    VVV    Sigma_k (unconstrained)
=====  ===========================  =====  ==============================

Given responsibilities ``r_ik`` and row weights ``w_i`` (a row of weight ``w`` counts as ``w`` copies of it),
write ``n_k = sum_i w_i r_ik``, ``n = sum_k n_k``, ``mu_k = sum_i w_i r_ik x_i / n_k`` and the scatter
matrices ``W_k = sum_i w_i r_ik (x_i - mu_k)(x_i - mu_k)^T``.  The mixing proportions are ``n_k / n`` and the
means ``mu_k`` for every model; the covariances minimise (twice the negative expected complete-data log
likelihood, up to constants)

    F(Sigma) = sum_k n_k log det(Sigma_k) + tr(Sigma_k^-1 W_k)

under the model's constraints.  Nine models have closed forms (Celeux & Govaert 1995, their M-step for each
model of their Table 1; mclust's Fortran ``ms*`` routines); VEI, VEV and VEE alternate closed-form volume and
shape/orientation updates (Celeux & Govaert's iterative cases, as mclust runs them); EVE and VVE find the common
orientation by the two MM algorithms of Browne & McNicholas (2014), "Estimating common principal components in
high dimensions", Advances in Data Analysis and Classification 8 (cited in mclust's ``src/mclust2.f`` as
"algorithm MM 1 and MM 2 of Browne, McNicholas 2013").  Page numbers below are those mclust's comments give.
An iteration stops when ``|F_old - F_new| <= tol * (1 + |F_new|)`` (mclust's relative-change rule) or after
``max_iter`` iterations; every update of every iterative model lowers ``F`` or leaves it unchanged.
No regularisation is added: this is the plain maximum-likelihood estimate.

Sources read: mclust 6.1.3 (GitHub ``cran/mclust``), ``R/mclust.R`` (``nVarParams``, ``nMclustParams``,
``mstepVEI``, ``mstepVEV``), ``R/mclust2.R`` (``mstepVEE``, ``mstepEVE``, ``mstepVVE``, ``mstepEVV``),
``src/mclust.f`` (``mseii``, ``msvii``, ``mseei``, ``msvei``, ``msevi``, ``msvvi``, ``mseee``, ``mseev``,
``msvev``, ``msvvv``) and ``src/mclust2.f`` (``msevv``, ``msvee``, ``mseve``, ``msvve``).

Only :mod:`numpy` is imported.
"""

import numpy as np

MODELS = ("EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV")


def n_parameters(model, n_components, n_features):
    """Number of free parameters of a mixture, as mclust's ``nMclustParams`` counts them.

    ``(K - 1)`` mixing proportions, ``K d`` means and the covariance parameters of mclust's ``nVarParams``
    (``R/mclust.R``), with ``K`` components in ``d`` dimensions::

        EII 1                         EEE d(d+1)/2
        VII K                         VEE K + (d-1) + d(d-1)/2
        EEI d                         EVE 1 + K(d-1) + d(d-1)/2
        VEI K + (d-1)                 VVE K + K(d-1) + d(d-1)/2
        EVI 1 + K(d-1)                EEV 1 + (d-1) + K d(d-1)/2
        VVI K d                       VEV K + (d-1) + K d(d-1)/2
                                      EVV 1 - K + K d(d+1)/2
                                      VVV K d(d+1)/2

    (one volume, or ``K``; ``d - 1`` free shape values per shape matrix; ``d(d-1)/2`` angles per orientation).

    Parameters
    ----------
    model : str
        One of :data:`MODELS`.
    n_components : int
        ``K``.
    n_features : int
        ``d``.

    Returns
    -------
    int
    """
    _check_model(model)
    K, d = n_components, n_features
    rotation = d * (d - 1) // 2
    covariance = {
        "EII": 1,
        "VII": K,
        "EEI": d,
        "VEI": K + (d - 1),
        "EVI": 1 + K * (d - 1),
        "VVI": K * d,
        "EEE": d * (d + 1) // 2,
        "VEE": K + (d - 1) + rotation,
        "EVE": 1 + K * (d - 1) + rotation,
        "VVE": K + K * (d - 1) + rotation,
        "EEV": 1 + (d - 1) + K * rotation,
        "VEV": K + (d - 1) + K * rotation,
        "EVV": 1 - K + K * d * (d + 1) // 2,
        "VVV": K * d * (d + 1) // 2,
    }[model]
    return (K - 1) + K * d + covariance


def m_step(model, X, resp, sample_weight=None, tol=1e-10, max_iter=1000):
    """Maximum-likelihood M-step of one mclust model.

    Parameters
    ----------
    model : str
        One of :data:`MODELS`.
    X : array_like, shape (n, d)
    resp : array_like, shape (n, K)
        Responsibilities.
    sample_weight : array_like of shape (n,), optional
        Frequency weights of the rows (default: all 1).
    tol : float
        Relative change of ``F`` that stops the iterative models (VEI, VEE, EVE, VVE, VEV).  The MM steps of EVE
        and VVE converge slowly (hundreds of iterations at ``d = 5``): there their covariances were measured
        off by up to 1e-4 relative at ``tol=1e-10`` and 1e-6 at ``tol=1e-14``; ``tol=0`` with a larger
        ``max_iter`` runs until ``F`` stops changing at all.
    max_iter : int
        Most iterations of the iterative models.

    Returns
    -------
    weights : ndarray, shape (K,)
    means : ndarray, shape (K, d)
    covariances : ndarray, shape (K, d, d)
    """
    _check_model(model)
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}")
    counts, means, scatters = component_statistics(X, resp, sample_weight)
    iterative = {"VEI": _vei, "VEE": _vee, "EVE": _eve, "VVE": _vve, "VEV": _vev}
    if model in iterative:
        covariances = iterative[model](scatters, counts, tol, max_iter)
    else:
        closed = {
            "EII": _eii,
            "VII": _vii,
            "EEI": _eei,
            "EVI": _evi,
            "VVI": _vvi,
            "EEE": _eee,
            "EEV": _eev,
            "EVV": _evv,
            "VVV": _vvv,
        }
        covariances = closed[model](scatters, counts)
    return counts / counts.sum(), means, covariances


def component_statistics(X, resp, sample_weight=None):
    """Weighted counts, means and scatter matrices of every component.

    Parameters
    ----------
    X : array_like, shape (n, d)
    resp : array_like, shape (n, K)
    sample_weight : array_like of shape (n,), optional

    Returns
    -------
    counts : ndarray, shape (K,)
        ``n_k = sum_i w_i r_ik``.
    means : ndarray, shape (K, d)
        ``mu_k = sum_i w_i r_ik x_i / n_k``.
    scatters : ndarray, shape (K, d, d)
        ``W_k = sum_i w_i r_ik (x_i - mu_k)(x_i - mu_k)^T``.
    """
    X = np.asarray(X, dtype=float)
    resp = np.asarray(resp, dtype=float)
    w = np.ones(X.shape[0]) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    K = resp.shape[1]
    counts = np.empty(K)
    means = np.empty((K, X.shape[1]))
    scatters = np.empty((K, X.shape[1], X.shape[1]))
    for k in range(K):
        wr = w * resp[:, k]
        counts[k] = wr.sum()
        means[k] = wr @ X / counts[k]
        diff = X - means[k]
        scatters[k] = (wr[:, None] * diff).T @ diff
    return counts, means, scatters


def objective(covariances, scatters, counts):
    """``F = sum_k n_k log det(Sigma_k) + tr(Sigma_k^-1 W_k)``, the quantity the M-step minimises.

    Parameters
    ----------
    covariances : ndarray, shape (K, d, d)
    scatters : ndarray, shape (K, d, d)
    counts : ndarray, shape (K,)

    Returns
    -------
    float
    """
    total = 0.0
    for sigma, W, n_k in zip(covariances, scatters, counts):
        sign, logdet = np.linalg.slogdet(sigma)
        if sign <= 0:
            raise ValueError("a covariance matrix is not positive definite")
        total += n_k * logdet + np.trace(np.linalg.solve(sigma, W))
    return float(total)


def _check_model(model):
    """Raise ``ValueError`` if ``model`` is not one of :data:`MODELS`."""
    if model not in MODELS:
        raise ValueError(f"unknown mclust model {model!r}; expected one of {', '.join(MODELS)}")


def _det_root(values):
    """``prod(values)^(1/d)`` of a positive vector of length ``d``: the volume of a diagonal matrix."""
    return float(np.exp(np.mean(np.log(values))))


def _descending_eigh(W):
    """Eigenvalues (descending, shape ``(d,)``) and eigenvectors (columns, ``(d, d)``) of a symmetric matrix."""
    values, vectors = np.linalg.eigh(W)
    return values[::-1], vectors[:, ::-1]


def _stack(matrix, K):
    """``K`` copies of one ``(d, d)`` matrix, shape ``(K, d, d)``."""
    return np.repeat(matrix[None, :, :], K, axis=0)


def _converged(previous, current, tol):
    """mclust's stopping rule: ``|F_old - F_new| <= tol * (1 + |F_new|)``."""
    return abs(previous - current) <= tol * (1.0 + abs(current))


# ---------------------------------------------------------------------------------------------------------------
# Spherical models.


def _eii(scatters, counts):
    """EII, ``lambda I``: ``lambda = sum_k tr(W_k) / (n d)``.

    Celeux & Govaert (1995), spherical model ``[lambda I]``; mclust ``mseii``.
    """
    d = scatters.shape[1]
    lam = sum(np.trace(W) for W in scatters) / (counts.sum() * d)
    return _stack(lam * np.eye(d), len(counts))


def _vii(scatters, counts):
    """VII, ``lambda_k I``: ``lambda_k = tr(W_k) / (n_k d)``.

    Celeux & Govaert (1995), spherical model ``[lambda_k I]``; mclust ``msvii``.
    """
    d = scatters.shape[1]
    return np.array([np.trace(W) / (n_k * d) * np.eye(d) for W, n_k in zip(scatters, counts)])


# ---------------------------------------------------------------------------------------------------------------
# Diagonal models (orientation I).


def _eei(scatters, counts):
    """EEI, ``lambda A``: ``Sigma = diag(W) / n`` with ``W = sum_k W_k``.

    (So ``A = diag(W) / det(diag(W))^(1/d)``, ``lambda = det(diag(W))^(1/d) / n``.)  Celeux & Govaert (1995),
    diagonal model ``[lambda B]``; mclust ``mseei``.
    """
    sigma = np.diag(np.diag(scatters.sum(axis=0))) / counts.sum()
    return _stack(sigma, len(counts))


def _vei(scatters, counts, tol, max_iter):
    """VEI, ``lambda_k A``: alternate the volumes and the common shape (no closed form).

    With ``b_k = diag(W_k)`` (vectors of length ``d``), repeat

    * ``lambda_k = sum_j b_kj / a_j / (d n_k)``  (volume given shape),
    * ``a = c / prod(c)^(1/d)`` with ``c = sum_k b_k / lambda_k``  (shape given volumes),

    each the exact minimiser of ``F`` in its block.  Starts from ``A = I``, as mclust's ``msvei`` does
    (``src/mclust.f``: shape and scale set to 1 before its loop), so the first volumes are VII's closed form.
    Celeux & Govaert (1995), diagonal model ``[lambda_k B]`` (iterative).
    """
    K, d = len(counts), scatters.shape[1]
    b = np.array([np.diag(W) for W in scatters])
    a = np.ones(d)
    previous = np.inf
    for _ in range(max_iter):
        lam = np.array([np.sum(b[k] / a) / (d * counts[k]) for k in range(K)])
        c = sum(b[k] / lam[k] for k in range(K))
        a = c / _det_root(c)
        covariances = np.array([lam[k] * np.diag(a) for k in range(K)])
        current = objective(covariances, scatters, counts)
        if _converged(previous, current, tol):
            break
        previous = current
    return covariances


def _evi(scatters, counts):
    """EVI, ``lambda A_k``: ``A_k = B_k / det(B_k)^(1/d)``, ``lambda = sum_k det(B_k)^(1/d) / n``, ``B_k = diag(W_k)``.

    Celeux & Govaert (1995), diagonal model ``[lambda B_k]``; mclust ``msevi``.
    """
    b = [np.diag(W) for W in scatters]
    lam = sum(_det_root(b_k) for b_k in b) / counts.sum()
    return np.array([lam * np.diag(b_k / _det_root(b_k)) for b_k in b])


def _vvi(scatters, counts):
    """VVI, ``lambda_k A_k``: ``Sigma_k = diag(W_k) / n_k``.

    Celeux & Govaert (1995), diagonal model ``[lambda_k B_k]``; mclust ``msvvi``.
    """
    return np.array([np.diag(np.diag(W)) / n_k for W, n_k in zip(scatters, counts)])


# ---------------------------------------------------------------------------------------------------------------
# Ellipsoidal models with a common orientation D.


def _eee(scatters, counts):
    """EEE, ``lambda D A D^T``: ``Sigma = W / n`` with ``W = sum_k W_k``.

    Celeux & Govaert (1995), model ``[lambda C]``; mclust ``mseee``.
    """
    return _stack(scatters.sum(axis=0) / counts.sum(), len(counts))


def _vee(scatters, counts, tol, max_iter):
    """VEE, ``lambda_k C`` with ``C = D A D^T``, ``det C = 1``: alternate the volumes and ``C`` (no closed form).

    Repeat

    * ``C = M / det(M)^(1/d)`` with ``M = sum_k W_k / lambda_k``  (common ``C`` given the volumes),
    * ``lambda_k = tr(C^-1 W_k) / (d n_k)``  (volumes given ``C``),

    each the exact minimiser of ``F`` in its block.  Starts from ``lambda_k = 1``, as mclust's ``mstepVEE``
    does (``R/mclust2.R`` passes ``scale = rep(1, G)`` to ``msvee``), so the first ``C`` is EEE's.  Celeux &
    Govaert (1995), model ``[lambda_k C]`` (pp. 784-785); mclust ``msvee`` (``src/mclust2.f``).
    """
    K, d = len(counts), scatters.shape[1]
    lam = np.ones(K)
    previous = np.inf
    for _ in range(max_iter):
        M = sum(scatters[k] / lam[k] for k in range(K))
        C = M / np.exp(np.linalg.slogdet(M)[1] / d)
        lam = np.array([np.trace(np.linalg.solve(C, scatters[k])) / (d * counts[k]) for k in range(K)])
        covariances = np.array([lam[k] * C for k in range(K)])
        current = objective(covariances, scatters, counts)
        if _converged(previous, current, tol):
            break
        previous = current
    return covariances


def _orientation_mm(D, scatters, diagonals):
    """Two MM updates of a common orientation ``D`` for fixed diagonals ``Lambda_k = lambda_k A_k``.

    Lowers ``f(D) = sum_k tr(W_k D Lambda_k^-1 D^T)`` (the part of ``F`` that depends on ``D``) by the two
    majorise-minimise steps of Browne & McNicholas (2014), as mclust's ``mseve``/``msvve`` chain
    them in every iteration:

    1. ``W_k <= omega_k I`` (``omega_k`` the largest eigenvalue of ``W_k``) gives
       ``f(D) <= const + 2 tr(D^T F1)`` with ``F1 = sum_k (W_k - omega_k I) D_0 Lambda_k^-1``;
    2. ``Lambda_k^-1 <= alpha_k I`` (``alpha_k`` the largest entry of ``Lambda_k^-1``) gives
       ``f(D) <= const + 2 tr(D^T F2)`` with ``F2 = sum_k W_k D_0 (Lambda_k^-1 - alpha_k I)``.

    Over orthogonal ``D`` each bound is minimised by ``D = -P R^T`` where ``F = P S R^T`` is the singular value
    decomposition (the bound equals ``f`` at ``D_0``, so ``f`` does not increase).  The sign only fixes ``D``
    up to ``-D``, which leaves every ``D Lambda D^T`` unchanged; mclust writes ``P R^T``.

    Parameters
    ----------
    D : ndarray, shape (d, d)
    scatters : ndarray, shape (K, d, d)
    diagonals : ndarray, shape (K, d)
        The diagonal of ``Lambda_k`` for every component.

    Returns
    -------
    ndarray, shape (d, d)
    """
    d = D.shape[0]
    F1 = sum((W - np.linalg.eigvalsh(W)[-1] * np.eye(d)) @ D @ np.diag(1.0 / g) for W, g in zip(scatters, diagonals))
    P, _, Rt = np.linalg.svd(F1)
    D = -P @ Rt
    F2 = sum(W @ D @ (np.diag(1.0 / g) - np.max(1.0 / g) * np.eye(d)) for W, g in zip(scatters, diagonals))
    P, _, Rt = np.linalg.svd(F2)
    return -P @ Rt


def _eve(scatters, counts, tol, max_iter):
    """EVE, ``lambda D A_k D^T``: the common orientation by MM, then the shapes and the volume in closed form.

    Each iteration applies :func:`_orientation_mm` to ``D`` (with ``Lambda_k = lambda A_k``; the common
    ``lambda`` only scales the bounds), then, with ``b_k = diag(D^T W_k D)``,
    ``A_k = diag(b_k) / prod(b_k)^(1/d)`` and ``lambda = sum_k prod(b_k)^(1/d) / n``, the exact minimisers
    given ``D``.  Starts from ``D = I`` and ``A_k = I``, as mclust's ``mstepEVE`` does (``R/mclust2.R`` passes
    ``O = diag(p)`` and ``shape = matrix(1, p, G)`` to ``mseve``).  Browne & McNicholas (2014);
    mclust ``mseve`` (``src/mclust2.f``).
    """
    K, d = len(counts), scatters.shape[1]
    D = np.eye(d)
    diagonals = np.ones((K, d))
    previous = np.inf
    for _ in range(max_iter):
        D = _orientation_mm(D, scatters, diagonals)
        b = np.array([np.diag(D.T @ W @ D) for W in scatters])
        lam = sum(_det_root(b_k) for b_k in b) / counts.sum()
        diagonals = np.array([lam * b_k / _det_root(b_k) for b_k in b])
        covariances = np.array([D @ np.diag(g) @ D.T for g in diagonals])
        current = objective(covariances, scatters, counts)
        if _converged(previous, current, tol):
            break
        previous = current
    return covariances


def _vve(scatters, counts, tol, max_iter):
    """VVE, ``lambda_k D A_k D^T``: the common orientation by MM, then ``lambda_k A_k = diag(D^T W_k D) / n_k``.

    Each iteration applies :func:`_orientation_mm` to ``D`` with ``Lambda_k = lambda_k A_k`` (the whole
    diagonal, volume included: this is Browne & McNicholas's common-principal-components problem),
    then sets ``Lambda_k = diag(D^T W_k D) / n_k``, the exact minimiser given ``D``.  Starts from ``D = I`` and
    ``Lambda_k = I``, as mclust's ``mstepVVE`` does (``O = diag(p)``, ``scale = rep(1, G)``,
    ``shape = matrix(1, p, G)`` passed to ``msvve``).

    mclust's ``msvve`` (``src/mclust2.f``) differs here: its MM steps weight ``W_k`` by ``A_k^-1`` alone,
    leaving out ``1 / lambda_k``, so its fixed point is the maximum-likelihood estimate only when the volumes
    are equal.  This reference keeps the volumes in, so its ``F`` is never larger.
    """
    K, d = len(counts), scatters.shape[1]
    D = np.eye(d)
    diagonals = np.ones((K, d))
    previous = np.inf
    for _ in range(max_iter):
        D = _orientation_mm(D, scatters, diagonals)
        diagonals = np.array([np.diag(D.T @ W @ D) / n_k for W, n_k in zip(scatters, counts)])
        covariances = np.array([D @ np.diag(g) @ D.T for g in diagonals])
        current = objective(covariances, scatters, counts)
        if _converged(previous, current, tol):
            break
        previous = current
    return covariances


# ---------------------------------------------------------------------------------------------------------------
# Ellipsoidal models with varying orientations D_k.


def _eev(scatters, counts):
    """EEV, ``lambda D_k A D_k^T``: ``D_k`` the eigenvectors of ``W_k``, ``A`` and ``lambda`` from ``sum_k Omega_k``.

    With ``W_k = L_k Omega_k L_k^T`` (eigenvalues in decreasing order), ``D_k = L_k``,
    ``A = Omega / det(Omega)^(1/d)`` and ``lambda = det(Omega)^(1/d) / n`` where ``Omega = sum_k Omega_k``.
    Celeux & Govaert (1995), model ``[lambda D_k A D_k^T]``; mclust ``mseev``.
    """
    eig = [_descending_eigh(W) for W in scatters]
    omega = sum(values for values, _ in eig)
    lam = _det_root(omega) / counts.sum()
    a = omega / _det_root(omega)
    return np.array([lam * L @ np.diag(a) @ L.T for _, L in eig])


def _vev(scatters, counts, tol, max_iter):
    """VEV, ``lambda_k D_k A D_k^T``: ``D_k`` as in EEV, then alternate the volumes and the common shape.

    With ``W_k = L_k Omega_k L_k^T`` (eigenvalues ``omega_k`` in decreasing order), ``D_k = L_k`` for any
    decreasing ``A`` (von Neumann's trace inequality pairs the largest ``omega_kj`` with the largest ``a_j``,
    and the updates below keep ``a`` decreasing).  Repeat

    * ``lambda_k = sum_j omega_kj / a_j / (d n_k)``  (volumes given shape),
    * ``a = c / prod(c)^(1/d)`` with ``c = sum_k omega_k / lambda_k``  (shape given volumes).

    Starts from EEV's shape ``a = sum_k omega_k / prod(...)^(1/d)``, as mclust's ``msvev`` (``src/mclust.f``)
    does.  Celeux & Govaert (1995), model ``[lambda_k D_k A D_k^T]`` (iterative).
    """
    K, d = len(counts), scatters.shape[1]
    eig = [_descending_eigh(W) for W in scatters]
    omega = np.array([values for values, _ in eig])
    a = omega.sum(axis=0) / _det_root(omega.sum(axis=0))
    previous = np.inf
    for _ in range(max_iter):
        lam = np.array([np.sum(omega[k] / a) / (d * counts[k]) for k in range(K)])
        c = sum(omega[k] / lam[k] for k in range(K))
        a = c / _det_root(c)
        covariances = np.array([lam[k] * L @ np.diag(a) @ L.T for k, (_, L) in enumerate(eig)])
        current = objective(covariances, scatters, counts)
        if _converged(previous, current, tol):
            break
        previous = current
    return covariances


def _evv(scatters, counts):
    """EVV, ``lambda C_k`` with ``det C_k = 1``: ``C_k = W_k / det(W_k)^(1/d)``, ``lambda = sum_k det(W_k)^(1/d) / n``.

    Celeux & Govaert (1995), model ``[lambda C_k]`` (p. 787); mclust ``msevv`` (``src/mclust2.f``).
    """
    d = scatters.shape[1]
    roots = [np.exp(np.linalg.slogdet(W)[1] / d) for W in scatters]
    lam = sum(roots) / counts.sum()
    return np.array([lam * W / r for W, r in zip(scatters, roots)])


def _vvv(scatters, counts):
    """VVV, unconstrained: ``Sigma_k = W_k / n_k``.

    Celeux & Govaert (1995), model ``[lambda_k C_k]``; mclust ``msvvv``.
    """
    return np.array([W / n_k for W, n_k in zip(scatters, counts)])
