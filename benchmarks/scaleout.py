"""Env steps per second with more workers: Ray RLlib env runners and SB3's SubprocVecEnv.

For each fidelity it measures, in one run, the rate at which

- ``rllib``: RLlib env runners (Ray actors, one env each) sample with the masked PPO policy
  (``hffm_env.agents.rllib``), for 1, 2 and all local CPUs' worth of runners, all runners
  sampling at once (``EnvRunner.sample`` on every runner in parallel, timed from the driver);
- ``sb3``: ``SubprocVecEnv`` over the same envs (``hffm_env.agents.ppo.make_env_fn``) steps with
  random valid actions, for the same worker counts (``DummyVecEnv`` for one).

Each worker first plays a warm-up (its env's first reset builds the model and, on a first
run, pre-trains it) that is not timed. The speed-up is against one worker of the same engine
in the same run. The policy's forward pass is in RLlib's time and not in SB3's (random
actions), so compare each engine's scaling, not the two engines' rates.

    python benchmarks/scaleout.py --fidelities cost train --workers 1 2 [--json [FILE]]

The JSON holds the table's ``rows`` and the ``provenance`` of the run (code, libraries,
machine, threads).

On a Ray cluster, ``--address auto`` measures the runners the cluster places (``--workers``
may then exceed the local CPUs); SB3 stays on this machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from _output import (
    add_json_option,
    add_overrides_option,
    emit_json,
    help_texts,
    prepare_outputs,
)

import hffm_env  # noqa: F401  (registers the env ids)
from hffm_env import arguments


def _args(fidelity: str, workers: int, scenario: str, overrides: list[str], engine: str) -> object:
    from hffm_env.agents.common import TrainArgs

    return TrainArgs(scenario=scenario, fidelity=fidelity, n_envs=workers, engine=engine,
                     overrides=list(overrides), n_steps=64, progress=False, out="unused")


def rllib_rate(fidelity: str, workers: int, steps: int, scenario: str,
               overrides: list[str]) -> float:
    """Env steps per second of ``workers`` RLlib env runners sampling at once."""
    from hffm_env.agents.rllib import rllib_config

    args = _args(fidelity, workers, scenario, overrides, "rllib")
    # remote runners even for one (n_envs=1 would sample in the driver), one env each
    config = rllib_config(args).env_runners(num_env_runners=workers)
    algo = config.build_algo()
    try:
        group = algo.env_runner_group

        def sample(n: int):
            return lambda runner: sum(len(e) for e in runner.sample(num_timesteps=n))

        group.foreach_env_runner(sample(4), local_env_runner=False)  # warm-up
        start = time.perf_counter()
        done = group.foreach_env_runner(sample(steps), local_env_runner=False)
        return sum(done) / (time.perf_counter() - start)
    finally:
        algo.stop()


def sb3_rate(fidelity: str, workers: int, steps: int, scenario: str,
             overrides: list[str]) -> float:
    """Env steps per second of an SB3 vectorised env of ``workers`` envs (all of them per
    ``step`` call), with random valid actions."""
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    from hffm_env.agents.ppo import make_env_fn

    args = _args(fidelity, workers, scenario, overrides, "sb3")
    threads = max(1, (os.cpu_count() or 1) // workers)
    fns = [make_env_fn(args, rank, torch_threads=threads if workers > 1 else None,
                       in_subprocess=workers > 1) for rank in range(workers)]
    vec = SubprocVecEnv(fns) if workers > 1 else DummyVecEnv(fns)
    try:
        vec.seed(0)
        vec.reset()
        rng = np.random.default_rng(0)
        space = vec.action_space

        def step() -> None:
            masks = vec.env_method("action_masks")
            actions = [_masked_sample(space.nvec, mask, rng) for mask in masks]
            vec.step(np.stack(actions))

        for _ in range(4):  # warm-up
            step()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        return workers * steps / (time.perf_counter() - start)
    finally:
        vec.close()


def _masked_sample(nvec: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random valid value per slot of a flat concatenated mask."""
    out, start = [], 0
    for n in nvec:
        allowed = np.flatnonzero(mask[start:start + n])
        out.append(rng.choice(allowed))
        start += n
    return np.asarray(out, dtype=np.int64)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(**help_texts(__doc__))
    parser.add_argument("--scenario", default="small", help="preset scenario (default: small)")
    parser.add_argument("--fidelities", nargs="+", default=["cost", "train"],
                        choices=["cost", "surrogate", "train"],
                        help="fidelities to measure (default: cost train)")
    cpus = os.cpu_count() or 1
    parser.add_argument("--workers", type=arguments.positive_int, nargs="+",
                        default=sorted({1, 2, cpus}),
                        help="worker counts (default: 1, 2 and all local CPUs; one worker is "
                        "always measured: it is the base of the speed-ups)")
    parser.add_argument("--engines", nargs="+", default=["rllib", "sb3"],
                        choices=["rllib", "sb3"], help="training engines (default: rllib sb3)")
    parser.add_argument("--steps", type=arguments.positive_int, default=None,
                        help="timed steps per worker (default: 200 in cost and surrogate "
                        "fidelity, 12 in train)")
    parser.add_argument("--address", default=None, help="a Ray cluster to join (default: "
                        "a local Ray instance with one CPU per runner)")
    add_overrides_option(parser)
    add_json_option(parser)
    args = parser.parse_args(argv)
    prepare_outputs(parser, args)
    if any(w < 1 for w in args.workers):
        parser.error(f"--workers {args.workers}: every count must be >= 1")
    for fidelity in args.fidelities:  # a bad scenario or --set refused before Ray starts
        for engine in args.engines:
            _args(fidelity, 1, args.scenario, args.overrides, engine)
    started_ray = False
    if "rllib" in args.engines:
        import ray

        started_ray = not ray.is_initialized()  # a caller's Ray instance is left running
        if started_ray and args.address:
            from hffm_env.agents.rllib import join_cluster

            join_cluster(args.address)
        elif started_ray:
            ray.init(num_cpus=max(cpus, max(args.workers) + 1), include_dashboard=False,
                     log_to_driver=False)
    rows = []
    try:
        for fidelity in args.fidelities:
            steps = args.steps or (12 if fidelity == "train" else 200)
            for engine in args.engines:
                measure = rllib_rate if engine == "rllib" else sb3_rate
                base = None
                for workers in sorted({1, *args.workers}):  # one worker first: the base
                    rate = measure(fidelity, workers, steps, args.scenario, args.overrides)
                    base = base or rate
                    rows.append({"engine": engine, "fidelity": fidelity, "workers": workers,
                                 "steps_per_worker": steps, "steps_per_s": rate,
                                 "speedup": rate / base, "cpus": cpus,
                                 "scenario": args.scenario})
                    print(f"{engine:<6}{fidelity:<10}{workers:>3} workers "
                          f"{rate:>9.1f} steps/s  x{rate / base:.2f}", file=sys.stderr)
    finally:
        if started_ray:
            ray.shutdown()
    print(f"{'engine':<8}{'fidelity':<11}{'workers':>8}{'steps/s':>10}{'speed-up':>10}")
    for r in rows:
        print(f"{r['engine']:<8}{r['fidelity']:<11}{r['workers']:>8}{r['steps_per_s']:>10.1f}"
              f"{r['speedup']:>9.2f}x")
    print(f"({args.scenario}, {cpus} local CPUs; speed-up against one worker of the same "
          "engine in this run)")
    emit_json({"rows": rows}, args.json)  # an object: it records the code and machine too
    return 0


if __name__ == "__main__":
    sys.exit(arguments.run_command(main, "scaleout.py"))
