"""The one place for configuration: schema with defaults, YAML loading, ``--set`` overrides.

Unknown keys, wrong types and out-of-range values are :class:`InputError`\\ s
whose message names the file and the dotted key.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.errors import InputError
from pipeline.init import INIT_METHODS
from pipeline.kernels import COVARIANCE_TYPES, DTYPES


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class DataConfig(_Section):
    path: str = Field(description="file, directory (hive partitions allowed), glob, or fsspec URL")
    columns: list[str] | None = Field(None, description="null: every numeric column but the weight column")
    weight_column: str | None = Field(None, description="optional non-negative per-row frequency weight")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="handed to fsspec")
    nan_policy: Literal["error", "drop"] = Field("error", description="rows with NaN/inf: fail, or drop and report")


class ModelConfig(_Section):
    n_components: int = Field(3, ge=1)
    covariance_type: Literal[COVARIANCE_TYPES] = "full"
    reg_covar: float = Field(1e-6, ge=0)
    init: str = Field("kmeans", description=f"{' | '.join(INIT_METHODS)} | path of a model directory")
    n_init: int = Field(1, ge=1)
    max_iter: int = Field(100, ge=1)
    tol: float = Field(1e-3, ge=0)
    random_state: int | None = 0
    dtype: Literal[DTYPES] = Field(
        "float64", description="arithmetic of the E-step and of a chunk's moments; sums and the M-step stay float64")


class ClusterConfig(_Section):
    address: str | None = Field(None, description="null: start a LocalCluster")
    n_workers: int = Field(2, ge=1)
    threads_per_worker: int = Field(1, ge=1)
    memory_limit: str | int = "auto"
    persist: Literal["auto", "memory", "none"] = "auto"


class OutputConfig(_Section):
    path: str = Field("out/model", description="model directory: local path or fsspec URL")
    storage_options: dict[str, Any] | None = Field(None, description="for fsspec; null: data.storage_options")


class Config(_Section):
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-3`` as a float, as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text; a syntax error names ``source``, line and column."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"{where}: invalid YAML: {problem}") from None


def _key_path(loc) -> str:
    return ".".join(str(p) for p in loc)


def _known_keys(loc) -> list[str]:
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        annotation = model.model_fields[str(part)].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _describe(error: dict) -> str:
    loc = error["loc"]
    key = _key_path(loc)
    if error["type"] == "extra_forbidden":
        known = _known_keys(loc)
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"; did you mean {_key_path(loc[:-1] + (close[0],))!r}?" if close else ""
        return f"unknown key {key!r}{hint} (valid here: {', '.join(known)})"
    if error["type"] == "missing":
        return f"missing required key {key!r}"
    return f"{key}: {error['msg']} (got {error.get('input')!r})"


def validate(raw: Any, source: str) -> Config:
    """Validate a parsed config mapping; the first problem becomes an InputError."""
    if not isinstance(raw, dict):
        raise InputError(f"{source}: expected a mapping of sections (data, model, cluster, output), got {type(raw).__name__}")
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise InputError(f"{source}: {_describe(exc.errors()[0])}") from None


def apply_override(raw: dict, assignment: str) -> None:
    """Apply one ``key.path=value`` override (value typed as YAML) to a raw config in place."""
    key, sep, text = assignment.partition("=")
    if not sep or not key.strip():
        raise InputError(f"--set {assignment!r}: expected KEY=VALUE, e.g. --set model.n_components=5")
    value = parse_yaml(text, f"--set {key}")
    node, schema = raw, Config
    parts = key.strip().split(".")
    for part in parts[:-1]:
        field = schema.model_fields.get(part) if schema is not None else None
        annotation = field.annotation if field is not None else None
        if field is not None and not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            raise InputError(f"--set {key}: {part!r} is not a section")
        schema = annotation if field is not None else None
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise InputError(f"--set {key}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def load_config(path: str | Path, overrides: tuple[str, ...] | list[str] = ()) -> Config:
    """Read, override and validate a YAML config file.

    Raises
    ------
    InputError
        Missing file, invalid YAML, bad ``--set``, unknown key, wrong type or range.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(f"config file {str(path)!r} not found") from None
    except (PermissionError, IsADirectoryError) as exc:
        raise InputError(f"config file {str(path)!r}: {exc.strerror}") from None
    raw = parse_yaml(text, str(path))
    if raw is None:
        raw = {}
    if isinstance(raw, dict):
        for assignment in overrides:
            apply_override(raw, assignment)
    return validate(raw, str(path))
