"""Rewards by name: each turns one round's measured accuracy and cost into reward terms.

Every reward returns the same three terms, ``accuracy``, ``latency`` and ``energy`` (the env
puts them in ``info["reward_terms"]``, sums them for the scalar reward and stacks them for
``reward_mode="vector"``). Costs are normalised over the scenario's own range: 0 is what a
round costs when nothing is aggregated (``never``: computation only) and 1 what it costs under
``star`` (every device to the cloud, every round), so the weights mean the same thing in every
scenario. The unit is at least :data:`MIN_SPAN_SHARE` of a star round's cost: where star costs
hardly more than never (a backhaul of gigabits per second, or hundreds of local steps a round),
a plain never..star unit blew a round's small difference, such as a dropped-out device's
saving, up to rewards of millions.

``accuracy-level`` (default)
    ``accuracy_weight * acc_t - latency_weight * lat_t - energy_weight * en_t``: the accuracy
    *level* is paid every round, like the costs, so a schedule earns by being accurate early
    and for long, and pays for every round it spends. Its optimum is neither extreme when one
    star round of cost is worth more than the accuracy star adds over cheaper schedules.
``accuracy-gain``
    ``accuracy_weight * (acc_t - acc_{t-1})`` minus the same costs: the accuracy term
    telescopes to ``acc_T - acc_0`` over an episode while costs accrue every round, so it
    favours cheap schedules (the default before the second revision of v0).
``cost-to-target``
    Costs only, until the accuracy first reaches ``env.target_accuracy``; nothing after; and
    ``-target_miss_penalty`` in the accuracy term of the last round if it never did (and the
    last round's accuracy was measured: not knowing is no miss). Its costs
    are on the never..star scale, where a round of local training alone costs 0: it does not
    charge the rounds that pass before the target, so it does not reward reaching it early.
``spend-to-target``
    The benchmarks' "energy to target" as a reward. Until the accuracy first reaches
    ``env.target_accuracy`` (that round included) each round's latency and energy are charged
    as a share of a ``star`` round, computation included, so every round spent before the
    target costs; nothing after it. In the last round the accuracy term is
    ``accuracy_weight * acc_T``, the final accuracy, less ``target_miss_penalty`` if the
    target was never reached: reach the target early and cheaply, and still end accurate.

A round whose accuracy was not measured (cost fidelity) has an accuracy term of 0, the last
one included (no miss penalty: whether the target was reached is not known); no reward ever
uses a number that was not measured.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CostRange",
    "RewardInputs",
    "EpisodeProgress",
    "RewardWeights",
    "REWARDS",
    "MAX_COST_SCALE",
    "MIN_SPAN_SHARE",
    "accuracy_score",
    "reaches_target",
    "reward_bounds",
    "reward_names",
    "reward_label",
    "get_reward",
    "TERM_NAMES",
    "check_terms",
    "Reward",
]


MIN_SPAN_SHARE = 0.01
"""The never..star unit is at least this share of a star round's latency or energy; with it a
round on that scale costs at least ``-1 / MIN_SPAN_SHARE`` = -100 (a round that costs nothing,
when never costs as much as star), as it costs at most :data:`MAX_COST_SCALE`."""

MAX_COST_SCALE = 100.0
"""A round's cost is charged as at most 100 units of its scale (a deep fade on one link can make
a round arbitrarily slow): 100 never..star units (:meth:`CostRange.latency`, ``energy``), or
for ``spend-to-target`` 100 star rounds (:meth:`CostRange.latency_share`, ``energy_share``).
It keeps every reward finite and bounded (``reward_space``)."""


@dataclass(frozen=True)
class CostRange:
    """Per-round latency and energy of ``never`` (the floor) and ``star`` (the ceiling)."""

    never_latency_s: float
    star_latency_s: float
    never_energy_j: float
    star_energy_j: float

    def latency(self, latency_s: float) -> float:
        """``latency_s`` on the never..star scale, in [-100, :data:`MAX_COST_SCALE`]."""
        span = max(self.star_latency_s - self.never_latency_s,
                   MIN_SPAN_SHARE * self.reference_latency_s)
        return min((latency_s - self.never_latency_s) / span, MAX_COST_SCALE)

    def energy(self, energy_j: float) -> float:
        """``energy_j`` on the never..star scale, in [-100, :data:`MAX_COST_SCALE`]."""
        span = max(self.star_energy_j - self.never_energy_j,
                   MIN_SPAN_SHARE * self.reference_energy_j)
        return min((energy_j - self.never_energy_j) / span, MAX_COST_SCALE)

    @property
    def reference_latency_s(self) -> float:
        """A star round's latency, kept above 0: the unit of :meth:`latency_share` and of the
        observation's latency budget."""
        return max(self.star_latency_s, 1e-9)

    @property
    def reference_energy_j(self) -> float:
        """A star round's energy, kept above 0: the unit of :meth:`energy_share` and of the
        observation's energy budget."""
        return max(self.star_energy_j, 1e-12)

    def latency_share(self, latency_s: float) -> float:
        """``latency_s`` as a share of a star round (computation included), at most
        :data:`MAX_COST_SCALE`."""
        return min(latency_s / self.reference_latency_s, MAX_COST_SCALE)

    def energy_share(self, energy_j: float) -> float:
        """``energy_j`` as a share of a star round (computation included), at most
        :data:`MAX_COST_SCALE`."""
        return min(energy_j / self.reference_energy_j, MAX_COST_SCALE)

    def lowest(self) -> tuple[float, float]:
        """The lowest (latency, energy) on the scale: a round that costs nothing."""
        return self.latency(0.0), self.energy(0.0)


