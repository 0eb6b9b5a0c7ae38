"""What every command line here shares: argument types that refuse bad values while parsing
(so that nothing runs for minutes before failing on an output path or a seed), and the error
boundary that turns a user's mistake into one line on stderr and exit status 2, and Ctrl-C
or SIGTERM into one line and exit status 130 after what was done is saved.

Used by ``hffm``, ``train_agent.py`` and the scripts in ``benchmarks/``. Set ``HFFM_DEBUG=1``
to get the traceback instead of the one line.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import pickle
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar, overload

from hffm_env.devices import device_problem, resolve_device
from hffm_env.files import output_path_problem
from hffm_env.seeding import FIRST_HELD_OUT_SEED, SEED_MAX, SEED_RANGE

__all__ = [
    "PLOT_SUFFIXES",
    "USER_ERRORS",
    "command_line",
    "command_prog",
    "device",
    "error_line",
    "held_out_seed",
    "input_path",
    "interrupts_held",
    "non_negative_int",
    "output_file",
    "positive_int",
    "print_own_warnings_as_lines",
    "probability",
    "run_command",
    "seed",
    "sigterm_as_interrupt",
    "split_names",
    "report_user_error",
    "episode_count",
    "fraction",
    "MAX_EPISODES",
    "MAX_SAMPLES",
    "sample_count",
    "first_repeated",
]


USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,  # ConfigError, AgentFileError, JSON and UTF-8 decoding errors included
    OSError,  # missing or unreadable files, SurrogateMissing, gzip.BadGzipFile included
    EOFError,  # a truncated torch or pickle file
    pickle.UnpicklingError,  # a corrupt torch file
)
"""The exceptions a bad flag, value or input file raises here; :func:`run_command` reports
them in one line. Anything else is a bug and keeps its traceback."""


def run_command(main: Callable[[], int | None], prog: str,
                argv: Sequence[str] | None = None) -> int:
    """``main()``'s exit status, with :data:`USER_ERRORS` reported as ``prog: error: ...`` (2)
    and Ctrl-C or SIGTERM as ``prog: interrupted`` (130). Output that stdout or stderr cannot
    encode (an ASCII-only terminal) is escaped, and a closed stdout discards it. ``argv`` (the
    arguments ``main`` parses; default ``sys.argv[1:]``) makes :func:`command_line`."""
    _usable_output_streams()
    try:
        with sigterm_as_interrupt(), _own_warnings_as_lines(prog), _running(prog, argv):
            return int(main() or 0)
    except BrokenPipeError:  # the reader left (`| head`): not an error of the command
        _silence_stdout()
        return 141  # as a shell reports a process ended by SIGPIPE
    except USER_ERRORS as err:
        return report_user_error(err, prog)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def _usable_output_streams() -> None:
    """Make printing safe for a command: escape what the stream's encoding lacks (a table's
    "±" on an ASCII stdout raised UnicodeEncodeError after the work) and discard output to a
    closed stdout (``>&-``: ``sys.stdout`` is None)."""
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (for the rest of the process)
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")


def _package_folders() -> tuple[str, ...]:
    """The folders of this package's code (``hffm_env.agents`` and ``hffm_env.baselines``
    live beside ``hffm_env`` in a source checkout), found without importing them."""
    import importlib.util

    folders = []
    for name in ("hffm_env", "hffm_env.agents", "hffm_env.baselines"):
        spec = importlib.util.find_spec(name)
        locations = spec.submodule_search_locations if spec is not None else None
        folders += [os.path.join(f, "") for f in (locations or [])]
    return tuple(folders)


_command_prog: str | None = None
"""The ``prog`` of the command this process runs (:func:`run_command`), None outside one."""


_command_line: list[str] | None = None
"""The words of the command this process runs (:func:`run_command`), None outside one."""


def command_line() -> list[str] | None:
    """The command running in this process as its words (``["hffm", "bench", "--json",
    "out.json"]``), None outside :func:`run_command`: what a result file records as the
    command that made it (:func:`hffm_env.provenance.provenance`), also when the command's
    ``main(argv)`` was called from Python."""
    return None if _command_line is None else list(_command_line)


@contextlib.contextmanager
def _running(prog: str, argv: Sequence[str] | None) -> Iterator[None]:
    global _command_line
    outer = _command_line
    _command_line = [*prog.split(), *(sys.argv[1:] if argv is None else argv)]
    try:
        yield
    finally:
        _command_line = outer


def command_prog() -> str | None:
    """The name of the command running in this process (``hffm``, ``train_agent.py``), None
    outside :func:`run_command`: what a worker process needs to print warnings as the command
    does (:func:`print_own_warnings_as_lines`)."""
    return _command_prog


def _one_line_format(prog: str, original: Callable[..., str]) -> Callable[..., str]:
    ours = _package_folders()

    def one_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 line: str | None = None) -> str:
        if not filename.startswith(ours):
            return original(message, category, filename, lineno, line)
        # numpy's floating-point warnings are attributed to the package's line that divided
        where = os.path.relpath(filename, os.path.dirname(os.path.dirname(
            next(f for f in ours if filename.startswith(f)))))
        return f"{prog}: warning: {message} ({category.__name__} at {where}:{lineno})\n"

    return one_line


def print_own_warnings_as_lines(prog: str) -> None:
    """For the rest of this process, print warnings raised in the package's code as
    :func:`run_command` does for ``prog`` (a vector env's worker process, which runs no
    command of its own)."""
    global _command_prog
    warnings.formatwarning = _one_line_format(prog, warnings.formatwarning)
    _command_prog = prog  # as a forked worker inherits it


@contextlib.contextmanager
def _own_warnings_as_lines(prog: str) -> Iterator[None]:
    """Within the block, warnings raised in the package's code print as one line, ``prog:
    warning: <message> (<category> at hffm_env/<file>:<line>)``, not a full path and a line of
    source; other libraries' keep Python's form. Only the text changes (``formatwarning``):
    ``catch_warnings(record=True)``, ``pytest.warns`` and a caller's ``showwarning`` still get
    every warning."""
    global _command_prog
    original, outer = warnings.formatwarning, _command_prog
    warnings.formatwarning = _one_line_format(prog, original)
    _command_prog = prog
    try:
        yield
    finally:
        warnings.formatwarning, _command_prog = original, outer


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM (what ``kill``, ``timeout``, ``docker stop`` and job
    schedulers send) raises ``KeyboardInterrupt`` as Ctrl-C does, so that it saves what Ctrl-C
    saves instead of ending the process on the spot. Outside the main thread (where Python
    cannot handle signals) it does nothing."""
    with _signal_handler(_raise_interrupt, signal.SIGTERM):
        yield


