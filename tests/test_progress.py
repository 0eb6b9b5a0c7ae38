"""hffm_env.progress: a bar on a terminal, lines in a file or a log."""

from __future__ import annotations

import io
import sys

from hffm_env.progress import progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_lines_and_a_terminal_the_bar(monkeypatch):
    # the pre-training, calibration, bench and RLlib bars wrote carriage-return redraws into
    # log files: one endless line
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    bar = progress_bar(range(6), desc="work", every_s=0.0)
    for step in bar:
        bar.set_postfix_str(f"seed {step}")  # shown in the next line, not a line of its own
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0].startswith("work:   0% 0/6") and lines[-1].startswith("work: 100% 6/6")
    assert len(lines) <= 8 and "seed 5" in lines[-1]
    # every_s apart at most: a fast loop prints its first and last lines only
    log.seek(0)
    log.truncate()
    for _ in progress_bar(range(1000), desc="fast", every_s=60.0):
        pass
    assert len(log.getvalue().splitlines()) == 2
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    for _ in progress_bar(range(3), desc="bar"):
        pass
    assert "\r" in terminal.getvalue()
