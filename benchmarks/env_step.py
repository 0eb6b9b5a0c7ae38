"""Env step time in each fidelity, and where a ``train`` step's time goes.

For each scenario and fidelity it times ``env.step`` under a fixed ``hffm-e2``-like action and,
in ``train`` fidelity, splits the steps' total time into local training, evaluation (global,
local and held-out accuracy, at the default evaluation budget: the local and held-out sets
every ``fl.eval_local_every_rounds`` rounds, so use a multiple of it as ``--steps``) and
everything else (decoding, aggregation, transfers, cost accounting, observation). Targets:
local training at least 65% of a train step, everything else under 5%. It also reports the time of
a warm ``gym.make`` (imports done, pre-trained model cached; target under 3 s) and the size of
a pickled env (target under 1 MB).

    python benchmarks/env_step.py --scenarios small paper --steps 8 [--json [FILE]]

The JSON holds one row per scenario and fidelity (``rows``: times, shares and whether each
target is met) and the ``provenance`` of the run (code, libraries, machine, threads).
"""

from __future__ import annotations

import argparse
import gc
import pickle
import statistics
import sys
import time

import gymnasium as gym
from _output import (
    add_json_option,
    add_overrides_option,
    emit_json,
    exit_status,
    help_texts,
    prepare_outputs,
)

import hffm_env  # noqa: F401  (registers the env ids)
from hffm_env import arguments
from hffm_env.config import FIDELITIES, scenario_names

TRAINING_SHARE_TARGET = 0.65
OTHER_SHARE_TARGET = 0.05  # of a train step outside local training and evaluation
WARM_MAKE_TARGET_S = 3.0
PICKLE_TARGET_BYTES = 1_000_000


def _timed(obj: object, name: str, bucket: list[float]) -> None:
    """Wrap ``obj.name`` so that its wall time accumulates into ``bucket[0]``."""
    original = getattr(obj, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            bucket[0] += time.perf_counter() - start

    setattr(obj, name, wrapper)


def measure(scenario: str, fidelity: str, steps: int, overrides: list[str]) -> dict[str, float]:
    """Median step time and the train/eval/other split for one scenario and fidelity."""
    gym.make("hffm/HFFM-v0", scenario=scenario, fidelity=fidelity, overrides=overrides).close()
    start = time.perf_counter()  # warm: imports done, pre-trained model cached
    env = gym.make("hffm/HFFM-v0", scenario=scenario, fidelity=fidelity, overrides=overrides)
    make_s = time.perf_counter() - start
    unwrapped = env.unwrapped
    pickle_bytes = len(pickle.dumps(unwrapped))
    training, evaluation = [0.0], [0.0]
    engine = unwrapped.engine
    _timed(engine, "local_training", training)
    _timed(engine, "evaluate", evaluation)
    env.reset(seed=0)
    action = unwrapped.layout.encode(1, 2)
    _, _, terminated, truncated, _ = env.step(action)  # warm-up
    if terminated or truncated:  # (a one-round episode: the timed steps start a new one)
        env.reset(seed=0)
    # the env's construction leaves ~400k new objects for the first full garbage collection
    # (~0.2 s, once per process): collect it now rather than bill it to the steps timed
    gc.collect()
    step_times = []
    training[0] = evaluation[0] = 0.0
    for _ in range(steps):
        start = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(action)
        step_times.append(time.perf_counter() - start)
        if terminated or truncated:
            # a reset evaluates the fresh models too: keep it out of the shares of the steps
            spent = training[0], evaluation[0]
            env.reset(seed=0)
            training[0], evaluation[0] = spent
    env.close()
    total = sum(step_times)
    out = {"scenario": scenario, "fidelity": fidelity,
           "median_step_ms": 1e3 * statistics.median(step_times),
           "mean_step_ms": 1e3 * total / steps,
           "warm_make_s": make_s, "pickle_bytes": pickle_bytes,
           "meets_warm_make_target": make_s < WARM_MAKE_TARGET_S,
           "meets_pickle_target": pickle_bytes < PICKLE_TARGET_BYTES}
    if fidelity == "train":
        out["training_share"] = training[0] / total
        out["evaluation_share"] = evaluation[0] / total
        out["other_share"] = 1.0 - out["training_share"] - out["evaluation_share"]
        out["meets_training_share_target"] = out["training_share"] >= TRAINING_SHARE_TARGET
        out["meets_other_share_target"] = out["other_share"] < OTHER_SHARE_TARGET
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(**help_texts(__doc__))
    parser.add_argument("--scenarios", nargs="+", default=["small", "paper"],
                        choices=scenario_names(),  # checked before any scenario runs
                        help="presets to time (default: small paper)")
    parser.add_argument("--fidelities", nargs="+", default=["train", "cost"],
                        choices=FIDELITIES, help="fidelities to time (default: train cost)")
    parser.add_argument("--steps", type=arguments.positive_int, default=8,
                        help="timed steps per scenario and fidelity (default: 8)")
    add_overrides_option(parser)
    add_json_option(parser)
    args = parser.parse_args(argv)
    prepare_outputs(parser, args)
    rows = [
        measure(s, f, args.steps, args.overrides)
        for s in args.scenarios for f in args.fidelities
    ]
    print(f"{'scenario':<10}{'fidelity':<10}{'mean step (ms)':>15}{'training':>10}{'eval':>8}"
          f"{'other':>8}{'make (s)':>10}{'pickle (KB)':>13}")
    for r in rows:
        shares = (
            f"{r['training_share']:>10.1%}{r['evaluation_share']:>8.1%}{r['other_share']:>8.1%}"
            if "other_share" in r else f"{'':>26}"
        )
        print(f"{r['scenario']:<10}{r['fidelity']:<10}{r['mean_step_ms']:>15.1f}{shares}"
              f"{r['warm_make_s']:>10.2f}{r['pickle_bytes'] / 1e3:>13.1f}")
    print(f"targets: local training at least {TRAINING_SHARE_TARGET:.0%} of a train step and "
          f"'other' (outside training and evaluation) under {OTHER_SHARE_TARGET:.0%}; a warm "
          f"gym.make under {WARM_MAKE_TARGET_S:g} s and a pickled env under "
          f"{PICKLE_TARGET_BYTES / 1e6:g} MB")
    for r in rows:
        judged = {name[len("meets_"):-len("_target")]: met
                  for name, met in r.items() if name.startswith("meets_")}
        print(f"{r['scenario']} {r['fidelity']}: " + ", ".join(
            f"{name.replace('_', ' ')} {'PASS' if met else 'MISS'}"
            for name, met in judged.items()))
    emit_json({"rows": rows}, args.json)  # an object: it records the code and machine too
    return exit_status(*(met for r in rows for name, met in r.items()
                         if name.startswith("meets_")))


if __name__ == "__main__":
    sys.exit(arguments.run_command(main, "env_step.py"))