@contextlib.contextmanager
def interrupts_held(prog: str, replay: bool = False) -> Iterator[None]:
    """Ctrl-C and SIGTERM wait for the block to end: wrap the saving that an interrupt set
    off, so that a second Ctrl-C does not stop it half-way (it left an agent folder without
    its run settings and a message that nothing was saved). The signals that came are noted
    on stderr; with ``replay`` a ``KeyboardInterrupt`` follows the block when one came (a save
    that no interrupt set off: the run stops after it), else they are dropped (the caller is
    stopping anyway). Outside the main thread it does nothing."""
    came: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        came.append(signum)
        print(f"{prog}: still saving what was done; a moment", file=sys.stderr, flush=True)

    with _signal_handler(hold, signal.SIGINT, signal.SIGTERM):
        yield
    if replay and came:
        raise KeyboardInterrupt


@contextlib.contextmanager
def _signal_handler(handler: Callable[[int, Any], None], *signals: int) -> Iterator[None]:
    """``handler`` for ``signals`` within the block, the earlier handlers after it; nothing
    outside the main thread (where Python cannot handle signals). A handler installed outside
    Python (``signal.signal`` returns None for it) cannot be reinstalled from Python, so
    Python's default takes its place."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, earlier in previous.items():
            if earlier is None:
                earlier = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
            signal.signal(sig, earlier)


@overload
def split_names(values: Sequence[str]) -> list[str]: ...
@overload
def split_names(values: None) -> None: ...
def split_names(values: Sequence[str] | None) -> list[str] | None:
    """Names given to a list flag, space- or comma-separated alike (``--policies a,b`` and
    ``--policies a b``); ``None`` when the flag was not given."""
    if values is None:
        return None
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit raises no second error (the
    recipe of Python's signal documentation for SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (captured): nothing to flush at exit
        pass
    finally:
        os.close(devnull)


def report_user_error(err: BaseException, prog: str) -> int:
    """Print ``err`` as ``prog: error: ...`` on stderr and return the exit status 2; with
    ``HFFM_DEBUG`` set, raise it instead (the whole traceback). Call it from an ``except``."""
    if os.environ.get("HFFM_DEBUG"):
        raise err
    print(f"{prog}: error: {error_line(err)}", file=sys.stderr)
    return 2


def error_line(err: BaseException, max_chars: int | None = None) -> str:
    """``err``'s message on one line (YAML and torch messages span several), cut to
    ``max_chars`` (a library's message quoted inside one of ours); an OS error as
    ``path: reason``; the error's type name when it says nothing."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        line = f"{err.filename}: {err.strerror}"
    else:
        line = " ".join(str(err).split()) or type(err).__name__
    return line if max_chars is None or len(line) <= max_chars else line[:max_chars] + "..."


# --------------------------------------------------------------------------------------------
# argument types (argparse turns their ValueError/ArgumentTypeError into a usage error)


def _parse(text: str, convert: Callable[[str], Any], what: str) -> Any:
    """``convert(text)``, or the usage error that names the text and what was expected."""
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {what}") from None


def _integer(text: str, what: str) -> int:
    return _parse(text, int, what)


def seed(text: str) -> int:
    """A seed: an integer in ``0..2**63-1`` (the config's range)."""
    value = _integer(text, f"an integer seed in {SEED_RANGE}")
    if not 0 <= value <= SEED_MAX:  # (seeding.check_seed's range, said the way flags say it)
        raise argparse.ArgumentTypeError(f"{value}: seeds are integers in {SEED_RANGE}")
    return value


def held_out_seed(text: str) -> int:
    """A seed held out for evaluation: :func:`seed`, and at least
    :data:`~hffm_env.seeding.FIRST_HELD_OUT_SEED` (the seeds below it train and tune)."""
    value = seed(text)
    if value < FIRST_HELD_OUT_SEED:
        raise argparse.ArgumentTypeError(f"{value}: held-out seeds are {FIRST_HELD_OUT_SEED} "
                                         "and above (the seeds below train and tune)")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _integer(text, "an integer >= 1")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be an integer >= 1")
    return value


MAX_EPISODES = 1_000_000
"""The most episodes a command plays per policy (``--episodes``): more would only exhaust the
memory that holds their records (a million cost-fidelity episodes take hours already)."""


def episode_count(text: str) -> int:
    """An integer in ``1..MAX_EPISODES``."""
    return _count_up_to(text, MAX_EPISODES, "episodes per policy",
                        "their records are kept in memory")


def _count_up_to(text: str, limit: int, unit: str, why: str) -> int:
    """An integer in ``1..limit``; above, an error saying ``at most <limit> <unit> (<why>)``."""
    value = positive_int(text)
    if value > limit:
        raise argparse.ArgumentTypeError(f"{value}: at most {limit:,} {unit} ({why})")
    return value


MAX_SAMPLES = 1_000_000
"""The most scenes a command draws (``model_quality.py --samples``), as the config's sample
counts allow: more only exhausts the memory that holds them."""


def sample_count(text: str) -> int:
    """An integer in ``1..MAX_SAMPLES``."""
    return _count_up_to(text, MAX_SAMPLES, "scenes", "they are held in memory")


_Given = TypeVar("_Given")


def first_repeated(values: Sequence[_Given],
                   key: Callable[[_Given], Any] = lambda value: value) -> _Given | None:
    """The first of ``values`` that an earlier one equals by ``key`` (None: each is given
    once): the one check of a seed, policy or file given twice, whose episodes would be
    played or counted twice."""
    seen = set()
    for value in values:
        if key(value) in seen:
            return value
        seen.add(key(value))
    return None


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    value = _integer(text, "an integer >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}: must be an integer >= 0")
    return value


def _number(text: str, what: str) -> float:
    return _parse(text, float, what)


def probability(text: str) -> float:
    """A finite number in ``[0, 1]`` (an accuracy, a fraction)."""
    value = _number(text, "a number in [0, 1]")
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise argparse.ArgumentTypeError(f"{text}: must be a number in [0, 1]")
    return value


def fraction(text: str) -> float:
    """A finite number in ``(0, 1]`` (a share of something, never none of it)."""
    value = _number(text, "a number in (0, 1]")
    if not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise argparse.ArgumentTypeError(f"{text}: must be a number in (0, 1]")
    return value


def device(text: str) -> str:
    """A torch device this machine has (:func:`hffm_env.devices.device_problem`), or
    ``auto``: ``cuda`` when there is one, else ``cpu``."""
    if text == "auto":
        return resolve_device(text)
    problem = device_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{text!r}: {problem}; or auto")
    return text


def input_path(text: str) -> str:
    """An argument type for a file or folder the command reads: ``~`` expanded, as the shell
    does for ``--agent ~/x`` but not for ``--agent=~/x`` (whether it exists is for the code
    that reads it to say, with what it expected there)."""
    return os.path.expanduser(text)


def output_file(suffixes: tuple[str, ...] = (), stdout: bool = False) -> Callable[[str], str]:
    """An argument type for a file the command will write: refused at once when it is a folder,
    when its folder does not exist or cannot be written, or when its suffix is not one of
    ``suffixes`` (any when empty); ``"-"`` passes when ``stdout``."""

    def check(text: str) -> str:
        if stdout and text == "-":
            return text
        text = os.path.expanduser(text)  # `--json=~/x.json`: the shell leaves that ~ alone
        problem = output_path_problem(text, suffixes)
        if problem:
            raise argparse.ArgumentTypeError(f"{text!r}: {problem}")
        path = Path(text)
        folder = path.parent if str(path.parent) else Path(".")
        # files are written through a temporary name 14 bytes longer (files.write_atomically)
        try:
            name_max = os.pathconf(folder, "PC_NAME_MAX")
        except (OSError, ValueError, AttributeError):
            name_max = 255
        if len(os.fsencode(path.name)) + 14 > name_max:
            raise argparse.ArgumentTypeError(
                f"{text!r}: file name of {len(os.fsencode(path.name))} bytes; at most "
                f"{name_max - 14} here")
        try:  # the one sure test (permission bits say little to root, or in /proc)
            if path.exists():
                open(path, "a").close()  # appends nothing: the file is left as it was
            else:
                open(path, "x").close()
                path.unlink()
        except OSError as err:
            raise argparse.ArgumentTypeError(f"{text!r}: cannot be written ({err.strerror})"
                                             ) from None
        return text

    check.__name__ = "output file"  # argparse names the type in its messages
    return check


PLOT_SUFFIXES = (".png", ".pdf", ".svg")
"""What ``--plot`` writes (matplotlib, by suffix)."""
