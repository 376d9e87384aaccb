"""Where a command writes: what it may replace, what it must never touch, and the lock of a local output.

The rule: a command replaces only what it can prove is its own earlier output
of the same kind (a model directory: ``model.yaml`` with ``format_version``; a
score output: its :data:`SCORE_MARKER`; a report: its generator mark), never a
path that is, contains or lies inside its input data or model; anything else
is an :class:`InputError` naming the path, checked before a cluster starts.
A local output is locked while a command writes it (:func:`output_lock`).
"""

from __future__ import annotations

import errno
import fcntl
import fnmatch
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline import storage
from pipeline.errors import EnvironmentFault, InputError
from pipeline.secrets import scrub
from pipeline.storage import Place

SCORE_MARKER = "_gmm_score.json"  # leading underscore: Parquet readers (and ours) skip it
REPORT_MARK = "gmm-pipeline report"
_MAGIC = "*?["


@dataclass(frozen=True)
class Location:
    """A path as compared: its filesystem protocol and its absolute, normalised path."""

    protocol: str
    path: str
    pattern: bool = False

    def contains(self, other: Location) -> bool:
        if self.protocol != other.protocol:
            return False
        if self.pattern:
            return fnmatch.fnmatchcase(other.path, self.path) or any(
                fnmatch.fnmatchcase(parent, self.path) for parent in _parents(other.path)
            )
        return other.path == self.path or other.path.startswith(self.path.rstrip("/") + "/")


def _parents(path: str) -> list[str]:
    parts = path.rstrip("/").split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def locate(path: str | Path) -> Location:
    """The Location of a local path (symbolic links resolved) or of an fsspec URL."""
    text = str(path)
    if storage.is_url(text):
        protocol, _, rest = text.partition("://")
        rest = rest.rstrip("/")
        return Location(protocol, rest, any(ch in rest for ch in _MAGIC))
    pattern = any(ch in text for ch in _MAGIC)
    absolute = os.path.abspath(text)
    if pattern:  # resolve the part before the first wildcard
        magic = min(absolute.find(ch) for ch in _MAGIC if ch in absolute)
        head, _, _ = absolute[:magic].rpartition("/")
        absolute = os.path.realpath(head or "/") + absolute[len(head) :]
    else:
        absolute = os.path.realpath(absolute)
    return Location("file", absolute, pattern)


def check_apart(output: str, what: str, inputs: dict[str, str | None]) -> None:
    """InputError if ``output`` is, contains or lies inside one of ``inputs`` (``{"data.path": path, ...}``)."""
    out = locate(output)
    for name, value in inputs.items():
        if value is None:
            continue
        source = locate(value)
        if source.contains(out):
            relation = "is" if out.path == source.path else "lies inside"
            raise InputError(
                f"{what} {output!r} {relation} {name} {value!r}; writing there would destroy or "
                "mix with what is read: choose another output"
            )
        if not source.pattern and Location(out.protocol, out.path).contains(source):
            raise InputError(
                f"{what} {output!r} contains {name} {value!r}; replacing it would destroy what is "
                "read: choose another output"
            )


def resolve(path: str, what: str, storage_options: dict | None = None) -> Place:
    """The Place of an output; EnvironmentFault naming it if its file system cannot be reached."""
    try:
        return Place.of(path, storage_options)
    except (OSError, ValueError) as exc:
        raise EnvironmentFault(scrub(f"{what} {path!r}: cannot look at it ({exc})")) from None


def _existing_kind(place: Place) -> str | None:
    """None if nothing is at ``place``; else "empty", "file" or "directory"."""
    p = place.local
    if p is None:
        fs = place.fs
        if not fs.exists(place.path):
            return None
        if fs.isfile(place.path):
            return "file"
        return "directory" if fs.ls(place.path) else "empty"
    if not p.exists() and not p.is_symlink():
        return None
    if p.is_dir() and not p.is_symlink():
        return "directory" if any(p.iterdir()) else "empty"
    return "file"


def check_replaceable(place: Place, what: str, owned: Callable[[Place], bool], kind: str) -> None:
    """InputError unless ``place`` is absent, an empty directory, or ``owned(place)`` proves it our earlier output."""
    path = place.name
    try:
        existing = _existing_kind(place)
    except (OSError, ValueError) as exc:
        raise EnvironmentFault(scrub(f"{what} {path!r}: cannot look at it ({exc})")) from None
    if kind == "report":  # a report is one file: a directory, even an empty one, is not one to replace
        if existing is None or (existing == "file" and owned(place)):
            return
    elif existing in (None, "empty") or (existing == "directory" and owned(place)):
        return
    found = (
        "a file"
        if existing == "file"
        else "a directory"
        if kind == "report"
        else "a directory that is not "
        + {
            "model": "a model directory (no model.yaml with format_version)",
            "score": f"a score output (no {SCORE_MARKER})",
        }[kind]
    )
    raise InputError(
        f"{what} {path!r} exists and is {found}; this command replaces only its own earlier "
        "output: remove it or choose another path"
    )


