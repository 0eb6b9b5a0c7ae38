"""Aggregation primitives and the stacked optimiser, against hand-computed values."""

import torch

from hffm_env.fl.aggregation import broadcast_to_members, group_mean, group_weights, pair_average
from hffm_env.fl.optim import StackedAdamW


def test_group_mean_matches_hand_computation():
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0], [10.0, 0.0], [7.0, 7.0]])
    weights = torch.tensor([1.0, 3.0, 2.0, 0.0])
    group = torch.tensor([0, 0, 1, 1])
    grouped = group_weights(weights, group, 3, values.dtype)
    means, totals = group_mean(values, grouped), grouped.totals
    assert torch.allclose(means[0], torch.tensor([(1 + 9) / 4, (2 + 12) / 4]))
    assert torch.allclose(means[1], torch.tensor([10.0, 0.0]))  # the zero-weight row is ignored
    assert torch.equal(totals, torch.tensor([4.0, 2.0, 0.0]))


def test_pair_average_preserves_each_pair_mean_and_leaves_others():
    values = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    out = pair_average(values, torch.tensor([0, 3]), torch.tensor([2, 1]))
    assert torch.allclose(out[0], out[2]) and torch.allclose(out[3], out[1])
    assert torch.allclose(out[0] + out[2], values[0] + values[2])
    assert torch.allclose(out[1] + out[3], values[1] + values[3])
    assert torch.equal(out[4], values[4])


def test_a_pair_averages_its_own_copy_with_the_one_it_received():
    values = torch.tensor([[1.0], [2.0], [5.0]])
    received = torch.tensor([[1.5], [2.5], [5.5]])  # e.g. rounded on the way
    out = pair_average(values, torch.tensor([0]), torch.tensor([1]), received=received)
    assert out.tolist() == [[(1.0 + 2.5) / 2], [(1.5 + 2.0) / 2], [5.0]]


def test_on_the_wire_rounds_each_copy_to_the_precision_it_travels_at():
    from hffm_env.models import on_the_wire

    gen = torch.Generator().manual_seed(2)
    values = torch.randn(3, 4, 5, generator=gen)
    values[2] = 0.0  # a copy of zeros stays zeros (no scale to divide by)
    assert on_the_wire(values, 32) is values
    half = on_the_wire(values, 16)
    assert torch.equal(half, values.half().float()) and not torch.equal(half, values)
    eight = on_the_wire(values, 8)
    for row in range(3):  # int8 steps of each copy's own scale
        scale = values[row].abs().max() / 127
        steps = eight[row] / scale if scale > 0 else eight[row]
        assert torch.allclose(steps, steps.round(), atol=1e-4)
        assert (eight[row] - values[row]).abs().max() <= scale / 2 + 1e-7
    assert not eight[2].any()
    assert torch.equal(on_the_wire(torch.full((1, 2), 1e6), 16), torch.full((1, 2), 65504.0))


def test_broadcast_only_to_receivers():
    values = torch.zeros(3, 2)
    group_values = torch.tensor([[1.0, 1.0], [2.0, 2.0]])
    out = broadcast_to_members(values, group_values, torch.tensor([0, 1, 1]),
                               torch.tensor([True, False, True]))
    assert torch.equal(out, torch.tensor([[1.0, 1.0], [0.0, 0.0], [2.0, 2.0]]))


def test_stacked_adamw_equals_torch_adamw_per_device():
    gen = torch.Generator().manual_seed(1)
    start = torch.randn(3, 4, generator=gen)
    grads = [torch.randn(3, 4, generator=gen) for _ in range(3)]
    opt = StackedAdamW(lr=0.01, weight_decay=0.1)
    params = {"w": start.clone()}
    opt.reset(params)
    update = {"w": torch.tensor([True, False, True])}
    for g in grads:
        params = opt.step(params, {"w": g}, update)
    for d in range(3):
        ref = torch.nn.Parameter(start[d].clone())
        torch_opt = torch.optim.AdamW([ref], lr=0.01, weight_decay=0.1)
        if update["w"][d]:
            for g in grads:
                ref.grad = g[d].clone()
                torch_opt.step()
        assert torch.allclose(params["w"][d], ref.detach(), atol=1e-6), d


def test_stacked_adamw_clears_a_failed_devices_moments_and_ignores_rows_that_wait():
    """A non-finite gradient of a device that does not update left NaN in its moments (0 times
    inf), and reset() of a failed device kept NaN moments (0 times NaN): with
    ``fl.optimizer_state=persist`` one failure left the device out for good."""
    opt = StackedAdamW(lr=0.01)
    params = {"w": torch.zeros(3, 4)}
    opt.reset(params)
    grads = {"w": torch.ones(3, 4)}
    grads["w"][1] = float("inf")
    waiting = opt.step(params, grads, {"w": torch.tensor([True, False, True])})
    assert torch.isfinite(opt.exp_avg["w"]).all() and torch.isfinite(opt.exp_avg_sq["w"]).all()
    assert torch.equal(waiting["w"][1], params["w"][1])
    opt.step(waiting, grads, {"w": torch.tensor([True, True, True])})  # device 1 fails
    assert not torch.isfinite(opt.exp_avg["w"][1]).all()
    opt.reset(params, devices=torch.tensor([False, True, False]))
    assert torch.equal(opt.exp_avg["w"][1], torch.zeros(4))
    assert torch.equal(opt.exp_avg_sq["w"][1], torch.zeros(4))
    assert opt.steps["w"].tolist() == [2.0, 0.0, 2.0]
    assert torch.isfinite(opt.exp_avg["w"][[0, 2]]).all()
