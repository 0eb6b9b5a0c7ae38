"""The federated engine: batched training equals a sequential loop, aggregations equal
hand-computed weighted means, failures are contained, transfers are what each tier implies,
and real training learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import grad, vmap

from hffm_env.config import MODULE_TYPES, apply_overrides, small
from hffm_env.data import build_federated_data
from hffm_env.fl import (
    FederatedEngine,
    ModuleRequest,
    RelaySource,
    Route,
    Schedule,
    SourceKind,
    Tier,
)
from hffm_env.fl.reference import sequential_local_training
from hffm_env.models import M3TModel, build_model, on_the_wire
from hffm_env.seeding import RandomStreams
from hffm_env.sim import Network
from hffm_env.testing import TINY_OVERRIDES

TINY = list(TINY_OVERRIDES)


def _scenario(extra=()):
    return apply_overrides(small(), [*TINY, *extra])


def _engine(train=True, extra=(), seed=0):
    cfg = _scenario(extra)
    streams = RandomStreams.from_seed(seed)
    network = Network(cfg, streams)
    data = build_federated_data(cfg.data, network.topology.cluster_of_device,
                                streams.data)
    if train:
        model = build_model(cfg.model, cfg.data, seed=seed, progress=False)
    else:
        model = M3TModel(cfg.model, cfg.data, seed=seed)
    return FederatedEngine(cfg, model, data, network, train=train, track_values=True)


def _randomise(engine, seed=0):
    gen = torch.Generator().manual_seed(seed)
    for name, value in engine.params.items():
        engine.params[name] = torch.randn(value.shape, generator=gen)


@pytest.fixture(scope="module")
def trained_engine():
    return _engine(train=True, extra=["fl.local_steps=3"])


def test_batched_gradients_equal_per_device_autograd(trained_engine):
    engine = trained_engine
    engine.reset(4)
    _randomise(engine, seed=4)  # away from the zero-initialised experts and LoRA factors
    engine.params = {k: 0.05 * v for k, v in engine.params.items()}
    n, batch = engine.num_devices, engine.scenario.fl.batch_size
    idx = torch.arange(n * batch).view(n, batch) % engine.train_count.min()
    idx = engine.train_idx.gather(1, idx)
    feats = {m: f[idx] for m, f in engine.features.items()}
    modality = engine.modality_mask.unsqueeze(1).expand(n, batch, -1)
    tasks = engine.trainable_tasks().unsqueeze(1).expand(n, batch, -1)
    labels = engine.labels[idx]
    batched, _ = vmap(grad(engine.loss, has_aux=True))(engine.params, feats, modality, tasks,
                                                        labels)
    for d in range(n):
        leaves = {k: v[d].clone().requires_grad_(True) for k, v in engine.params.items()}
        loss, _ = engine.loss(leaves, {m: f[d] for m, f in feats.items()}, modality[d],
                               tasks[d], labels[d])
        grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
        for (name, _), g in zip(leaves.items(), grads):
            expected = torch.zeros_like(batched[name][d]) if g is None else g
            torch.testing.assert_close(batched[name][d], expected, atol=1e-5, rtol=1e-5,
                                       msg=f"{name} device {d}")


def test_batched_training_equals_sequential_loop():
    # In float64: in float32, Adam's division by sqrt(v) and the MoE's top-k choice between
    # near-tied experts turn rounding differences (1e-7) into parameter differences of 1e-4;
    # in float64 the two algorithms must agree to well under 1e-5. With weight decay, so
    # that the stacked AdamW's decay is compared with torch's too.
    engine = _engine(train=True, extra=["fl.local_steps=3", "fl.weight_decay=0.5"])
    engine.double()
    assert {v.dtype for v in engine.params.values()} == {torch.float64}  # at once
    engine.reset(5)
    # and a task whose prompt has arrived before its head: held, not read, so neither steps
    # nor decays (the reference decayed it); on a device that trains (1 does not, below)
    d, k = next((d, k) for d in range(engine.num_devices) for k in range(len(engine.tasks))
                if d != 1 and not bool(engine.device_tasks[d, k]))
    engine.device_tasks[d, k] = True
    engine.holds[d, engine.module_index[f"prompt/{engine.tasks[k]}"]] = True
    engine.holds[d, engine.module_index[f"head/{engine.tasks[k]}"]] = False
    # evaluation runs on the float64 modules (a dtype mismatch raised in it): a number
    assert 0.0 <= engine.evaluate().accuracy["mean"] <= 1.0
    trained = torch.ones(engine.num_devices, dtype=torch.bool)
    trained[1] = False
    state = engine.generator.get_state()
    start = {k: v.clone() for k, v in engine.params.items()}
    reference = sequential_local_training(engine, trained)
    engine.generator.set_state(state)
    engine.local_training(trained)
    for name, value in engine.params.items():
        torch.testing.assert_close(value, reference[name], atol=1e-5, rtol=1e-5, msg=name)
    for name in start:  # device 1 did not train
        assert torch.equal(engine.params[name][1], start[name][1])
    assert any(not torch.equal(engine.params[n], start[n]) for n in start)


def test_edge_aggregation_is_the_sample_weighted_cluster_mean():
    engine = _engine(train=False)
    _randomise(engine)
    before = {k: v.clone() for k, v in engine.params.items()}
    engine.run_round(Schedule(tiers={"adapter": Tier.EDGE}))
    spec = engine.inventory.by_type("adapter")[0]
    weights = engine.num_samples
    for name in spec.param_names:
        for c in range(engine.num_clusters):
            # A list: indexing a tensor with the read-only array itself warns.
            members = engine.network.members(c).tolist()
            w = weights[members]
            expected = (before[name][members] * w.view(-1, *[1] * (before[name].dim() - 1))).sum(
                0) / w.sum()
            for d in members:
                torch.testing.assert_close(engine.params[name][d], expected)
            torch.testing.assert_close(engine.edge_params[name][c], expected)
    # modules that were not scheduled stay personal
    head = engine.inventory.by_type("head")[0].param_names[0]
    assert torch.equal(engine.params[head], before[head])


def test_cloud_aggregation_is_the_global_weighted_mean():
    engine = _engine(train=False)
    _randomise(engine, seed=1)
    before = {k: v.clone() for k, v in engine.params.items()}
    engine.run_round(Schedule(tiers={"moe": Tier.CLOUD}))
    name = engine.inventory.by_type("moe")[0].param_names[0]
    w = engine.num_samples.view(-1, *[1] * (before[name].dim() - 1))
    expected = (before[name] * w).sum(0) / w.sum()
    for d in range(engine.num_devices):
        torch.testing.assert_close(engine.params[name][d], expected)
    torch.testing.assert_close(engine.cloud_params[name], expected)


@pytest.mark.parametrize("route", [Route.STAR, Route.DIRECT, Route.D2D_RELAY])
def test_a_cloud_round_reaches_the_edge_servers_only_on_routes_through_them(route):
    """On STAR routes devices exchange with the cloud directly: the edge servers' copies (what
    an edge relay hands out) stay as they were; the other routes pass through them."""
    engine = _engine(train=False)
    _randomise(engine, seed=2)
    edge_before = {k: v.clone() for k, v in engine.edge_params.items()}
    engine.run_round(Schedule(tiers={"moe": Tier.CLOUD}, routes=(route,) * engine.num_clusters))
    name = engine.inventory.by_type("moe")[0].param_names[0]
    for k in range(engine.num_clusters):
        expected = edge_before[name][k] if route == Route.STAR else engine.cloud_params[name]
        torch.testing.assert_close(engine.edge_params[name][k], expected)
    assert not torch.allclose(edge_before[name][0], engine.cloud_params[name])


@pytest.mark.parametrize("route", [Route.DIRECT, Route.D2D_RELAY])
def test_clusters_out_of_the_cloud_keep_their_edge_mean(route):
    engine = _engine(train=False)
    _randomise(engine, seed=3)
    before = {k: v.clone() for k, v in engine.params.items()}
    edge_before = {k: v.clone() for k, v in engine.edge_params.items()}
    c = engine.num_clusters
    joins = tuple(k >= 2 for k in range(c))  # clusters 0 and 1 stay out
    engine.run_round(Schedule(tiers={"moe": Tier.CLOUD}, routes=(route,) * c,
                              cloud_clusters=joins))
    name = engine.inventory.by_type("moe")[0].param_names[0]
    shape = (-1, *[1] * (before[name].dim() - 1))
    w = engine.num_samples

    def mean(devices):
        return (before[name][devices] * w[devices].view(shape)).sum(0) / w[devices].sum()

    joined = [d for k in range(2, c) for d in engine.network.members(k).tolist()]
    cloud = mean(joined)  # over the clusters that joined only
    torch.testing.assert_close(engine.cloud_params[name], cloud)
    for d in joined:
        torch.testing.assert_close(engine.params[name][d], cloud)
    for k in range(c):
        members = engine.network.members(k).tolist()
        if k >= 2:
            torch.testing.assert_close(engine.edge_params[name][k], cloud)
            continue
        own = mean(members)  # each cluster out keeps its own mean, not a pooled one
        assert not torch.allclose(own, cloud)
        for d in members:
            torch.testing.assert_close(engine.params[name][d], own)
        # its edge server averaged it on a direct route; over D2D only the head did
        expected_edge = own if route == Route.DIRECT else edge_before[name][k]
        torch.testing.assert_close(engine.edge_params[name][k], expected_edge)
    assert not torch.allclose(mean(engine.network.members(0).tolist()),
                              mean(engine.network.members(1).tolist()))


@pytest.mark.parametrize("state", ["reset", "persist"])
def test_a_held_module_that_is_not_read_is_left_alone_by_weight_decay(state):
    """A task's prompt relayed before its head is held but not read: with weight decay it
    shrank every local step before it was ever used, and under persist its step count ran on
    (the first real steps then skipped Adam's bias correction)."""
    engine = _engine(extra=["fl.weight_decay=0.5", f"fl.optimizer_state={state}"])
    engine.reset(2)
    candidates = [(d, k) for d in range(engine.num_devices) for k in range(len(engine.tasks))
                  if not bool(engine.device_tasks[d, k])]
    d, k = candidates[0]
    task = engine.tasks[k]
    engine.device_tasks[d, k] = True  # the task arrives; its prompt came, its head has not
    engine.holds[d, engine.module_index[f"prompt/{task}"]] = True
    engine.holds[d, engine.module_index[f"head/{task}"]] = False
    names = engine.inventory.by_id(f"prompt/{task}").param_names
    read = engine.reads_modules()[d]
    trained = [n for n in engine.params if read[engine.param_module[n]] and n not in names]
    before = {n: engine.params[n][d].clone() for n in [*names, *trained]}
    engine.run_round(Schedule())
    for n in names:
        assert torch.equal(engine.params[n][d], before[n]), n
    # ... while the modules it reads train (but for zeros that got no gradient yet: decay
    # keeps them at 0)
    unchanged = [n for n in trained if torch.equal(engine.params[n][d], before[n])]
    assert unchanged != trained and all(not before[n].any() for n in unchanged), unchanged


def test_a_cheaper_wire_costs_bits_and_accuracy_alike():
    """precision_bits priced transfers at 8 or 16 bits while full float32 copies arrived: a
    cheaper wire saved energy at no cost in accuracy. What arrives is rounded to it now."""
    plain, eight = _engine(train=False), _engine(train=False, extra=["model.precision_bits=8"])
    for module in plain.inventory:  # int8 values and a float32 scale per tensor
        spec = eight.inventory.by_id(module.module_id)
        assert spec.size_bits == module.num_params * 8 + 32 * len(module.param_names)
    for engine in (plain, eight):
        _randomise(engine, seed=4)
        engine.run_round(Schedule(tiers={"adapter": Tier.EDGE}))
    name = plain.inventory.by_id("adapter/fusion").param_names[0]
    members = plain.network.members(0).tolist()
    got, exact = eight.params[name][members], plain.params[name][members]
    assert torch.equal(got[0], got[1])  # one aggregate for the cluster, rounded once
    scale = got[0].abs().max() / 127
    assert torch.allclose(got[0] / scale, (got[0] / scale).round(), atol=1e-3)
    assert not torch.equal(got, exact) and (got - exact).abs().max() < 2 * scale
    # a head that gathers over D2D keeps its own copy and the mean it computes off the wire;
    # what its members receive is that mean, rounded
    heads = _engine(train=False, extra=["model.precision_bits=8"])
    _randomise(heads, seed=6)
    head = int(heads.network.heads[0])
    result = heads.run_round(Schedule(tiers={"adapter": Tier.D2D_HEAD}))
    assert head >= 0 and head not in result.outage_devices
    mates = [d for d in heads.network.members(0).tolist()
             if d != head and heads.network.available[d]]
    value = heads.params[name][head]
    assert mates and all(torch.equal(heads.params[name][d], on_the_wire(value[None], 8)[0])
                         for d in mates)
    assert not torch.equal(value, on_the_wire(value[None], 8)[0])
    # ... and at the cloud over the D2D relay the head uploads its cluster's mean: rounded
    c = heads.num_clusters
    _randomise(heads, seed=7)
    heads.run_round(Schedule(tiers={"adapter": Tier.CLOUD}, routes=(Route.D2D_RELAY,) * c,
                             cloud_clusters=(True,) + (False,) * (c - 1)))
    cloud = heads.cloud_params[name]
    steps = cloud / (cloud.abs().max() / 127)
    assert torch.allclose(steps, steps.round(), atol=1e-3)
    # a D2D pair averages its own copy with the rounded one it received
    engine = _engine(train=False, extra=["model.precision_bits=16"])
    _randomise(engine, seed=5)
    i, j = engine.network.members(0).tolist()[:2]
    assert engine.network.is_feasible_pair(i, j)
    before = engine.params[name].clone()
    engine.run_round(Schedule(tiers={"adapter": Tier.D2D_PAIRS}, pairs=((i, j),)))
    assert torch.equal(engine.params[name][i], 0.5 * (before[i] + before[j].half().float()))


def test_heads_routes_and_pairs_may_be_arrays_and_are_checked_by_name():
    """An array of heads or routes passed the constructor and failed later in pricing with
    numpy's "truth value of an array is ambiguous"; a float head was truncated."""
    engine = _engine(train=False)
    heads = np.array(engine.network.heads)
    routes = np.full(engine.num_clusters, int(Route.D2D_RELAY))
    schedule = Schedule(tiers={"moe": Tier.EDGE}, heads=heads, routes=routes)
    assert schedule.heads == tuple(int(h) for h in heads) and len(schedule.routes) == len(routes)
    priced = engine.price_schedule(Schedule(
        tiers={"moe": Tier.EDGE}, heads=tuple(heads.tolist()), routes=tuple(routes.tolist())))
    cost = engine.price_schedule(schedule)
    assert (cost.latency_s, cost.energy_j) == (priced.latency_s, priced.energy_j)
    for field, value, says in (
            ("routes", 5, "Schedule.routes = 5: must be a sequence, one entry per cluster"),
            ("heads", (0.5,), r"Schedule.heads\[0\] = 0.5: must be an integer"),
            ("pairs", ((0, 1, 2),), r"Schedule.pairs\[0\] = \(0, 1, 2\): must be two device"),
            ("pairs", "ab", "Schedule.pairs = 'ab': must be a sequence")):
        with pytest.raises(ValueError, match=says):
            Schedule(**{field: value})


def test_cloud_clusters_must_name_every_cluster():
    engine = _engine(train=False)
    with pytest.raises(ValueError, match=r"Schedule.cloud_clusters has 1 entries: need"):
        engine.price_schedule(Schedule(tiers={"moe": Tier.CLOUD}, cloud_clusters=(True,)))
    with pytest.raises(ValueError, match=r"Schedule.cloud_clusters\[1\] = 1: allowed True or "
                                         "False"):
        Schedule(cloud_clusters=(True, 1))
    with pytest.raises(ValueError, match="Schedule.cloud_clusters = 'yes': must be a sequence"):
        Schedule(cloud_clusters="yes")
    # any sequence of bools, numpy's too, is kept as a tuple of bools
    joins = np.arange(engine.num_clusters) > 0
    schedule = Schedule(tiers={"moe": Tier.CLOUD}, cloud_clusters=joins)
    assert schedule.cloud_clusters == (False,) + (True,) * (engine.num_clusters - 1)
    assert engine.price_schedule(schedule).energy_j < engine.price_schedule(
        Schedule(tiers={"moe": Tier.CLOUD})).energy_j


def test_pair_exchange_preserves_the_pair_mean():
    engine = _engine(train=False)
    _randomise(engine, seed=2)
    before = {k: v.clone() for k, v in engine.params.items()}
    pair = next(iter(engine.network.d2d_graphs[0].edges))
    engine.run_round(Schedule(tiers={"adapter": Tier.D2D_PAIRS}, pairs=(pair,)))
    name = engine.inventory.by_type("adapter")[0].param_names[0]
    i, j = pair
    torch.testing.assert_close(engine.params[name][i], engine.params[name][j])
    torch.testing.assert_close(engine.params[name][i] + engine.params[name][j],
                               before[name][i] + before[name][j])
    others = [d for d in range(engine.num_devices) if d not in pair]
    assert torch.equal(engine.params[name][others], before[name][others])


def test_a_pair_must_be_a_d2d_link_of_one_cluster():
    engine = _engine(train=False)
    network = engine.network
    other_cluster = (int(network.members(0)[0]), int(network.members(1)[0]))
    with pytest.raises(ValueError, match=r"Schedule.pairs has \(\d+, \d+\): devices of "
                                         "clusters 0 and 1; a pair is two devices of one"):
        engine.price_schedule(Schedule(tiers={"adapter": Tier.D2D_PAIRS},
                                       pairs=(other_cluster,)))
    unlinked = [(int(i), int(j)) for c in range(engine.num_clusters)
                for i in network.members(c) for j in network.members(c)
                if i < j and not network.d2d_graphs[c].has_edge(int(i), int(j))]
    assert unlinked  # same cluster, beyond the D2D radius: priced at a long-range rate before
    with pytest.raises(ValueError, match="not joined in this round's D2D graph of cluster"):
        engine.price_schedule(Schedule(tiers={"adapter": Tier.D2D_PAIRS},
                                       pairs=(unlinked[0],)))
    # a device that dropped out sits the exchange out, as before: the pair is not refused
    network.available[unlinked[0][0]] = False
    engine.price_schedule(Schedule(tiers={"adapter": Tier.D2D_PAIRS}, pairs=(unlinked[0],)))


def test_a_relay_source_keeps_one_type_whatever_it_was_given():
    source = RelaySource(2, np.int64(-1))
    assert source.kind is SourceKind.CLOUD and type(source.device) is int
    schedule = Schedule(relay_sources={ModuleRequest(0, "head/vqa"): source})
    assert schedule.to_dict()["relays"][0]["source"] == "cloud"  # the ansi render prints it


def test_dropped_devices_do_not_change_other_devices(trained_engine):
    engine = trained_engine
    results = []
    for drop in (False, True):
        engine.reset(11)
        engine.network.available = np.ones(engine.num_devices, dtype=bool)
        if drop:
            engine.network.available[3] = False
        start = {k: v.clone() for k, v in engine.params.items()}
        result = engine.run_round(Schedule())
        results.append({k: v.clone() for k, v in engine.params.items()})
        if drop:
            assert result.dropped_devices == [3]
            for name in start:
                assert torch.equal(engine.params[name][3], start[name][3])
    others = [d for d in range(engine.num_devices) if d != 3]
    for name in results[0]:
        torch.testing.assert_close(results[0][name][others], results[1][name][others])
    engine.network.available = np.ones(engine.num_devices, dtype=bool)


def test_non_finite_client_is_reset_flagged_and_excluded(trained_engine):
    engine = trained_engine
    bad = 2
    schedule = Schedule(tiers={t: Tier.EDGE for t in MODULE_TYPES})
    # Reference: the same round with the bad device simply absent.
    engine.reset(3)
    engine.network.available = np.ones(engine.num_devices, dtype=bool)
    engine.network.available[bad] = False
    engine.run_round(schedule)
    absent = {k: v.clone() for k, v in engine.params.items()}
    # Now the device is present but its data poisons its loss with NaN.
    engine.reset(3)
    engine.network.available = np.ones(engine.num_devices, dtype=bool)
    start = {k: v.clone() for k, v in engine.params.items()}
    saved = {m: f.clone() for m, f in engine.features.items()}
    rows = engine.train_idx[bad, : int(engine.train_count[bad])]
    for modality in engine.features:
        engine.features[modality][rows] = float("nan")
    try:
        result = engine.run_round(schedule)
    finally:
        engine.features = saved
    assert result.failed_devices == [bad]
    assert any("non-finite" in f for f in result.flags)
    others = [d for d in range(engine.num_devices) if d != bad]
    for name, value in engine.params.items():
        assert torch.isfinite(value).all(), name
        assert torch.equal(value[bad], start[name][bad]), name  # reset, and got no aggregate
        torch.testing.assert_close(value[others], absent[name][others])  # never in an average


def test_a_failed_devices_loss_is_not_reported(trained_engine, monkeypatch):
    """A device whose loss stayed finite but whose parameters did not was reset and left out
    of every aggregate, yet its loss entered train_loss (and loss_per_device)."""
    engine = trained_engine
    bad = 3
    engine.reset(3)
    engine.network.available = np.ones(engine.num_devices, dtype=bool)
    step, calls = engine.optimizer.step, []

    def poisoned(params, grads, update):  # at the round's last step: every loss was finite
        out = step(params, grads, update)
        calls.append(1)
        if len(calls) < engine.scenario.fl.local_steps:
            return out
        name = next(iter(out))
        out[name] = out[name].clone()
        out[name][bad] = float("inf")
        return out

    monkeypatch.setattr(engine.optimizer, "step", poisoned)
    result = engine.run_round(Schedule())
    assert result.failed_devices == [bad]
    assert np.isnan(result.loss_per_device[bad])
    others = np.delete(result.loss_per_device, bad)
    assert np.isfinite(others).all() and result.train_loss == pytest.approx(others.mean())


def test_training_that_fails_on_every_device_says_so_once_naming_the_rates(trained_engine):
    """With fl.lr and fl.weight_decay too high every device went non-finite every round: each
    was reset, nothing learnt, and rounds, accuracies and rewards looked ordinary."""
    import warnings

    engine = trained_engine
    schedule = Schedule(tiers={t: Tier.EDGE for t in MODULE_TYPES})
    engine.reset(3)
    engine.network.available = np.ones(engine.num_devices, dtype=bool)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine.run_round(schedule)  # a healthy round: no word
        assert not caught
        saved = {m: f.clone() for m, f in engine.features.items()}
        for modality in engine.features:
            engine.features[modality][:] = float("nan")
        try:
            results = [engine.run_round(schedule) for _ in range(2)]
        finally:
            engine.features = saved
    assert all(r.failed_devices == list(range(engine.num_devices)) for r in results)
    assert [str(w.message) for w in caught] == [
        f"round 1: local training went non-finite on every device that trained (each is "
        f"reset to the round's start and left out, so the model does not learn); fl.lr = "
        f"{engine.scenario.fl.lr} or fl.weight_decay = {engine.scenario.fl.weight_decay} is "
        "probably too high for this model"]
    assert caught[0].category is RuntimeWarning


def test_transfers_per_tier_and_route():
    engine = _engine(train=False)
    n, c = engine.num_devices, engine.num_clusters
    spec = engine.inventory.by_type("adapter")[0]
    bits = engine.module_bits[spec.module_id]

    def flows(schedule):
        result = engine.run_round(schedule)
        return result.transfers.summary(), result

    summary, _ = flows(Schedule(tiers={"adapter": Tier.EDGE}, routes=(Route.DIRECT,) * c))
    assert summary["by_link_kind"]["uplink"]["hops"] == n
    assert summary["by_link_kind"]["downlink"]["hops"] == n
    assert summary["by_link_kind"]["uplink"]["bits"] == pytest.approx(n * bits)
    summary, _ = flows(Schedule(tiers={"adapter": Tier.CLOUD}, routes=(Route.DIRECT,) * c))
    assert summary["by_link_kind"]["backhaul"]["hops"] == 2 * c
    summary, _ = flows(Schedule(tiers={"adapter": Tier.CLOUD}, routes=(Route.STAR,) * c))
    assert summary["by_link_kind"]["device_cloud"]["hops"] == 2 * n
    assert summary["by_link_kind"].get("uplink", {}).get("hops", 0) == 0
    summary, result = flows(Schedule(tiers={"adapter": Tier.EDGE},
                                     routes=(Route.D2D_RELAY,) * c))
    assert summary["by_link_kind"].get("uplink", {}).get("hops", 0) == 0
    assert summary["by_link_kind"]["d2d"]["hops"] >= 2 * (n - c)  # to the head and back
    assert result.cost.energy_by_tier_j["d2d"] > 0


def test_relaying_serves_a_pending_module():
    engine = _engine(train=False, extra=["fl.task_arrival_prob=1.0"])
    pending = engine.begin_round(RandomStreams.from_seed(0).requests)
    assert len(pending) >= 1
    request = pending[0]
    assert not engine.holders(request.module_id)[request.device]
    result = engine.run_round(Schedule(relay_sources={request: RelaySource(SourceKind.EDGE)}))
    assert request in result.relayed and request not in engine.pending
    assert engine.holders(request.module_id)[request.device]
    assert result.transfers.summary()["by_link_kind"]["downlink"]["hops"] == 1
    with pytest.raises(ValueError, match="not pending"):
        engine.validate_schedule(Schedule(relay_sources={
            ModuleRequest(0, "head/vqa"): RelaySource(SourceKind.CLOUD)}))


def test_a_holder_whose_copy_did_not_train_takes_no_part_in_its_aggregation():
    """A task's prompt relayed before its head is not trained (the task is not served yet);
    its copy was averaged in with the device's full sample weight, pulling the trained
    copies back, and the round paid for its exchange."""
    engine = _engine(train=False, extra=["fl.task_arrival_prob=1.0"])
    pending = engine.begin_round(RandomStreams.from_seed(0).requests)
    prompt = next(r for r in pending if r.module_id.startswith("prompt/"))
    engine.run_round(Schedule(tiers=dict.fromkeys(MODULE_TYPES, Tier.NONE),
                              relay_sources={prompt: RelaySource(SourceKind.CLOUD)}))
    d, m = prompt.device, engine.module_index[prompt.module_id]
    assert engine.holds[d, m] and not engine.reads_modules()[d, m]
    _randomise(engine)
    before = {k: v.clone() for k, v in engine.params.items()}
    priced = engine.price_schedule(Schedule(tiers={"prompt": Tier.EDGE}))
    result = engine.run_round(Schedule(tiers={"prompt": Tier.EDGE}))
    assert priced.energy_j == result.cost.energy_j  # priced as played (it priced d's too)
    c = int(engine.cluster[d])
    trained = [e for e in engine.network.members(c).tolist()
               if e != d and engine.holds[e, m]]
    assert trained  # (the other holders of this prompt in its cluster)
    w = engine.num_samples[trained]
    for name in engine.inventory.by_id(prompt.module_id).param_names:
        assert torch.equal(engine.params[name][d], before[name][d])  # kept, not averaged in
        expected = (before[name][trained] * w.view(-1, *[1] * (before[name].dim() - 1))).sum(
            0) / w.sum()
        for e in trained:
            torch.testing.assert_close(engine.params[name][e], expected)
    # and nothing of its prompt travelled
    assert all(d not in flow["route"] for flow in result.transfers.flows()
               if flow["module"] == prompt.module_id)


@pytest.mark.parametrize("kind", [SourceKind.EDGE, SourceKind.CLOUD, SourceKind.DEVICE])
def test_a_relayed_module_arrives_with_its_sources_values(kind):
    """A relay marked the module held without copying its values (the requester kept its
    initial weights) and passed: only the holder flags and the hops were checked."""
    engine = _engine(train=False, extra=["fl.task_arrival_prob=1.0"])
    for seed in range(20):  # a request whose cluster has another holder (for a device source)
        engine.reset(seed)
        pending = engine.begin_round(RandomStreams.from_seed(seed).requests)
        sources = {r: engine.relay_candidates(r) for r in pending}
        request = next((r for r, found in sources.items()
                        if kind != SourceKind.DEVICE or found[0].kind == SourceKind.DEVICE), None)
        if request is not None:
            break
    assert request is not None
    _randomise(engine, seed=3)  # every copy different
    gen = torch.Generator().manual_seed(5)
    for stored in (engine.edge_params, engine.cloud_params):
        for name, value in stored.items():
            stored[name] = torch.randn(value.shape, generator=gen)
    source = sources[request][0] if kind == SourceKind.DEVICE else RelaySource(kind)
    d, c = request.device, int(engine.cluster[request.device])
    names = engine.inventory.by_id(request.module_id).param_names
    expected = {name: (engine.params[name][source.device] if kind == SourceKind.DEVICE
                       else engine.edge_params[name][c] if kind == SourceKind.EDGE
                       else engine.cloud_params[name]).clone() for name in names}
    assert not all(torch.equal(engine.params[n][d], expected[n]) for n in names)
    result = engine.run_round(Schedule(tiers=dict.fromkeys(MODULE_TYPES, Tier.NONE),
                                       relay_sources={request: source}))
    assert request in result.relayed
    for name in names:
        assert torch.equal(engine.params[name][d], expected[name]), name


@pytest.mark.slow
def test_real_training_learns_above_chance():
    engine = _engine(train=True, extra=["fl.local_steps=5", "fl.batch_size=16",
                                        "data.samples_per_device=96",
                                        "fl.eval_samples_per_device=150"])
    chance = np.mean(list(engine.task_chance().values()))
    first = engine.evaluate().accuracy["mean"]
    accuracy = []
    for r in range(10):
        tier = Tier.CLOUD if r % 2 else Tier.EDGE
        accuracy.append(engine.run_round(Schedule.uniform(tier, engine.num_clusters))
                        .accuracy["mean"])
    # the last rounds' mean, not one round: the tiny pre-training leaves a noisy plateau
    late = float(np.mean(accuracy[-3:]))
    assert late > max(chance, first) + 0.03, (chance, first, accuracy)


def test_failed_exchanges_leave_modules_stale_and_are_paid_for():
    # a threshold no link reaches: every attempt of every wireless exchange is in outage
    engine = _engine(train=False, extra=["channel.outage_snr_db=300", "cost.charge_downlink=true"])
    _randomise(engine, seed=2)
    before = {k: v.clone() for k, v in engine.params.items()}
    result = engine.run_round(Schedule(tiers={"adapter": Tier.EDGE}))
    for name in engine.inventory.by_type("adapter")[0].param_names:
        assert torch.equal(engine.params[name], before[name])
    holders = np.flatnonzero(engine.holders(engine.inventory.by_type("adapter")[0].module_id))
    assert result.outage_devices == holders.tolist()
    # every upload was tried max_transmissions times, nothing came back down
    attempts = engine.scenario.channel.max_transmissions
    assert (engine.network.rates.uplink_attempts == attempts).all()
    assert result.cost.bits_by_link_kind["uplink"] > 0
    assert result.cost.bits_by_link_kind["downlink"] == 0
    # star goes over the wired device-cloud link, which never fails
    star = engine.run_round(Schedule.uniform(Tier.CLOUD, engine.num_clusters, Route.STAR))
    assert star.outage_devices == []


def test_outage_off_changes_nothing():
    plain, quiet = _engine(train=False), _engine(train=False, extra=["channel.outage_snr_db=-100"])
    for engine in (plain, quiet):
        _randomise(engine, seed=4)
    schedule = Schedule.uniform(Tier.EDGE, plain.num_clusters, Route.D2D_RELAY)
    a, b = plain.run_round(schedule), quiet.run_round(schedule)
    assert b.outage_devices == []
    assert a.cost.energy_j == pytest.approx(b.cost.energy_j)
    for name in plain.params:
        torch.testing.assert_close(plain.params[name], quiet.params[name])


def test_build_engine_puts_the_world_together_and_names_a_bad_fidelity():
    from hffm_env.fl.build import build_engine

    cfg = apply_overrides(small(), list(TINY_OVERRIDES))
    with pytest.raises(ValueError, match="fidelity = 'fast': must be one of"):
        build_engine(cfg, "fast")
    engine = build_engine(cfg, "cost")  # the config seed's own streams
    again = build_engine(cfg, "surrogate", streams=RandomStreams.from_seed(cfg.seed))
    assert not engine.train and not engine.data.has_scenes  # no scene drawn outside training
    assert len(engine.data.profiles) == engine.network.num_devices
    assert np.array_equal(engine.network.topology.device_xy_m,
                          again.network.topology.device_xy_m)


def test_a_network_of_other_clusters_is_refused_by_their_sizes():
    # only the device count was checked: 6 clusters of 2 passed for 4 of 3, and the edge
    # models (one per cluster) no longer matched
    engine = _engine(train=False)
    same = Network(_scenario(), RandomStreams.from_seed(1))
    engine.attach_network(same)
    assert engine.network is same
    other = Network(_scenario(["placement.num_edge_servers=6",
                               "placement.devices_per_cluster=2"]), RandomStreams.from_seed(1))
    with pytest.raises(ValueError, match=r"clusters of sizes \[2, 2, 2, 2, 2, 2\]; the engine "
                                         r"was built for \[3, 3, 3, 3\]"):
        engine.attach_network(other)
    assert engine.network is same and engine.num_clusters == 4


def test_the_engine_computes_in_float32_under_a_float64_default():
    """Used directly (README's simulator without Gymnasium), a real-training engine failed in
    index_add_ ("self (Double) and source (Float)") after torch.set_default_dtype(float64)."""
    expected = _engine(train=True)
    expected_round = expected.run_round(Schedule(tiers={"head": Tier.EDGE}))
    torch.set_default_dtype(torch.float64)
    try:
        engine = _engine(train=True)
        result = engine.run_round(Schedule(tiers={"head": Tier.EDGE}))
        scores = engine.evaluate()
        drift = engine.drift()
        assert torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(torch.float32)
    assert result.accuracy == expected_round.accuracy == scores.accuracy
    assert drift == expected.drift()
