"""Putting a scenario's world together: the network of the config seed's first layout, the
data split, the model and the federated engine over them, in one place (the env and the
benchmarks build it here)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from hffm_env.config import FIDELITIES, ScenarioConfig, check_memory, require_config
from hffm_env.data import build_federated_data
from hffm_env.devices import float32_default
from hffm_env.fl.engine import FederatedEngine
from hffm_env.models import M3TModel, backbone_shape, build_model
from hffm_env.seeding import RandomStreams
from hffm_env.sim import Network

__all__ = ["build_engine", "one_torch_thread"]


@float32_default()
def build_engine(cfg: ScenarioConfig, fidelity: str = "train", *, device: str = "cpu",
                 progress: bool = False,
                 streams: RandomStreams | None = None) -> FederatedEngine:
    """The federated engine of ``cfg`` on the config seed's first layout and data split
    (``streams``: that seed's streams, which the layout and the split draw from; fresh ones
    when None; ``engine.network`` and ``engine.data`` hold what was drawn).

    In ``"train"`` fidelity the model is the pre-trained one (built, or loaded from the cache)
    and the data holds the scenes to train on; otherwise (``"cost"``, ``"surrogate"``: the
    accuracy is not trained) the model only sizes the modules, and no scene is drawn. The
    memory a run needs is checked (:func:`~hffm_env.config.check_memory`) on a model of the
    same shapes before minutes of pre-training; outside real training the model is built on
    one torch thread, so that no OpenMP pool exists yet and the process can still fork."""
    require_config(cfg, "cfg")
    if fidelity not in FIDELITIES:
        raise ValueError(f"fidelity = {fidelity!r}: must be one of {list(FIDELITIES)}")
    streams = streams if streams is not None else RandomStreams.from_seed(cfg.seed)
    network = Network(cfg, streams)
    train = fidelity == "train"
    # (scenes only where they are trained on: pricing a round needs profiles and counts)
    data = build_federated_data(cfg.data, network.topology.cluster_of_device, streams.data,
                                scenes=train)
    with one_torch_thread():  # (a checkpoint backbone's sizes, with model.pretrained_path)
        shapes = M3TModel(cfg.model, cfg.data, backbone=backbone_shape(cfg.model))
    check_memory(cfg, fidelity, sum(t.numel() for t in shapes.trainable_state().values()))
    if not train:
        with one_torch_thread():
            return FederatedEngine(cfg, shapes, data, network, train=False, device=device)
    model = build_model(cfg.model, cfg.data, seed=cfg.seed, device=device, progress=progress)
    return FederatedEngine(cfg, model, data, network, train=True, device=device)


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run the block with one torch intra-op thread, then restore the setting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
