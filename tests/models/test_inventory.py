"""The module inventory and the stacked-state helpers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from hffm_env.models import (
    ModuleInventory,
    get_module_state,
    held_modules,
    set_module_state,
    stack_state,
)


@pytest.fixture(scope="module")
def inventory(tiny_model) -> ModuleInventory:
    return ModuleInventory(tiny_model)


def test_ids_and_types(inventory, tiny_model):
    assert inventory.ids() == [
        "encoder/image", "encoder/audio", "encoder/text",
        "prompt/vqa", "prompt/count", "prompt/scene",
        "moe/fusion", "adapter/fusion",
        "head/vqa", "head/count", "head/scene",
    ]
    assert [s.name for s in inventory.by_type("encoder")] == list(tiny_model.modalities)
    assert inventory.by_id("moe/fusion").module_type == "moe"
    with pytest.raises(KeyError, match="encoder/image"):
        inventory.by_id("encoder/smell")
    with pytest.raises(ValueError, match="unknown"):
        inventory.by_type("decoder")


def test_sizes_match_parameters(inventory, tiny_model):
    params = dict(tiny_model.named_parameters())
    bits = tiny_model.model_config.precision_bits
    for spec in inventory:
        assert spec.num_params == sum(params[n].numel() for n in spec.param_names)
        assert spec.size_bits == spec.num_params * bits
    trainable = sum(p.numel() for p in tiny_model.parameters() if p.requires_grad)
    assert inventory.total_params == trainable
    assert inventory.total_bits == trainable * bits
    assert sorted(inventory.param_names()) == sorted(tiny_model.trainable_names())
    # int8 on the wire carries a float32 scale per tensor (on_the_wire), charged too
    tensors = sum(len(spec.param_names) for spec in inventory)
    assert ModuleInventory(tiny_model, precision_bits=8).total_bits == trainable * 8 + 32 * tensors
    assert ModuleInventory(tiny_model, precision_bits=16).total_bits == trainable * 16
    # a payload fixed by the scenario (the paper's) is the float32 model's: a lower precision
    # sends it in fewer bits (it cost accuracy at no saving)
    payload = 48e6
    for bits, share in ((32, 1.0), (16, 0.5)):
        wire = ModuleInventory(tiny_model, precision_bits=bits).wire_bits(payload)
        assert sum(wire.values()) == pytest.approx(payload * share)
    # prompt and head sizes follow the config and the task classes
    assert inventory.by_id("prompt/vqa").num_params == 2 * 16
    assert inventory.by_id("head/count").num_params == 16 * tiny_model.num_classes["count"] + \
        tiny_model.num_classes["count"]
    assert inventory.by_id("adapter/fusion").num_params == 1 * 2 * (2 * 16 + 16 * 2)
    table = inventory.as_table()
    assert table[0].keys() == {"module_id", "module_type", "name", "num_params", "size_bits",
                               "wire_bits"}
    # on the wire: the size itself, or a share of a payload the scenario fixes
    assert all(row["wire_bits"] == row["size_bits"] for row in table)
    fixed = inventory.as_table(model_payload_bits=8e6)
    assert sum(row["wire_bits"] for row in fixed) == pytest.approx(8e6)
    assert [row["wire_bits"] / 8e6 for row in fixed] == pytest.approx(
        [row["size_bits"] / inventory.total_bits for row in table])


def test_module_of_param(inventory):
    assert inventory.module_of_param("encoders.audio.proj.weight") == "encoder/audio"
    assert inventory.module_of_param("prompts.scene") == "prompt/scene"
    lora = next(n for n in inventory.param_names() if "lora_A" in n)
    assert inventory.module_of_param(lora) == "adapter/fusion"
    with pytest.raises(KeyError, match="frozen"):
        inventory.module_of_param("query_token")


def test_held_modules():
    profile = SimpleNamespace(modalities=("audio", "text"), tasks=("count",))
    assert held_modules(profile) == [
        "encoder/audio", "encoder/text", "prompt/count", "moe/fusion", "adapter/fusion",
        "head/count",
    ]


def test_stack_get_set_round_trip(inventory, tiny_model):
    state = tiny_model.trainable_state()
    stacked = stack_state(state, 3)
    for name, value in stacked.items():
        assert value.shape == (3, *state[name].shape)
        torch.testing.assert_close(value[2], state[name])
    stacked["prompts.vqa"][0].add_(1.0)  # copies: the devices do not alias
    assert not torch.equal(stacked["prompts.vqa"][0], stacked["prompts.vqa"][1])

    # one device
    one = get_module_state(stacked, inventory, "moe/fusion", device=1)
    new = {n: torch.randn_like(v) for n, v in one.items()}
    set_module_state(stacked, inventory, "moe/fusion", new, device=1)
    for n, v in get_module_state(stacked, inventory, "moe/fusion", device=1).items():
        torch.testing.assert_close(v, new[n])
    for n, v in get_module_state(stacked, inventory, "moe/fusion", device=0).items():
        torch.testing.assert_close(v, state[n])

    # all devices, stacked values
    everyone = {n: torch.randn(3, *state[n].shape) for n in inventory.by_id("head/vqa").param_names}
    set_module_state(stacked, inventory, "head/vqa", everyone)
    got = get_module_state(stacked, inventory, "head/vqa")
    for n in everyone:
        torch.testing.assert_close(got[n], everyone[n])
        got[n].zero_()  # a copy
    assert not torch.equal(stacked[n], torch.zeros_like(stacked[n]))

    # all devices, one value broadcast
    single = {n: torch.randn_like(state[n]) for n in inventory.by_id("encoder/text").param_names}
    set_module_state(stacked, inventory, "encoder/text", single)
    for d in range(3):
        for n, v in get_module_state(stacked, inventory, "encoder/text", device=d).items():
            torch.testing.assert_close(v, single[n])


def test_set_module_state_errors(inventory, tiny_model):
    stacked = stack_state(tiny_model.trainable_state(), 2)
    names = inventory.by_id("prompt/count").param_names
    with pytest.raises(ValueError, match="shape"):
        set_module_state(stacked, inventory, "prompt/count",
                         {n: torch.zeros(5, 5) for n in names}, device=0)
    with pytest.raises(KeyError, match="missing"):
        set_module_state(stacked, inventory, "moe/fusion", {}, device=0)
    with pytest.raises(IndexError):
        get_module_state(stacked, inventory, "prompt/count", device=2)
    with pytest.raises(KeyError, match="known modules"):
        get_module_state(stacked, inventory, "prompt/dance")
    with pytest.raises(ValueError, match="num_devices"):
        stack_state({}, 0)
