"""Checkpoints of a running fit: every run's state and history after each finished iteration.

One ``.npz`` beside the output (``<output>.checkpoint.npz``), replaced
atomically.  It records the fit's identity (the data and model settings and
the data fingerprint, never credentials) and each candidate's resolved
hyperparameters (a prior computed from the data); a checkpoint of another
identity is never used (one written before a config key's rename is of the
same identity).  States are stored as float64 arrays, so a resumed
fit continues from exactly the numbers it stopped at.

What is at the checkpoint's path is replaced only if it is a checkpoint (or
an empty file, as a write cut short leaves); a damaged one is ignored with a
message; a directory, or a file of someone else's, is left alone and the run
goes on without checkpoints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline import storage
from pipeline.choices import RENAMED
from pipeline.errors import InputError
from pipeline.model import npz_bytes, read_npz
from pipeline.storage import Place

META = "meta"
_KIND = "gmm-pipeline checkpoint"
# 2: starts keyed by (random_state, K, restart), no longer by the covariance type; a checkpoint of 1 is not resumed,
# so a resumed fit always ends where an uninterrupted one of this version does.
FORMAT = 2
# The checkpoint of output ``out`` is ``out.checkpoint.npz``.
SUFFIX = ".checkpoint.npz"


@dataclass(frozen=True)
class SavedRun:
    """One run as a checkpoint holds it: its candidate, its state's arrays and its progress."""

    candidate: int
    arrays: dict[str, np.ndarray]
    lower_bound: float
    objective: float
    history: list[float]
    n_iter: int
    converged: bool


@dataclass(frozen=True)
class Resumed:
    runs: list[SavedRun]
    hyperparameters: list[dict | None]  # per candidate


def _new_names(identity: Any) -> Any:
    """A stored identity with its model section's keys under their new names (:data:`pipeline.choices.RENAMED`): a
    checkpoint written before a key's rename is of the same fit."""
    if not isinstance(identity, dict) or not isinstance(identity.get("model"), dict):
        return identity
    return {**identity, "model": {RENAMED.get(key, key): value for key, value in identity["model"].items()}}


class Checkpoint:
    """The checkpoint of one fit: where it is, whether it may be written, and the fit's identity."""

    def __init__(self, output: Place, identity: dict[str, Any]):
        self.place = output.beside(SUFFIX)
        self.path = self.place.name  # as events name it
        self.identity = identity
        self.enabled = True

    def _look(self) -> tuple[str, dict | None]:
        """("absent" | "ours" | "damaged" | "foreign", the archive's arrays if ours)."""
        path = self.place.local
        if path is None:
            if not storage.exists(self.place):
                return "absent", None
        else:
            if not (path.exists() or path.is_symlink()):
                return "absent", None
            if not path.is_file():
                return "foreign", None
            if path.stat().st_size == 0:
                return "damaged", None
        try:
            arrays = read_npz(storage.read_bytes(self.place), self.path)
        except InputError:
            return "foreign", None
        try:
            meta = json.loads(arrays[META].item())
        except (KeyError, ValueError, TypeError):
            return "foreign", None
        return (
            ("ours", {**arrays, META: meta})
            if isinstance(meta, dict) and meta.get("kind") == _KIND
            else ("foreign", None)
        )

    def resume(self) -> tuple[Resumed | None, str]:
        """The saved runs if the checkpoint belongs to this fit, and why not otherwise ("" when absent).

        Also decides whether this run may write checkpoints (not over a directory or someone else's file).
        """
        state, arrays = self._look()
        if state == "absent":
            return None, ""
        if state == "foreign":
            self.enabled = False
            return None, "something that is not a checkpoint is at its path; this run writes no checkpoints"
        if state == "damaged":
            return None, "it is damaged (empty)"
        meta = arrays[META]
        if meta.get("format", 1) != FORMAT:
            return None, "it was written by another version of gmm-pipeline (whose starts differ)"
        saved = _new_names(meta.get("identity"))
        if saved != self.identity:
            if isinstance(saved, dict) and saved.get("data_fingerprint") != self.identity.get("data_fingerprint"):
                return None, "the data changed since it was written"
            return None, "it was written by a different config"
        try:
            runs = [
                SavedRun(
                    r["candidate"],
                    {name: arrays[f"run{i}_{name}"] for name in r["arrays"]},
                    r["lower_bound"],
                    r["objective"],
                    list(r["history"]),
                    int(r["n_iter"]),
                    bool(r["converged"]),
                )
                for i, r in enumerate(meta["runs"])
            ]
            hyper = list(meta["hyperparameters"])
        except (KeyError, TypeError, ValueError):
            return None, "it is damaged (its runs cannot be read)"
        return Resumed(runs, hyper), ""

    def save(self, runs: list[SavedRun], hyperparameters: list[dict | None]) -> None:
        """Write the state of every run, replacing the previous checkpoint atomically."""
        if not self.enabled:
            return
        arrays = {f"run{i}_{name}": value for i, run in enumerate(runs) for name, value in run.arrays.items()}
        meta = {
            "kind": _KIND,
            "format": FORMAT,
            "identity": self.identity,
            "hyperparameters": hyperparameters,
            "runs": [
                {
                    "candidate": r.candidate,
                    "arrays": list(r.arrays),
                    "lower_bound": r.lower_bound,
                    "objective": r.objective,
                    "history": r.history,
                    "n_iter": r.n_iter,
                    "converged": r.converged,
                }
                for r in runs
            ],
        }
        arrays[META] = np.array(json.dumps(meta))
        storage.write_bytes(self.place, npz_bytes(arrays))

    def remove(self) -> None:
        """Remove the checkpoint, if it is ours (or damaged)."""
        if self._look()[0] in ("ours", "damaged"):
            storage.remove(self.place)
