"""Writing files whole or not at all, and reading torch files without pickled code."""

from __future__ import annotations

import os

import pytest
import torch

from hffm_env.files import load_tensors, write_atomically


def test_a_file_is_written_whole_with_the_umasks_mode(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"earlier")
    previous = os.umask(0o027)
    try:
        write_atomically(target, lambda handle: handle.write(b"new"))
    finally:
        os.umask(previous)
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o640  # not mkstemp's 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_a_failed_write_leaves_the_earlier_file_and_no_temporary_one(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"earlier")

    def fail(handle):
        handle.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, fail)
    assert target.read_bytes() == b"earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_two_writers_stage_in_files_of_their_own(tmp_path):
    """Two processes saving one surrogate staged in one .tmp: a reader found half a file."""
    target = tmp_path / "out.bin"
    staged = []

    def outer(handle):
        staged.append(handle.name)
        write_atomically(target, lambda inner: staged.append(inner.name) or inner.write(b"B"))
        handle.write(b"A")

    write_atomically(target, outer)
    assert staged[0] != staged[1] and target.read_bytes() == b"A"


def test_a_file_that_is_not_ours_is_refused_without_torchs_unsafe_advice(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"garbage\n")
    truncated = tmp_path / "truncated.pt"
    torch.save({"x": torch.zeros(1000)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:500])
    for path in (garbage, truncated):
        with pytest.raises(ValueError, match="not a torch file of plain tensors, or a damaged "
                                             "one") as caught:
            load_tensors(path)
        assert "weights_only" not in str(caught.value) and "Re-running" not in str(caught.value)
    cut_short = tmp_path / "cut_short.pt"  # torch's zip reader: OSError "Invalid argument"
    torch.save({"x": torch.zeros(100_000)}, cut_short)
    cut_short.write_bytes(cut_short.read_bytes()[:5000])
    with pytest.raises(ValueError, match="a damaged or truncated torch file"):
        load_tensors(cut_short)
    with pytest.raises(OSError):
        load_tensors(tmp_path / "missing.pt")
    good = tmp_path / "good.pt"
    torch.save({"x": torch.ones(2)}, good)
    assert torch.equal(load_tensors(good)["x"], torch.ones(2))


def test_a_lock_file_is_held_by_one_and_removed_when_asked(tmp_path):
    from hffm_env.files import FileBusy, lock_file

    path = tmp_path / ".x.lock"
    with lock_file(path, remove=True) as held:
        assert held and path.exists()
        with pytest.raises(FileBusy), lock_file(path):  # a second holder (flock: per open file)
            pass
    assert not path.exists()  # removed with the lock: nothing left beside the user's files
    with lock_file(path) as held:
        assert held
    assert path.exists()  # kept by default (a cache's lock)
    (tmp_path / "folder.lock").mkdir()
    with lock_file(tmp_path / "folder.lock") as held:  # cannot be opened: no lock, said so
        assert held is False


def test_a_waiter_for_a_removed_lock_locks_the_file_now_at_its_path(tmp_path):
    """A waiter got the lock of the file its holder removed; a third process then locked the
    new file of that name: two holders at once (one could delete the other's staging file)."""
    import threading

    from hffm_env.files import FileBusy, lock_file

    path = tmp_path / ".x.lock"
    waiting, held, release = threading.Event(), threading.Event(), threading.Event()

    def second() -> None:
        with lock_file(path, on_busy=waiting.set):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=second)
    with lock_file(path, remove=True):
        thread.start()
        assert waiting.wait(10)  # it opened the file this holder removes on the way out
    assert held.wait(10)
    try:
        with pytest.raises(FileBusy), lock_file(path):  # the third
            pass
    finally:
        release.set()
        thread.join(10)


def test_staging_files_of_killed_writes_are_removed_and_only_theirs(tmp_path):
    """A killed write left `.<name>.<random>.tmp` beside traces and surrogates for good."""
    from hffm_env.files import remove_staging_files

    target = tmp_path / "s[1].traces.json"  # a name with glob characters
    for name in (".s[1].traces.json.ab12cd34.tmp", ".other.json.ab12cd34.tmp", "s[1].traces.json"):
        (tmp_path / name).write_text("x")
    remove_staging_files(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.json.ab12cd34.tmp",
                                                         "s[1].traces.json"]


def test_a_write_that_fails_on_a_full_disk_names_the_file(tmp_path):
    import errno

    from hffm_env.files import write_text_atomically

    def full(handle):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match=r"No space left on device: '.*out\.json'"):
        write_atomically(tmp_path / "out.json", full)
    write_text_atomically(tmp_path / "out.json", "±")
    assert (tmp_path / "out.json").read_bytes() == "±".encode()


def test_a_figure_is_saved_whole_or_not_at_all(tmp_path):
    """pareto.png and learning_curve.png were drawn into place: a Ctrl-C while drawing left
    half a PNG beside complete results."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pytest

    from hffm_env.files import save_figure_atomically

    fig = plt.figure()
    target = tmp_path / "plot.png"
    target.write_bytes(b"the earlier figure")

    class Interrupted:
        def savefig(self, handle, **kwargs):
            handle.write(b"\x89PNG half")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save_figure_atomically(Interrupted(), target)
    assert target.read_bytes() == b"the earlier figure"
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]  # no staging file left
    save_figure_atomically(fig, target)
    assert target.read_bytes().startswith(b"\x89PNG")
    save_figure_atomically(fig, tmp_path / "plot.svg")  # the format from the suffix
    assert b"<svg" in (tmp_path / "plot.svg").read_bytes()
    plt.close(fig)


def test_a_gz_file_that_is_not_gzip_data_is_a_value_error(tmp_path):
    """A corrupt deflate body under a valid gzip header raised zlib's own error, which no
    command turns into one line."""
    import gzip

    import pytest

    from hffm_env.files import read_text_by_suffix, write_text_atomically

    good = tmp_path / "good.json.gz"
    write_text_atomically(good, '{"a": 1}')
    assert gzip.decompress(good.read_bytes()) == b'{"a": 1}'
    assert read_text_by_suffix(good) == '{"a": 1}'
    raw = bytearray(good.read_bytes())
    raw[10:14] = b"\xff\xff\xff\xff"  # the deflate body, past the 10-byte header
    bad = tmp_path / "bad.json.gz"
    bad.write_bytes(bytes(raw))
    plain = tmp_path / "plain.json.gz"
    plain.write_text('{"a": 1}')
    for path in (bad, plain):
        with pytest.raises(ValueError, match="not gzip data"):
            read_text_by_suffix(path)
