"""The one place for configuration: schema with defaults, YAML loading, ``--set`` overrides.

Unknown keys, wrong types and out-of-range values are :class:`InputError`\\ s
whose message names the file and the dotted key.  A config file is bounded
(:data:`MAX_CONFIG_BYTES`, and :data:`MAX_CONFIG_VALUES` once YAML aliases are
expanded), and values under ``storage_options`` are never echoed.
"""

from __future__ import annotations

import difflib
import re
import warnings
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline import secrets, yamlfile
from pipeline.choices import (
    ACCELERATIONS,
    ALGORITHMS,
    COVARIANCE_TYPES,
    DTYPES,
    INIT_METHODS,
    NAN_POLICIES,
    RENAMED,
    VARIATIONAL_PRIOR_KEYS,
    WEIGHT_PRIOR_TYPES,
)
from pipeline.errors import InputError, RenamedKeyWarning
from pipeline.spec import HYPERPARAMETERS

MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_VALUES = 100_000
_ECHO_CHARS = 60
_SECRET_KEYS = ("storage_options",)
# A worker process holds about 200 MiB before any data (Python, NumPy, pyarrow, Dask), and Dask pauses it at 80%
# of its limit: below this, a LocalCluster has no worker that can run (cluster.memory_limit).
MIN_MEMORY_LIMIT = 512 << 20


def _declared(name: str, **constraints: Any) -> Any:
    """The config field of a declared hyperparameter (:data:`pipeline.spec.HYPERPARAMETERS`): its default, least
    value and meaning as the config takes them."""
    declared = HYPERPARAMETERS[name]
    low = declared.low_in_config()
    if low is not None and declared.kind in ("int", "float", "seed"):
        constraints["gt" if declared.low_open else "ge"] = low
    if declared.high is not None:
        constraints["le"] = declared.high
    return Field(declared.default_in_config(), description=declared.description, **constraints)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class DataConfig(_Section):
    path: str = Field(min_length=1, description="file, directory (hive partitions allowed), glob, or fsspec URL")
    columns: list[str] | None = Field(
        None, min_length=1, description="null: every numeric column but the weight column"
    )
    weight_column: str | None = Field(None, description="optional non-negative per-row frequency weight")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="handed to fsspec")
    nan_policy: Literal[NAN_POLICIES] = _declared("nan_policy")


def _square(value):
    """A matrix given as a list of rows must be square (one row per feature, each as long as there are rows)."""
    if isinstance(value, list) and value and all(isinstance(row, list) for row in value):
        lengths = sorted({len(row) for row in value})
        if lengths != [len(value)]:
            raise ValueError(
                f"expected a square matrix (as many numbers in each row as there are rows), got {len(value)} rows "
                f"of {' and '.join(map(str, lengths))} numbers"
            )
    return value


class PriorConfig(_Section):
    """mclust's conjugate prior; a key left out takes mclust's default."""

    shrinkage: float | None = Field(None, ge=0)
    mean: list[float] | None = None
    dof: float | None = Field(None, gt=0)
    scale: float | list[list[float]] | None = None

    _square_scale = field_validator("scale")(_square)


_VARIATIONAL_KEYS = ("weight_concentration_prior_type", *VARIATIONAL_PRIOR_KEYS)