@dataclass(frozen=True)
class RewardInputs:
    """What a reward may read about the round that just ended."""

    score: float  # accuracy this round (NaN: not measured)
    previous_score: float  # accuracy at the end of the previous round (NaN: not measured)
    reached_before: bool  # the target was reached in an earlier round of this episode
    latency_s: float
    energy_j: float
    last_round: bool  # the episode ends with this round


@dataclass
class EpisodeProgress:
    """What a reward reads from the rounds before: the last measured score and whether the
    target was reached. One rule for the env and for rescoring recorded episodes
    (``benchmarks/tradeoff.py --rescore``): :meth:`start` at reset, then each round
    :meth:`inputs` for the reward and :meth:`record` of the round's score."""

    target_accuracy: float | None
    previous_score: float = field(default=math.nan)
    target_reached: bool = False

    def start(self, score: float) -> None:
        """A new episode from the score measured at reset (NaN: none): the first round's
        previous score. The target counts rounds played: reset's score does not reach it."""
        self.previous_score, self.target_reached = score, False

    def inputs(self, score: float, latency_s: float, energy_j: float,
               last_round: bool) -> RewardInputs:
        """The reward's inputs for a round of ``score`` and these costs."""
        return RewardInputs(score=score, previous_score=self.previous_score,
                            reached_before=self.target_reached, latency_s=latency_s,
                            energy_j=energy_j, last_round=last_round)

    def record(self, score: float) -> None:
        """After the round's reward: a measured ``score`` becomes the previous one, and
        reaches the target or not (:func:`reaches_target`); an unmeasured one changes
        nothing."""
        if math.isfinite(score):
            self.previous_score = score
            self.target_reached |= reaches_target(score, self.target_accuracy)


Reward = Callable[[RewardInputs, CostRange, "RewardWeights"], dict[str, float]]

TERM_NAMES: tuple[str, ...] = ("accuracy", "latency", "energy")
"""The reward terms, in the order of the vector reward; a missing term counts as 0."""


def check_terms(terms: Any, reward: Reward) -> dict[str, float]:
    """``terms`` as ``reward`` returned them, as a dict of floats; anything but a dict of some
    of :data:`TERM_NAMES` to finite numbers raises ``ValueError`` naming the reward, the value
    and what is allowed (a custom reward's mistake is caught where it is made)."""
    name = getattr(reward, "__name__", repr(reward))
    if not isinstance(terms, Mapping):
        raise ValueError(f"reward {name} returned {terms!r}: must return a dict of terms "
                         f"{list(TERM_NAMES)} to finite numbers")
    for key, value in terms.items():
        if key not in TERM_NAMES:
            raise ValueError(f"reward {name} returned the term {key!r}: allowed terms are "
                             f"{list(TERM_NAMES)}")
        if not _is_finite_scalar(value):
            raise ValueError(f"reward {name} returned {key} = {value!r}: must be a finite "
                             "number")
    return {key: float(value) for key, value in terms.items()}


def _is_finite_scalar(value: Any) -> bool:
    """A finite real number: Python, numpy or a one-element torch/numpy scalar of 0 dims (not
    a bool or a string)."""
    boolean = "bool" in type(value).__name__ or "bool" in str(getattr(value, "dtype", ""))
    if boolean or isinstance(value, (str, bytes)) or getattr(value, "ndim", 0) != 0:
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class RewardWeights:
    """The env config's reward knobs."""

    accuracy: float
    latency: float
    energy: float
    target_accuracy: float | None = None
    target_miss_penalty: float = 1.0


def accuracy_score(accuracy: float, accuracy_local: float, local_mix: float) -> float:
    """The accuracy a reward pays for: the global test accuracy mixed with the devices' local
    accuracy by ``local_mix`` (``env.accuracy_local_mix``: 0 global only, 1 local only)."""
    if local_mix == 0.0:
        return accuracy
    if local_mix == 1.0:
        return accuracy_local
    return (1 - local_mix) * accuracy + local_mix * accuracy_local


