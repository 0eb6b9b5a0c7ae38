"""Model quality bar: can the trainable modules alone learn every task on top of the frozen,
pre-trained extractors and backbone?

Centralised fine-tuning of ONLY the five trainable module types (encoders, prompts, moe, LoRA
adapter, heads) of the ``small`` scenario's model on the union of device-like data: every
training sample gets a device-like profile (image / audio missing with the scenario's
``p_missing_*``, text always present, each servable task kept with ``task_keep_prob``). Then test
accuracy per task on fresh scenes with every modality present, and on image-less and audio-less
views, against chance. The bar: at least 2x chance on every task (full view).

Usage::

    python benchmarks/model_quality.py [--samples 2000] [--epochs 40] [--set KEY=VALUE]
        [--json [FILE]]

The fine-tuning runs a fixed number of epochs (not a time budget), so the same ``--seed``
gives the same numbers on any machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _output import (  # noqa: E402
    add_json_option,
    add_overrides_option,
    emit_json,
    exit_status,
    help_texts,
    prepare_outputs,
)

from hffm_env import arguments  # noqa: E402
from hffm_env.config import load_scenario  # noqa: E402
from hffm_env.data import generate_scenes, task_specs  # noqa: E402
from hffm_env.models import M3TModel, build_model, masked_task_loss  # noqa: E402

TARGET_RATIO = 2.0
BATCH_SIZE = 64


def device_like_masks(
    model: M3TModel, n: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample modality and task masks drawn the way devices are profiled."""
    dc = model.data_config
    keep = {
        "image": rng.random(n) >= dc.p_missing_image,
        "audio": rng.random(n) >= dc.p_missing_audio,
        "text": np.ones(n, dtype=bool),
    }
    modality = np.stack([keep[m] for m in model.modalities], axis=1)
    specs = task_specs(dc)
    servable = np.stack([
        np.any([np.all([keep[m] for m in need], axis=0) for need in specs[t].requires], axis=0)
        for t in model.tasks
    ], axis=1)
    tasks = servable & (rng.random(servable.shape) < dc.task_keep_prob)
    # at least one task per sample when any is servable
    empty = ~tasks.any(axis=1) & servable.any(axis=1)
    first = np.argmax(servable, axis=1)
    tasks[np.where(empty)[0], first[empty]] = True
    return torch.as_tensor(modality), torch.as_tensor(tasks)


def evaluate(
    model: M3TModel, features: dict[str, torch.Tensor], labels: torch.Tensor,
    modality_mask: torch.Tensor,
) -> dict[str, float]:
    """Accuracy per task with every task's prompt present."""
    model.eval()
    n = labels.shape[0]
    task_mask = torch.ones(n, len(model.tasks), dtype=torch.bool)
    with torch.no_grad():
        logits, _ = model(features, modality_mask, task_mask)
    hits = (logits.argmax(-1) == labels).float().mean(0)
    return {t: float(hits[k]) for k, t in enumerate(model.tasks)}


