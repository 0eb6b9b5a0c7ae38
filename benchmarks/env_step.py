"""Env step time in ``train`` and ``cost`` fidelity, and where a ``train`` step's time goes.

For each scenario and fidelity it times ``env.step`` under a fixed ``hffm-e2``-like action and,
in ``train`` fidelity, splits the step into local training, evaluation (global and local test
accuracy) and everything else (decoding, aggregation, transfers, cost accounting, observation).
The target is that everything else stays under 5% of a train step. It also reports the time of
a warm ``gym.make`` (imports done, pre-trained model cached; target under 3 s) and the size of
a pickled env (target under 1 MB).

    python benchmarks/env_step.py --scenarios small paper --steps 5 [--json [FILE]]
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import sys
import time

import gymnasium as gym
from _output import emit_json

import hffm_env  # noqa: F401  (registers the env ids)


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
    _timed(engine, "_local_training", training)
    _timed(engine, "_evaluate", evaluation)
    env.reset(seed=0)
    action = unwrapped.layout.encode(1, 2)
    env.step(action)  # warm-up
    step_times, train_share, eval_share = [], [], []
    for _ in range(steps):
        training[0] = evaluation[0] = 0.0
        start = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(action)
        elapsed = time.perf_counter() - start
        step_times.append(elapsed)
        train_share.append(training[0] / elapsed)
        eval_share.append(evaluation[0] / elapsed)
        if terminated or truncated:
            env.reset(seed=0)
    env.close()
    median = statistics.median(step_times)
    out = {"scenario": scenario, "fidelity": fidelity, "step_ms": 1e3 * median,
           "warm_make_s": make_s, "pickle_bytes": pickle_bytes}
    if fidelity == "train":
        out["training_share"] = statistics.median(train_share)
        out["evaluation_share"] = statistics.median(eval_share)
        out["other_share"] = 1.0 - out["training_share"] - out["evaluation_share"]
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", default=["small", "paper"])
    parser.add_argument("--fidelities", nargs="+", default=["train", "cost"])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="scenario override (repeatable)")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE",
                        help="write results as JSON to FILE (stdout without FILE)")
    args = parser.parse_args(argv)
    rows = [
        measure(s, f, args.steps, args.overrides)
        for s in args.scenarios for f in args.fidelities
    ]
    print(f"{'scenario':<10}{'fidelity':<10}{'step (ms)':>12}{'training':>10}{'eval':>8}"
          f"{'other':>8}{'make (s)':>10}{'pickle (KB)':>13}")
    for r in rows:
        shares = (
            f"{r['training_share']:>10.1%}{r['evaluation_share']:>8.1%}{r['other_share']:>8.1%}"
            if "other_share" in r else f"{'':>26}"
        )
        print(f"{r['scenario']:<10}{r['fidelity']:<10}{r['step_ms']:>12.1f}{shares}"
              f"{r['warm_make_s']:>10.2f}{r['pickle_bytes'] / 1e3:>13.1f}")
    print("targets: 'other' (outside training and evaluation) under 5% of a train step; a "
          "warm gym.make under 3 s and a pickled env under 1 MB")
    emit_json(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
