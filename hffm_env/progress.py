"""Progress bars that suit where they are read: a bar on a terminal, lines in a file or a log.

tqdm redraws its bar with carriage returns: in a file or a CI log every redraw piles up on one
endless line. :func:`progress_bar` gives tqdm's bar on a terminal and, elsewhere, the same
meter as a line of its own at most every :data:`PROGRESS_LINE_EVERY_S` seconds (and at the
start and end), so that a long run logged to a file says how far it got.
"""

from __future__ import annotations

import io
import sys
from typing import IO, Any

__all__ = ["PROGRESS_LINE_EVERY_S", "progress_bar"]

PROGRESS_LINE_EVERY_S = 30.0
"""Seconds between two progress lines where stderr is no terminal."""


class _Lines(io.TextIOBase):
    """A stream that writes each of tqdm's redraws as one line (blank ones dropped)."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        self.stream = stream

    def write(self, text: str) -> int:
        line = text.replace("\r", "").strip()  # a redraw, or the blank that clears one
        if line:
            self.stream.write(line + "\n")
            self.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable: Any = None, *, every_s: float | None = None, **kwargs: Any) -> Any:
    """``tqdm(iterable, **kwargs)`` on stderr: its bar on a terminal and in a notebook, else
    (a file, a CI log) lines at most every ``every_s`` seconds (default
    :data:`PROGRESS_LINE_EVERY_S`), kept when done: the lines replace ``file``, ``leave`` and
    ``mininterval`` given in ``kwargs``."""
    from tqdm.auto import tqdm

    stream = sys.stderr
    # (a notebook draws tqdm's widget, or its text bar, whose carriage returns it renders)
    in_a_notebook = (any("notebook" in cls.__module__ for cls in tqdm.__mro__)
                     or "ipykernel" in sys.modules)
    if not in_a_notebook and stream is not None and not (
            hasattr(stream, "isatty") and stream.isatty()):
        interval = PROGRESS_LINE_EVERY_S if every_s is None else every_s
        kwargs = {**kwargs, "file": _Lines(stream), "mininterval": interval,
                  "maxinterval": max(interval, 10.0), "leave": True,
                  "bar_format": "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} "
                                "[{elapsed}<{remaining}, {rate_fmt}{postfix}]"}

        class Lines(tqdm):
            """A postfix shows in the next line, not in one of its own."""

            def set_postfix(self, ordered_dict: Any = None, refresh: bool = True,
                            **values: Any) -> None:
                super().set_postfix(ordered_dict, refresh=False, **values)

            def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
                super().set_postfix_str(s, refresh=False)

        return Lines(iterable, **kwargs)
    return tqdm(iterable, **kwargs)
