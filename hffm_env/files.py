"""Files the package writes and reads: written whole or not at all, read without pickled code.

:func:`write_atomically` writes to a temporary file of the writer's own beside the target and
moves it into place, so a reader (or a second writer) never finds half a file, and a killed
writer leaves at most a ``.<name>.<random>.tmp`` that no reader takes for the file.
:func:`load_tensors` reads a torch file as tensors and plain data only. :func:`lock_file`
lets one process at a time do what a lock file guards (build a cache entry, write traces).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import gzip
import os
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "FileBusy",
    "GZIP_SUFFIX",
    "check_output_path",
    "load_tensors",
    "lock_file",
    "non_finite_tensors",
    "output_path_problem",
    "read_text_by_suffix",
    "remove_staging_files",
    "require_path",
    "save_figure_atomically",
    "write_atomically",
    "write_text_atomically",
]

GZIP_SUFFIX = ".gz"
"""A JSON file whose name ends so is gzip-compressed (traces, bench results): one rule for
every reader and writer of them."""


class FileBusy(Exception):
    """Another process holds the lock file (:func:`lock_file` without ``on_busy``)."""


def require_path(value: Any, what: str, error: type[Exception] = ValueError) -> Path:
    """``value`` as a ``Path`` when it is one (a string or an ``os.PathLike``); else ``error``
    naming ``what`` and the value (``None`` passed for a path failed deep inside ``pathlib``
    with Python's words)."""
    if isinstance(value, (str, os.PathLike)) and str(value):  # ("" would be the folder ".")
        return Path(value)
    from hffm_env.values import shown

    raise error(f"{what} = {shown(value)}: must be a path (a non-empty string or "
                "pathlib.Path)")


def output_path_problem(path: str | os.PathLike[str],
                        suffixes: tuple[str, ...] = ()) -> str | None:
    """Why ``path`` cannot name a file to write, in a few words (empty, a folder, a suffix not
    among ``suffixes`` when they are given, a folder that does not exist), or None. Whether
    the folder can be written is left to the writing."""
    text = os.fspath(path)
    if not text:
        return "must be a non-empty file name"
    target = Path(text)
    if target.is_dir():
        return "is a folder; expected a file name"
    if suffixes and target.suffix.lower() not in suffixes:
        return f"allowed suffixes {list(suffixes)}"
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        return f"folder {str(folder)!r} does not exist"
    if target.is_symlink() and not target.exists():  # writing would replace the link
        return f"a link to {os.readlink(target)!r}, which does not exist"
    return None


def check_output_path(value: Any, what: str, suffixes: tuple[str, ...] = ()) -> Path:
    """``value`` as the ``Path`` of a file to write, or ``ValueError`` naming ``what``, the
    value and the problem (:func:`output_path_problem`, which the commands' own check,
    ``hffm_env.arguments.output_file``, also runs; they also expand ``~`` and try the
    folder's permissions, a library call leaves both to the caller and the writing)."""
    if isinstance(value, (str, os.PathLike)):
        problem = output_path_problem(value, suffixes)
        if problem:
            raise ValueError(f"{what} = {str(value)!r}: {problem}")
    return require_path(value, what)


@contextlib.contextmanager
def lock_file(path: str | Path, *, on_busy: Callable[[], Any] | None = None,
              remove: bool = False) -> Iterator[bool]:
    """Hold an exclusive lock (POSIX ``flock``) on the file ``path``, created if missing, for
    the ``with`` block; the process's death releases it. Yields True when the lock is held,
    False where none can be had (not POSIX, or the file cannot be opened): then the block
    must not count on having the files to itself. When another process holds it, call
    ``on_busy()`` (once) and wait; without ``on_busy`` raise :class:`FileBusy`. ``remove``
    deletes the lock file as the block ends (a lock beside a user's own files); a waiter that
    then holds the deleted file's lock opens the file at ``path`` again, so that two holders
    never lock two different files of one name."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield False
        return
    told = False
    while True:
        try:
            handle = open(path, "a")  # noqa: SIM115  (closed below)
        except OSError:  # another user's lock file in a shared folder, say
            yield False
            return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_busy is None:
                handle.close()
                raise FileBusy(str(path)) from None
            if not told:
                on_busy()
                told = True
            fcntl.flock(handle, fcntl.LOCK_EX)
        if _still_at(handle, path):
            break
        handle.close()  # the holder before removed it: lock the file now at path
    with handle:
        try:
            yield True
        finally:
            if remove:
                Path(path).unlink(missing_ok=True)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _still_at(handle: IO[str], path: str | Path) -> bool:
    """Whether the open file ``handle`` is still the file at ``path`` (not deleted or
    replaced since it was opened)."""
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except OSError:  # nothing at path any more
        return False


def _umask() -> int:
    """This process's umask: read from ``/proc`` where there is one, since elsewhere reading
    it means setting it for an instant, which another thread could see."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0)
    os.umask(umask)
    return umask


def write_atomically(path: str | Path, write: Callable[[IO[bytes]], Any], *,
                     sync: bool = False) -> None:
    """Call ``write(handle)`` on a fresh binary file in ``path``'s folder, then move it to
    ``path`` in one step (``os.replace``). The file gets the mode any new file gets under the
    umask (a temporary file's own 0600 would make a cache shared by several users unreadable
    to all but its writer). ``sync`` flushes it to disk first (a cache others will trust)."""
    path = Path(path)
    descriptor, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                           suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(staging, 0o666 & ~_umask())
        os.replace(staging, path)
    except BaseException as err:
        Path(staging).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename is None:  # a full disk: name the file
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise


def remove_staging_files(path: str | Path) -> None:
    """Remove the temporary files that killed :func:`write_atomically` calls of ``path`` left
    beside it. Call it only while holding the lock every writer of ``path`` takes: a live
    writer's temporary file looks the same."""
    path = Path(path)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()


def write_text_atomically(path: str | Path, text: str) -> None:
    """:func:`write_atomically` of ``text`` as UTF-8 (whatever the locale's encoding),
    gzip-compressed when ``path`` ends in ``.gz``."""
    data = text.encode("utf-8")
    if Path(path).suffix == GZIP_SUFFIX:
        data = gzip.compress(data, mtime=0)  # (no time stamp: same text, same bytes)
    write_atomically(path, lambda handle: handle.write(data))


def save_figure_atomically(fig: Any, path: str | Path, **savefig: Any) -> None:
    """``fig.savefig`` into ``path`` whole or not at all (:func:`write_atomically`; the format
    from the suffix): a Ctrl-C while a figure is drawn must not leave half a PNG beside
    complete results."""
    fmt = Path(path).suffix.lstrip(".").lower() or None
    write_atomically(path, lambda handle: fig.savefig(handle, format=fmt, **savefig))


def read_text_by_suffix(path: str | Path) -> str:
    """The text of a file :func:`write_text_atomically` wrote: decompressed when ``path``
    ends in ``.gz``. ``OSError`` when it cannot be read; ``ValueError`` when it is not
    gzip data (under that name) or not UTF-8."""
    raw = Path(path).read_bytes()
    if Path(path).suffix == GZIP_SUFFIX:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:  # (BadGzipFile is an OSError; a
            raise ValueError(f"not gzip data ({err})") from None  # bad body, zlib's own)
    return raw.decode("utf-8")


def load_tensors(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: tensors and plain data, never
    pickled code. A file it cannot read raises ``ValueError`` saying why in a few words, without
    torch's advice to retry with ``weights_only=False`` (which would run any code in a file
    that is not ours); ``OSError`` (a missing or unreadable file) passes through."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as err:
        # torch's zip reader says only "Invalid argument" of a file cut short
        if err.errno == errno.EINVAL and Path(path).is_file():
            raise ValueError("a damaged or truncated torch file (its zip archive cannot be "
                             "read)") from None
        raise
    except Exception as err:  # noqa: BLE001  (torch's unpickler raises many kinds on junk)
        text = str(err)
        why = (text.split("WeightsUnpickler error:", 1)[1]
               if "WeightsUnpickler error:" in text else text)
        why = why.strip().split("\n\n", 1)[0].split(". ", 1)[0]  # the first sentence
        why = " ".join(why.split())[:160] or type(err).__name__
        raise ValueError(f"not a torch file of plain tensors, or a damaged one "
                         f"({type(err).__name__}: {why})") from None


def non_finite_tensors(state: Any) -> list[str]:
    """The names of ``state``'s floating-point tensors (a name -> tensor mapping, e.g. a
    ``state_dict``) that hold a NaN or an infinite value: the check every loader of weights
    makes (a diverged run, or an edited file whose checksum was redone)."""
    import torch

    return [name for name, tensor in state.items()
            if isinstance(tensor, torch.Tensor) and torch.is_floating_point(tensor)
            and not bool(torch.isfinite(tensor).all())]