class ModelConfig(_Section):
    n_components: int = _declared("n_components")
    covariance_type: Literal[COVARIANCE_TYPES] = _declared("covariance_type")
    reg_covar: float = _declared("reg_covar")
    init_params: str = _declared("init_params", min_length=1)
    n_init: int = _declared("n_init")
    max_iter: int = _declared("max_iter")
    tol: float = _declared("tol")
    random_state: int | None = _declared("random_state")
    dtype: Literal[DTYPES] = _declared("dtype")
    prior: Literal["default"] | PriorConfig | None = Field(None, description="mclust's conjugate prior (MAP EM)")
    algorithm: Literal[ALGORITHMS] = "em"
    acceleration: Literal[ACCELERATIONS] = _declared("acceleration")
    weight_concentration_prior_type: Literal[WEIGHT_PRIOR_TYPES] = _declared("weight_concentration_prior_type")
    weight_concentration_prior: float | None = _declared("weight_concentration_prior")
    mean_precision_prior: float | None = _declared("mean_precision_prior")
    mean_prior: list[float] | None = None
    degrees_of_freedom_prior: float | None = _declared("degrees_of_freedom_prior")
    covariance_prior: float | list[float] | list[list[float]] | None = None

    _square_covariance_prior = field_validator("covariance_prior")(_square)

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        """Keys under their old names (:data:`RENAMED`) as their new ones (model.yaml files written before the
        rename; :func:`load_config` renames a config's keys before its overrides, with a warning)."""
        if not isinstance(data, dict):
            return data
        for old, new in RENAMED.items():
            if old in data and new in data:
                raise ValueError(f"model.{old} is the old name of model.{new}: give model.{new} only")
        return {RENAMED.get(key, key): value for key, value in data.items()}

    @model_validator(mode="after")
    def _algorithm_keys(self):
        if self.algorithm == "em":
            given = [key for key in _VARIATIONAL_KEYS if getattr(self, key) != type(self).model_fields[key].default]
            if given:
                raise ValueError(f"model.{given[0]} applies only with model.algorithm: variational")
        elif self.acceleration != "none":
            raise ValueError(
                f"model.acceleration: {self.acceleration} applies only with model.algorithm: em (the variational "
                "mixture runs plain iterations)"
            )
        elif self.prior is not None:
            raise ValueError(
                "model.prior applies only with model.algorithm: em "
                "(the variational mixture has its own priors, model.*_prior)"
            )
        elif self.init_params not in INIT_METHODS:
            raise ValueError(
                f"model.init_params: a model directory starts EM only; model.algorithm: variational starts "
                f"from one of {', '.join(INIT_METHODS)}"
            )
        return self


class SecurityConfig(_Section):
    """TLS files for ``tls://`` scheduler addresses, as Dask's ``distributed.Security``."""

    ca_file: str
    cert_file: str
    key_file: str


class ClusterConfig(_Section):
    address: str | None = Field(None, description="null: start a LocalCluster")
    n_workers: int = Field(2, ge=1, le=1024)
    threads_per_worker: int = Field(1, ge=1, le=1024)
    memory_limit: str | int = Field(
        "auto", description=f"per worker: 'auto', 0 (no limit), or at least {MIN_MEMORY_LIMIT >> 20} MiB"
    )
    persist: Literal["auto", "memory", "none"] = "auto"
    dashboard: bool | str = Field(True, description="true: on (a free port if 8787 is taken); false: off; ':PORT'")
    connect_timeout: float = Field(30.0, gt=0, description="seconds to reach the scheduler")
    worker_timeout: float = Field(60.0, gt=0, description="seconds to wait while the cluster has no worker")
    security: SecurityConfig | None = None

    @field_validator("memory_limit")
    @classmethod
    def _memory_limit(cls, value):
        from dask.utils import parse_bytes

        if value == "auto" or value == 0:  # 0: no limit
            return value
        if isinstance(value, int):
            n_bytes = value
        else:
            try:
                n_bytes = parse_bytes(value)
            except (ValueError, TypeError):
                raise ValueError("expected 'auto', bytes >= 0 or a size such as 4GiB") from None
        if n_bytes < 0:
            raise ValueError("expected 'auto', bytes >= 0 or a size such as 4GiB")
        if n_bytes < MIN_MEMORY_LIMIT:
            raise ValueError(
                f"{n_bytes} bytes per worker is below the minimum of {MIN_MEMORY_LIMIT >> 20} MiB (a worker needs "
                "about 200 MiB before it holds any data); give a size such as 4GiB, 'auto', or 0 for no limit"
            )
        return value

    @field_validator("dashboard")
    @classmethod
    def _dashboard(cls, value):
        if isinstance(value, str) and not re.fullmatch(r"[\w.\-]*:\d{1,5}", value):
            raise ValueError("expected true, false or ':PORT' (or 'HOST:PORT')")
        if isinstance(value, str) and not 0 <= int(value.rsplit(":", 1)[1]) <= 65535:
            raise ValueError("port must be in 0..65535")
        return value


