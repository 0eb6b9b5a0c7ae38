"""How wrong is the surrogate fidelity? Its predictions against real training it never saw.

Real training (``train`` fidelity) plays held-out episodes: the eight fixed schedules (the
paper's seven and ``never``) and ``--mixed`` per-module-type schedules drawn with another
design seed than calibration's, on held-out seeds (1000+; calibration uses 0..999). The
surrogate then predicts every round of those episodes from their recorded tiers. Reported:

- mean absolute error of the per-round and of the final global accuracy (mean over tasks),
  and the per-round bias (mean of surrogate minus real; positive: the surrogate is optimistic),
  overall and per policy;
- the same errors split by schedule: episodes whose round-by-round tiers appear among the
  calibration episodes (a schedule the fit saw, on new seeds) and those whose tiers do not (a
  schedule new to it), when the fit names its trace files and they are at hand;
- Spearman rank correlation of the eight fixed schedules' final accuracy (mean over seeds)
  between surrogate and real training (the schedules that play identically in real training,
  a route apart, tie; the number of distinct finals is reported);
- the spread of real minus predicted per round (standard deviation), beside the spread of the
  out-of-fold residuals that ``env.surrogate_noise="residuals"`` resamples: the noise is the
  right size when the two agree;
- with ``--target-accuracy``: the round in which each policy first reaches it (energy to
  target is decided by that round), real against the surrogate's mean curve and against the
  mean over every resampled noise episode, per policy and as a mean absolute error;
- step time of ``surrogate`` and ``train`` fidelity on the same random actions (after one
  untimed warm-up step each; resets are not timed), and their ratio.

Targets (the learning issue): final error <= 0.02, per-round error <= 0.03, Spearman >= 0.9,
surrogate steps >= 100x faster than train.

    python benchmarks/surrogate_error.py --scenario small --seeds 1000 1001 1002 \\
        [--surrogate FILE] [--save-traces FILE | --traces FILE] [--json [FILE]]

``--traces`` scores recorded episodes instead (no training); ``--seeds`` then keeps only those
seeds' episodes, so that a fit made without them (``hffm calibrate --from-traces ...
--exclude-seeds``) is judged on them.
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import time
from pathlib import Path

import numpy as np
from _output import (
    add_json_option,
    add_overrides_option,
    emit_json,
    exit_status,
    help_texts,
    prepare_outputs,
    refuse_one_file_twice,
)

from hffm_env import arguments
from hffm_env.fl.evaluation import mean_over_tasks
from hffm_env.seeding import DEFAULT_EVAL_SEEDS, FIRST_HELD_OUT_SEED

TARGETS = {"final_mae": 0.02, "round_mae": 0.03, "spearman": 0.9, "speedup": 100.0}
MIN_RANKED = 3
"""Distinct real final accuracies a rank correlation needs to be judged (of two, it is +-1
whatever the surrogate predicts)."""


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=float)
    for v in np.unique(values):  # ties share their mean rank
        ranks[values == v] = ranks[values == v].mean()
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    ra, rb = _ranks(np.asarray(a, float)), _ranks(np.asarray(b, float))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _mean_accuracy(rounds, tasks) -> np.ndarray:
    """The env's mean over tasks of each round's global accuracy (a task with no number, NaN,
    left out, as :func:`~hffm_env.fl.evaluation.mean_over_tasks` leaves it out)."""
    return np.array([mean_over_tasks({t: r.targets[f"accuracy/{t}"] for t in tasks})
                     for r in rounds])


def _noise_std(surrogate, tasks) -> float:
    """Standard deviation of the mean-over-tasks global accuracy in the out-of-fold residuals
    the surrogate kept (rounds 1..T; NaN: it kept none)."""
    if surrogate.residuals is None:
        return float("nan")
    columns = [surrogate.targets.index(f"accuracy/{t}") for t in tasks]
    return float(np.nanstd(surrogate.residuals[:, 1:, columns].mean(axis=-1)))


def _tier_sequence(rounds) -> tuple:
    """An episode's schedule as played: its tiers round by round (the reset row excluded)."""
    return tuple(tuple(sorted((r.tiers or {}).items())) for r in rounds[1:])


