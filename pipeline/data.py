"""Parquet datasets: listing, schema checks, column projection, fingerprint, reading a partition.

A dataset is a file, a directory (hive partitions allowed, read recursively),
a glob, or any fsspec URL.  Its files are taken in natural sort order.  A
name beginning with ``_`` or ``.`` below the path (``_temporary/``,
``.staging/``, ``_SUCCESS``: what writers leave while they write) is not data,
as for pyarrow.dataset and Spark, unless the path or the glob spells it out.
A partition is one file, or a run of row groups of a file that is large.
Only footers (and, when the columns are chosen automatically, a bounded sample
of the integer columns) are read here on the client; rows are read by the
workers, which check that each file is still the one the fit began with.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.choices import NanPolicy
from pipeline.errors import BlockError, EnvironmentFault, InputError
from pipeline.secrets import scrub
from pipeline.storage import Place

if TYPE_CHECKING:
    from pipeline.passes import BlockSource

PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
# A file larger than this (in float64 rows x columns) is split by row groups.
PARTITION_BYTES = 128 << 20
# Names below the dataset's path that begin with these are not data (unless the path or glob spells them out).
HIDDEN_PREFIXES = ("_", ".")
# Of what fsspec's info gives, the first present tells one content of a file from the next (besides its size).
_VERSION_KEYS = ("ETag", "etag", "generation", "mtime", "LastModified", "last_modified", "updated", "created")
# Automatically chosen integer columns are checked on at most this many rows of the first file with rows ...
SAMPLE_ROWS = 10_000
# ... when it has at least this many: all distinct looks like an identifier, at most LABEL_VALUES like a label.
MIN_SAMPLE_ROWS = 20
LABEL_VALUES = 10


@dataclass(frozen=True)
class Partition:
    """Rows of one file (all of it, or some row groups)."""

    path: str
    row_groups: tuple[int, ...] | None
    n_rows: int
    version: str  # the file's size, ETag or modification time, and footer digest when the dataset was opened


@dataclass(frozen=True)
class ParquetDataset:
    """A projected, schema-checked Parquet dataset.

    Attributes
    ----------
    fs : fsspec.AbstractFileSystem
    partitions : list of Partition
    feature_names : list of str
    weight_column : str or None
    nan_policy : {"error", "drop", "marginalize"}
    fingerprint : str
        sha256 over the files' paths, sizes and footers, and the projection.
    files : list of str
        The Parquet files, in order.
    column_warnings : tuple of str
        When the columns were chosen automatically: one line per integer
        column that looks like an identifier or a label (see :func:`open_dataset`).
    """

    fs: Any
    partitions: list[Partition]
    feature_names: list[str]
    weight_column: str | None
    nan_policy: str
    fingerprint: str
    files: list[str]
    column_warnings: tuple[str, ...] = ()

    @property
    def n_rows(self) -> int:
        return sum(p.n_rows for p in self.partitions)


def _natural_key(path: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


def _below(root: str, path: str) -> list[str]:
    """The names of ``path`` below directory ``root``."""
    return path[len(root.rstrip("/")) :].strip("/").split("/")


def _spelled_out(name: str, pattern: list[str]) -> bool:
    """Whether a glob names a hidden ``name`` itself: a part of it that begins with the same character matches it."""
    return any(part[:1] == name[:1] and fnmatch.fnmatchcase(name, part) for part in pattern)


def _is_hidden(names: list[str], pattern: list[str] = ()) -> bool:
    """Whether one of ``names`` (below the dataset's path) begins with ``_`` or ``.`` and the glob does not name it."""
    return any(n.startswith(HIDDEN_PREFIXES) and not _spelled_out(n, pattern) for n in names)


def _is_parquet(path: str) -> bool:
    return path.lower().endswith(PARQUET_SUFFIXES)


def resolve(path: str, storage_options: dict | None = None) -> Place:
    """The Place of a dataset's path, glob or URL; InputError naming ``data.path`` if fsspec cannot make it.

    Raises
    ------
    InputError
        An unknown protocol, a missing implementation, or options its file system does not take.
    EnvironmentFault
        A file system that connects when made (ftp, sftp) and cannot.
    """
    try:
        return Place.of(path, storage_options)
    except (ValueError, ImportError, TypeError) as exc:
        raise InputError(scrub(f"data.path {path!r}: {exc}")) from None
    except OSError as exc:  # a file system that connects when made (ftp, sftp): the surroundings' fault
        raise EnvironmentFault(scrub(f"data.path {path!r}: cannot connect: {exc.strerror or exc}")) from None


def list_files(place: Place) -> list[str]:
    """The sorted Parquet files (paths on ``place.fs``) of a path, glob or URL."""
    fs, root, path = place.fs, place.path, place.name
    try:
        if any(ch in root for ch in "*?["):
            pattern = root.split("/")
            candidates = []
            for match in fs.glob(root):
                if _is_hidden(match.split("/"), pattern):  # matched by a wildcard, not named
                    continue
                if fs.isdir(match):
                    candidates += [f for f in fs.find(match) if not _is_hidden(_below(match, f))]
                else:
                    candidates.append(match)
        elif fs.isdir(root):
            candidates = [f for f in fs.find(root) if not _is_hidden(_below(root, f))]
        elif fs.isfile(root):
            return [root]
        else:
            raise InputError(f"data.path {path!r} does not exist")
    except PermissionError:
        raise InputError(scrub(f"data.path {path!r}: permission denied")) from None
    except OSError as exc:  # an object store that refuses (no such bucket, bad credentials)
        raise InputError(scrub(f"data.path {path!r}: cannot list it ({exc})")) from None
    files = sorted((f for f in candidates if _is_parquet(f)), key=_natural_key)
    if not files:
        raise InputError(f"data.path {path!r} holds no Parquet files (*.parquet, *.parq, *.pq)")
    return files


@dataclass(frozen=True)
class _Footer:
    path: str
    size: int
    schema: pa.Schema
    row_group_rows: tuple[int, ...]
    digest: bytes
    version: str


def open_parquet(f) -> pq.ParquetFile:
    """A ParquetFile that verifies every page's CRC where the file carries one."""
    return pq.ParquetFile(f, page_checksum_verification=True)


def _footer_digest(f) -> bytes:
    """sha256 of the Parquet footer of the open file ``f``."""
    size = f.size
    f.seek(size - 8)
    footer_len = int.from_bytes(f.read(4), "little")
    f.seek(size - 8 - footer_len)
    return hashlib.sha256(f.read(footer_len)).digest()


def _stamp(fs, path: str) -> str:
    """The size of a file and the first of its ETag, generation or modification time that fsspec's info gives."""
    info = fs.info(path)
    tag = next((f" {key}={info[key]}" for key in _VERSION_KEYS if info.get(key) is not None), "")
    return f"size={info.get('size')}{tag}"


def _read_footer(fs, path: str) -> _Footer:
    try:
        stamp = _stamp(fs, path)
        with fs.open(path, "rb") as f:
            meta = open_parquet(f).metadata
            size, digest = f.size, _footer_digest(f)
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except (pa.ArrowException, OSError) as exc:
        raise InputError(scrub(f"{path}: not a readable Parquet file ({exc})")) from None
    rows = tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
    return _Footer(path, size, meta.schema.to_arrow_schema(), rows, digest, f"{stamp} footer={digest.hex()}")


def _is_numeric(dtype: pa.DataType) -> bool:
    return pa.types.is_integer(dtype) or pa.types.is_floating(dtype)


@dataclass(frozen=True)
class Naming:
    """How the user gave the columns, for messages: the config's keys, or the model's features (``gmm score``,
    ``gmm update``)."""

    columns: str = "data.columns"
    weight_column: str = "data.weight_column"


CONFIG_COLUMNS = Naming()
MODEL_COLUMNS = Naming("the model's features", "the model's weight column (its config's data.weight_column)")


def _select_columns(first: _Footer, columns, weight_column, naming: Naming = CONFIG_COLUMNS) -> list[str]:
    schema = first.schema
    names = schema.names
    if weight_column is not None:
        if weight_column not in names:
            raise InputError(
                f"{first.path}: {naming.weight_column} {weight_column!r} not found; available columns: "
                f"{', '.join(names)}"
            )
        _check_unique(first, [weight_column])
        if not _is_numeric(schema.field(weight_column).type):
            raise InputError(
                f"{first.path}: {naming.weight_column} {weight_column!r} is "
                f"{schema.field(weight_column).type}, expected a numeric column of weights"
            )
    if columns is None:
        chosen = [
            n
            for n in dict.fromkeys(names)
            if n != weight_column and all(_is_numeric(schema.field(i).type) for i in schema.get_all_field_indices(n))
        ]
        if not chosen:
            raise InputError(f"{first.path}: no numeric columns; columns are: {', '.join(names)}")
        _check_unique(first, chosen)
        return chosen
    if len(set(columns)) != len(columns):
        twice = next(n for n, c in Counter(columns).items() if c > 1)
        raise InputError(f"data.columns names {twice!r} more than once")
    for name in columns:
        if name not in names:
            raise InputError(
                f"{first.path}: column {name!r} of {naming.columns} not found; available columns: {', '.join(names)}"
            )
        _check_unique(first, [name])
        if not _is_numeric(schema.field(name).type):
            raise InputError(f"{first.path}: column {name!r} is {schema.field(name).type}, not numeric")
    if weight_column in columns:
        raise InputError(
            f"data.weight_column {weight_column!r} is also in data.columns; a column is a feature or "
            "the weights, not both"
        )
    return list(columns)


def _check_unique(footer: _Footer, needed: list[str]) -> None:
    """Every needed column names exactly one column of the file."""
    counts = Counter(footer.schema.names)
    for name in needed:
        if counts[name] > 1:
            raise InputError(
                f"{footer.path}: {counts[name]} columns are named {name!r}; rename them so that each name is unique"
            )


def _check_same_schema(footers: list[_Footer], needed: list[str]) -> None:
    reference = footers[0]
    for footer in footers[1:]:
        _check_unique(footer, [n for n in needed if n in footer.schema.names])
        for name in needed:
            if name not in footer.schema.names:
                raise InputError(f"{footer.path}: column {name!r} is missing (present in {reference.path})")
            mine, theirs = footer.schema.field(name).type, reference.schema.field(name).type
            if mine != theirs:
                raise InputError(f"{footer.path}: column {name!r} is {mine}, but {theirs} in {reference.path}")


def _partitions(footer: _Footer, n_columns: int) -> list[Partition]:
    rows = footer.row_group_rows
    if sum(rows) * n_columns * 8 <= PARTITION_BYTES or len(rows) < 2:
        return [Partition(footer.path, None, sum(rows), footer.version)]
    parts, group, count = [], [], 0
    for i, r in enumerate(rows):
        if group and (count + r) * n_columns * 8 > PARTITION_BYTES:
            parts.append(Partition(footer.path, tuple(group), count, footer.version))
            group, count = [], 0
        group.append(i)
        count += r
    parts.append(Partition(footer.path, tuple(group), count, footer.version))
    return parts


def _column_warnings(fs, footers: list[_Footer], names: list[str]) -> tuple[str, ...]:
    """Integer columns among automatically chosen ``names`` that look like an identifier or a label.

    Judged on at most :data:`SAMPLE_ROWS` rows of the first file with rows, and only when that sample has
    at least :data:`MIN_SAMPLE_ROWS` values: every value distinct looks like an identifier, at most
    :data:`LABEL_VALUES` distinct values like a label or a code.
    """
    integers = [n for n in names if pa.types.is_integer(footers[0].schema.field(n).type)]
    first = next((footer for footer in footers if sum(footer.row_group_rows)), None)
    if not integers or first is None:
        return ()
    try:
        with fs.open(first.path, "rb") as f:
            sample = next(open_parquet(f).iter_batches(batch_size=SAMPLE_ROWS, columns=integers))
    except (pa.ArrowException, OSError) as exc:
        raise InputError(scrub(f"{first.path}: cannot read Parquet data ({exc})")) from None
    warnings = []
    for name in integers:
        column = sample.column(name)
        n_values = len(column) - column.null_count
        n_distinct = pc.count_distinct(column).as_py()
        if n_values < MIN_SAMPLE_ROWS:
            continue
        if n_distinct == n_values:
            looks = f"an identifier: all {n_values} values in the first rows of {first.path} are distinct"
        elif n_distinct <= LABEL_VALUES:
            looks = f"a label or a code: {n_distinct} distinct values in the first {n_values} rows of {first.path}"
        else:
            continue
        warnings.append(
            f"column {name!r} ({column.type}) looks like {looks}; it is fitted as a feature because data.columns "
            "is null: list the features in data.columns"
        )
    return tuple(warnings)


def open_dataset(
    where: Place | str,
    columns: list[str] | None = None,
    weight_column: str | None = None,
    nan_policy: str = "error",
    passthrough: list[str] = (),
    naming: Naming = CONFIG_COLUMNS,
) -> ParquetDataset:
    """List, check and project a Parquet dataset (reads footers, and a sample when ``columns`` is None).

    ``where`` is a Place from :func:`resolve`, or a path resolved by it without storage options.
    ``passthrough`` columns (of any type) must exist in every file too; ``naming`` says how the user gave the
    columns (the config's keys, or the model's features).  With
    ``columns=None`` every numeric column but the weight column is a feature,
    and integer columns that look like an identifier or a label (judged on the
    first rows, see :func:`_column_warnings`) are named in the dataset's
    ``column_warnings``.

    Raises
    ------
    InputError
        Missing path, no Parquet, unreadable file, missing or non-numeric
        column, or files that disagree on the selected columns.
    """
    place = where if isinstance(where, Place) else resolve(where)
    fs, files = place.fs, list_files(place)
    with ThreadPoolExecutor(max_workers=8) as pool:
        footers = list(pool.map(lambda f: _read_footer(fs, f), files))
    names = _select_columns(footers[0], columns, weight_column, naming)
    for name in passthrough:
        if name not in footers[0].schema.names:
            raise InputError(
                f"{footers[0].path}: column {name!r} to keep not found; "
                f"available columns: {', '.join(footers[0].schema.names)}"
            )
    needed = names + ([weight_column] if weight_column else [])
    _check_same_schema(footers, needed + [c for c in passthrough if c not in needed])
    digest = hashlib.sha256(repr((names, weight_column, nan_policy)).encode())
    for footer in footers:
        digest.update(f"{footer.path}\0{footer.size}\0".encode())
        digest.update(footer.digest)
    partitions = [p for footer in footers for p in _partitions(footer, len(needed))]
    warnings = _column_warnings(fs, footers, names) if columns is None else ()
    return ParquetDataset(fs, partitions, names, weight_column, nan_policy, digest.hexdigest(), files, warnings)


def _column_as_float(table: pa.Table, name: str) -> np.ndarray:
    column = table.column(name)
    if column.null_count:
        column = pc.fill_null(pc.cast(column, pa.float64()), np.nan)
    return column.to_numpy().astype(np.float64, copy=False)


def read_partition(
    fs, part: Partition, feature_names: list[str], weight_column: str | None, nan_policy: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read one partition as float64 rows.

    Returns
    -------
    X : ndarray of shape (n_rows, n_features), float64 in Fortran order (columns contiguous)
    sample_weight : ndarray of shape (n_rows,) or None

    With ``nan_policy="marginalize"`` NaN values stay (they are missing
    values) and rows with every value missing are dropped; infinite values
    are errors under every policy but ``drop``.

    Raises
    ------
    InputError
        Unreadable file (or a page failing its checksum), a file that is not
        the one the dataset was opened with (``part.version``), non-finite
        values (``nan_policy="error"``), or a negative or non-finite weight.
    """
    columns = np.empty((len(feature_names), part.n_rows))  # Arrow's layout: one contiguous column each
    sample_weight = None
    try:
        fs.invalidate_cache(part.path)  # a listing cached in this process must not hide a new version
        stamp = _stamp(fs, part.path)
        with fs.open(part.path, "rb") as f:
            if f"{stamp} footer={_footer_digest(f).hex()}" != part.version:
                raise InputError(
                    f"{part.path}: the file changed during the fit (its size, modification time or footer is not "
                    "what it was when the fit began); no model was written: rerun once nothing writes to the data"
                )
            pf = open_parquet(f)
            # One column at a time: besides X, only one column's Arrow buffers are alive.
            for j, name in enumerate(feature_names + ([weight_column] if weight_column else [])):
                if part.row_groups is None:
                    table = pf.read(columns=[name])
                else:
                    table = pf.read_row_groups(part.row_groups, columns=[name])
                if table.num_rows != part.n_rows:
                    raise InputError(f"{part.path}: has {table.num_rows} rows, its footer said {part.n_rows}")
                if j < len(feature_names):
                    columns[j] = _column_as_float(table, name)
                else:
                    sample_weight = _column_as_float(table, name).copy()
                del table
    except (pa.ArrowException, OSError) as exc:
        raise InputError(scrub(f"{part.path}: cannot read Parquet data ({exc})")) from None
    finally:
        # Arrow's allocator caches freed buffers; give them back so memory tracks the current partition.
        pa.default_memory_pool().release_unused()
    X = columns.T
    policy = NanPolicy(nan_policy)
    if policy.marginalizes:
        infinite = np.isinf(X).any(axis=1)
        if infinite.any():
            raise InputError(
                f"{part.path}: {int(infinite.sum())} rows have infinite values in the selected columns; "
                "a missing value is NaN (or null), an infinite one is an error"
            )
    bad = policy.unusable(X)
    if sample_weight is not None:
        if not np.isfinite(sample_weight).all() or (sample_weight < 0).any():
            n_bad = int((~np.isfinite(sample_weight) | (sample_weight < 0)).sum())
            raise InputError(
                f"{part.path}: weight column {weight_column!r} has {n_bad} negative, NaN or infinite values; "
                "weights must be finite and >= 0"
            )
    if bad.any():
        if not policy.accepts_nan:
            raise InputError(
                f"{part.path}: {int(bad.sum())} rows have NaN or infinite values in the selected columns; "
                "clean the data or set data.nan_policy: drop (those rows are left out) or marginalize "
                "(NaN is a missing value and each row's observed values are fitted; infinite values stay errors)"
            )
        X = np.asfortranarray(X[~bad])
        sample_weight = None if sample_weight is None else sample_weight[~bad]
    return X, sample_weight


def _read_block(*args) -> tuple | BlockError:
    try:
        return read_partition(*args)
    except InputError as exc:
        return BlockError(str(exc))


def block_source(dataset: ParquetDataset) -> BlockSource:
    """A BlockSource that reads each partition of ``dataset`` with pyarrow on the workers."""
    import dask

    from pipeline.passes import BlockSource

    blocks = [
        dask.delayed(_read_block, pure=True)(
            dataset.fs,
            part,
            dataset.feature_names,
            dataset.weight_column,
            dataset.nan_policy,
            dask_key_name=f"read-parquet-{dataset.fingerprint[:16]}-{i}",
        )
        for i, part in enumerate(dataset.partitions)
    ]
    return BlockSource(blocks, [p.n_rows for p in dataset.partitions], len(dataset.feature_names))
