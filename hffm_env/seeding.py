"""One seed, named random streams: every consumer of randomness draws from its own child of one
:class:`numpy.random.SeedSequence`.

Why: with one shared generator, a change in how many numbers one consumer draws (outage
retransmissions turned on, a task arrival that picks a device) shifts every draw after it, so
the fading of round 5 would depend on whether a task arrived in round 3. With one child stream
per consumer, each consumer's draws depend only on the seed and on its own history.

Children are spawned by position (``SeedSequence.spawn``), so the order of :data:`STREAMS` is
part of the seeding contract: a new stream is appended at the end, which leaves the existing
streams' numbers unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hffm_env.values import is_integer

__all__ = ["STREAMS", "FIRST_HELD_OUT_SEED", "SEED_MAX", "SEED_RANGE", "check_seed",
           "check_training_seeds", "DEFAULT_EVAL_SEEDS", "SEEDING_SCHEME", "RandomStreams"]

STREAMS = ("placement", "fading", "dynamics", "requests", "data", "training", "surrogate",
           "outage", "mobility")
"""The child streams, in spawn order (append only: the position is the stream's identity)."""

SEED_MAX: int = 2**63 - 1
"""The largest seed: of a config (``ScenarioConfig.seed``), a bench or a training run (a reset
takes any seed from 0 up, as Gymnasium does: :func:`check_seed`)."""
SEED_RANGE = "0..2**63-1"
"""The seeds' range as messages say it."""


def check_seed(value: object, what: str = "seed", *, bounded: bool = True) -> int:
    """``value`` as a seed (an integer in ``0..SEED_MAX``, numpy's included, not a boolean),
    else ``ValueError`` naming ``what`` and the value: the one rule every seed is read by.

    ``bounded=False`` drops the upper bound, for a reset's seed: Gymnasium takes any integer
    from 0 up and records a 128-bit one for an unseeded episode (``np_random_seed``), which
    must replay it; the env's streams come from a 63-bit draw of the generator it seeds."""
    if not is_integer(value) or int(value) < 0 or (bounded and int(value) > SEED_MAX):
        allowed = f"an integer in {SEED_RANGE}" if bounded else "an integer >= 0"
        raise ValueError(f"{what} = {value!r}: must be {allowed}")
    return int(value)


FIRST_HELD_OUT_SEED = 1000
"""Seeds from here up are held out for evaluation: training, fine-tuning, tuning a baseline
and calibrating the surrogate use seeds below it."""

def check_training_seeds(seeds: object, what: str) -> None:
    """Raise ``ValueError`` naming ``what`` (a flag or argument) if any of ``seeds`` is not a
    training seed: 0 up to :data:`FIRST_HELD_OUT_SEED`, excluded."""
    bad = [s for s in seeds if not 0 <= s < FIRST_HELD_OUT_SEED]  # type: ignore[attr-defined]
    if bad:
        raise ValueError(f"{what} {bad}: must be training seeds 0..{FIRST_HELD_OUT_SEED - 1} "
                         f"({FIRST_HELD_OUT_SEED} and up are held out for evaluation)")


DEFAULT_EVAL_SEEDS: tuple[int, ...] = (FIRST_HELD_OUT_SEED, FIRST_HELD_OUT_SEED + 1,
                                       FIRST_HELD_OUT_SEED + 2)
"""The held-out seeds that ``hffm bench``, ``train_agent.py`` and the benchmarks evaluate on
when not told others."""

SEEDING_SCHEME = "spawned-streams-1"
"""Names how a seed becomes numbers (:data:`STREAMS` spawned from one ``SeedSequence``). Fits
of measured training (the surrogate) carry it in their cache key: under another scheme the
same config seed draws another data split, so an old fit is never reused silently."""


@dataclass(frozen=True)
class RandomStreams:
    """Independent generators, one per consumer, all spawned from one ``SeedSequence``.

    Attributes:
        placement: device and server positions, CPU frequencies, mobility speeds and first
            waypoints (built once per network).
        fading: small-scale fading of every link (every round).
        dynamics: device dropout (every round).
        requests: task arrivals and the device that gains the task (every round).
        data: the federated data split (profiles, label skew, scenes).
        training_seed: the seed of the torch generator (mini-batch order of local training).
        surrogate: the surrogate fidelity's resampled noise (``env.surrogate_noise``).
        outage: the outage retransmissions of every link (every round, when
            ``channel.outage_snr_db`` is set): their own stream, so that turning outages on
            leaves every round's fading unchanged.
        mobility: the waypoints devices walk to (every round, with ``dynamics.mobility``):
            their own stream, so that mobility leaves every round's dropout unchanged.
    """

    placement: np.random.Generator
    fading: np.random.Generator
    dynamics: np.random.Generator
    requests: np.random.Generator
    data: np.random.Generator
    training_seed: int
    surrogate: np.random.Generator
    outage: np.random.Generator
    mobility: np.random.Generator

    @classmethod
    def from_seed(cls, seed: int) -> RandomStreams:
        """The streams of ``seed`` (:func:`check_seed`): the same seed gives the same streams."""
        root = np.random.SeedSequence(check_seed(seed))
        children = dict(zip(STREAMS, root.spawn(len(STREAMS))))
        generators = {name: np.random.default_rng(children[name])
                      for name in STREAMS if name != "training"}
        # torch seeds from a 63-bit integer; the child's first state word gives one
        training_seed = int(children["training"].generate_state(1, np.uint64)[0] >> np.uint64(1))
        return cls(**generators, training_seed=training_seed)
