"""Reading and writing small files on a local disk or any fsspec URL (``s3://...``), at a resolved :class:`Place`.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec

from pipeline.errors import EnvironmentFault, InputError
from pipeline.secrets import scrub, without_passwords


def is_url(path: str | Path) -> bool:
    return "://" in str(path)


def _join(path: str, name: str) -> str:
    return f"{path.rstrip('/')}/{name}" if is_url(path) else str(Path(path) / name)


@dataclass(frozen=True, repr=False)
class Place:
    """A file or directory, resolved once: its fsspec file system, the path on it, and the path as the user wrote it.

    A local path (no ``://``) is read and written with the operating system's
    calls at :attr:`local` (atomic renames, fsync); a URL through ``fs``.  A
    Place is never pickled (its file system may hold credentials or be bound
    to this process), and its repr shows the path without a URL's password.

    Attributes
    ----------
    fs : fsspec.AbstractFileSystem
    path : str
        The path on ``fs`` (fsspec's form: no protocol; absolute for a local path).
    name : str
        As the user wrote it, for messages and events.
    """

    fs: Any = field(compare=False)
    path: str
    name: str

    @classmethod
    def of(cls, where: str | Path | Place, storage_options: dict | None = None) -> Place:
        """The Place of a local path or fsspec URL (``storage_options`` go to fsspec); a Place is returned as it is.

        Raises
        ------
        ValueError, ImportError, TypeError, OSError
            As fsspec does for an unknown protocol, a missing implementation, options it does not take, or a file
            system that cannot connect; the callers say which setting named the path.
        """
        if isinstance(where, Place):
            return where
        name = str(where)
        fs, path = fsspec.core.url_to_fs(name, **(storage_options or {}))
        return cls(fs, path, name)

    @property
    def local(self) -> Path | None:
        """The local path (as written), or None for a URL."""
        return None if is_url(self.name) else Path(self.name)

    def join(self, child: str) -> Place:
        """The Place of ``child`` inside this directory, on the same file system."""
        return Place(self.fs, f"{self.path.rstrip('/')}/{child}", _join(self.name, child))

    def beside(self, suffix: str) -> Place:
        """The Place whose name is this one's with ``suffix`` appended (``out`` -> ``out.checkpoint.npz``)."""
        return Place(self.fs, f"{self.path.rstrip('/')}{suffix}", f"{self.name.rstrip('/')}{suffix}")

    def __repr__(self) -> str:
        return f"Place({without_passwords(self.name)!r})"

    def __reduce_ex__(self, protocol):
        raise TypeError(
            f"{self!r} is not pickled: its file system may hold credentials; send the path and open it where it is used"
        )


def read_bytes(place: Place, limit: int | None = None) -> bytes:
    """The content of a file; InputError naming it if it cannot be read (or is larger than ``limit`` bytes)."""
    path = place.name
    try:
        if place.local is None:
            if limit is not None and place.fs.size(place.path) > limit:
                raise InputError(f"{path}: larger than {limit} bytes")
            return place.fs.cat_file(place.path)
        with open(place.local, "rb") as f:
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


def exists(place: Place) -> bool:
    return place.fs.exists(place.path) if place.local is None else place.local.exists()


def remove(place: Place) -> None:
    if place.local is None:
        if place.fs.exists(place.path):
            place.fs.rm(place.path)
    else:
        place.local.unlink(missing_ok=True)


def _write_local_file(path: Path, content: bytes) -> None:
    with open(path, "wb") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())


def write_bytes(place: Place, content: bytes) -> None:
    """Replace a file's content atomically; EnvironmentFault naming the path if it cannot be written."""
    path = place.local
    try:
        if path is None:
            place.fs.pipe_file(place.path, content)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")
        try:
            _write_local_file(staging, content)
            os.replace(staging, path)
        finally:
            staging.unlink(missing_ok=True)
    except OSError as exc:
        shown = place.name if path is None else str(path)
        raise EnvironmentFault(scrub(f"cannot write {shown!r}: {exc.strerror or exc}")) from None


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
    place: Place, files: dict[str, bytes], replaceable: Callable[[Path], bool] = lambda p: False
) -> None:
    """Write ``files`` (in order) as the whole content of directory ``place``.

    Locally the directory is written complete beside its destination and
    renamed into place (replacing an existing one only if ``replaceable``).
    On an object store the objects are put in order.
    """
    if place.local is None:
        for name, content in files.items():
            write_bytes(place.join(name), content)
        return
    with staged_directory(place.local, replaceable) as staging:
        for name, content in files.items():
            try:
                _write_local_file(staging / name, content)
            except OSError as exc:
                raise EnvironmentFault(f"cannot write {place.name!r}: {exc.strerror}") from None