def is_score_output(place: Place) -> bool:
    """A local directory that holds :data:`SCORE_MARKER`."""
    return place.local is not None and (place.local / SCORE_MARKER).is_file()


def is_report(place: Place) -> bool:
    """A local PNG or HTML file that carries this tool's generator mark in its first 64 KiB."""
    if place.local is None:
        return False
    try:
        with open(place.local, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return False
    return REPORT_MARK.encode() in head


def probe_writable(place: Place, what: str) -> list[Path]:
    """Make ``place``'s parent and write (and remove) a small file beside it: EnvironmentFault naming it if not.

    Returns the local directories made, so that a run that fails can remove them again.
    """
    path = place.name
    if place.local is None:
        probe = place.beside(f".probe-{uuid.uuid4().hex[:12]}")
        try:
            storage.write_bytes(probe, b"")
            storage.remove(probe)
        except Exception as exc:  # noqa: BLE001 - any failure of the store is the environment's
            raise EnvironmentFault(scrub(f"{what} {path!r} is not writable ({type(exc).__name__}: {exc})")) from None
        return []
    parent = place.local.absolute().parent
    made = [p for p in [parent, *parent.parents] if not p.exists()][::-1]
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = parent / f".{place.local.name}.probe-{uuid.uuid4().hex[:12]}"
        with open(probe, "wb") as f:
            f.write(b"probe")
            f.flush()
            os.fsync(f.fileno())
        probe.unlink()
    except OSError as exc:
        remove_if_empty(made)
        raise EnvironmentFault(f"{what} {path!r}: cannot write in {str(parent)!r} ({exc.strerror})") from None
    return made


def remove_if_empty(directories: list[Path]) -> None:
    """Remove the directories (deepest first) that are still empty."""
    for directory in reversed(directories):
        try:
            directory.rmdir()
        except OSError:
            break


def lock_path(output: str) -> str:
    return f"{str(output).rstrip('/')}.lock"


@contextmanager
def output_lock(output: str, what: str) -> Iterator[None]:
    """Hold ``<output>.lock`` (a local output only) while the block runs; InputError naming the holder if taken.

    The lock is an ``flock`` on the file, which the system releases when its
    holder dies, however it dies: a lock left by a killed run is simply taken
    over.  The file says who holds it (pid, host, since when).
    """
    if storage.is_url(output):
        yield
        return
    path = lock_path(output)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:  # a directory, a link, or no permission: not ours to lock
            raise InputError(
                f"{what} {output!r}: {path!r} exists and is not a lock of this tool "
                f"({exc.strerror}); remove it or choose another output"
            ) from None
        if not _is_lock(fd):
            os.close(fd)
            raise InputError(
                f"{what} {output!r}: {path!r} exists and is not a lock of this tool; remove it or choose another output"
            )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise EnvironmentFault(f"{what} {output!r}: cannot lock {path!r} ({exc.strerror})") from None
            raise InputError(
                f"{what} {output!r} is being written by another run ({holder}); wait for it, or if "
                f"it is gone, remove {path!r}"
            ) from None
        try:  # the file may have been removed by the holder between our open and our lock: try again then
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        yield
    finally:
        try:
            os.unlink(path)
        finally:
            os.close(fd)


def _is_lock(fd: int) -> bool:
    """Whether the file is empty (just made, by us or a run about to write into it) or says who holds it."""
    content = os.pread(fd, 4097, 0)
    if not content:
        return True
    try:
        return set(json.loads(content)) == {"pid", "host", "since"}
    except (ValueError, TypeError):
        return False


def _read_holder(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {holder['pid']} on {holder['host']} since {holder['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


@contextmanager
def writing(
    place: Place, what: str, kind: str, owned: Callable[[Place], bool], inputs: dict[str, str | None]
) -> Iterator[None]:
    """Check ``place`` (apart from the inputs, replaceable, writable) and hold its lock while the block runs.

    Directories made for it are removed again if the block fails.
    """
    check_apart(place.name, what, inputs)
    check_replaceable(place, what, owned, kind)
    made = probe_writable(place, what)
    try:
        with output_lock(place.name, what):
            yield
    except BaseException:
        remove_if_empty(made)
        raise
