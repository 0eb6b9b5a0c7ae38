"""Files the package writes and reads: written whole or not at all, read without pickled code.

:func:`write_atomically` writes to a temporary file of the writer's own beside the target and
moves it into place, so a reader (or a second writer) never finds half a file, and a killed
writer leaves at most a ``.<name>.<random>.tmp`` that no reader takes for the file.
:func:`load_tensors` reads a torch file as tensors and plain data only.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["load_tensors", "write_atomically"]


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
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o666 & ~umask)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def load_tensors(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: tensors and plain data, never
    pickled code. A file it cannot read raises ``ValueError`` saying why in a few words, without
    torch's advice to retry with ``weights_only=False`` (which would run any code in a file
    that is not ours); ``OSError`` (a missing or unreadable file) passes through."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as err:  # noqa: BLE001  (torch's unpickler raises many kinds on junk)
        text = str(err)
        why = (text.split("WeightsUnpickler error:", 1)[1]
               if "WeightsUnpickler error:" in text else text)
        why = why.strip().split("\n\n", 1)[0].split(". ", 1)[0]  # the first sentence
        why = " ".join(why.split())[:160] or type(err).__name__
        raise ValueError(f"not a torch file of plain tensors, or a damaged one "
                         f"({type(err).__name__}: {why})") from None
