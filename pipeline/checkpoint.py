"""Checkpoints of a running fit: every run's parameters and history after each finished iteration.

One ``.npz`` beside the output (``<output>.checkpoint.npz``), replaced
atomically.  It records the fit's identity (the data and model settings and
the data fingerprint); a checkpoint of another identity is never used.
Parameters are stored as float64 arrays, so a resumed fit continues from
exactly the numbers it stopped at.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import em, kernels
from pipeline.model import ARRAY_NAMES, npz_bytes


def checkpoint_path(output: str | Path) -> Path:
    output = Path(output)
    return output.parent / f"{output.name}.checkpoint.npz"


def save_checkpoint(path: Path, identity: dict[str, Any], runs: list[em.EMRun]) -> None:
    """Write the state of every run, replacing any previous checkpoint atomically."""
    arrays = {f"run{i}_{name}": getattr(run.params, name) for i, run in enumerate(runs) for name in ARRAY_NAMES}
    meta = {
        "identity": identity,
        "covariance_type": runs[0].params.covariance_type,
        "runs": [{"lower_bound": r.lower_bound, "history": r.history, "n_iter": r.n_iter, "converged": r.converged}
                 for r in runs],
    }
    arrays["meta"] = np.array(json.dumps(meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(path.name + ".tmp")
    with open(staging, "wb") as f:
        f.write(npz_bytes(arrays))
        f.flush()
        os.fsync(f.fileno())
    os.replace(staging, path)


def _difference(saved: dict[str, Any], identity: dict[str, Any]) -> str | None:
    if saved.get("data_fingerprint") != identity["data_fingerprint"]:
        return "the data changed since it was written"
    if saved != identity:
        return "it was written by a different config"
    return None


def load_checkpoint(path: Path, identity: dict[str, Any]) -> tuple[list[em.EMRun] | None, str]:
    """The runs stored at ``path`` if they belong to ``identity``.

    Returns
    -------
    runs : list of EMRun or None
    reason : str
        Why the checkpoint is not used ("" when it is).
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(npz["meta"].item())
            arrays = {name: npz[name] for name in npz.files if name != "meta"}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, io.UnsupportedOperation):
        return None, "it is unreadable"
    reason = _difference(meta["identity"], identity)
    if reason:
        return None, reason
    runs = []
    for i, state in enumerate(meta["runs"]):
        params = kernels.Params(covariance_type=meta["covariance_type"],
                                **{name: arrays[f"run{i}_{name}"] for name in ARRAY_NAMES})
        runs.append(em.EMRun(params, state["lower_bound"], list(state["history"]), state["n_iter"],
                             state["converged"]))
    return runs, ""


def remove_checkpoint(path: Path) -> None:
    path.unlink(missing_ok=True)
