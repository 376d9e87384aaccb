"""The model directory: ``model.yaml`` (schema :class:`ModelInfo`) + ``model.npz``, written atomically, loaded checked.

:class:`ModelInfo` is the one home of model.yaml's keys: every writer (``gmm
fit``, ``gmm select``, ``GaussianMixture.save``, ``gmm generate``'s truth)
builds one with :func:`describe`, every reader (inspect, report, the
estimator, the "already done" check, warm starts) reads its attributes.
``model.npz`` is written with fixed zip timestamps, so the same arrays give
the same bytes (and the same sha256).  Locally the directory is written
complete beside its destination and renamed into place (see
:mod:`pipeline.storage`).  Loading checks everything a reader relies on:
the format version, the sha256, the arrays' shapes against model.yaml, and
that they are a valid mixture (finite, weights summing to 1, positive
definite covariances matching their precision factors).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline import kernels, storage, yamlfile
from pipeline.choices import ALGORITHMS, COVARIANCE_TYPES, NanPolicy
from pipeline.errors import InputError
from pipeline.kernels.mclust import inner_solver
from pipeline.kernels.mstep import ComponentMoments
from pipeline.kernels.online import MOMENT_ARRAYS, check_moments, moments_from_arrays
from pipeline.kernels.params import PARAM_ARRAYS
from pipeline.kernels.prior import Prior, check_prior
from pipeline.kernels.variational import VARIATIONAL_ARRAYS, VariationalPriors, check_stored
from pipeline.secrets import scrub
from pipeline.storage import Place

# The newest format read.  2: ``parameters`` (the estimator's, so a loaded model keeps how it was fitted); starts
# no longer depend on the covariance type.  3: ``lineage``, ``stream`` and model.npz's ``moments_*`` (what the
# model learnt, to keep learning); written only by a model that has them (not the variational mixture), so that a
# reader of version 2 still reads the others.  Older versions are read as before (version 1's parameters taken
# from ``config`` where it exists).
FORMAT_VERSION = 3
YAML_NAME = "model.yaml"
NPZ_NAME = "model.npz"
SELECTION_FILE = "selection.csv"
# A model.yaml larger than this (bytes, or values once YAML aliases are expanded) is not one of ours.
MAX_YAML_BYTES = 256 << 20
MAX_YAML_VALUES = 10_000_000
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ArraysRef(_Strict):
    file: str = NPZ_NAME
    sha256: str = ""


class SelectionRef(_Strict):
    criterion: str
    file: str = SELECTION_FILE


class MissingValues(_Strict):
    """What ``data.nan_policy`` did: how many values and rows were missing, and how many rows were dropped."""

    nan_policy: str
    n_missing_values: int = 0
    n_incomplete_rows: int = 0
    n_dropped_rows: int = 0


def what_nan_policy_did(
    nan_policy: str, summary: kernels.Summary, n_dropped: int, before: MissingValues | None = None
) -> MissingValues | None:
    """What ``nan_policy`` did to the rows ``summary`` describes (``n_dropped`` left out), added to what it did
    ``before`` (the rows a model learnt from earlier: a stream's batches, an update's past); None under ``error``."""
    if not NanPolicy(nan_policy).accepts_nan:
        return None
    before = before or MissingValues(nan_policy=nan_policy)
    return MissingValues(
        nan_policy=nan_policy,
        n_missing_values=before.n_missing_values + summary.n_missing,
        n_incomplete_rows=before.n_incomplete_rows + summary.n_incomplete,
        n_dropped_rows=before.n_dropped_rows + n_dropped,
    )


class StreamRecord(_Strict):
    """Where a stream of ``partial_fit`` calls stands (its running moments are model.npz's ``moments_*``)."""

    steps: int = Field(ge=1)
    weight_seen: float = Field(gt=0)


class Learnt(_Strict):
    """One fit or update a model learnt from (model.yaml's ``lineage``, oldest first)."""

    kind: Literal["fit", "update", "partial_fit"]
    time: str
    n_samples: int = Field(ge=0)
    weight_sum: float = Field(ge=0)
    data: str | None = None  # the data's path or URL (None: an array given to the estimator)
    data_fingerprint: str | None = None
    decay: float | None = Field(default=None, gt=0, le=1)  # an update's factor of the past
    update_of: str | None = None  # an update's model: the sha256 of its model.npz (arrays and statistics)


def learnt(kind: str, n_samples: int, weight_sum: float, **fields: Any) -> Learnt:
    """A lineage entry of now."""
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    return Learnt(kind=kind, time=now, n_samples=n_samples, weight_sum=weight_sum, **fields)


@dataclass(frozen=True)
class Kept:
    """What a model learnt, kept so that it can learn more without the old data: the moments (sums) of its last
    M-step and every fit and update it came from."""

    moments: ComponentMoments
    lineage: list[Learnt]

    @classmethod
    def of_stream(cls, moments: ComponentMoments, weight_seen: float, n_samples: int, time: str | None = None) -> Kept:
        """What a stream of ``partial_fit`` calls learnt, from its running averages per unit weight (``time``: when
        it was saved; None: now)."""
        entry = learnt("partial_fit", n_samples, weight_seen)
        return cls(moments.scaled(weight_seen), [entry if time is None else entry.model_copy(update={"time": time})])


class ModelInfo(_Strict):
    """model.yaml: everything about a fitted model but its arrays (which are in model.npz)."""

    format_version: int
    created: str
    n_components: int
    n_features: int
    feature_names: list[str]
    # False: the data had no column names and feature_names are made up (x0, x1, ...), as for a NumPy array
    named_features: bool = True
    covariance_type: Literal[COVARIANCE_TYPES]
    weights: list[float]
    means: list[list[float]]
    converged: bool | None = None
    n_iter: int | None = None
    lower_bound: float | None = None
    history: list[float] = []
    n_samples: int | None = None
    weight_sum: float | None = None
    bic: float | None = None
    aic: float | None = None
    icl: float | None = None
    config: dict[str, Any] | None = None
    data_fingerprint: str | None = None
    versions: dict[str, str | None] = {}
    arrays: ArraysRef = ArraysRef()
    selection: SelectionRef | None = None
    generated: dict[str, Any] | None = None
    algorithm: Literal[ALGORITHMS] = "em"
    prior: dict[str, Any] | None = None
    variational: dict[str, Any] | None = None
    missing: MissingValues | None = None
    collapsed_components: list[int] = []
    # mclust's iterative models (VEI, VEE, VEV, ...): their M-step's inner method, tolerance and cap
    covariance_solver: dict[str, Any] | None = None
    # The estimator's constructor parameters that give this fit (``load_model(d).get_params()``); arrays as lists.
    parameters: dict[str, Any] | None = None
    stream: StreamRecord | None = None
    # Every fit and update the model learnt from; with it (or ``stream``), model.npz holds the moments of what it
    # learnt (``moments_*``: sums, or with ``stream`` the stream's averages per unit weight), so it can keep learning
    lineage: list[Learnt] | None = None


@dataclass
class SavedModel:
    """A model as stored: its parameters, model.yaml, and any further arrays of model.npz."""

    params: kernels.Params
    info: ModelInfo
    extra_arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def log_weights(self) -> np.ndarray | None:
        """What predictions add to each component's Gaussian log density in place of ``log weights``: a
        variational model's expectations (as scikit-learn's predictions use), or None."""
        if self.info.algorithm != "variational":
            return None
        from pipeline.kernels.variational import scoring_log_weights

        prior_type = self.info.variational["weight_concentration_prior_type"]
        return scoring_log_weights(self.extra_arrays, prior_type, self.params)


def package_versions() -> dict[str, str | None]:
    """Versions of the packages that shape a fit's numbers."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("gmm-pipeline", "numpy", "scipy", "dask", "distributed", "pyarrow"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def describe(params: kernels.Params, feature_names: list[str], **fields: Any) -> ModelInfo:
    """model.yaml for ``params``: the parameters' own keys filled in, ``fields`` (any other key of ModelInfo) given."""
    return ModelInfo(
        format_version=FORMAT_VERSION if fields.get("stream") or fields.get("lineage") else 2,
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        n_components=params.n_components,
        n_features=params.n_features,
        feature_names=list(feature_names),
        covariance_type=params.covariance_type,
        weights=params.weights.tolist(),
        means=params.means.tolist(),
        versions=package_versions(),
        covariance_solver=inner_solver(params.covariance_type),
        **fields,
    )


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` archive of ``arrays`` with fixed timestamps (reproducible bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            # np.array, not np.ascontiguousarray, which makes a 0-d array (a tied model's dof) 1-d
            np.lib.format.write_array(member, np.array(array, order="C"), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH), member.getvalue())
    return buffer.getvalue()


def read_npz(content: bytes, where: str) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` archive (no pickles); InputError naming ``where`` if it is not one."""
    try:
        with np.load(io.BytesIO(content), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{where}: not a valid array archive ({exc})") from None


def save_model(
    where: Place | str | Path,
    params: kernels.Params,
    info: ModelInfo,
    extra_files: dict[str, bytes] | None = None,
    extra_arrays: dict[str, np.ndarray] | None = None,
) -> None:
    """Write a model directory (local path or fsspec URL).

    Parameters
    ----------
    where : Place, str or Path
        A Place (see :class:`pipeline.storage.Place`), or a path resolved without storage options.
    params : Params
    info : ModelInfo
        From :func:`describe`; its ``arrays`` reference is set here.
    extra_files : dict, optional
        More files for the directory (e.g. ``selection.csv``), written with it.
    extra_arrays : dict, optional
        More arrays for model.npz (the variational mixture's).
    """
    npz = npz_bytes({**{name: getattr(params, name) for name in PARAM_ARRAYS}, **(extra_arrays or {})})
    info = info.model_copy(update={"arrays": ArraysRef(file=NPZ_NAME, sha256=hashlib.sha256(npz).hexdigest())})
    # A top-level key is written only where its value is known (a model saved from Python has no BIC of its data).
    document = {key: value for key, value in info.model_dump(mode="json").items() if value is not None}
    text = yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=120)
    files = {NPZ_NAME: npz, **(extra_files or {}), YAML_NAME: text.encode()}  # model.yaml last
    storage.write_directory(Place.of(where), files, replaceable=is_model_directory)


def is_model_directory(where: Place | str | Path) -> bool:
    """Whether ``where`` holds a model.yaml with a ``format_version``: a model directory this tool may replace."""
    yaml_place = Place.of(where).join(YAML_NAME)
    try:
        if not storage.exists(yaml_place):
            return False
        info = _parse_yaml(storage.read_bytes(yaml_place, limit=MAX_YAML_BYTES), yaml_place.name)
    except InputError:
        return False
    return isinstance(info, dict) and isinstance(info.get("format_version"), int)


def _parse_yaml(content: bytes, where: str) -> Any:
    return yamlfile.parse_yaml(content, where, MAX_YAML_VALUES)


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    key = ".".join(str(p) for p in error["loc"])
    return f"{key}: {error['msg']}" if key else error["msg"]


def open_place(where: Place | str | Path, storage_options: dict | None = None, what: str = "") -> Place:
    """The Place of a model directory given by the user: InputError for a URL no file system takes (an unknown
    protocol, options it refuses), naming it (``what``: how the user gave it, e.g. "--model")."""
    if isinstance(where, Place):
        return where
    try:
        return Place.of(where, storage_options)
    except (ValueError, TypeError, ImportError) as exc:
        raise InputError(scrub(f"{what + ' ' if what else ''}{str(where)!r}: cannot open it ({exc})")) from None


def kept_of(saved: SavedModel) -> Kept | None:
    """What a stored model learnt, as sums (None: it kept nothing, as a variational model or an older file)."""
    info = saved.info
    if info.stream is None and info.lineage is None:
        return None
    moments = moments_from_arrays(saved.extra_arrays, info.covariance_type)
    if info.stream is not None:
        return Kept.of_stream(moments, info.stream.weight_seen, info.n_samples or 0, info.created)
    return Kept(moments, list(info.lineage or []))


def load_saved_model(where: Place | str | Path) -> SavedModel:
    """Read and check a model directory (a Place, or a local path or fsspec URL resolved without storage options).

    Raises
    ------
    InputError
        Not a model directory, unreadable or invalid model.yaml, newer format,
        sha256 mismatch, arrays of the wrong shape, disagreeing with model.yaml,
        or not a valid mixture.
    """
    place = open_place(where)
    yaml_place = place.join(YAML_NAME)
    yaml_path = yaml_place.name
    if not storage.exists(yaml_place):
        raise InputError(f"{place.name}: not a model directory (no {YAML_NAME})")
    raw = _parse_yaml(storage.read_bytes(yaml_place, limit=MAX_YAML_BYTES), yaml_path)
    if not isinstance(raw, dict) or "format_version" not in raw or not isinstance(raw.get("arrays"), dict):
        raise InputError(f"{yaml_path}: not a gmm-pipeline model file (no format_version or arrays)")
    version = raw["format_version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise InputError(f"{yaml_path}: format_version {version!r} is not an integer: not a model file of gmm-pipeline")
    if version > FORMAT_VERSION:
        raise InputError(
            f"{yaml_path}: format_version {version!r} is newer than this gmm-pipeline reads "
            f"({FORMAT_VERSION}); upgrade gmm-pipeline"
        )
    try:
        info = ModelInfo.model_validate(raw)
    except ValidationError as exc:
        raise InputError(f"{yaml_path}: {_first_problem(exc)}") from None
    npz_place = place.join(Path(info.arrays.file).name)
    npz_path = npz_place.name
    content = storage.read_bytes(npz_place)
    if hashlib.sha256(content).hexdigest() != info.arrays.sha256:
        raise InputError(f"{npz_path}: sha256 does not match {yaml_path}; the model files are corrupt or mismatched")
    arrays = read_npz(content, npz_path)
    missing = [name for name in PARAM_ARRAYS if name not in arrays]
    if missing:
        raise InputError(f"{npz_path}: no array {missing[0]!r}")
    params = kernels.Params(
        covariance_type=info.covariance_type,
        **{name: np.asarray(arrays[name], dtype=np.float64) for name in PARAM_ARRAYS},
    )
    _check_consistent(params, info, npz_path, yaml_path)
    extra = {name: value for name, value in arrays.items() if name not in PARAM_ARRAYS}
    _check_priors(info, extra, npz_path, yaml_path)
    if info.algorithm == "variational" and (info.stream is not None or info.lineage is not None):
        raise InputError(f"{yaml_path}: a variational model keeps no lineage or stream")
    if info.stream is not None or info.lineage is not None:
        absent = [name for name in MOMENT_ARRAYS if name not in extra]
        if absent:
            what = "a partial_fit stream" if info.stream is not None else "a lineage"
            raise InputError(f"{npz_path}: no array {absent[0]!r} ({yaml_path} records {what})")
        try:
            check_moments(moments_from_arrays(extra, info.covariance_type), info.n_components, info.n_features)
        except ValueError as exc:
            raise InputError(f"{npz_path}: {exc}") from None
    return SavedModel(params, info, extra)


def _check_priors(info: ModelInfo, extra: dict[str, np.ndarray], npz_path: str, yaml_path: str) -> None:
    """The prior of a MAP model, the priors and posterior arrays of a variational one: InputError if unusable."""
    k, d, ct = info.n_components, info.n_features, info.covariance_type
    if info.algorithm == "variational":
        absent = [name for name in VARIATIONAL_ARRAYS if name not in extra]
        if absent:
            raise InputError(f"{npz_path}: no array {absent[0]!r} (a variational model has one)")
        try:
            priors = VariationalPriors.from_dict(info.variational or {})
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{yaml_path}: variational: not a set of priors ({type(exc).__name__}: {exc})") from None
        try:
            check_stored(priors, {name: np.asarray(extra[name], dtype=float) for name in VARIATIONAL_ARRAYS}, ct, k, d)
        except ValueError as exc:
            raise InputError(f"{yaml_path} / {npz_path}: variational: {exc}") from None
    elif info.prior is not None:
        try:
            check_prior(Prior.from_dict(info.prior), ct, d)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{yaml_path}: prior: {str(exc)[:200]}") from None


def _check_consistent(params: kernels.Params, info: ModelInfo, npz_path: str, yaml_path: str) -> None:
    try:
        kernels.check_params(params)
    except ValueError as exc:
        raise InputError(f"{npz_path}: not a valid mixture: {exc}") from None
    k, d = params.means.shape
    if (info.n_components, info.n_features) != (k, d):
        raise InputError(
            f"{yaml_path}: says {info.n_components} components x {info.n_features} features, "
            f"but its arrays hold {k} x {d}"
        )
    if len(info.feature_names) != d:
        raise InputError(f"{yaml_path}: lists {len(info.feature_names)} feature_names for {d} features")
    if len(set(info.feature_names)) != d:
        raise InputError(f"{yaml_path}: feature_names are not unique")
    if not (
        np.allclose(info.weights, params.weights, rtol=1e-12, atol=0)
        and np.allclose(info.means, params.means, rtol=1e-12, atol=1e-300)
    ):
        raise InputError(f"{yaml_path}: its weights or means differ from those in {npz_path}")
