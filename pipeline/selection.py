"""The selection table (``selection.csv`` of ``gmm select``): its columns, its CSV, reading it back checked, and what
it says about local optima.

One reader serves every use: ``gmm report`` draws the table, ``gmm select``
chooses from it again by another criterion.  A row is a candidate (K,
covariance type) with its log-likelihood, criteria, iterations and convergence.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from typing import Any

from pipeline.choices import COVARIANCE_TYPES, CRITERIA
from pipeline.errors import InputError

COLUMNS = ("n_components", "covariance_type", "log_likelihood", "bic", "aic", "icl", "n_iter", "converged")
REDO = "restore the file gmm select wrote, or run gmm select again"
# A log-likelihood this much (relative) below that of fewer components is round-off, not a local optimum.
FALLING_SLACK = 1e-9


def to_csv(table: list[dict[str, Any]]) -> bytes:
    """The table as ``selection.csv``: a header of :data:`COLUMNS` and one row per candidate (floats by repr)."""
    lines = [",".join(COLUMNS)]
    lines += [",".join(repr(row[c]) if isinstance(row[c], float) else str(row[c]) for c in COLUMNS) for row in table]
    return ("\n".join(lines) + "\n").encode()


def read(content: bytes, path: str, required: tuple[str, ...] = ("n_components", "covariance_type")) -> list[dict]:
    """The rows of a ``selection.csv``, each value typed and checked.

    ``n_components`` is a whole number >= 1, ``covariance_type`` a known one,
    the log-likelihood and criteria finite floats, ``n_iter`` an int and
    ``converged`` a bool, where the file has those columns; ``required`` are
    the columns that must be there.  Columns beyond these are kept as text.

    Raises
    ------
    InputError
        Naming ``path`` (and the line and column): not UTF-8, empty, a required column missing, a row of the
        wrong length, a value that is not what its column holds, a candidate twice, or only a header.
    """
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; {REDO}") from None
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    if not header:
        raise InputError(f"{path}: empty, expected a header and one row per candidate; {REDO}")
    missing = [column for column in required if column not in header]
    if missing:
        raise InputError(f"{path}: no column {missing[0]!r} in the header ({','.join(header)}); {REDO}")
    rows, seen = [], {}
    for row in reader:
        where = f"{path}, line {reader.line_num}"
        if None in row or None in row.values():
            fields = len(header) + len(row[None]) if None in row else sum(v is not None for v in row.values())
            raise InputError(f"{where}: {fields} fields, expected {len(header)} (one per column); {REDO}")
        row = _typed(row, where)
        candidate = (row["n_components"], row["covariance_type"])
        if candidate in seen:
            raise InputError(
                f"{where}: K={candidate[0]} {candidate[1]} again (first on line {seen[candidate]}); {REDO}"
            )
        seen[candidate] = reader.line_num
        rows.append(row)
    if not rows:
        raise InputError(f"{path}: no candidates, only a header; {REDO}")
    return rows


def _typed(row: dict[str, str], where: str) -> dict:
    typed: dict[str, Any] = dict(row)
    try:
        typed["n_components"] = int(row["n_components"])
    except ValueError:
        typed["n_components"] = 0
    if typed["n_components"] < 1:
        raise InputError(
            f"{where}, column n_components: {row['n_components']!r} is not a number of components "
            f"(a whole number >= 1); {REDO}"
        )
    if row["covariance_type"] not in COVARIANCE_TYPES:
        raise InputError(
            f"{where}, column covariance_type: {row['covariance_type']!r} is not one of "
            f"{', '.join(COVARIANCE_TYPES)}; {REDO}"
        )
    for key in (key for key in ("log_likelihood", *CRITERIA) if key in row):
        try:
            typed[key] = float(row[key])
        except ValueError:
            typed[key] = math.nan
        if not math.isfinite(typed[key]):
            raise InputError(f"{where}, column {key}: {row[key]!r} is not a finite number; {REDO}")
    if "n_iter" in row:
        if not row["n_iter"].isdigit():
            raise InputError(f"{where}, column n_iter: {row['n_iter']!r} is not a number of iterations; {REDO}")
        typed["n_iter"] = int(row["n_iter"])
    if "converged" in row:
        if row["converged"] not in ("True", "False"):
            raise InputError(f"{where}, column converged: {row['converged']!r} is not True or False; {REDO}")
        typed["converged"] = row["converged"] == "True"
    return typed


def label(row: dict[str, Any]) -> str:
    """A candidate's name, as progress lines give it: ``K=3 full``."""
    return f"K={row['n_components']} {row['covariance_type']}"


def falling_likelihoods(table: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """Rows whose log-likelihood falls below that of fewer components of the same covariance type.

    A mixture with more components can always fit at least as well as one
    with fewer (a component of weight 0 changes nothing), so such a row ended
    in a worse local optimum, or stopped early.

    Returns
    -------
    list of (int, int)
        ``(row, better)``: the row's index in ``table``, and the index of the row
        with fewer components of its type that has the highest log-likelihood.
    """
    flagged = []
    for covariance_type in dict.fromkeys(row["covariance_type"] for row in table):
        rows = sorted(
            (i for i, row in enumerate(table) if row["covariance_type"] == covariance_type),
            key=lambda i: table[i]["n_components"],
        )
        best = None
        for i in rows:
            if best is not None:
                top = table[best]["log_likelihood"]
                if table[i]["log_likelihood"] < top - FALLING_SLACK * abs(top):
                    flagged.append((i, best))
            if best is None or table[i]["log_likelihood"] > table[best]["log_likelihood"]:
                best = i
    return flagged


def warn_falling(table: list[dict[str, Any]], n_init: int, emit: Callable[[dict[str, Any]], None]) -> None:
    """A warning event naming the candidates of :func:`falling_likelihoods`, suggesting more restarts."""
    flagged = falling_likelihoods(table)
    if not flagged:
        return
    pairs = ", ".join(
        f"{label(table[i])} ({table[i]['log_likelihood']:.6g}) below {label(table[j])} "
        f"({table[j]['log_likelihood']:.6g})"
        for i, j in flagged
    )
    emit(
        {
            "event": "warning",
            "category": "LocalOptimumWarning",
            "message": f"log-likelihood falls as K grows: {pairs}; more components can always fit at least as well, "
            f"so these ended in a local optimum (or stopped early: see converged): select again with more "
            f"restarts, e.g. --set model.n_init={max(5, 2 * n_init)} (now {n_init})",
            "candidates": [label(table[i]) for i, _ in flagged],
        }
    )
