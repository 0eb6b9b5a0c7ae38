"""The channel model is chosen by config (``channel.model``), by name from a registry."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import hffm_env
from hffm_env.config import ConfigError, load_scenario
from hffm_env.fl.surrogate import surrogate_key
from hffm_env.seeding import RandomStreams
from hffm_env.sim.channel import CHANNEL_MODELS, Channel, register_channel_model
from hffm_env.sim.network import Network


class HalfGain(Channel):
    """Every link loses 3 dB."""

    def path_gain(self, distance_m):
        return 0.5 * super().path_gain(distance_m)


@pytest.fixture
def half_gain():
    register_channel_model("half-gain", HalfGain)
    yield "half-gain"
    del CHANNEL_MODELS["half-gain"]


def _with_model(cfg, model):
    return dataclasses.replace(cfg, channel=dataclasses.replace(cfg.channel, model=model))


def test_the_config_names_the_channel_model_the_network_builds(half_gain):
    cfg = load_scenario("small", overrides=["channel.rayleigh_fading=false"])
    default = Network(cfg, RandomStreams.from_seed(0))
    assert type(default.channel) is Channel
    mine = Network(_with_model(cfg, half_gain), RandomStreams.from_seed(0))
    assert type(mine.channel) is HalfGain
    # same placement (same seed), half the gain: strictly lower uplink rates
    assert (mine.rates.uplink_bps < default.rates.uplink_bps).all()


def test_an_unknown_model_and_a_bad_registration_get_one_clean_error():
    cfg = load_scenario("small")
    with pytest.raises(ConfigError, match=r"channel.model = 'nope': known models are \['shannon'"):
        Network(_with_model(cfg, "nope"), RandomStreams.from_seed(0))
    with pytest.raises(ConfigError, match="channel.model = ''"):
        load_scenario("small", overrides=["channel.model="])
    with pytest.raises(TypeError, match="subclass of hffm_env.sim.channel.Channel"):
        register_channel_model("bad", dict)


def test_only_another_model_changes_the_surrogate_key(half_gain):
    cfg = load_scenario("small")
    shipped = Path(hffm_env.__file__).parent / "surrogates" / f"surrogate-{surrogate_key(cfg)}.pt"
    assert shipped.is_file()  # the default model keeps the key of the shipped surrogate
    assert surrogate_key(_with_model(cfg, half_gain)) != surrogate_key(cfg)
