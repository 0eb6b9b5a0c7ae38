"""One round of local training done three ways, timed in one run.

- ``batched``: the engine (all devices' stacked modules, ``vmap(grad)`` and a stacked AdamW);
- ``sequential``: a loop over devices, each with its own ``torch.optim.AdamW`` (how research
  prototypes do it); same mini-batches, same result;
- ``fused``: all devices' samples as one batch through a single set of modules (no
  personalisation): the bound a batched engine can approach.

The three ways run interleaved (batched, sequential, fused; again and again), so that a
machine slowing down mid-run weighs on all three alike. Prints each way's median time and the
medians of the ratios ``sequential / batched`` and ``batched / fused`` taken within each
repetition (targets on the default scenario: at least 2x and at most 1.25x); ``--json
[FILE]`` writes them, and every repetition's times, as JSON (stdout when no file is given).

    python benchmarks/round_throughput.py --scenario small --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch
from _output import (
    add_json_option,
    add_overrides_option,
    emit_json,
    exit_status,
    help_texts,
    prepare_outputs,
)
from torch.func import functional_call

from hffm_env import arguments
from hffm_env.config import load_scenario
from hffm_env.fl import FederatedEngine
from hffm_env.fl.build import build_engine
from hffm_env.fl.reference import draw_minibatches, sequential_local_training
from hffm_env.models import masked_task_loss


def fused_round(engine: FederatedEngine) -> None:
    """The same number of optimiser steps on the union of the devices' mini-batches, with one
    shared set of modules."""
    fl = engine.scenario.fl
    params = {k: v[0].clone().requires_grad_(True) for k, v in engine.params.items()}
    optimizer = torch.optim.AdamW(list(params.values()), lr=fl.lr,
                                  weight_decay=fl.weight_decay)
    task_mask = engine.trainable_tasks()
    n, batch = engine.num_devices, fl.batch_size
    modality = engine.modality_mask.unsqueeze(1).expand(n, batch, -1).reshape(n * batch, -1)
    tasks = task_mask.unsqueeze(1).expand(n, batch, -1).reshape(n * batch, -1)
    for idx in draw_minibatches(engine):
        rows = idx.reshape(-1)
        features = {m: f[rows] for m, f in engine.features.items()}
        logits, balance = functional_call(engine.model, params, (features, modality, tasks))
        loss = masked_task_loss(logits, engine.labels[rows], tasks) + balance
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _sync() -> None:
    """Wait for queued GPU kernels (they run asynchronously; the clock must not stop before
    they finish); nothing on the CPU."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def time_interleaved(ways: dict[str, Callable[[], object]], repeats: int
                     ) -> dict[str, list[float]]:
    """Wall times of each of ``ways`` over ``repeats`` rounds, one call of each per round in
    turn (the round's first way rotating, so that none always runs first), after one untimed
    warm-up call of each."""
    for fn in ways.values():
        fn()
        _sync()
    times: dict[str, list[float]] = {name: [] for name in ways}
    names = list(ways)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn = ways[name]
            start = time.perf_counter()
            fn()
            _sync()
            times[name].append(time.perf_counter() - start)
    return times


def median_ratio(numerators: list[float], denominators: list[float]) -> float:
    """The median of the ratios of paired times (the same repetition's)."""
    return statistics.median(a / b for a, b in zip(numerators, denominators, strict=True))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(**help_texts(__doc__))
    parser.add_argument("--scenario", default="small", help="preset scenario (default: small)")
    add_overrides_option(parser)
    parser.add_argument("--repeats", type=arguments.positive_int, default=5,
                        help="timed repetitions (default: 5)")
    parser.add_argument("--device", type=arguments.device, default="cpu",
                        help="torch device (default: cpu)")
    add_json_option(parser)
    args = parser.parse_args(argv)
    prepare_outputs(parser, args)

    engine = build_engine(load_scenario(args.scenario, overrides=args.overrides), "train",
                          device=args.device)
    trained = torch.ones(engine.num_devices, dtype=torch.bool, device=engine.device)
    start = {k: v.clone() for k, v in engine.params.items()}

    def batched() -> None:
        engine.params = {k: v.clone() for k, v in start.items()}
        engine.local_training(trained)

    def sequential() -> None:
        engine.params = {k: v.clone() for k, v in start.items()}
        sequential_local_training(engine, trained)

    times = time_interleaved(
        {"batched": batched, "sequential": sequential, "fused": lambda: fused_round(engine)},
        args.repeats)
    results = {
        "scenario": args.scenario,
        "devices": engine.num_devices,
        "local_steps": engine.scenario.fl.local_steps,
        "batch_size": engine.scenario.fl.batch_size,
        "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats,
        **{f"{way}_s": statistics.median(t) for way, t in times.items()},
        "times_s": times,
        "ratios_are": "medians over the repetitions of each repetition's own ratio (not "
                      "ratios of the median times)",
        "sequential_over_batched": median_ratio(times["sequential"], times["batched"]),
        "batched_over_fused": median_ratio(times["batched"], times["fused"]),
    }
    results["targets_met"] = {
        "sequential_over_batched>=2": results["sequential_over_batched"] >= 2.0,
        "batched_over_fused<=1.25": results["batched_over_fused"] <= 1.25,
    }
    print(f"one round of local training, scenario {args.scenario}: {engine.num_devices} devices"
          f" x {results['local_steps']} steps x batch {results['batch_size']}")
    print(f"  {'way':<12}{'median (ms)':>12}   (ratios: medians of {args.repeats} paired runs)")
    for way in ("batched", "sequential", "fused"):
        print(f"  {way:<12}{1e3 * results[way + '_s']:>12.1f}")
    met = results["targets_met"]
    print(f"  sequential / batched = {results['sequential_over_batched']:.3f}x (target >= 2): "
          f"{'PASS' if met['sequential_over_batched>=2'] else 'MISS'}")
    print(f"  batched / fused      = {results['batched_over_fused']:.3f}x (target <= 1.25): "
          f"{'PASS' if met['batched_over_fused<=1.25'] else 'MISS'}")
    emit_json(results, args.json)
    return exit_status(*results["targets_met"].values())


if __name__ == "__main__":
    sys.exit(arguments.run_command(main, "round_throughput.py"))
