"""Reference implementations the batched engine is checked and benchmarked against.

:func:`sequential_local_training` trains devices one after another with an ordinary
``torch.optim.AdamW`` per device (how research prototypes do it). It draws the same mini-batches
as the engine from the same generator, so with the same seed the two must agree to float
precision; the test suite checks that, and ``benchmarks/round_throughput.py`` times both.
"""

from __future__ import annotations

import torch

from hffm_env.fl.engine import FederatedEngine

__all__ = ["sequential_local_training", "draw_minibatches", "per_device_predictions"]


def draw_minibatches(engine: FederatedEngine) -> list[torch.Tensor]:
    """The ``(N, batch)`` sample indices of each local step, drawn from the engine's generator
    exactly as :meth:`FederatedEngine.local_training` draws them."""
    return [engine.draw_minibatch() for _ in range(engine.scenario.fl.local_steps)]


def sequential_local_training(
    engine: FederatedEngine, trained: torch.Tensor
) -> dict[str, torch.Tensor]:
    """One round of local training, device by device, with a fresh ``torch.optim.AdamW`` per
    device over the modules it holds and reads (a task's prompt relayed before its head is
    held but not read: no step, no weight decay, as in the engine). Returns the new stacked
    parameters; the engine's own parameters are not changed (its generator advances as a
    batched round's would)."""
    fl = engine.scenario.fl
    steps = draw_minibatches(engine)
    task_mask = engine.trainable_tasks()
    reads = engine.reads_modules(task_mask)
    new = {k: v.clone() for k, v in engine.params.items()}
    for d in range(engine.num_devices):
        if not bool(trained[d]):
            continue
        held = [n for n in engine.params if bool(engine.holds[d, engine.param_module[n]])
                and reads[d, engine.param_module[n]]]
        leaves = {n: engine.params[n][d].clone().requires_grad_(True) for n in held}
        frozen = {n: engine.params[n][d] for n in engine.params if n not in leaves}
        optimizer = torch.optim.AdamW(list(leaves.values()), lr=fl.lr,
                                      weight_decay=fl.weight_decay)
        modality = engine.modality_mask[d].expand(fl.batch_size, -1)
        tasks = task_mask[d].expand(fl.batch_size, -1)
        for idx in steps:
            rows = idx[d]
            features = {m: f[rows] for m, f in engine.features.items()}
            loss, _ = engine.loss({**frozen, **leaves}, features, modality, tasks,
                                   engine.labels[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        for n, leaf in leaves.items():
            new[n][d] = leaf.detach()
    return new


@torch.no_grad()
def per_device_predictions(engine: FederatedEngine) -> torch.Tensor:
    """``(R, K)`` predictions of every evaluation row, each device's model run on its own rows
    with a plain forward pass (no grouping, no deduplication, no ``vmap``; -1 for tasks the
    device does not serve): what
    :meth:`FederatedEngine.predict_rows` must reproduce."""
    rows = engine.evaluator.rows
    features = engine.evaluator.features
    out: torch.Tensor | None = None  # made at the first device, once the logits' K is known
    for d in range(engine.num_devices):
        mine = torch.nonzero(rows.device == d).flatten()
        params = {k: v[d] for k, v in engine.params.items()}
        feats = {m: f[rows.sample[mine]] for m, f in features.items()}
        modality = engine.modality_mask[d].expand(len(mine), -1)
        tasks = engine.trainable_tasks()[d].expand(len(mine), -1)
        logits = torch.func.functional_call(engine.model, params, (feats, modality, tasks))[0]
        if out is None:
            out = torch.empty((len(rows), logits.shape[1]), dtype=torch.long)
        out[mine] = torch.where(tasks, logits.argmax(dim=-1), -1)
    if out is None:
        raise ValueError("per_device_predictions: the engine has no devices to predict with")
    return out