def run(samples: int = 2000, test_samples: int = 1500, epochs: int = 40,
        batch_size: int = BATCH_SIZE, lr: float = 3e-3, seed: int = 0,
        progress: bool = True, overrides: list[str] | None = None) -> dict:
    """Fine-tune for ``epochs`` passes over ``samples`` (at least ``batch_size``) and
    evaluate the ``small`` scenario's model and data (with ``overrides``, ``key=value`` as
    ``hffm --set`` takes them); returns a JSON-ready dict."""
    if samples < batch_size:
        raise ValueError(f"samples = {samples}: at least one batch ({batch_size}) is needed")
    shuffle = torch.Generator().manual_seed(seed)  # the caller's torch RNG is left alone
    config = load_scenario("small", overrides=list(overrides or []))
    start = time.perf_counter()
    model = build_model(config.model, config.data, seed=seed, progress=progress)
    build_s = time.perf_counter() - start
    rng = np.random.default_rng(1000 + seed)
    train = generate_scenes(samples, config.data, rng)
    test = generate_scenes(test_samples, config.data, rng)
    train_features = model.extract_features(train)
    test_features = model.extract_features(test)
    train_labels, test_labels = model.labels_of(train), model.labels_of(test)
    modality_mask, task_mask = device_like_masks(model, samples, rng)

    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    started, steps = time.perf_counter(), 0
    for _ in range(epochs):
        order = torch.randperm(samples, generator=shuffle)
        for i in range(0, samples - batch_size + 1, batch_size):
            idx = order[i : i + batch_size]
            logits, balance = model(
                {m: f[idx] for m, f in train_features.items()}, modality_mask[idx], task_mask[idx]
            )
            loss = masked_task_loss(logits, train_labels[idx], task_mask[idx]) + balance
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            steps += 1
    train_s = time.perf_counter() - started

    specs = task_specs(config.data)
    views = {"all modalities": torch.ones(test_samples, len(model.modalities), dtype=torch.bool)}
    for missing in ("image", "audio"):
        mask = torch.ones(test_samples, len(model.modalities), dtype=torch.bool)
        mask[:, model.modalities.index(missing)] = False
        views[f"no {missing}"] = mask
    accuracy = {view: evaluate(model, test_features, test_labels, mask)
                for view, mask in views.items()}
    full = accuracy["all modalities"]
    tasks = {
        t: {"accuracy": full[t], "chance": specs[t].chance, "ratio": full[t] / specs[t].chance}
        for t in model.tasks
    }
    return {
        "scenario": "small",
        "overrides": list(overrides or []),
        "train_samples": samples,
        "test_samples": test_samples,
        "steps": steps,
        "epochs": epochs,
        "build_s": round(build_s, 2),
        "train_s": round(train_s, 2),
        "pretrain": model.pretrain_info,
        "tasks": tasks,
        "views": accuracy,
        "passes": all(v["ratio"] >= TARGET_RATIO for v in tasks.values()),
    }


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, fine-tune and print the table (or JSON); the exit status."""
    parser = argparse.ArgumentParser(**help_texts(__doc__))
    parser.add_argument("--samples", type=arguments.sample_count, default=2000,
                        help=f"training samples, at least a batch of {BATCH_SIZE} "
                        "(default 2000)")
    parser.add_argument("--test-samples", type=arguments.sample_count, default=1500,
                        help="test samples (default 1500)")
    parser.add_argument("--epochs", type=arguments.positive_int, default=40,
                        help="fine-tuning passes over the training samples (default 40)")
    parser.add_argument("--seed", type=arguments.seed, default=0,
                        help="seed of the data and the training (default: 0)")
    add_overrides_option(parser, help="override of the small scenario's model or data "
                         "settings (repeatable)")
    add_json_option(parser)
    args = parser.parse_args(argv)
    if args.samples < BATCH_SIZE:
        parser.error(f"--samples {args.samples}: at least one batch ({BATCH_SIZE}) is needed")
    prepare_outputs(parser, args)
    result = run(args.samples, args.test_samples, args.epochs, seed=args.seed,
                 progress=args.json != "-", overrides=args.overrides)
    emit_json(result, args.json)
    print(f"small scenario: {result['steps']} steps ({result['epochs']} epochs) in "
          f"{result['train_s']} s on {result['train_samples']} samples; model built in "
          f"{result['build_s']} s (cached: {result['pretrain'].get('cached')})")
    views = list(result["views"])
    header = f"{'task':<8}{'chance':>8}" + "".join(f"{v:>16}" for v in views) + f"{'x chance':>10}"
    print(header)
    print("-" * len(header))
    for task, row in result["tasks"].items():
        cells = "".join(f"{result['views'][v][task]:>16.3f}" for v in views)
        print(f"{task:<8}{row['chance']:>8.3f}{cells}{row['ratio']:>10.2f}")
    print(f"bar (>= {TARGET_RATIO}x chance on every task, all modalities): "
          f"{'PASS' if result['passes'] else 'FAIL'}")
    return exit_status(result["passes"])


if __name__ == "__main__":
    sys.exit(arguments.run_command(main, "model_quality.py"))