class OutputConfig(_Section):
    path: str = Field("out/model", min_length=1, description="model directory: local path or fsspec URL")
    storage_options: dict[str, Any] | None = Field(None, description="for fsspec; null: data.storage_options")


class Config(_Section):
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @model_validator(mode="after")
    def _combinations(self):
        if self.model.algorithm == "variational" and self.data.nan_policy == "marginalize":
            raise ValueError(
                "data.nan_policy: marginalize works with model.algorithm: em (the variational bound of "
                "rows with missing values is not implemented); use em, or drop such rows"
            )
        return self

    @property
    def output_storage_options(self) -> dict[str, Any]:
        out = self.output.storage_options
        return self.data.storage_options if out is None else out


def parse_yaml(text: str, source: str):
    """Parse a config's YAML (see :func:`pipeline.yamlfile.parse_yaml`), at most :data:`MAX_CONFIG_VALUES` values."""
    return yamlfile.parse_yaml(text, source, MAX_CONFIG_VALUES)


def _key_path(loc) -> str:
    return ".".join(str(p) for p in loc)


def _known_keys(loc) -> list[str]:
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        candidates = [a for a in getattr(field.annotation, "__args__", (field.annotation,))] if field else []
        sections = [a for a in candidates if isinstance(a, type) and issubclass(a, BaseModel)]
        if not sections:
            return []
        model = sections[0]
    return list(model.model_fields)


