"""Relabel recorded D2D gossip rounds in which no pair formed (traces recorded before 2026-12-07).

Until 2026-12-07 a module type whose pair flag was on was recorded as D2D gossip
(``d2d_pairs``) even when no device chose a partner, so nothing moved; the ``mixed-*``
schedules of the calibration design choose none. This script replays each episode of a trace
file that holds a ``d2d_pairs`` round with today's decoding in ``cost`` fidelity (the schedule
only, no training: seconds), relabels ``none`` every ``d2d_pairs`` tier the replay decodes as
``none``, and writes the file back in place (each relabelled episode lists its
``(round, module type)`` pairs under ``relabelled_pairs``). The replay must reproduce every
other tier of the episode, or nothing is written (see
:func:`hffm_env.baselines.calibrate.relabel_unformed_pairs`). A file with nothing to relabel is
left untouched, so a rerun changes nothing.

    python benchmarks/relabel_traces.py --scenario small \\
        docs/results/surrogate/calibration_small_seeds01.json.gz ...
        --held-out docs/results/surrogate/heldout_small.json.gz

``--held-out`` files were played with the held-out design seed
(``benchmarks/surrogate_error.py``'s mixed schedules), the others with ``--design-seed``
(calibration's, 0 by default). Every file is read and replayed before any is written: one
that cannot be relabelled (another config's, or an agent's or a plan's episode holding a
``d2d_pairs`` tier: it cannot be replayed here) changes none. A rewritten file keeps the
provenance it had (``null`` if none) before the script's.
"""

from __future__ import annotations

import argparse
import sys

from _output import add_overrides_option, help_texts

from hffm_env import arguments


def main(argv: list[str] | None = None) -> int:
    """Relabel the files named; print what changed per file and policy."""
    parser = argparse.ArgumentParser(**help_texts(__doc__))
    parser.add_argument("traces", nargs="*", help="trace files of calibration's design")
    parser.add_argument("--held-out", nargs="+", default=[], metavar="FILE",
                        help="trace files of benchmarks/surrogate_error.py's held-out design")
    parser.add_argument("--design-seed", type=arguments.non_negative_int, default=0,
                        help="the design seed the positional files were recorded with "
                        "(hffm calibrate --design-seed; default 0)")
    parser.add_argument("--scenario", default="small", help="the scenario they were recorded on")
    add_overrides_option(parser)
    args = parser.parse_args(argv)
    if not args.traces and not args.held_out:
        parser.error("name at least one trace file")

    import gymnasium as gym

    from hffm_env import ENV_ID
    from hffm_env.baselines.calibrate import (
        HELD_OUT_DESIGN_SEED,
        read_traces,
        relabel_unformed_pairs,
        traces_provenance,
        write_traces,
    )
    from hffm_env.config import ConfigError, load_scenario
    from hffm_env.fl.surrogate import traces_key

    try:
        cfg = load_scenario(args.scenario, overrides=args.overrides)
    except ConfigError as error:
        parser.error(str(error))
    key = traces_key(cfg)
    files = [(p, args.design_seed) for p in args.traces] + [
        (p, HELD_OUT_DESIGN_SEED) for p in args.held_out]
    # every file read and replayed before any is written: a bad one changes none
    relabelled = []
    env = gym.make(ENV_ID, scenario=cfg, fidelity="cost")
    try:
        for path, design_seed in files:
            try:
                episodes = read_traces(path, key, cfg.data.tasks)
            except ValueError as error:
                parser.error(str(error))  # (it names the file)
            try:
                counts = relabel_unformed_pairs(episodes, env, design_seed=design_seed)
            except ValueError as error:
                parser.error(f"{path}: {error}")
            relabelled.append((path, episodes, counts))
    finally:
        env.close()
    for path, episodes, counts in relabelled:
        if counts:  # (a file with nothing to relabel is left as it is)
            try:
                write_traces(path, episodes, key, earlier=traces_provenance(path))
            except OSError as error:
                parser.error(f"{path}: cannot be written ({error.strerror})")
        print(f"{path}: {sum(counts.values())} tiers relabelled d2d_pairs -> none"
              + "".join(f"; {p} {n}" for p, n in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(arguments.run_command(main, "relabel_traces.py"))
