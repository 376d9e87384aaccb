"""Reading and writing small files on a local disk or any fsspec URL (``s3://...``).

Local writes are atomic (written beside, fsynced, renamed into place).  On an
object store every object is written in one PUT, which is atomic per object;
a directory is written object by object in the order given (model.yaml last).
"""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import fsspec

from pipeline.errors import InputError


def is_url(path: str | Path) -> bool:
    return "://" in str(path)


def join(path: str | Path, name: str) -> str:
    return f"{str(path).rstrip('/')}/{name}" if is_url(path) else str(Path(path) / name)


def _fs(path: str, storage_options: dict | None):
    return fsspec.core.url_to_fs(path, **(storage_options or {}))


def read_bytes(path: str | Path, storage_options: dict | None = None) -> bytes:
    """The content of a file; InputError naming it if it cannot be read."""
    try:
        if is_url(path):
            fs, p = _fs(str(path), storage_options)
            return fs.cat_file(p)
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: not found") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None


def exists(path: str | Path, storage_options: dict | None = None) -> bool:
    if is_url(path):
        fs, p = _fs(str(path), storage_options)
        return fs.exists(p)
    return Path(path).exists()


def remove(path: str | Path, storage_options: dict | None = None) -> None:
    if is_url(path):
        fs, p = _fs(str(path), storage_options)
        if fs.exists(p):
            fs.rm(p)
    else:
        Path(path).unlink(missing_ok=True)


def _write_local_file(path: Path, content: bytes) -> None:
    with open(path, "wb") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())


def write_bytes(path: str | Path, content: bytes, storage_options: dict | None = None) -> None:
    """Replace a file's content atomically."""
    if is_url(path):
        fs, p = _fs(str(path), storage_options)
        fs.pipe_file(p, content)
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        _write_local_file(staging, content)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


@contextmanager
def staged_directory(path: str | Path) -> Iterator[Path]:
    """A fresh local directory beside ``path`` that becomes ``path`` when the block succeeds.

    The old content of ``path`` (if any) is replaced whole; on failure nothing changes.
    """
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:12]
    staging = path.parent / f".{path.name}.tmp-{tag}"
    staging.mkdir()
    try:
        yield staging
        if path.exists():
            retired = path.parent / f".{path.name}.old-{tag}"
            os.rename(path, retired)
            os.rename(staging, path)
            shutil.rmtree(retired)
        else:
            os.rename(staging, path)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def write_directory(path: str | Path, files: dict[str, bytes], storage_options: dict | None = None) -> None:
    """Write ``files`` (in order) as the whole content of directory ``path``.

    Locally the directory is written complete beside its destination and
    renamed into place.  On an object store the objects are put in order.
    """
    if is_url(path):
        for name, content in files.items():
            write_bytes(join(path, name), content, storage_options)
        return
    with staged_directory(path) as staging:
        for name, content in files.items():
            _write_local_file(staging / name, content)
