"""Shared fixtures of the model-layer tests: a tiny model and a private cache folder."""

from __future__ import annotations

import numpy as np
import pytest

from hffm_env.config import DataConfig, ModelConfig
from hffm_env.models import M3TModel, build_model

TINY_MODEL = ModelConfig(
    hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, feature_dim=8,
    num_prompt_tokens=2, num_experts=3, expert_hidden=4, moe_top_k=2, lora_rank=2,
    pretrain_steps=4, pretrain_batch_size=16,
)
TINY_DATA = DataConfig(pretrain_samples=64, global_test_samples=64)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Every test caches into its own folder, never into ~/.cache."""
    folder = tmp_path_factory.mktemp("hffm_cache")
    monkeypatch.setenv("HFFM_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> M3TModel:
    """A tiny model with a few pre-training steps (built once per session)."""
    folder = tmp_path_factory.mktemp("tiny_cache")
    return build_model(TINY_MODEL, TINY_DATA, seed=0, cache_dir=folder, progress=False)


@pytest.fixture(scope="session")
def tiny_features(tiny_model: M3TModel):
    """Features and labels of 48 scenes for the tiny model."""
    from hffm_env.data import generate_scenes

    batch = generate_scenes(48, TINY_DATA, np.random.default_rng(3))
    return tiny_model.extract_features(batch), tiny_model.labels_of(batch)


@pytest.fixture(scope="session")
def tiny_configs() -> tuple[ModelConfig, DataConfig]:
    """The tiny model and data configs."""
    return TINY_MODEL, TINY_DATA
