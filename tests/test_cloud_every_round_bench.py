"""benchmarks/cloud_every_round.py: the per-type D2D schedules it plays, in the surrogate."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_probe_plays_every_schedule_and_moe_rounds_buy_accuracy(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import cloud_every_round

    out = tmp_path / "probe.json"
    try:
        assert cloud_every_round.main(["--seeds", "0", "--target-accuracy", "0.342",
                                       "--json", str(out)]) == 0
    finally:
        del sys.modules["cloud_every_round"]
    result = json.loads(out.read_text())
    final = {p["policy"]: p["final_accuracy"]["mean"] for p in result["policies"]}
    assert list(final) == ["hffm-d2d-e2", "hffm-d2d-e1", "hffm-d2d-e1-moe2", "hffm-d2d-e1-moe4",
                           "hffm-d2d-e1-moe8", "hffm-d2d-e1-moenever"]
    energy = {p["policy"]: p["energy_per_round_j"]["mean"] for p in result["policies"]}
    # fewer MoE cloud rounds: fewer bits moved and a lower final accuracy
    assert energy["hffm-d2d-e1"] > energy["hffm-d2d-e1-moe2"] > energy["hffm-d2d-e1-moenever"]
    assert final["hffm-d2d-e1-moe2"] > final["hffm-d2d-e1-moenever"]


def test_probe_names_an_unknown_schedule(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import cloud_every_round

    try:
        with pytest.raises(SystemExit):
            cloud_every_round.main(["--schedules", "hffm-d2d-e3"])
    finally:
        del sys.modules["cloud_every_round"]
    assert "hffm-d2d-e3" in capsys.readouterr().err


def test_a_renamed_scenario_labels_the_result(tmp_path, monkeypatch):
    """The script labelled its run with --scenario, which run_benchmark now refuses when the
    env's own name differs (--set name=...): the env's name labels it."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import cloud_every_round

    out = tmp_path / "renamed.json"
    try:
        assert cloud_every_round.main(["--fidelity", "surrogate", "--seeds", "1000",
                                       "--schedules", "hffm-d2d-e2", "--target-accuracy", "0.3",
                                       "--set", "name=renamed", "--json", str(out)]) == 0
    finally:
        del sys.modules["cloud_every_round"]
    assert json.loads(out.read_text())["scenario"] == "renamed"
