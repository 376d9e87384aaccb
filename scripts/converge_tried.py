"""The methods tried for fewer passes and not kept (``scripts/bench --converge --tried``): how far each gets.

On the overlapping mixture of :mod:`converge` (100,000 x 16, K=8 full, scikit-learn's k-means start), in this
process with the package's kernels (no cluster: the count of passes is the figure, not seconds), the mean
log-likelihood after ``MARKS`` full passes over the data of:

- plain EM (the reference);
- incremental EM (Neal & Hinton 1998): the data in ``BLOCKS`` blocks in file order; after the first pass (a full
  E-step at the start), each block's statistics are recomputed under the current parameters and the M-step taken
  from the sum of every block's latest, ``BLOCKS`` M-steps a pass (on a cluster, as many round trips);
- online epochs, then batch EM: ``EPOCHS`` epochs of stepwise online EM (Cappe & Moulines 2009, ``partial_fit``'s
  rule, ``rho_t = (10 + t)^-0.7``) over mini-batches of ``BATCH`` rows in a seeded order, then plain EM.

Each row also gives the passes each method needs to reach the mean log-likelihood plain EM has after its last
mark (None: not within ``MARKS[-1]`` passes).  SQUAREM's figures are :mod:`converge`'s.
"""

from __future__ import annotations

import numpy as np

from pipeline import kernels
from pipeline.kernels.algorithms import EMStep
from pipeline.kernels.mstep import ComponentMoments, m_step_moments

MARKS = (50, 100, 200, 400, 800)
BLOCKS = 16
EPOCHS = (1, 3)
BATCH = 1000
REG_COVAR = 1e-6


def _moments(X: np.ndarray, params: kernels.Params, em: EMStep) -> tuple[ComponentMoments, float]:
    prep = em.prepare(params)
    stats = kernels.block_statistics(np.asfortranarray(X), np.ones(len(X)), prep)
    return ComponentMoments.of(stats, prep.shift, params.covariance_type), stats.log_likelihood / len(X)


def plain(X, start, em, passes: int) -> list[float]:
    """The mean log-likelihood at the start of each pass, then after the last."""
    params, history = start, []
    for _ in range(passes):
        moments, mean = _moments(X, params, em)
        history.append(mean)
        params = m_step_moments(moments, REG_COVAR)
    return history[1:] + [_moments(X, params, em)[1]]


def incremental(X, start, em, passes: int, blocks: int) -> list[float]:
    """The mean log-likelihood after each pass of incremental EM."""
    parts = np.array_split(X, blocks)
    latest = [_moments(part, start, em)[0] for part in parts]
    params = m_step_moments(sum(latest[1:], latest[0]), REG_COVAR)
    history = [_moments(X, params, em)[1]]
    for _ in range(passes - 1):
        for i, part in enumerate(parts):
            latest[i] = _moments(part, params, em)[0]
            params = m_step_moments(sum(latest[1:], latest[0]), REG_COVAR)
        history.append(_moments(X, params, em)[1])
    return history


def online_then_batch(X, start, em, passes: int, epochs: int, batch: int) -> list[float]:
    """The mean log-likelihood after each pass: ``epochs`` of stepwise online EM, then plain EM."""
    rng = np.random.default_rng(0)
    params, running, step = start, None, 0
    for _ in range(epochs):
        for j in rng.permutation(len(X) // batch):
            moments = _moments(X[j * batch : (j + 1) * batch], params, em)[0].scaled(1.0 / batch)
            rho = 1.0 if running is None else (10.0 + step) ** -0.7
            step += 1
            running = moments if running is None else running.scaled(1 - rho) + moments.scaled(rho)
            params = m_step_moments(running.scaled(len(X)), REG_COVAR)
    return [_moments(X, params, em)[1]] * epochs + plain(X, params, em, passes - epochs)


def _passes_to(history: list[float], target: float) -> int | None:
    return next((i + 1 for i, value in enumerate(history) if value >= target), None)


def bench_tried(X: np.ndarray, start: kernels.Params, smoke: bool = False) -> dict:
    """Each method's mean log-likelihood at the marks and its passes to plain EM's value at the last mark."""
    marks = tuple(m // 50 for m in MARKS) if smoke else MARKS
    em, passes = EMStep(start.covariance_type, REG_COVAR), marks[-1]
    histories = {"plain EM": plain(X, start, em, passes)}
    histories[f"incremental EM, {BLOCKS} blocks"] = incremental(X, start, em, passes, BLOCKS)
    for epochs in EPOCHS:
        histories[f"{epochs} online epoch(s) of {BATCH}-row batches, then EM"] = online_then_batch(
            X, start, em, passes, epochs, BATCH
        )
    target = histories["plain EM"][-1]
    results = {
        name: {
            "at_marks": {m: history[m - 1] for m in marks},
            "passes_to_plain_at_last_mark": _passes_to(history, target),
        }
        for name, history in histories.items()
    }
    print(f"\nmethods tried, overlapping mixture: mean log-likelihood after {', '.join(map(str, marks))} passes")
    for name, r in results.items():
        values = ", ".join(f"{v:.8f}" for v in r["at_marks"].values())
        print(f"  {name}: {values}; passes to plain EM's at {passes}: {r['passes_to_plain_at_last_mark']}")
    return results
