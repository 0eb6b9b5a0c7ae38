"""The `hffm describe` command and its errors."""

import json

from hffm_env.cli import main


def test_describe_paper_text(capsys):
    assert main(["describe", "--scenario", "paper"]) == 0
    out = capsys.readouterr().out
    assert "paper" in out and "module inventory" in out and "adapter/fusion" in out


def test_describe_json_has_network_and_model(capsys):
    assert main(["describe", "--scenario", "small", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scenario"] == "small"
    assert len(report["model"]["devices"]) == 12
    assert {row["module_type"] for row in report["model"]["modules"]} == {
        "encoder", "prompt", "moe", "adapter", "head"}
    assert report["network"]


def test_errors_are_one_line_with_status_2(capsys):
    assert main(["describe", "--scenario", "tiny"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "known scenarios" in err
    assert main(["describe", "--set", "channel.d2d.bandwidth_hz=-1"]) == 2
    assert "bandwidth_hz" in capsys.readouterr().err
