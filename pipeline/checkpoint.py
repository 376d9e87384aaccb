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
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import em, kernels, storage
from pipeline.errors import InputError
from pipeline.model import ARRAY_NAMES, npz_bytes


def checkpoint_path(output: str | Path) -> str:
    return f"{str(output).rstrip('/')}.checkpoint.npz"


def save_checkpoint(path: str, identity: dict[str, Any], runs: list[em.EMRun], storage_options=None) -> None:
    """Write the state of every run, replacing any previous checkpoint atomically."""
    arrays = {f"run{i}_{name}": getattr(run.params, name) for i, run in enumerate(runs) for name in ARRAY_NAMES}
    meta = {
        "identity": identity,
        "covariance_type": runs[0].params.covariance_type,
        "runs": [{"lower_bound": r.lower_bound, "history": r.history, "n_iter": r.n_iter, "converged": r.converged}
                 for r in runs],
    }
    arrays["meta"] = np.array(json.dumps(meta))
    storage.write_bytes(path, npz_bytes(arrays), storage_options)


def _difference(saved: dict[str, Any], identity: dict[str, Any]) -> str | None:
    if saved.get("data_fingerprint") != identity["data_fingerprint"]:
        return "the data changed since it was written"
    if saved != identity:
        return "it was written by a different config"
    return None


def load_checkpoint(path: str, identity: dict[str, Any], storage_options=None) -> tuple[list[em.EMRun] | None, str]:
    """The runs stored at ``path`` if they belong to ``identity``.

    Returns
    -------
    runs : list of EMRun or None
    reason : str
        Why the checkpoint is not used ("" when it is).
    """
    try:
        with np.load(io.BytesIO(storage.read_bytes(path, storage_options)), allow_pickle=False) as npz:
            meta = json.loads(npz["meta"].item())
            arrays = {name: npz[name] for name in npz.files if name != "meta"}
    except (InputError, OSError, ValueError, KeyError, zipfile.BadZipFile):
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


def remove_checkpoint(path: str, storage_options=None) -> None:
    storage.remove(path, storage_options)
