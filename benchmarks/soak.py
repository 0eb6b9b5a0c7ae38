"""Soak: many cost-fidelity episodes in one env, and whether memory keeps growing.

One env plays ``--episodes`` episodes of masked random actions (dropout and mobility on by
default, so clusters come and go). Resident memory is sampled after every episode; growth is
measured from the end of a warm-up (the first ``--warmup`` episodes, while allocators and
caches settle) to the end. Target: growth under 5%, no error in any episode.

    python benchmarks/soak.py --episodes 1000 [--scenario small] [--json [FILE]]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time

import gymnasium as gym
from _output import (
    add_json_option,
    emit_json,
    exit_status,
    help_texts,
    prepare_outputs,
)

import hffm_env  # noqa: F401  (registers the env ids)
from hffm_env import arguments

GROWTH_TARGET = 0.05


def _rss_bytes() -> int:
    """Resident set size of this process (Linux ``/proc``; ``ru_maxrss`` elsewhere)."""
    try:
        with open("/proc/self/statm") as handle:
            import os

            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def soak(scenario: str, episodes: int, warmup: int, overrides: list[str],
         progress: bool = True) -> dict:
    """Play the episodes; return memory samples, growth and timings."""
    from tqdm.auto import tqdm

    from hffm_env.baselines.policies import RandomPolicy

    env = gym.make("hffm/HFFM-v0", scenario=scenario, fidelity="cost", overrides=overrides)
    policy = RandomPolicy()
    rss: list[int] = []
    steps = 0
    started = time.perf_counter()
    try:
        for episode in tqdm(range(episodes), disable=not progress, desc="soak", unit="episode"):
            obs, info = env.reset(seed=episode)
            policy.reset(env, episode)
            done = False
            while not done:
                obs, _, terminated, truncated, info = env.step(policy.act(obs, info))
                done = terminated or truncated
                steps += 1
            if episode + 1 == warmup:
                gc.collect()
            rss.append(_rss_bytes())
    finally:
        env.close()
    seconds = time.perf_counter() - started
    gc.collect()
    after_warmup = rss[min(warmup, len(rss)) - 1]
    growth = (rss[-1] - after_warmup) / after_warmup
    return {
        "scenario": scenario,
        "overrides": overrides,
        "episodes": episodes,
        "steps": steps,
        "warmup_episodes": warmup,
        "rss_after_warmup_mib": after_warmup / 2**20,
        "rss_end_mib": rss[-1] / 2**20,
        "rss_max_mib": max(rss) / 2**20,
        "growth_after_warmup": growth,
        "target_growth": GROWTH_TARGET,
        "passed": growth < GROWTH_TARGET,
        "seconds": seconds,
        "steps_per_second": steps / seconds,
    }


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, play the episodes and print (or write) the memory report; the exit
    status."""
    parser = argparse.ArgumentParser(**help_texts(__doc__))
    parser.add_argument("--scenario", default="small", help="preset scenario (default: small)")
    parser.add_argument("--episodes", type=arguments.positive_int, default=1000,
                        help="cost-fidelity episodes to play (default: 1000)")
    parser.add_argument("--warmup", type=arguments.positive_int, default=50,
                        help="episodes before memory is measured (default: 50)")
    parser.add_argument("--set", dest="overrides", action="append",
                        default=["dynamics.dropout_prob=0.2", "dynamics.mobility=true"],
                        metavar="KEY=VALUE", help="scenario overrides (default: dropout 0.2 "
                        "and mobility on; given ones are added)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="hide the progress bar")
    add_json_option(parser, "the result")
    args = parser.parse_args(argv)
    prepare_outputs(parser, args)
    if args.warmup >= args.episodes:  # both >= 1 by their types
        parser.error(f"--warmup {args.warmup}: must be less than --episodes ({args.episodes}): "
                     "the growth is measured over the episodes after the warm-up")
    result = soak(args.scenario, args.episodes, args.warmup, args.overrides, args.progress)
    verdict = "PASS" if result["passed"] else "MISS"
    print(f"{args.scenario}: {result['episodes']} episodes, {result['steps']} steps in "
          f"{result['seconds']:.0f} s ({result['steps_per_second']:.0f} steps/s); memory "
          f"{result['rss_after_warmup_mib']:.0f} MiB after warm-up -> "
          f"{result['rss_end_mib']:.0f} MiB at the end: "
          f"{100 * result['growth_after_warmup']:+.2f}% "
          f"[{verdict}: target under {100 * GROWTH_TARGET:.0f}%]", file=sys.stderr)
    emit_json(result, args.json)
    return exit_status(result["passed"])


if __name__ == "__main__":
    sys.exit(arguments.run_command(main, "soak.py"))
