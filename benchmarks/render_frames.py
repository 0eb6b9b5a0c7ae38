"""How long does a frame take? ``render()``'s kept figure against a figure drawn anew.

One cost-fidelity env in ``rgb_array`` mode plays ``--episodes`` episodes of the ``hffm-e2``
schedule; after every reset and step its frame is taken twice, timed in the same run: by
``env.render()`` (one figure per env, its still parts kept as pixels) and by
:func:`hffm_env.envs.render.render_rgb` (a new figure, drawn in full: what every frame cost
before). The two must be the same picture; their time ratio is the speed-up. Target: a kept
frame at least 3x faster, and no frame that differs.

    python benchmarks/render_frames.py [--scenario small] [--episodes 2] [--json [FILE]]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import gymnasium as gym
import numpy as np
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

SPEEDUP_TARGET = 3.0


def time_frames(scenario: str, episodes: int, overrides: list[str]) -> dict:
    """Play the episodes, time both ways of drawing each frame; return the timings."""
    from hffm_env.envs.render import render_rgb

    env = gym.make("hffm/HFFM-v0", scenario=scenario, fidelity="cost",
                   render_mode="rgb_array", overrides=overrides)
    core = env.unwrapped
    kept_s: list[float] = []
    fresh_s: list[float] = []
    differing = 0

    def take_frame() -> None:
        nonlocal differing
        started = time.perf_counter()
        kept = env.render()
        kept_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        fresh = render_rgb(core)
        fresh_s.append(time.perf_counter() - started)
        differing += int(not np.array_equal(kept, fresh))

    for episode in range(episodes):
        env.reset(seed=episode)
        take_frame()
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(core.layout.encode(1, 2))
            done = terminated or truncated
            take_frame()
    env.close()
    # the first frame builds the figure and draws the still parts: timed apart
    kept_ms = 1e3 * statistics.median(kept_s[1:] or kept_s)
    fresh_ms = 1e3 * statistics.median(fresh_s)
    return {
        "scenario": scenario,
        "overrides": overrides,
        "frames": len(kept_s),
        "first_frame_ms": 1e3 * kept_s[0],
        "kept_frame_ms": kept_ms,
        "fresh_frame_ms": fresh_ms,
        "speedup": fresh_ms / kept_ms,
        "frames_differing": differing,
        "target_speedup": SPEEDUP_TARGET,
        "passed": fresh_ms / kept_ms >= SPEEDUP_TARGET and differing == 0,
    }


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, time the frames and print (or write) the report; the exit status."""
    parser = argparse.ArgumentParser(**help_texts(__doc__))
    parser.add_argument("--scenario", default="small", help="preset scenario (default: small)")
    parser.add_argument("--episodes", type=arguments.positive_int, default=2,
                        help="episodes to play (default: 2)")
    add_overrides_option(parser)
    add_json_option(parser, "the timings")
    args = parser.parse_args(argv)
    prepare_outputs(parser, args)
    result = time_frames(args.scenario, args.episodes, args.overrides)
    verdict = "PASS" if result["passed"] else "MISS"
    print(f"{args.scenario}: {result['frames']} frames; median {result['kept_frame_ms']:.0f} "
          f"ms a frame kept, {result['fresh_frame_ms']:.0f} ms drawn anew "
          f"({result['speedup']:.1f}x; the first frame {result['first_frame_ms']:.0f} ms); "
          f"{result['frames_differing']} differing [{verdict}: target "
          f"{SPEEDUP_TARGET:.0f}x, none differing]", file=sys.stderr)
    emit_json(result, args.json)
    return exit_status(result["passed"])


if __name__ == "__main__":
    sys.exit(arguments.run_command(main, "render_frames.py"))