def _echo(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _ECHO_CHARS else text[: _ECHO_CHARS - 3] + "..."


_TYPE_TAGS = ("str", "int", "float", "bool", "list", "dict", "none")


def _is_key(part) -> bool:
    """Whether a part of pydantic's error location is a key (not a union member's tag like "literal['a']")."""
    return not isinstance(part, str) or not ("[" in part or part in _TYPE_TAGS or part[:1].isupper())


def _describe(error: dict) -> str:
    loc = tuple(p for p in error["loc"] if _is_key(p))
    key = _key_path(loc)
    if error["type"] == "extra_forbidden":
        known = _known_keys(loc)
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"; did you mean {_key_path(loc[:-1] + (close[0],))!r}?" if close else ""
        return f"unknown key {key!r}{hint} (valid here: {', '.join(known)})"
    if error["type"] == "missing":
        return f"missing required key {key!r}"
    message = error["msg"].removeprefix("Value error, ")
    if len(loc) <= 1 and error["type"] == "value_error":  # a section's own check: its message names the keys
        return message
    if any(part in _SECRET_KEYS for part in loc):
        return f"{key}: {message}"
    return f"{key}: {message} (got {_echo(error.get('input'))})"


def validate(raw: Any, source: str) -> Config:
    """Validate a parsed config mapping; the first problem becomes an InputError."""
    if not isinstance(raw, dict):
        raise InputError(
            f"{source}: expected a mapping of sections (data, model, cluster, output), got {type(raw).__name__}"
        )
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        # Of a union's alternatives, the error that went deepest into the value says most.
        errors = exc.errors()
        deepest = max(errors, key=lambda e: len([p for p in e["loc"] if _is_key(p)]))
        raise InputError(f"{source}: {_describe(deepest)}") from None


def apply_override(raw: dict, assignment: str) -> None:
    """Apply one ``key.path=value`` override (value typed as YAML) to a raw config in place; a model key under its
    old name (:data:`RENAMED`) is set under its new one, with a RenamedKeyWarning."""
    key, sep, text = assignment.partition("=")
    if not sep or not key.strip():
        raise InputError(f"--set {_echo(assignment)}: expected KEY=VALUE, e.g. --set model.n_components=5")
    value = parse_yaml(text, f"--set {key}")
    node, schema = raw, Config
    parts = key.strip().split(".")
    if len(parts) > 1 and parts[0] == "model" and parts[1] in RENAMED:  # the key under its new name, so it wins
        _warn_renamed(f"--set {key}", parts[1])
        parts[1] = RENAMED[parts[1]]
    for part in parts[:-1]:
        field = schema.model_fields.get(part) if schema is not None else None
        candidates = getattr(field.annotation, "__args__", (field.annotation,)) if field is not None else ()
        sections = [a for a in candidates if isinstance(a, type) and issubclass(a, BaseModel)]
        if field is not None and not sections and part not in _SECRET_KEYS:
            raise InputError(f"--set {key}: {part!r} is not a section")
        schema = sections[0] if sections else None
        child = node.setdefault(part, {})
        if child is None and (sections or part in _SECRET_KEYS):  # null stands for the mapping being created
            child = node[part] = {}
        if not isinstance(child, dict):
            raise InputError(f"--set {key}: {part!r} is not a section (it is {_echo(child)})")
        node = child
    node[parts[-1]] = value
    if parts == ["model"]:  # a whole section: its keys under their old names too
        _new_names(value, f"--set {key}")


def _warn_renamed(source: str, old: str) -> None:
    """A RenamedKeyWarning: ``source`` gives ``model.<old>``, a key of :data:`RENAMED`."""
    warnings.warn(
        f"{source}: model.{old} is now model.{RENAMED[old]} (the estimators' name); the old name still works but "
        "will be removed in a later release",
        RenamedKeyWarning,
        stacklevel=4,  # the caller of load_config
    )


def _new_names(model: Any, source: str) -> None:
    """Rename, in place, the keys of a raw model section given under their old names (:data:`RENAMED`), with a
    RenamedKeyWarning each: an override then wins over the file's key whichever name either uses.

    Raises
    ------
    InputError
        Both names of one key given in ``source``.
    """
    for old, new in RENAMED.items() if isinstance(model, dict) else ():
        if old in model:
            if new in model:
                raise InputError(f"{source}: model.{old} is the old name of model.{new}: give model.{new} only")
            _warn_renamed(source, old)
            model[new] = model.pop(old)


def load_config(path: str | Path, overrides: tuple[str, ...] | list[str] = ()) -> Config:
    """Read, override and validate a YAML config file.

    The storage options' values are registered as secrets (see :mod:`pipeline.secrets`).  A key under its old
    name (:data:`RENAMED`), in the file or in an override, is taken under its new one with a RenamedKeyWarning;
    an override wins over the file's key whichever name either uses.

    Raises
    ------
    InputError
        Missing, unreadable, oversized or non-UTF-8 file, invalid YAML, bad
        ``--set``, unknown key, wrong type or range, a key under both its old and new name.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            content = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise InputError(f"config file {str(path)!r} not found") from None
    except OSError as exc:
        raise InputError(f"config file {str(path)!r}: {exc.strerror}") from None
    if len(content) > MAX_CONFIG_BYTES:
        raise InputError(
            f"config file {str(path)!r} is larger than {MAX_CONFIG_BYTES >> 20} MiB; a config is a few dozen keys"
        )
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"config file {str(path)!r} is not UTF-8 text (byte {exc.start})") from None
    raw = parse_yaml(text, str(path))
    if raw is None:
        raw = {}
    if isinstance(raw, dict):
        _new_names(raw.get("model"), str(path))
        for assignment in overrides:
            apply_override(raw, assignment)
        for section in ("data", "output"):
            if isinstance(raw.get(section), dict) and isinstance(raw[section].get("storage_options"), dict):
                secrets.register(raw[section]["storage_options"])
    return validate(raw, str(path))


def recorded(config: Config) -> dict[str, Any]:
    """The config as model.yaml records it: every value, but no secret.

    Storage options' values are redacted, and every URL (``data.path``, ``model.init_params``, ...) is written
    without its password.
    """
    dumped = config.model_dump(mode="json")
    for section in ("data", "output"):
        dumped[section]["storage_options"] = secrets.redact_options(dumped[section]["storage_options"])
        dumped[section]["path"] = secrets.scrub(dumped[section]["path"])
    return secrets.without_passwords(dumped)


def fit_identity(config: Config, fingerprint: str | None) -> dict[str, Any]:
    """What decides the fitted arrays: the data and the model settings and the data's fingerprint.

    Not where it runs, and not the credentials it reads with (``storage_options``, any URL's password).
    """
    dumped = config.model_dump(mode="json")
    data = {key: value for key, value in dumped["data"].items() if key != "storage_options"}
    data["path"] = secrets.scrub(data["path"])
    model = secrets.without_passwords(dumped["model"])
    return {"data": secrets.without_passwords(data), "model": model, "data_fingerprint": fingerprint}
