"""Transfer planning outside the engine: pricing is a pure function of the schedule and the
network's view, equal to the engine's price and to the transfers a real round records; the
schedule's defaults live in one place; the planner is numpy only."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from hffm_env.config import MODULE_TYPES, apply_overrides, small
from hffm_env.data import build_federated_data
from hffm_env.fl import FederatedEngine, Route, Schedule, Tier
from hffm_env.fl.transfer_plan import (
    RoundLayout,
    compute_samples,
    failed_exchanges,
    plan_aggregations,
    price_schedule,
    record_aggregation,
)
from hffm_env.models import M3TModel
from hffm_env.seeding import RandomStreams
from hffm_env.sim import Network
from hffm_env.testing import TINY_OVERRIDES


def _cost_engine(extra=(), seed=0):
    cfg = apply_overrides(small(), [*TINY_OVERRIDES, *extra])
    streams = RandomStreams.from_seed(seed)
    network = Network(cfg, streams)
    data = build_federated_data(cfg.data, network.topology.cluster_of_device,
                                streams.data)
    return FederatedEngine(cfg, M3TModel(cfg.model, cfg.data, seed=seed), data, network,
                           train=False)


def _schedules(c):
    yield Schedule.uniform(Tier.EDGE, c)
    yield Schedule.uniform(Tier.CLOUD, c, Route.STAR)
    yield Schedule.uniform(Tier.EDGE, c, Route.D2D_RELAY)
    yield Schedule(tiers={"adapter": Tier.CLOUD, "head": Tier.D2D_HEAD},
                   routes=(Route.D2D_RELAY,) * c)


def test_round_layout_holds_the_defaults():
    engine = _cost_engine()
    network, c = engine.network, engine.num_clusters
    layout = RoundLayout.resolve(Schedule(), network)
    assert layout.heads == tuple(int(h) for h in network.heads)
    assert layout.routes == (Route.DIRECT,) * c
    heads = tuple(int(network.members(k)[-1]) for k in range(c))
    given = RoundLayout.resolve(Schedule(routes=(Route.STAR,) * c, heads=heads), network)
    assert given == RoundLayout(heads, (Route.STAR,) * c)


@pytest.mark.parametrize("extra", [(), ("channel.outage_snr_db=75", "channel.max_transmissions=2")])
def test_pure_price_equals_the_engine_price_and_a_rounds_transfers(extra):
    engine = _cost_engine(extra)
    network, c = engine.network, engine.num_clusters
    holds = engine.holds.cpu().numpy()
    for schedule in _schedules(c):
        pure = price_schedule(schedule, network, engine.scenario, engine.inventory,
                              engine.module_bits, holds)
        assert pure.to_dict() == engine.price_schedule(schedule).to_dict()
        table = network.new_table()
        plan = plan_aggregations(table, schedule, network, engine.scenario, engine.inventory,
                                 engine.module_bits, holds & network.available[:, None])
        assert [m.module_id for m in plan.moves] == [  # type by type, inventory order
            spec.module_id for t in MODULE_TYPES if schedule.tier(t) != Tier.NONE
            for spec in engine.inventory.by_type(t)
        ]
        result = engine.run_round(schedule)  # no relays pending: the same flows, same order
        assert result.transfers.flows() == table.flows()
        assert result.outage_devices == sorted(set().union(*(m.outage_devices
                                                              for m in plan.moves)))
        assert np.array_equal(engine.holds.cpu().numpy(), holds)


@pytest.mark.parametrize("extra", [(), ("channel.outage_snr_db=75", "channel.max_transmissions=2")])
@pytest.mark.parametrize("route", [Route.DIRECT, Route.D2D_RELAY, Route.STAR])
def test_clusters_out_of_the_cloud_pay_the_edge_tier(route, extra):
    engine = _cost_engine(extra)
    c = engine.num_clusters
    cloud = Schedule(tiers={"moe": Tier.CLOUD, "head": Tier.EDGE}, routes=(route,) * c)
    edge = Schedule(tiers={"moe": Tier.EDGE, "head": Tier.EDGE}, routes=(route,) * c)

    def flows(schedule):
        return engine.price_schedule(schedule).to_dict()

    def energy(schedule):
        return engine.price_schedule(schedule).energy_j

    everyone = energy(cloud)
    assert flows(replace(cloud, cloud_clusters=(True,) * c)) == flows(cloud)
    assert flows(replace(cloud, cloud_clusters=(False,) * c)) == flows(edge)
    # each cluster's cloud hops are its own: leaving two out saves what each saves alone
    # (with outages, a cluster whose exchange fails anyway saves nothing)
    saved = [everyone - energy(replace(cloud, cloud_clusters=tuple(k != out for k in range(c))))
             for out in range(c)]
    assert all(s > 0 for s in saved) if not extra else all(s >= 0 for s in saved)
    both = everyone - energy(replace(cloud, cloud_clusters=(False, False) + (True,) * (c - 2)))
    assert both == pytest.approx(saved[0] + saved[1])
    # the plan: a cloud move by the clusters that join, then an edge move by the others, each
    # failing where its own tier's exchange fails; a real round records the flows priced
    split = replace(cloud, cloud_clusters=(False,) + (True,) * (c - 1))
    network, holds = engine.network, engine.holds.cpu().numpy()
    table = network.new_table()
    participants = holds & network.available[:, None]
    plan = plan_aggregations(table, split, network, engine.scenario, engine.inventory,
                             engine.module_bits, participants)
    moe = [m for m in plan.moves if m.module_id == "moe/fusion"]
    assert [m.tier for m in moe] == [Tier.CLOUD, Tier.EDGE]
    out = network.cluster_of_device == 0
    holder = participants[:, list(engine.inventory.ids()).index("moe/fusion")]
    for move, group in zip(moe, (~out, out)):
        lost = failed_exchanges(network, engine.scenario, move.tier, (route,) * c,
                                tuple(int(h) for h in network.heads))
        assert np.array_equal(move.failed, holder & group & lost)
        assert np.array_equal(move.joined, holder & group & ~lost)
    assert engine.run_round(split).transfers.flows() == table.flows()


@pytest.mark.parametrize("extra", [(), ("channel.outage_snr_db=75", "channel.max_transmissions=2")])
def test_planning_copies_equal_moves_and_equals_recording_each_module(extra):
    engine = _cost_engine(extra)
    network, c = engine.network, engine.num_clusters
    part_all = engine.holds.cpu().numpy() & network.available[:, None]
    column = {m: k for k, m in enumerate(engine.inventory.ids())}
    copied_any = False
    for schedule in _schedules(c):
        table = network.new_table()
        plan = plan_aggregations(table, schedule, network, engine.scenario, engine.inventory,
                                 engine.module_bits, part_all)
        one_by_one = network.new_table()
        layout = RoundLayout.resolve(schedule, network)
        for move in plan.moves:
            record_aggregation(one_by_one, network, move.module_id, move.tier, move.joined,
                               layout, schedule.pairs, engine.module_bits[move.module_id],
                               failed=move.failed)
        assert table.flows() == one_by_one.flows()
        parts = [part_all[:, column[m.module_id]].tobytes() for m in plan.moves]
        copied_any |= len(set(parts)) < len(parts)
    assert copied_any  # some modules moved alike, so the copy path ran


def test_d2d_exchanges_recorded_once_per_cluster_are_copied_exactly():
    engine = _cost_engine()
    network, c = engine.network, engine.num_clusters
    layout = RoundLayout.resolve(Schedule.uniform(Tier.D2D_HEAD, c, Route.D2D_RELAY), network)
    everyone = network.available.copy()
    fewer = everyone.copy()
    not_head = [d for d in network.members(0).tolist() if d != layout.heads[0]]
    fewer[not_head[0]] = False  # differs in cluster 0 only, and not in its head
    memo: dict = {}
    copied, built = network.new_table(), network.new_table()
    for module_id, part in (("adapter/fusion", everyone), ("moe/experts", fewer)):
        for table, recorded in ((copied, memo), (built, None)):
            record_aggregation(table, network, module_id, Tier.D2D_HEAD, part, layout, (),
                               8e6 if module_id == "moe/experts" else 1e6,
                               d2d_recorded=recorded)
    assert copied.flows() == built.flows()
    # one exchange per cluster for the first module, one more for cluster 0's smaller group
    headed = sum(int(network.members(k).size > 1) for k in range(c))
    assert len(memo) == headed + 1


def test_compute_samples_is_the_one_rule():
    engine = _cost_engine(["compute.enabled=true"])
    computing = np.arange(engine.num_devices) % 2 == 0
    work = engine.scenario.fl.local_steps * engine.scenario.fl.batch_size
    assert compute_samples(engine.scenario, computing).tolist() == (computing * work).tolist()
    off = apply_overrides(engine.scenario, ["compute.enabled=false"])
    assert compute_samples(off, computing) is None


def test_d2d_transfers_lost_to_outage_are_paid_up_to_the_failed_link_and_deliver_nothing():
    """Every attempt in outage (threshold 300 dB): a relay path carries data over its first
    link only; a failed upload to the head is paid for that link alone; a module relayed from a
    mate does not arrive. Without outage the same calls pay whole paths and deliver."""
    from hffm_env.fl.schedule import ModuleRequest, RelaySource, SourceKind
    from hffm_env.fl.transfer_plan import record_relay

    lossy = _cost_engine(("channel.outage_snr_db=300", "channel.max_transmissions=2"))
    clear = _cost_engine()
    for engine, lost in ((lossy, True), (clear, False)):
        network, c = engine.network, engine.num_clusters
        paths = {(k, d): p for k in range(c)
                 for d, p in network.relay_paths(k, int(network.heads[k])).items() if len(p) > 1}
        assert max(len(p) for p in paths.values()) > 2  # some path relays through a mate
        for path in paths.values():
            assert network.attempted_path(path) == (path[:2] if lost else path)
        table = network.new_table()
        participants = engine.holds.cpu().numpy() & network.available[:, None]
        plan_aggregations(table, Schedule(tiers={"moe": Tier.EDGE},
                                          routes=(Route.D2D_RELAY,) * c),
                          network, engine.scenario, engine.inventory, engine.module_bits,
                          participants)
        uploads = sorted(len(f["route"]) for f in table.flows()
                         if f["stages"][0] == "d2d_up")
        assert uploads == sorted(len(network.attempted_path(p)) for p in paths.values())
        (k, device), path = next((key, p) for key, p in paths.items() if len(p) > 2)
        request = ModuleRequest(path[-1], "moe/fusion")  # from device to the head, reversed
        relay_table = network.new_table()
        arrived = record_relay(relay_table, network, request,
                               RelaySource(SourceKind.DEVICE, device), 1000.0)
        assert arrived == (not lost)
        assert len(relay_table.flows()[0]["route"]) == (2 if lost else len(path))
        # one hop, lost at its last (only) link: attempted whole, still not delivered
        (_, mate), one_hop_path = next((key, p) for key, p in paths.items() if len(p) == 2)
        one_hop = ModuleRequest(one_hop_path[-1], "moe/fusion")
        assert record_relay(network.new_table(), network, one_hop,
                            RelaySource(SourceKind.DEVICE, mate), 1000.0) == (not lost)
        engine.pending = [request]  # the engine keeps a request whose relay was lost
        result = engine.run_round(Schedule(relay_sources={
            request: RelaySource(SourceKind.DEVICE, device)}))
        assert (request in engine.pending) == lost
        assert any("lost to outage" in f for f in result.flags) == lost
        # ... and the requester is an outage device (the relay's energy was paid for it)
        assert (request.device in result.outage_devices) == lost
