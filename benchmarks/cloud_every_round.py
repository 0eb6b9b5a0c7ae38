"""How cheaply can a fixed schedule reach the target? Cloud rounds every round over D2D, per type.

The energy target of the learning issue asks for a policy that reaches the target accuracy
with 30% less energy than the best baseline (``hffm-d2d-e2``). This plays the fixed schedules
that a learner could find in the coarse action space and that come closest: cloud aggregation
every round over the D2D relay (``hffm-d2d-e1``, outside the paper's menu), and the same with
the MoE module (most of the bits) at the cloud only every ``K`` rounds (``K`` = 2, 4, 8, or
never), beside ``hffm-d2d-e2``. Run it on training seeds (below 1000) to choose, on held-out
seeds to judge.

    python benchmarks/cloud_every_round.py --scenario small --fidelity surrogate \\
        --seeds 0 1 2 --target-accuracy 0.342 [--schedules NAME ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import sys

from _output import (
    add_json_option,
    add_overrides_option,
    emit_json,
    help_texts,
    prepare_outputs,
)

from hffm_env import arguments


def schedules() -> list:
    """``hffm-d2d-e2`` and :func:`hffm_env.baselines.calibrate.cloud_every_round_schedules`."""
    from hffm_env.baselines.calibrate import cloud_every_round_schedules

    return ["hffm-d2d-e2", *cloud_every_round_schedules()]


def main(argv: list[str] | None = None) -> int:
    """Run the probe and print the bench table."""
    parser = argparse.ArgumentParser(**help_texts(__doc__))
    parser.add_argument("--scenario", default="small", help="preset scenario (default: small)")
    add_overrides_option(parser)
    parser.add_argument("--fidelity", default="surrogate", choices=("train", "surrogate"),
                        help="accuracy from real training or the surrogate (default: surrogate)")
    parser.add_argument("--seeds", type=arguments.seed, nargs="+", default=[0, 1, 2],
                        help="episode seeds (default: 0 1 2, training seeds, as for choosing "
                        "calibration schedules; 1000 and up are held out)")
    parser.add_argument("--target-accuracy", type=arguments.probability, default=None,
                        help="accuracy target (default: 0.9 x the best final accuracy)")
    parser.add_argument("--schedules", nargs="+", metavar="NAME",
                        help="play only these (default: all, see the table's names)")
    add_json_option(parser, "the bench result")
    args = parser.parse_args(argv)
    prepare_outputs(parser, args)

    import gymnasium as gym

    import hffm_env  # noqa: F401  (registers the env ids)
    from hffm_env.baselines.runner import format_table, run_benchmark

    played = schedules()
    names = [p if isinstance(p, str) else p.name for p in played]
    unknown = sorted(set(args.schedules or ()) - set(names))
    if unknown:
        parser.error(f"--schedules: unknown {unknown}; known are {names}")
    if args.schedules:
        played = [p for p, n in zip(played, names, strict=True) if n in args.schedules]
    result = run_benchmark(
        lambda: gym.make("hffm/HFFM-v0", scenario=args.scenario, fidelity=args.fidelity,
                         overrides=args.overrides),
        played, seeds=args.seeds, target_accuracy=args.target_accuracy)  # the env's labels
    print(format_table(result))
    emit_json(result.to_dict(), args.json)
    return 130 if result.interrupted else 0


if __name__ == "__main__":
    sys.exit(arguments.run_command(main, "cloud_every_round.py"))
