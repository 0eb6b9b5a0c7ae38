"""benchmarks/soak.py runs, reports memory growth after warm-up, and writes its JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_soak_reports_growth(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import soak

    out = tmp_path / "soak.json"
    code = soak.main(["--episodes", "4", "--warmup", "2", "--no-progress", "--json", str(out),
                      "--set", "env.episode_rounds=3"])
    result = json.loads(out.read_text())
    assert result["episodes"] == 4 and result["steps"] == 12
    assert result["rss_end_mib"] > 0 and code == (0 if result["passed"] else 1)
    assert "dynamics.dropout_prob=0.2" in result["overrides"]
    del sys.modules["soak"]
