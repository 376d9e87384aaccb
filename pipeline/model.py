"""The model directory: ``model.yaml`` + ``model.npz``, written atomically, loaded with checks.

``model.npz`` is written with fixed zip timestamps, so the same arrays give
the same bytes (and the same sha256).  Locally the directory is written
complete beside its destination and renamed into place: a reader sees the old
model, the new one, or (for an instant, when replacing) none, never half of
one (see :mod:`pipeline.storage` for object stores).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pipeline import kernels, storage
from pipeline.errors import InputError

FORMAT_VERSION = 1
YAML_NAME = "model.yaml"
NPZ_NAME = "model.npz"
ARRAY_NAMES = ("weights", "means", "covariances", "precisions_cholesky")
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass
class SavedModel:
    """A model as stored: its parameters and everything else in model.yaml."""

    params: kernels.Params
    info: dict[str, Any]


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` archive of ``arrays`` with fixed timestamps (reproducible bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH), member.getvalue())
    return buffer.getvalue()


def _plain(value):
    """YAML-safe Python values from NumPy ones."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape a fit's numbers."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("gmm-pipeline", "numpy", "scipy", "dask", "distributed", "pyarrow"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def fit_info(
    *,
    feature_names: list[str],
    converged: bool,
    n_iter: int,
    lower_bound: float,
    history: list[float],
    n_samples: int | None,
    weight_sum: float | None,
    bic: float | None = None,
    aic: float | None = None,
    config: dict | None = None,
    data_fingerprint: str | None = None,
) -> dict[str, Any]:
    """The keys of model.yaml that describe a fit (the parameters are added by save_model)."""
    return {
        "feature_names": list(feature_names),
        "converged": bool(converged),
        "n_iter": int(n_iter),
        "lower_bound": float(lower_bound),
        "history": [float(h) for h in history],
        "n_samples": n_samples,
        "weight_sum": weight_sum,
        "bic": bic,
        "aic": aic,
        "config": config,
        "data_fingerprint": data_fingerprint,
        "versions": package_versions(),
    }


def save_model(
    path: str | Path,
    params: kernels.Params,
    info: dict[str, Any],
    storage_options: dict | None = None,
    extra_files: dict[str, bytes] | None = None,
) -> None:
    """Write a model directory (local path or fsspec URL).

    Parameters
    ----------
    path : str or Path
    params : Params
    info : dict
        The other keys of model.yaml (converged, n_iter, history, config, ...).
    storage_options : dict, optional
        For fsspec, when ``path`` is a URL.
    extra_files : dict, optional
        More files for the directory (e.g. ``selection.csv``), written with it.
    """
    npz = npz_bytes({name: getattr(params, name) for name in ARRAY_NAMES})
    document = {
        "format_version": FORMAT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "n_components": params.n_components,
        "n_features": params.n_features,
        "covariance_type": params.covariance_type,
        "weights": params.weights,
        "means": params.means,
        **info,
        "arrays": {"file": NPZ_NAME, "sha256": hashlib.sha256(npz).hexdigest()},
    }
    text = yaml.safe_dump(_plain(document), sort_keys=False, default_flow_style=None, width=120)
    files = {NPZ_NAME: npz, **(extra_files or {}), YAML_NAME: text.encode()}  # model.yaml last
    storage.write_directory(path, files, storage_options)


def _expected_shapes(covariance_type: str, k: int, d: int) -> dict[str, tuple]:
    cov = kernels.second_moment_shape(covariance_type, k, d)
    return {"weights": (k,), "means": (k, d), "covariances": cov, "precisions_cholesky": cov}


def load_saved_model(path: str | Path, storage_options: dict | None = None) -> SavedModel:
    """Read and check a model directory (local path or fsspec URL).

    Raises
    ------
    InputError
        Not a model directory, unreadable YAML, newer format, sha256 mismatch,
        or arrays of the wrong shape.
    """
    yaml_path = storage.join(path, YAML_NAME)
    if not storage.exists(yaml_path, storage_options):
        raise InputError(f"{path}: not a model directory (no {YAML_NAME})")
    try:
        info = yaml.safe_load(storage.read_bytes(yaml_path, storage_options))
    except yaml.YAMLError as exc:
        raise InputError(f"{yaml_path}: invalid YAML ({exc})") from None
    if not isinstance(info, dict) or "format_version" not in info or not isinstance(info.get("arrays"), dict):
        raise InputError(f"{yaml_path}: not a gmm-pipeline model file (no format_version or arrays)")
    version = info["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InputError(
            f"{yaml_path}: format_version {version!r} is newer than this gmm-pipeline reads "
            f"({FORMAT_VERSION}); upgrade gmm-pipeline"
        )
    npz_path = storage.join(path, str(info["arrays"].get("file", NPZ_NAME)))
    content = storage.read_bytes(npz_path, storage_options)
    if hashlib.sha256(content).hexdigest() != info["arrays"].get("sha256"):
        raise InputError(f"{npz_path}: sha256 does not match {yaml_path}; the model files are corrupt or mismatched")
    try:
        with np.load(io.BytesIO(content), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in ARRAY_NAMES}
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise InputError(f"{npz_path}: not a valid model archive ({exc})") from None
    ct = info.get("covariance_type")
    if ct not in kernels.COVARIANCE_TYPES:
        raise InputError(f"{yaml_path}: unknown covariance_type {ct!r}")
    k, d = arrays["means"].shape if arrays["means"].ndim == 2 else (None, None)
    for name, shape in _expected_shapes(ct, k or 0, d or 0).items():
        if arrays[name].shape != shape:
            raise InputError(f"{npz_path}: {name} has shape {arrays[name].shape}, expected {shape}")
    info = {key: value for key, value in info.items() if key not in ("weights", "means", "arrays")}
    return SavedModel(kernels.Params(covariance_type=ct, **arrays), info)