def reaches_target(score: float, target: float | None) -> bool:
    """Whether a measured ``score`` reaches ``target``: the one rule of the env's
    ``target_reached``, the target rewards and the benchmarks' energy to target. An unmeasured
    (NaN) score or no target never does. The env applies it to its reward's
    :func:`accuracy_score`, the benchmarks to the global accuracy: the same number while
    ``env.accuracy_local_mix`` is 0 (the default)."""
    return target is not None and math.isfinite(score) and score >= target


def _costs(inputs: RewardInputs, costs: CostRange, w: RewardWeights) -> dict[str, float]:
    return {
        "latency": -w.latency * costs.latency(inputs.latency_s),
        "energy": -w.energy * costs.energy(inputs.energy_j),
    }


def accuracy_level(inputs: RewardInputs, costs: CostRange, w: RewardWeights) -> dict[str, float]:
    """The accuracy level each round, minus the normalised costs."""
    level = inputs.score if math.isfinite(inputs.score) else 0.0
    return {"accuracy": w.accuracy * level, **_costs(inputs, costs, w)}


def accuracy_gain(inputs: RewardInputs, costs: CostRange, w: RewardWeights) -> dict[str, float]:
    """The accuracy gained this round, minus the normalised costs."""
    measured = math.isfinite(inputs.score) and math.isfinite(inputs.previous_score)
    gain = inputs.score - inputs.previous_score if measured else 0.0
    return {"accuracy": w.accuracy * gain, **_costs(inputs, costs, w)}


def cost_to_target(inputs: RewardInputs, costs: CostRange, w: RewardWeights) -> dict[str, float]:
    """The normalised costs until the target is first reached, and a penalty for missing it."""
    if inputs.reached_before:
        return {"accuracy": 0.0, "latency": 0.0, "energy": 0.0}
    reached = reaches_target(inputs.score, w.target_accuracy)
    missed = inputs.last_round and math.isfinite(inputs.score) and not reached
    return {"accuracy": -w.target_miss_penalty if missed else 0.0, **_costs(inputs, costs, w)}


def spend_to_target(inputs: RewardInputs, costs: CostRange, w: RewardWeights) -> dict[str, float]:
    """Costs as a share of a star round until the target is first reached, nothing after; the
    final accuracy in the last round, less a penalty if the target was never reached."""
    reached = inputs.reached_before or reaches_target(inputs.score, w.target_accuracy)
    accuracy = 0.0
    if inputs.last_round and math.isfinite(inputs.score):  # (unmeasured: no miss either)
        accuracy = w.accuracy * inputs.score - (0.0 if reached else w.target_miss_penalty)
    if inputs.reached_before:
        return {"accuracy": accuracy, "latency": 0.0, "energy": 0.0}
    return {
        "accuracy": accuracy,
        "latency": -w.latency * costs.latency_share(inputs.latency_s),
        "energy": -w.energy * costs.energy_share(inputs.energy_j),
    }


def reward_bounds(name: str, costs: CostRange,
                  w: RewardWeights) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Lowest and highest value of each term (accuracy, latency, energy) of reward ``name``:
    the bounds of the env's vector ``reward_space``."""
    accuracy = {"accuracy-level": (0.0, w.accuracy), "accuracy-gain": (-w.accuracy, w.accuracy),
                "cost-to-target": (-w.target_miss_penalty, 0.0),
                "spend-to-target": (-w.target_miss_penalty, w.accuracy)}[name]
    cheapest_latency, cheapest_energy = costs.lowest()  # <= 0: a round cheaper than never
    if name == "spend-to-target":  # a share of star, at least 0 (and 0 after the target)
        cheapest_latency = cheapest_energy = 0.0
    low = (accuracy[0], -w.latency * MAX_COST_SCALE, -w.energy * MAX_COST_SCALE)
    high = (accuracy[1], -w.latency * cheapest_latency, -w.energy * cheapest_energy)
    return low, high


REWARDS: dict[str, Reward] = {
    "accuracy-level": accuracy_level,
    "accuracy-gain": accuracy_gain,
    "cost-to-target": cost_to_target,
    "spend-to-target": spend_to_target,
}
"""Every named reward."""


def reward_names() -> list[str]:
    """Names accepted by ``env.reward``."""
    return list(REWARDS)


def reward_label(reward: Reward) -> str:
    """How a reward is recorded: its name in :data:`REWARDS`, else the callable's
    ``module.qualname`` (two custom callables of one name are told apart by nothing else
    that can be written down)."""
    named = next((n for n, f in REWARDS.items() if f is reward), None)
    if named is not None:
        return named
    return f"{getattr(reward, '__module__', '?')}.{getattr(reward, '__qualname__', reward)}"


def get_reward(name: str) -> Reward:
    """The reward called ``name``; unknown names raise ``ValueError`` listing the known ones."""
    try:
        return REWARDS[name]
    except KeyError:
        raise ValueError(f"env.reward = {name!r}: unknown; known rewards are {reward_names()}") \
            from None
