"""The M3T forward: masking, padding, and the vmap/grad contract of the federated engine."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch.func import functional_call, grad, vmap

from hffm_env.models import NEG_LOGIT, M3TModel, masked_task_loss


def _stacked_inputs(model: M3TModel, features, labels, devices: int, per_device: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    feats = {m: f[: devices * per_device].reshape(devices, per_device, *f.shape[1:])
             for m, f in features.items()}
    mm = torch.rand(devices, per_device, len(model.modalities), generator=g) > 0.3
    tm = torch.rand(devices, per_device, len(model.tasks), generator=g) > 0.3
    y = labels[: devices * per_device].reshape(devices, per_device, -1)
    state = model.trainable_state()
    params = {n: v.unsqueeze(0).repeat(devices, *[1] * v.dim())
              + 0.05 * torch.randn(devices, *v.shape, generator=g) for n, v in state.items()}
    return params, feats, mm, tm, y


def test_forward_shapes_and_padding(tiny_model, tiny_features):
    features, _ = tiny_features
    n = 5
    feats = {m: f[:n] for m, f in features.items()}
    logits, balance = tiny_model(feats, torch.ones(n, 3, dtype=torch.bool),
                                 torch.ones(n, 3, dtype=torch.bool))
    assert logits.shape == (n, len(tiny_model.tasks), tiny_model.max_classes)
    assert balance.shape == () and torch.isfinite(balance)
    for k, task in enumerate(tiny_model.tasks):
        c = tiny_model.num_classes[task]
        assert torch.all(logits[:, k, c:] == NEG_LOGIT)
        assert torch.all(logits[:, k, :c] > NEG_LOGIT / 2)


def test_vmap_forward_and_grad_equal_per_device_loop(tiny_model, tiny_features):
    features, labels = tiny_features
    params, feats, mm, tm, y = _stacked_inputs(tiny_model, features, labels, 4, 12, seed=1)
    original = {n: v.clone() for n, v in tiny_model.trainable_state().items()}

    def forward(p, f, m, t):
        return functional_call(tiny_model, p, (f, m, t))

    def loss_fn(p, f, m, t, lab):
        logits, balance = functional_call(tiny_model, p, (f, m, t))
        return masked_task_loss(logits, lab, t) + balance

    logits, balance = vmap(forward, in_dims=(0, 0, 0, 0))(params, feats, mm, tm)
    grads = vmap(grad(loss_fn))(params, feats, mm, tm, y)
    assert set(grads) == set(tiny_model.trainable_names())
    for d in range(4):
        p = {n: v[d] for n, v in params.items()}
        f = {m: v[d] for m, v in feats.items()}
        ref_logits, ref_balance = forward(p, f, mm[d], tm[d])
        torch.testing.assert_close(logits[d], ref_logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(balance[d], ref_balance, atol=1e-5, rtol=1e-5)
        ref_grads = grad(loss_fn)(p, f, mm[d], tm[d], y[d])
        for name, g in ref_grads.items():
            torch.testing.assert_close(grads[name][d], g, atol=1e-5, rtol=1e-4)
    # the module's own tensors are untouched by functional calls (it compared them with
    # device 0's parameters, which differ from them whatever the calls did)
    for name, value in tiny_model.trainable_state().items():
        assert torch.equal(value, original[name]), name


def test_masked_modality_does_not_influence_logits(tiny_model, tiny_features):
    features, _ = tiny_features
    n = 6
    feats = {m: f[:n].clone() for m, f in features.items()}
    mm = torch.ones(n, 3, dtype=torch.bool)
    audio = tiny_model.modalities.index("audio")
    mm[:, audio] = False
    tm = torch.ones(n, 3, dtype=torch.bool)
    before, _ = tiny_model(feats, mm, tm)
    changed = dict(feats)
    changed["audio"] = torch.randn_like(feats["audio"]) * 10
    after, _ = tiny_model(changed, mm, tm)
    torch.testing.assert_close(before, after, atol=1e-5, rtol=0)
    # ...while a present modality does matter
    mm[:, audio] = True
    present_before, _ = tiny_model(feats, mm, tm)
    present_after, _ = tiny_model(changed, mm, tm)
    assert (present_before - present_after).abs().max() > 1e-4


def test_absent_task_prompt_does_not_influence_other_tasks(tiny_model, tiny_features):
    features, _ = tiny_features
    n = 4
    feats = {m: f[:n] for m, f in features.items()}
    mm = torch.ones(n, 3, dtype=torch.bool)
    tm = torch.ones(n, 3, dtype=torch.bool)
    vqa = tiny_model.tasks.index("vqa")
    tm[:, vqa] = False
    params = tiny_model.trainable_state()
    before, _ = functional_call(tiny_model, params, (feats, mm, tm))
    # random, not a constant: a constant shift of a token is erased by the embedding
    # LayerNorm before attention, so the test passed with no prompt masked at all
    noise = torch.randn(params["prompts.vqa"].shape, generator=torch.Generator().manual_seed(0))
    changed = {**params, "prompts.vqa": params["prompts.vqa"] + 5.0 * noise}
    after, _ = functional_call(tiny_model, changed, (feats, mm, tm))
    others = [k for k in range(3) if k != vqa]
    torch.testing.assert_close(before[:, others], after[:, others], atol=1e-5, rtol=0)
    # the control: with vqa present, the same change reaches the other tasks through attention
    present = torch.ones(n, 3, dtype=torch.bool)
    present_before, _ = functional_call(tiny_model, params, (feats, mm, present))
    present_after, _ = functional_call(tiny_model, changed, (feats, mm, present))
    assert (present_before[:, others] - present_after[:, others]).abs().max() > 1e-4


def test_all_keys_masked_stays_finite(tiny_model, tiny_features):
    features, labels = tiny_features
    feats = {m: f[:3] for m, f in features.items()}
    none = torch.zeros(3, 3, dtype=torch.bool)
    logits, balance = tiny_model(feats, none, none)
    assert torch.isfinite(logits).all() and torch.isfinite(balance)
    assert masked_task_loss(logits, labels[:3], none) == 0


def test_fresh_modules_keep_pretrained_function(tiny_model, tiny_features):
    """MoE up-projections and LoRA B start at zero: the backbone computes what it learned."""
    features, _ = tiny_features
    state = tiny_model.trainable_state()
    for name, value in state.items():
        if "up_weight" in name or "up_bias" in name or "lora_B" in name:
            assert torch.count_nonzero(value) == 0, name
    n = 4
    feats = {m: f[:n] for m, f in features.items()}
    mm = torch.ones(n, 3, dtype=torch.bool)
    tm = torch.ones(n, 3, dtype=torch.bool)
    with_moe, _ = tiny_model(feats, mm, tm)
    prefix = torch.stack([tiny_model.prompts[t] for t in tiny_model.tasks]).reshape(1, -1, 16)
    hidden, _ = tiny_model.fuse(prefix.expand(n, -1, -1), tm.repeat_interleave(2, 1), feats, mm,
                                use_moe=False)
    pooled = hidden[:, : tiny_model.prefix_length].reshape(n, 3, 2, -1).mean(2)
    count = tiny_model.tasks.index("count")
    torch.testing.assert_close(with_moe[:, count, :3], tiny_model.heads["count"](pooled[:, count]))


def test_trainable_surface_and_frozen_parts(tiny_model):
    names = tiny_model.trainable_names()
    params = dict(tiny_model.named_parameters())
    assert names and all(params[n].requires_grad for n in names)
    frozen = [n for n, p in params.items() if not p.requires_grad]
    assert any(n.startswith("extractors.") for n in frozen)
    assert any(n.startswith("backbone.") and "lora_" not in n for n in frozen)
    assert not any(n.startswith(("extractors.", "query_token")) for n in names)
    assert all("lora_" in n for n in names if n.startswith("backbone."))
    state = tiny_model.trainable_state()
    assert list(state) == names
    state[names[0]].add_(1.0)  # a clone: the model is untouched
    assert not torch.equal(state[names[0]], params[names[0]])


def test_masks_for_profiles(tiny_model):
    profile = SimpleNamespace(modalities=("image", "text"), tasks=("vqa",))
    assert tiny_model.modality_mask_for(profile).tolist() == [
        m in ("image", "text") for m in tiny_model.modalities
    ]
    assert tiny_model.task_mask_for(profile).tolist() == [t == "vqa" for t in tiny_model.tasks]
    with pytest.raises(ValueError, match="unknown"):
        tiny_model.modality_mask_for(["smell"])


def test_extract_features_shapes(tiny_model, tiny_features):
    features, labels = tiny_features
    assert features["image"].shape == (48, 16, 8)
    assert features["audio"].shape == (48, 8, 8)
    assert features["text"].shape == (48, 8, 8)
    assert labels.shape == (48, 3) and labels.dtype == torch.long
    assert not any(f.requires_grad for f in features.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_forward(tiny_model, tiny_features):  # pragma: no cover - GPU machines only
    import copy

    features, _ = tiny_features
    model = copy.deepcopy(tiny_model).to("cuda")
    feats = {m: f[:4].cuda() for m, f in features.items()}
    mask = torch.ones(4, 3, dtype=torch.bool, device="cuda")
    logits, _ = model(feats, mask, mask)
    cpu_logits, _ = tiny_model({m: f[:4] for m, f in features.items()}, mask.cpu(), mask.cpu())
    torch.testing.assert_close(logits.cpu(), cpu_logits, atol=1e-4, rtol=1e-4)


def test_load_trainable_state_round_trips_and_names_bad_input(tiny_model):
    import copy

    model = copy.deepcopy(tiny_model)
    saved = model.trainable_state()
    name = next(iter(saved))
    with torch.no_grad():
        dict(model.named_parameters())[name].add_(1.0)
    model.load_trainable_state({name: saved[name]})
    for key, value in model.trainable_state().items():
        torch.testing.assert_close(value, saved[key])
    with pytest.raises(KeyError, match="unknown trainable names"):
        model.load_trainable_state({"query_token": saved[name]})
    with pytest.raises(ValueError, match=f"{name} has shape"):
        model.load_trainable_state({name: saved[name].reshape(-1)[:1]})
