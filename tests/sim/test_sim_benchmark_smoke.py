"""The network scaling benchmark runs (at its smallest size) and reports sane numbers."""

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "network_scaling.py"


@pytest.fixture(scope="module")
def bench():
    with pytest.MonkeyPatch.context() as patch:  # its shared _output module sits beside it
        patch.syspath_prepend(str(BENCH.parent))
        spec = importlib.util.spec_from_file_location("network_scaling_bench", BENCH)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


def test_scaled_scenario_keeps_paper_density(bench):
    scenario = bench.scaled_scenario(4000)
    placement = scenario.placement
    assert placement.num_edge_servers == 1000 and placement.devices_per_cluster == 4
    assert placement.area_side_m == pytest.approx(50_000.0)


def test_bench_size_smallest(bench):
    result = bench.bench_size(40, rounds=1)
    # 40 devices x 5 uplinks + one D2D flow per non-head device, each path >= 1 hop.
    assert result["flows"] == 40 * 5 + 30
    assert result["hops"] >= 230
    # every phase timed (an empty dict passed, and times are never negative anyway)
    assert set(result["seconds"]) >= {"begin_round", "relay_paths", "build", "account", "total"}
    assert all(0.0 < v < 60.0 for v in result["seconds"].values()), result["seconds"]