def _schedules_fitted(surrogate, key: str) -> set | None:
    """The tier sequences of the episodes the surrogate was fitted on, from the trace files
    its meta names less the seeds it left out (``hffm calibrate --exclude-seeds``); ``None``
    when it names none or one is not at hand."""
    from hffm_env.baselines.calibrate import read_traces

    paths = surrogate.meta.get("traces") or []
    excluded = set(surrogate.meta.get("excluded_seeds") or ())
    # a fit records its trace files as given, relative to where it was made: the repository
    # root for the committed ones, wherever this script runs from
    root = Path(__file__).resolve().parents[1]
    found = [p if Path(p).is_file() or Path(p).is_absolute() else root / p for p in paths]
    try:
        return {_tier_sequence(e["rounds"]) for p in found for e in read_traces(p, key)
                if int(e["seed"]) not in excluded} or None
    except ValueError:  # a file that is not here (or of another config): no split
        return None


def _errors(rows: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """Per-round and final error and bias of ``(real, predicted)`` curves (rounds 1..T)."""
    if not rows:
        return {"episodes": 0}
    diff = np.concatenate([p - r for r, p in rows])
    return {"episodes": len(rows), "round_mae": float(np.mean(np.abs(diff))),
            "final_mae": float(np.mean([abs(p[-1] - r[-1]) for r, p in rows])),
            "round_bias": float(np.mean(diff))}


def _first_round(curves: np.ndarray, target: float) -> np.ndarray:
    """Per row of ``curves`` (rounds 1..T), the first round (1-based) at or above ``target``;
    ``T + 1`` when never."""
    reached = curves >= target
    return np.where(reached.any(axis=-1), reached.argmax(axis=-1) + 1, curves.shape[-1] + 1)


def _crossing_rounds(episodes, surrogate, tasks, target: float) -> dict:
    """Real against predicted first round at ``target``: the surrogate's mean curve, and the
    mean over every noise episode :meth:`residual_noise` holds (NaN without residuals)."""
    from hffm_env.fl.surrogate import episode_features

    columns = [surrogate.targets.index(f"accuracy/{t}") for t in tasks]
    noise = surrogate.residual_noise() if surrogate.residuals is not None else None
    rows: dict[str, list[tuple[float, float, float]]] = {}
    for e in episodes:
        real = _mean_accuracy(e["rounds"], tasks)[1:]
        pred = surrogate.predict_features(episode_features(e["rounds"], surrogate.horizon))
        mean = float(_first_round(pred[1:, columns].mean(axis=1), target))
        noisy = float("nan")
        if noise is not None:
            rounds = min(len(pred), noise.shape[1])
            draws = np.clip(pred[None, :rounds] + noise[:, :rounds], surrogate.y_low,
                            surrogate.y_high)
            noisy = float(_first_round(draws[:, 1:][..., columns].mean(axis=-1), target).mean())
        rows.setdefault(e["policy"], []).append((float(_first_round(real, target)), mean, noisy))
    every = np.array([r for v in rows.values() for r in v])
    return {
        # rounds include the reset, so the longest episode's length is T + 1: "never"
        "target": target, "never": int(max(len(e["rounds"]) for e in episodes)),
        "policies": {p: dict(zip(("real", "mean", "noisy"), np.mean(v, axis=0).tolist(),
                                 strict=True)) for p, v in rows.items()},
        "mae_mean": float(np.mean(np.abs(every[:, 1] - every[:, 0]))),
        "mae_noisy": float(np.mean(np.abs(every[:, 2] - every[:, 0]))),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(**help_texts(__doc__))
    parser.add_argument("--scenario", default="small", help="preset scenario (default: small)")
    add_overrides_option(parser)
    parser.add_argument("--seeds", type=arguments.seed, nargs="+", default=None,
                        help="held-out seeds to play (default 1000 1001 1002); with --traces, "
                        "the recorded seeds to score (default: all)")
    parser.add_argument("--mixed", type=arguments.non_negative_int, default=4,
                        help="held-out per-type schedules per seed (default 4)")
    parser.add_argument("--surrogate", metavar="FILE",
                        help="fitted surrogate (default: the one fidelity='surrogate' finds)")
    parser.add_argument("--policies", nargs="*", default=None, metavar="NAME",
                        help="named policies played (default: the eight fixed schedules and "
                        "the adaptive baselines)")
    parser.add_argument("--traces", metavar="FILE", nargs="+",
                        help="held-out real episodes recorded by an earlier --save-traces run "
                        "(no training)")
    parser.add_argument("--save-traces", metavar="FILE", type=arguments.output_file(),
                        help="record the real episodes here, each as it ends (a Ctrl-C keeps "
                        "those played)")
    parser.add_argument("--target-accuracy", type=arguments.probability, default=None,
                        help="also compare the round in which each episode first reaches this "
                        "global accuracy (real vs surrogate, mean and with resampled noise)")
    parser.add_argument("--speed-steps", type=arguments.non_negative_int, default=200,
                        help="surrogate steps timed (default 200; 0: skip the speed "
                        "measurement)")
    add_json_option(parser)
    args = parser.parse_args(argv)
    prepare_outputs(parser, args, inputs=[("--traces", args.traces),
                                          ("--surrogate", args.surrogate)])
    if args.traces and (args.save_traces or args.policies is not None):
        parser.error("--traces scores recorded episodes; --save-traces and --policies play "
                     "new ones: give one or the other")
    refuse_one_file_twice(parser, [("--save-traces", args.save_traces), ("--json", args.json)])
    for flag, given in (("--seeds", args.seeds or []), ("--policies", args.policies or []),
                        ("--traces", [str(Path(p).resolve()) for p in args.traces or []])):
        twice = arguments.first_repeated(given)
        if twice is not None:  # (played, or counted, twice: as hffm calibrate refuses)
            parser.error(f"{flag}: {twice} is given twice (its episodes would count twice)")
    if args.save_traces and Path(args.save_traces).exists() and not args.force:
        parser.error(f"--save-traces {args.save_traces!r}: exists (real episodes, minutes "
                     "each); pass --force to overwrite it")
    if not args.traces and args.policies == [] and args.mixed == 0:
        parser.error("--policies (none) and --mixed 0: nothing to play; name policies or "
                     "give --mixed N")
    if not args.traces:
        args.seeds = args.seeds or list(DEFAULT_EVAL_SEEDS)
        if any(s < FIRST_HELD_OUT_SEED for s in args.seeds):
            parser.error(f"--seeds: held-out seeds are {FIRST_HELD_OUT_SEED} and above")

    import gymnasium as gym

    import hffm_env  # noqa: F401  (registers the env ids)
    from hffm_env.baselines.calibrate import (
        DESIGN_POLICIES,
        FIXED_SCHEDULES,
        HELD_OUT_DESIGN_SEED,
        design,
        read_traces,
        trace_episode,
        write_traces,
    )
    from hffm_env.config import load_scenario
    from hffm_env.fl.surrogate import episode_features, find_surrogate, traces_key

    cfg = load_scenario(args.scenario, overrides=args.overrides)
    tasks = tuple(cfg.data.tasks)
    # before any training, so that a missing fit fails at once; when the real episodes are
    # recorded for later (--save-traces, e.g. beside a calibration that will write the fit),
    # after they are saved
    surrogate = None if args.save_traces else find_surrogate(cfg, args.surrogate)
    if args.traces:
        try:
            recorded = [e for path in args.traces for e in read_traces(path, traces_key(cfg),
                                                                   cfg.data.tasks)]
        except ValueError as error:
            parser.error(f"--traces {error}")
        episodes = [e for e in recorded if args.seeds is None or int(e["seed"]) in args.seeds]
        if not episodes:
            parser.error(f"--seeds {args.seeds}: no such episode in {args.traces}")
    else:
        env = gym.make("hffm/HFFM-v0", scenario=cfg, fidelity="train")
        # other per-type schedules than calibration's (its design seed, 0 by default)
        names = DESIGN_POLICIES if args.policies is None else args.policies
        factories = design(cfg.env.period_menu, args.mixed, seed=HELD_OUT_DESIGN_SEED,
                           random_episodes=0, policies=names)
        episodes = []
        for seed in args.seeds:
            for factory in factories:
                policy = factory()
                rounds = trace_episode(env, policy, seed)
                episodes.append({"policy": policy.name, "seed": seed, "rounds": rounds})
                print(f"real: {policy.name} seed {seed}: final accuracy "
                      f"{_mean_accuracy(rounds, tasks)[-1]:.3f}", flush=True)
                if args.save_traces:  # as they end: an interrupted run keeps its episodes
                    write_traces(args.save_traces, episodes, traces_key(cfg))
        env.close()
    if surrogate is None:
        surrogate = find_surrogate(cfg, args.surrogate)

    fitted_schedules = _schedules_fitted(surrogate, traces_key(cfg))
    by_novelty: dict[str, list] = {"seen_schedules": [], "new_schedules": []}
    round_err, final_err, finals, bias, residual = [], [], {}, {}, []
    for e in episodes:
        real = _mean_accuracy(e["rounds"], tasks)[1:]  # rounds 1..T (not the reset)
        pred = surrogate.predict_features(episode_features(e["rounds"], surrogate.horizon))
        names = surrogate.targets
        pred_mean = pred[1:, [names.index(f"accuracy/{t}") for t in tasks]].mean(axis=1)
        round_err += list(np.abs(pred_mean - real))
        residual += list(real - pred_mean)
        bias.setdefault(e["policy"], []).extend(pred_mean - real)
        final_err.append(abs(pred_mean[-1] - real[-1]))
        finals.setdefault(e["policy"], []).append((real[-1], pred_mean[-1]))
        if fitted_schedules is not None:
            seen = _tier_sequence(e["rounds"]) in fitted_schedules
            by_novelty["seen_schedules" if seen else "new_schedules"].append((real, pred_mean))
    seeds = sorted({int(e["seed"]) for e in episodes})
    fixed = [p for p in FIXED_SCHEDULES if p in finals]
    real_final = np.array([np.mean([r for r, _ in finals[p]]) for p in fixed])
    pred_final = np.array([np.mean([q for _, q in finals[p]]) for p in fixed])
    # a rank correlation needs at least two fixed schedules (traces of agents alone have none)
    rho = spearman(real_final, pred_final) if len(fixed) >= 2 else float("nan")

    if args.target_accuracy is not None:
        out_crossing = _crossing_rounds(episodes, surrogate, tasks, args.target_accuracy)

    # speed: the same random actions in both fidelities (--speed-steps 0: not measured)
    speed = {"surrogate": float("nan"), "train": float("nan")}
    for fidelity, steps in (("surrogate", args.speed_steps), ("train", 8)):
        if args.speed_steps <= 0:
            break
        env = gym.make("hffm/HFFM-v0", scenario=cfg, fidelity=fidelity,
                       surrogate=args.surrogate if fidelity == "surrogate" else None)
        env.reset(seed=1000)
        env.action_space.seed(0)
        # one untimed warm-up step: first-call costs are not a step's
        if any(env.step(env.action_space.sample())[2:4]):
            env.reset(seed=1000)
        # the env's construction leaves ~400k new objects for the first full garbage
        # collection (~0.2 s, once per process): collect it now, not in the steps timed
        gc.collect()
        elapsed = 0.0
        for _ in range(steps):
            action = env.action_space.sample()
            start = time.perf_counter()
            _, _, term, trunc, _ = env.step(action)
            elapsed += time.perf_counter() - start
            if term or trunc:  # a reset is not a step: left out of the time
                env.reset(seed=1000)
        speed[fidelity] = elapsed / steps
        env.close()

    out = {
        "scenario": cfg.name, "seeds": seeds, "episodes": len(episodes),
        "surrogate": surrogate.record,  # which fit: a local calibration is found first
        "calibration": {k: surrogate.meta.get(k) for k in ("seeds", "episodes", "rounds",
                                                            "training_s")},
        "round_mae": float(np.mean(round_err)), "final_mae": float(np.mean(final_err)),
        "round_bias": float(np.mean(np.concatenate(list(bias.values())))),
        "policy_round_bias": {p: float(np.mean(v)) for p, v in bias.items()},
        "spearman": rho,
        "spearman_distinct_finals": int(len(np.unique(np.round(real_final, 12)))),
        **({k: _errors(v) for k, v in by_novelty.items()} if fitted_schedules else {}),
        "residual_std": float(np.std(residual)),
        "noise_std": _noise_std(surrogate, tasks),
        "fixed_final": {p: {"real": float(r), "surrogate": float(q)}
                        for p, r, q in zip(fixed, real_final, pred_final, strict=True)},
        "surrogate_step_ms": 1e3 * speed["surrogate"], "train_step_ms": 1e3 * speed["train"],
        "speedup": speed["train"] / speed["surrogate"],
    }
    checks = {
        "final_mae": out["final_mae"] <= TARGETS["final_mae"],
        "round_mae": out["round_mae"] <= TARGETS["round_mae"],
    }
    if out["spearman_distinct_finals"] >= MIN_RANKED:
        checks["spearman"] = rho >= TARGETS["spearman"]
    if math.isfinite(out["speedup"]):
        checks["speedup"] = out["speedup"] >= TARGETS["speedup"]
    out["checks"] = checks
    if args.target_accuracy is not None:
        out["crossing"] = out_crossing
    in_fit = sorted(set(seeds) & set(surrogate.meta.get("seeds") or []))
    if in_fit:  # the fit saw these seeds' episodes: its errors there are in-sample
        out["in_sample_seeds"] = in_fit
    # a fit whose design drew its mixed schedules as these do played them (on other seeds)
    same_design = surrogate.meta.get("design_seed") == HELD_OUT_DESIGN_SEED
    if same_design:
        out["in_sample_design"] = True
    held_out = "held-out " if min(seeds) >= FIRST_HELD_OUT_SEED and not in_fit else ""
    print(f"\n{cfg.name}: {len(episodes)} {held_out}episodes (seeds {seeds})")
    if in_fit:
        print(f"(seeds {in_fit} are among the fit's: these errors are in-sample)")
    if same_design:
        print(f"(the fit's design drew its mixed schedules with seed {HELD_OUT_DESIGN_SEED}, as "
              "the held-out episodes do: those schedules are not new to it)")
    if fitted_schedules is None:
        print("(the fit names no trace files at hand: no split into seen and new schedules)")
    width = max(24, *(len(p) + 2 for p in finals))
    print(f"{'policy':<{width}}{'real final':>12}{'surrogate':>12}{'round bias':>12}")
    for p, pairs in finals.items():  # every policy, mean over its episodes
        print(f"{p:<{width}}{np.mean([r for r, _ in pairs]):>12.3f}"
              f"{np.mean([q for _, q in pairs]):>12.3f}{out['policy_round_bias'][p]:>+12.3f}")
    if len(fixed) < 2:
        print("(fewer than two of the eight fixed schedules: no rank correlation)")
    for key, ok in checks.items():
        sign = ">=" if key in ("spearman", "speedup") else "<="
        print(f"- {'PASS' if ok else 'MISS'}: {key} {out[key]:.3f} (target {sign} "
              f"{TARGETS[key]})")
    print(f"- per-round bias (surrogate - real) {out['round_bias']:+.4f}")
    if len(fixed) >= 2:
        judged = "" if "spearman" in checks else (
            f" (not judged: a rank correlation needs {MIN_RANKED} or more)")
        print(f"- the rank correlation is over {out['spearman_distinct_finals']} distinct real "
              f"finals of {len(fixed)} fixed schedules{judged}")
    for group in ("seen_schedules", "new_schedules"):
        g = out.get(group)
        if g and g["episodes"]:
            what = "schedules the fit saw" if group == "seen_schedules" else "schedules new to it"
            print(f"- {g['episodes']} episodes of {what}: final error {g['final_mae']:.4f}, "
                  f"per-round error {g['round_mae']:.4f}, bias {g['round_bias']:+.4f}")
    print(f"- per-round spread (real - surrogate, std) {out['residual_std']:.4f}; "
          f"surrogate_noise='residuals' resamples {out['noise_std']:.4f}")
    if args.target_accuracy is not None:
        c = out["crossing"]
        print(f"\nfirst round at accuracy >= {c['target']} (mean over episodes; "
              f"{c['never']} = never):")
        print(f"{'policy':<{width}}{'real':>8}{'mean':>8}{'noisy':>8}")
        for p, row in c["policies"].items():
            print(f"{p:<{width}}{row['real']:>8.2f}{row['mean']:>8.2f}{row['noisy']:>8.2f}")
        print(f"- crossing round, mean absolute error: surrogate mean {c['mae_mean']:.2f}, "
              f"with resampled noise {c['mae_noisy']:.2f}")
    if math.isfinite(out["speedup"]):
        print(f"step: surrogate {out['surrogate_step_ms']:.2f} ms, train "
              f"{out['train_step_ms']:.0f} ms")
    emit_json(out, args.json)
    return exit_status(*checks.values())


if __name__ == "__main__":
    sys.exit(arguments.run_command(main, "surrogate_error.py"))
