"""The transfer table's home and its one reader: ``columns()`` is shared, cached and read-only,
the old import path still works, and the cost accountant uses nothing private of the table."""

import ast
from pathlib import Path

import numpy as np
import pytest
from sim_helpers import cost_scenario, make_rates, make_topology

from hffm_env.sim import cost, transfers
from hffm_env.sim.cost import CostAccountant

SIM = Path(__file__).resolve().parents[2] / "hffm_env" / "sim"


def _topology():
    return make_topology([[0, 0], [5, 0], [500, 0], [505, 0]], [0, 0, 1, 1],
                         [[0, 0], [500, 0]])


def test_cost_reexports_the_table_names():
    for name in transfers.__all__:
        assert getattr(cost, name) is getattr(transfers, name)
        assert name in cost.__all__


def test_columns_are_shared_cached_and_read_only():
    table = transfers.TransferTable.for_topology(_topology())
    table.add_uplinks("adapter/fusion", 8.0, [0, 2])
    cols = table.columns()
    assert table.columns() is cols  # no copy per read
    assert table.link is cols["link"] and table.size_bits is cols["size_bits"]
    assert set(cols) == {"flow", "hop", "module", "module_type", "size_bits", "src", "dst",
                         "link", "stage", "cluster", "flow_module", "flow_size_bits",
                         "flow_after"}
    for column in cols.values():
        with pytest.raises(ValueError, match="read-only"):
            column[...] = 0
    with pytest.raises(TypeError):
        cols["link"] = np.zeros(2)  # type: ignore[index]
    # A change rebuilds the columns; what an earlier reader holds stays as it was.
    table.add_downlinks("adapter/fusion", 8.0, [1])
    assert len(table.columns()["flow"]) == 3 and len(cols["flow"]) == 2
    # The copy a reader takes is its own to change.
    mine = table.columns()["size_bits"].copy()
    mine[:] = 0
    assert table.size_bits.tolist() == [8.0, 8.0, 8.0]


@pytest.mark.parametrize("cluster", [2, -1])
def test_a_device_of_no_cluster_is_refused_by_name(cluster):
    """Cluster 2 of two clusters made a device's uplink end at the cloud (node N + 2)."""
    with pytest.raises(ValueError, match=rf"cluster_of_device\[2\] = {cluster}: allowed 0..1"):
        transfers.TransferTable(3, 2, np.array([0, 1, cluster]))


def test_node_place_inverts_the_node_numbering():
    """One rule of node ids: the renderer drew flows by its own copy of the numbering."""
    table = transfers.TransferTable.for_topology(_topology())  # 4 devices, 2 clusters
    assert [table.node_place(i) for i in range(4)] == [("device", i) for i in range(4)]
    assert [table.node_place(table.edge_node(c)) for c in range(2)] == [("edge", 0),
                                                                         ("edge", 1)]
    assert table.node_place(table.cloud_node()) == ("cloud", 0)
    assert [table.node_name(i) for i in (3, 5, 6)] == ["device 3", "edge 1", "cloud"]


def test_empty_table_columns():
    table = transfers.TransferTable.for_topology(_topology())
    cols = table.columns()
    assert all(len(column) == 0 for column in cols.values())
    rates = make_rates(_topology(), [10, 5, 10, 10], [10, 10, 5, 10], {(0, 1): 20, (2, 3): 4})
    report = CostAccountant(cost_scenario(), _topology(), np.full(4, 1e9)).account(table, rates)
    assert report.num_hops == 0 and report.energy_j == 0.0


def test_accountant_uses_only_public_accessors_of_the_table():
    """cost.py may touch private attributes of ``self`` only: the table is read through
    ``TransferTable.columns()`` and its other public members."""
    tree = ast.parse((SIM / "cost.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__"):
            owner = node.value
            assert isinstance(owner, ast.Name) and owner.id == "self", (
                f"cost.py line {node.lineno}: private .{node.attr} of something other than self")


def _table_rows(table):
    cols = table.columns()
    return {name: cols[name].tolist() for name in cols}


def test_single_hops_in_one_call_equal_the_builders_one_by_one():
    one_by_one = transfers.TransferTable.for_topology(_topology())
    one_by_one.add_uplinks("adapter/fusion", 8.0, [0, 1])
    one_by_one.add_backhaul_up("adapter/fusion", 8.0, [0])
    one_by_one.add_downlinks("adapter/fusion", 8.0, [1])
    batched = transfers.TransferTable.for_topology(_topology())
    up, down = transfers.LinkKind.UPLINK, transfers.LinkKind.DOWNLINK
    backhaul, stage = transfers.LinkKind.BACKHAUL, transfers.Stage
    ids = batched.add_single_hops(
        "adapter/fusion", 8.0, [0, 1, 4, 4], [4, 4, 6, 1], [up, up, backhaul, down],
        [stage.UPLINK, stage.UPLINK, stage.BACKHAUL_UP, stage.DOWNLINK])
    assert ids.tolist() == [0, 1, 2, 3]
    assert _table_rows(batched) == _table_rows(one_by_one)
    with pytest.raises(ValueError, match="not a valid uplink"):  # checked like add_flow
        batched.add_single_hops("adapter/fusion", 8.0, [0], [5], [up], [stage.UPLINK])
    with pytest.raises(ValueError, match="one entry per hop"):
        batched.add_single_hops("adapter/fusion", 8.0, [0, 1], [4], [up], [stage.UPLINK])
    assert batched.num_flows == 4  # a refused call adds nothing


def test_repeated_flows_equal_the_same_flows_built_again():
    def build(table, module, bits):
        table.add_uplinks(module, bits, [0, 1])
        broadcast = table.add_d2d_broadcast(module, bits, 0, 0, None, [(0, 1)])
        table.add_flow(module, bits, [0, 1], "d2d", transfers.Stage.D2D_DOWN,
                       after_flow=int(broadcast[0]))

    rebuilt = transfers.TransferTable.for_topology(_topology())
    build(rebuilt, "encoder/vision", 8.0)
    build(rebuilt, "adapter/fusion", 3.0)
    copied = transfers.TransferTable.for_topology(_topology())
    build(copied, "encoder/vision", 8.0)
    assert copied.repeat_flows(0, 4, "adapter/fusion", 3.0).tolist() == [4, 5, 6, 7]
    assert _table_rows(copied) == _table_rows(rebuilt)
    assert copied.flows()[7]["after"] == 6  # waits for the copy, not the original
    # a range that does not start where a builder call's flows began is refused
    with pytest.raises(ValueError, match=r"repeat_flows\(1, 4\)"):
        copied.repeat_flows(1, 4, "adapter/fusion", 3.0)
    with pytest.raises(ValueError, match="size_bits"):
        copied.repeat_flows(0, 4, "adapter/fusion", float("nan"))
    assert copied.num_flows == 8


def test_the_table_keeps_its_own_copy_of_the_callers_arrays():
    table = transfers.TransferTable.for_topology(_topology())
    devices = np.array([0, 1])
    table.add_uplinks("adapter/fusion", 8.0, devices)
    src, dst = np.array([0, 4]), np.array([4, 6])
    table.add_single_hops("adapter/fusion", 8.0, src, dst,
                          [transfers.LinkKind.UPLINK, transfers.LinkKind.BACKHAUL],
                          [transfers.Stage.UPLINK, transfers.Stage.BACKHAUL_UP])
    devices[:] = 3  # the caller reuses its arrays before the table is read
    src[:] = 1
    assert table.src.tolist() == [0, 1, 0, 4]
