"""Reading and writing small files on a local disk or any fsspec URL (``s3://...``).

Local writes are atomic (written beside, fsynced, renamed into place).  On an
object store every object is written in one PUT, which is atomic per object;
a directory is written object by object in the order given (model.yaml last).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import fsspec

from pipeline.errors import EnvironmentFault, InputError
from pipeline.secrets import scrub


def is_url(path: str | Path) -> bool:
    return "://" in str(path)


def join(path: str | Path, name: str) -> str:
    return f"{str(path).rstrip('/')}/{name}" if is_url(path) else str(Path(path) / name)


def _fs(path: str, storage_options: dict | None):
    return fsspec.core.url_to_fs(path, **(storage_options or {}))


def read_bytes(path: str | Path, storage_options: dict | None = None, limit: int | None = None) -> bytes:
    """The content of a file; InputError naming it if it cannot be read (or is larger than ``limit`` bytes)."""
    try:
        if is_url(path):
            fs, p = _fs(str(path), storage_options)
            if limit is not None and fs.size(p) > limit:
                raise InputError(f"{path}: larger than {limit} bytes")
            return fs.cat_file(p)
        with open(path, "rb") as f:
            content = f.read() if limit is None else f.read(limit + 1)
    except FileNotFoundError:
        raise InputError(f"{path}: not found") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a file") from None
    except OSError as exc:
        raise InputError(scrub(f"{path}: cannot read ({exc})")) from None
    if limit is not None and len(content) > limit:
        raise InputError(f"{path}: larger than {limit} bytes")
    return content


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
    """Replace a file's content atomically; EnvironmentFault naming the path if it cannot be written."""
    try:
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
    except OSError as exc:
        raise EnvironmentFault(scrub(f"cannot write {str(path)!r}: {exc.strerror or exc}")) from None


@contextmanager
def staged_directory(path: str | Path, replaceable: Callable[[Path], bool] = lambda p: False) -> Iterator[Path]:
    """A fresh local directory beside ``path`` that becomes ``path`` when the block succeeds.

    An existing ``path`` is replaced whole only if it is an empty directory or
    ``replaceable(path)`` says it is ours to replace (checked again here, at
    the last moment); otherwise InputError, and nothing changes, as on any failure.
    """
    path = Path(path).absolute()
    tag = uuid.uuid4().hex[:12]
    staging = path.parent / f".{path.name}.tmp-{tag}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
    except OSError as exc:
        raise EnvironmentFault(f"cannot write beside {str(path)!r}: {exc.strerror}") from None
    try:
        yield staging
        if path.exists() or path.is_symlink():
            empty = path.is_dir() and not path.is_symlink() and not any(path.iterdir())
            if not (empty or (path.is_dir() and not path.is_symlink() and replaceable(path))):
                raise InputError(
                    f"{str(path)!r} appeared while this command ran and is not its own output; nothing was replaced"
                )
            retired = path.parent / f".{path.name}.old-{tag}"
            try:
                os.rename(path, retired)
                os.rename(staging, path)
            except BaseException:  # a fault, or a signal (raised just after either rename returned, or before)
                if retired.exists() and not path.exists():
                    os.rename(retired, path)  # the earlier output goes back where it was
                raise
            finally:
                if path.exists() and retired.exists():  # the new output is in place
                    shutil.rmtree(retired, ignore_errors=True)
        else:
            os.rename(staging, path)
    except OSError as exc:
        raise EnvironmentFault(f"cannot write {str(path)!r}: {exc.strerror}") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def write_directory(
    path: str | Path,
    files: dict[str, bytes],
    storage_options: dict | None = None,
    replaceable: Callable[[Path], bool] = lambda p: False,
) -> None:
    """Write ``files`` (in order) as the whole content of directory ``path``.

    Locally the directory is written complete beside its destination and
    renamed into place (replacing an existing one only if ``replaceable``).
    On an object store the objects are put in order.
    """
    if is_url(path):
        for name, content in files.items():
            write_bytes(join(path, name), content, storage_options)
        return
    with staged_directory(path, replaceable) as staging:
        for name, content in files.items():
            try:
                _write_local_file(staging / name, content)
            except OSError as exc:
                raise EnvironmentFault(f"cannot write {str(path)!r}: {exc.strerror}") from None
