"""The Gymnasium environment: orchestrate a hierarchical federated foundation model."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from hffm_env.config import (
    EPISODE_ENDS,
    FIDELITIES,
    MODULE_TYPES,
    ConfigError,
    ScenarioConfig,
    check_memory,
    parse_override,
    resolve_scenario,
    split_module_id,
)
from hffm_env.devices import device_problem, forked_after_torch_threads
from hffm_env.envs.action import ActionLayout, DecodeReport
from hffm_env.envs.observation import Observation, ObservationInputs
from hffm_env.envs.render import RENDER_METADATA, HumanWindow, RgbFrames
from hffm_env.envs.reward import (
    REWARDS,
    TERM_NAMES,
    CostRange,
    EpisodeProgress,
    Reward,
    RewardInputs,
    RewardWeights,
    accuracy_score,
    check_terms,
    get_reward,
    reward_bounds,
)
from hffm_env.fl.build import build_engine
from hffm_env.fl.engine import RoundResult
from hffm_env.fl.schedule import (
    ModuleRequest,
    PeriodClock,
    RelaySource,
    Route,
    Schedule,
    Tier,
)
from hffm_env.fl.surrogate import (
    AccuracySurrogate,
    SurrogateMismatch,
    SurrogateRounds,
    find_surrogate,
)
from hffm_env.fl.transfer_plan import RoundLayout
from hffm_env.seeding import SEED_MAX, RandomStreams, check_seed
from hffm_env.sim import Network, Topology, k_nearest_partners
from hffm_env.values import is_integer

if TYPE_CHECKING:  # (annotations only)
    from pathlib import Path

    import networkx as nx

__all__ = ["HFFMEnv", "PlayedRound", "measured"]

REWARD_MODES = ("scalar", "vector")
MAX_TORCH_THREADS = 4096
"""The most ``torch_threads`` an env takes (torch's own limit is a C int)."""


@dataclasses.dataclass(frozen=True)
class PlayedRound:
    """The network of one round as it was played (what ``render`` draws).

    Attributes:
        topology: device and server positions, clusters.
        available: ``(N,)`` bool, the devices that took part (read-only).
        d2d_graphs: each cluster's D2D graph over its available devices (read-only views).
    """

    topology: Topology
    available: np.ndarray
    d2d_graphs: list[nx.Graph]


class HFFMEnv(gym.Env):
    """Hierarchical Federated Foundation Models over a wireless network, one round per step.

    ## Description
    Wireless devices, grouped around edge servers that report to a cloud, jointly train a
    modular multi-modal multi-task (M3T) foundation model: a frozen pre-trained backbone with
    five trainable module types (``encoder``, ``prompt``, ``moe``, ``adapter``, ``head``).
    Every step, every available device really trains the modules it holds on its own non-IID
    data; then modules are aggregated at the tiers the action chooses (D2D pairs, D2D at the
    cluster head, edge, cloud), relayed to devices that lack them, and every transfer is priced
    by a wireless cost model (Shannon rates with path loss and Rayleigh fading, transmit power
    x time). The agent trades the model's accuracy against latency and energy.

    ## Action Space
    ``MultiDiscrete(nvec)``, documented slot by slot in :mod:`hffm_env.envs.action`
    (``env.unwrapped.action_slot_names`` lists them):

    | slots | count | values |
    | --- | --- | --- |
    | ``edge_period/<type>`` | 5 | index into ``env.period_menu`` (default 1, 2, 4, 8, never) |
    | ``cloud_period/<type>`` | 5 | index into ``env.period_menu`` |
    | ``pair_exchange/<type>`` | 5 | 1: D2D pairs gossip this type in rounds with no edge/cloud |
    | ``route/<cluster>`` | C | 0 direct uplink, 1 D2D relay via the head, 2 star (device-cloud) |
    | ``head/<cluster>`` | C | index of the cluster head among the cluster's members |
    | ``partner/<device>`` | N | 0 none, i: the i-th nearest cluster mate (i <= d2d_partner_k) |
    | ``relay/<slot>`` | P | 0 wait, 1 edge, 2 cloud, 3+j: the j-th member of the cluster |

    A module type is aggregated at the cloud when the rounds since its last cloud aggregation
    reach its cloud period, else at the edge when its edge period is reached (at the cluster
    head over D2D for clusters on route 1), else by D2D pairs when its pair flag is on.
    Infeasible choices are repaired deterministically and counted in ``info["repairs"]``;
    :meth:`action_masks` masks them for MaskablePPO, slot by slot: pairings that conflict
    across slots (two devices naming one partner) no per-slot mask can rule out, so a masked
    action that pairs can still be repaired.

    ## Observation Space
    ``Box(0, 1, (D,), float32)``, documented in :mod:`hffm_env.envs.observation`
    (``env.unwrapped.observation_names`` lists them): round fraction; global accuracy and
    training loss per task; per module type the staleness at the edge and cloud tiers and the
    drift of device copies from their cluster and global means; per cluster uplink and D2D rate
    summaries, D2D density and availability; energy and latency used against the budget;
    with ``env.observe_target=true``, whether the target accuracy was reached this episode and
    how far the last measured accuracy is below it (the target rewards depend on both); the
    pending module requests.

    ## Rewards
    Named by ``env.reward`` (:mod:`hffm_env.envs.reward`). The default, ``accuracy-level``, is
    ``accuracy_weight * acc_t - latency_weight * lat_t - energy_weight * en_t`` where ``acc``
    is the global test accuracy after round t (mixed with the local one by
    ``env.accuracy_local_mix``) and ``lat``, ``en`` are the round's latency and energy on the
    scenario's never..star scale (0: what a round costs when nothing is aggregated, 1: what it
    costs under ``star``, both priced on the network the env is built with and with every
    device taking part, a unit of at least 1% of a star round's; ``env.unwrapped.cost_range``).
    ``accuracy-gain`` pays ``accuracy_weight * (acc_t - acc_{t-1})`` in place of the accuracy
    level; ``cost-to-target`` charges the costs until the accuracy first reaches
    ``env.target_accuracy`` and ``-target_miss_penalty`` if it never does; ``spend-to-target``
    charges the rounds until the target as a share of a star round,
    computation included (so waiting costs), nothing after it, and pays
    ``accuracy_weight * acc_T`` in the last round (less the penalty if the target was missed).
    The target counts rounds played: an accuracy measured at reset that is already above it
    does not reach it (as the benchmarks' energy to target counts rounds).
    Each term is in ``info["reward_terms"]``. With ``reward_mode="vector"`` the reward is
    ``np.array([accuracy, latency, energy])`` of those terms and ``reward_space`` (only in
    that mode) bounds it: a round's cost counts as at most 100 units of its scale (100
    never..star units; for ``spend-to-target`` 100 star rounds).
    In cost fidelity the accuracy term is 0 (nothing was measured), the last round's too (no
    miss penalty: whether the target was reached is not known); in surrogate fidelity it
    is the surrogate's prediction. A callable ``reward`` gets ``(RewardInputs, CostRange,
    RewardWeights)`` and returns some of the terms as finite numbers (a missing one is 0);
    if it raises or returns anything else, ``step`` raises ``RuntimeError`` and the episode
    ends there (the round was played).

    ## Fidelities
    ``"train"``: real M3T training and evaluation every step. The global accuracy is measured
    every round; the local and held-out accuracy every ``fl.eval_local_every_rounds`` rounds,
    on the last round and at reset (every round when ``env.accuracy_local_mix > 0``): the
    evaluation budget, which ``info["measured"]`` reports round by round. ``"surrogate"``: the
    same network, schedule decoding and cost model, with accuracies, losses and drift predicted
    by a surrogate fitted on real-training traces of this scenario (:mod:`hffm_env.fl.surrogate`;
    ``hffm calibrate`` fits one, ``benchmarks/surrogate_error.py`` reports its held-out error);
    ``info["measured"]`` marks its predictions available on the rounds the evaluation budget
    would measure (the local and held-out accuracy on the same rounds as in train fidelity,
    the drift 0 at reset; with ``env.accuracy_local_mix > 0`` the local accuracy every round,
    most of them rounds the fit never saw measured, and a warning says so); its
    ``train_loss`` is the mean of the predicted per-task losses
    (train fidelity's is the devices' training loss, MoE balance term included), so compare it
    within one fidelity. The surrogate serves the config it was fitted for, config seed
    included (:func:`~hffm_env.fl.surrogate.surrogate_key`). By default it plays the
    surrogate's mean prediction; ``env.surrogate_noise="residuals"`` adds, per episode, one
    recorded real episode's out-of-fold residuals to the global accuracy per task (drawn from
    the reset's ``surrogate`` stream), so a target is crossed early or late as often as in real
    training. ``"cost"``: no accuracy at all.

    ## Starting State
    ``reset(seed)`` re-places the network, redraws fading, dropout and task arrivals, and
    restores every module to its initial (pre-trained) state. The data split, the frozen
    features and the pre-trained backbone are built once per env instance from the scenario's
    seed. A bad ``seed`` (negative, not an integer) raises ``ValueError`` before anything
    changes, so the env stays usable.

    ## Reproducibility
    All randomness flows from two seeds through named streams
    (:class:`~hffm_env.seeding.RandomStreams`, children of one ``numpy.random.SeedSequence``):
    the config's ``seed`` gives the data split, the fresh trainable modules and the first
    layout (the frozen pre-trained parts come from the fixed
    :data:`~hffm_env.models.pretrain.PRETRAIN_SEED`, shared by every config seed); each
    ``reset`` draws one number from Gymnasium's ``np_random`` and spawns from it the episode's
    placement, fading, outage (retransmissions), mobility (waypoints), dynamics (dropout),
    requests (task arrivals), training (mini-batch order) and surrogate (resampled noise)
    streams. Each consumer has its own stream, so turning on outages, mobility or task arrivals
    does not change the fading or dropout of any round.
    The same seed gives the same episode, bit for bit, on the same device with the same number
    of torch threads. Across thread counts the order of float reductions changes, and so do the
    last digits (after a few rounds of training, observations differ by about 1e-3); pass
    ``torch_threads`` to pin it. Cost fidelity does not depend on the thread count. A process
    forked from one that had imported torch and hffm_env (an async vector env's workers) keeps
    to one thread: more could hang in OpenMP (:func:`hffm_env.devices.guard_forks`).

    ## Episode End
    Terminated after ``env.episode_rounds`` rounds (``info["end"] = "rounds"``) or when
    ``env.energy_budget_j`` is exhausted (``info["end"] = "energy_budget"``, also when the
    budget runs out in the horizon's last round); never truncated by the env itself. The
    horizon is part of the task (the round is observed, the last round's reward pays the
    final accuracy and any target miss), so no value lies beyond it and a learner must not
    bootstrap one; ``truncated`` is left to outside limits such as a ``TimeLimit``.

    ## Info
    The same keys, types and shapes at reset and at every step, no NaN (``info["measured"]``
    says what was measured; unmeasured numbers are 0), per-device and per-cluster values as
    fixed-size arrays, and ``info["action_mask"]`` for the next action; the README's MDP
    section lists every key.

    ## Arguments
    ``gymnasium.make("hffm/HFFM-v0", scenario=None, overrides=None, config_file=None,
    fidelity="train", reward_mode="scalar", render_mode=None, device="cpu",
    torch_threads=None, progress=False, surrogate=None, reward=None)``; ``scenario`` is a
    preset's name (default: the one ``config_file`` names, else ``small``; a file naming
    another preset is refused) or a config; ``overrides`` is a
    dict or list of ``"key=value"`` strings applied to the scenario config; ``fidelity`` is
    ``"train"``, ``"surrogate"`` or ``"cost"`` (see Fidelities); ``surrogate`` a fitted
    surrogate file (default: the one for this config in the cache, else the one shipped for
    the preset; only with ``fidelity="surrogate"``: with another fidelity it is refused,
    ``ConfigError``); ``reward`` a reward's name (it becomes
    ``env.reward``) or a callable (see Rewards); ``render_mode`` ``"human"`` (a matplotlib
    window that ``reset`` and ``step`` draw), ``"rgb_array"`` or ``"ansi"`` (see ``render``);
    ``torch_threads`` torch's intra-op threads, a process-wide setting. Each is checked, by
    name, before anything is built or set. The ids of the presets (``hffm/HFFM-Small-v0``,
    ...) fix the scenario.

    ## Attributes
    Public views (read them; the env changes them): ``config`` (the resolved
    :class:`~hffm_env.config.ScenarioConfig`), ``layout`` (the action's
    :class:`~hffm_env.envs.action.ActionLayout`: ``layout.encode(edge_period=...,
    cloud_period=..., route=...)`` builds an action, ``slot_names`` and ``nvec`` describe
    it), ``observation`` (the observation's names and space), ``network`` (the simulator's
    :class:`~hffm_env.sim.Network` of the round about to be played), ``engine`` (the
    :class:`~hffm_env.fl.engine.FederatedEngine`; ``engine.price_schedule(schedule)`` prices
    a schedule without playing it), ``surrogate`` (the fitted surrogate in surrogate
    fidelity), ``module_ids`` (what ``info["pending_module"]`` indexes), ``tasks``,
    ``cost_range``, ``reward_function`` and ``reward_weights`` (a round's reward is
    ``reward_function(last_reward_inputs, cost_range, reward_weights)``), and the properties
    below (``history``, ``scores``, ``last_result``, ``last_schedule``, ``pending``,
    ``drift``, ...).

    ## Version History
    * v0: initial release.
    * v0, second revision (same id; results are not comparable with the first): label skew on
      every task, pre-training on a pretext without downstream labels, 4 local steps per round,
      16-round episodes, the ``paper`` preset's homogeneous devices, named rewards with the
      ``accuracy-level`` default on the never..star cost scale, ``info["accuracy_held_out"]``
      and ``info["outage_devices"]``, optional link outage.
    * v0, third revision: info in one fixed layout without NaN (``measured`` flags,
      per-device arrays ``available``/``failed``/``outage`` instead of id lists,
      ``idle_clusters``, ``action_mask``), ``reward_space`` only in vector mode and bounded,
      a cluster without available members sits the round out instead of failing, and the ids
      are registered without the passive env checker.
    * v0, fourth revision: the evaluation budget (global accuracy on 48 samples per device
      every round, local and held-out accuracy every 4 rounds and on the last), batched
      evaluation of each distinct model once, and ``fidelity="surrogate"``.
    * v0, fifth revision (additive): the ``spend-to-target`` reward.
    * v0, sixth revision (additive, opt-in): ``env.surrogate_noise`` and
      ``env.observe_target``; the default observation is unchanged.
    * v0, seventh revision (results are not comparable with the sixth): one ``SeedSequence``
      per seed spawns a stream per consumer (every seeded episode differs), and ``small`` has
      4 clusters of 3 (its observation has 57 entries, its full action 39 slots, its coarse
      action 14).
    * v0, eighth revision (results differ only with mobility, outage or task arrivals, as in
      ``medium``, or with clusters left out of the cloud; the presets ``small`` and ``paper``
      play as before): partner slots name the nearest mates of the round being played (they
      named the first round's); a STAR-route cloud round leaves the edge servers' copies
      as they were (an edge relay after it handed out the cloud model the edge never
      received); with outage, a D2D route is paid up to the link that failed and a module
      relayed over a lost route does not arrive; a round's latency makes only the clusters
      that send up to the cloud, or receive from it after they did, wait for the slowest
      upload; a device that gained a task whose prompt and head have not arrived is scored
      without them, as it trains;
      boolean actions are accepted as 0 and 1, as the spaces' ``contains`` says. Surrogate
      fidelity reports the local and held-out accuracy on the evaluation budget's rounds
      only, and drift 0 at reset, as train fidelity does (its observation and rewards are
      unchanged); a fit serves its own config seed only.
    * v0, ninth revision (learners' targets change; observations, rewards and costs do not,
      except with outage):
      the last round of the horizon returns ``terminated=True`` (it returned
      ``truncated=True``, so learners bootstrapped a value after the final accuracy was
      paid); with outage, a D2D relay cut at its last link does not arrive.
    * v0, tenth revision (results differ only with outage or mobility, as in ``medium``):
      outage retransmissions and mobility waypoints draw from streams of their own (they drew
      from the fading and dropout streams, so turning either on changed every later round's
      fading or dropout).
    * v0, eleventh revision (rewards differ only under ``cost-to-target`` and
      ``spend-to-target`` in cost fidelity): a last round whose accuracy was not measured
      charges no miss penalty (it charged ``-target_miss_penalty`` for a target nobody knew
      was missed).
    * v0, twelfth revision (additive; results unchanged): ``reset`` takes any seed from 0 up,
      as Gymnasium does (it refused seeds past 2**63-1, the 128-bit one Gymnasium records for
      an unseeded episode among them); ``cost["energy_by_cluster_j"]`` in info.
    * v0, thirteenth revision (results differ only in the PettingZoo env's ``cost-share``
      rewards): ``cost["energy_charged_to_cluster_j"]`` in info, each cluster's part of the
      round's energy with its edge server's and the cloud's transmissions for it, which
      ``cost-share`` now splits the energy term by (it split by the devices' energy alone, so
      an edge server's downlinks, most of a direct route's energy, were charged to all).
    """

    metadata = RENDER_METADATA

    def __init__(
        self,
        scenario: str | ScenarioConfig | Mapping[str, Any] | None = None,
        *,
        overrides: dict[str, Any] | list[str] | None = None,
        config_file: str | Path | None = None,
        fidelity: str = "train",
        reward_mode: str = "scalar",
        render_mode: str | None = None,
        device: str = "cpu",
        torch_threads: int | None = None,
        progress: bool = False,
        surrogate: str | None = None,
        reward: str | Reward | None = None,
    ) -> None:
        if fidelity not in FIDELITIES:
            raise ValueError(f"fidelity = {fidelity!r}: must be one of {list(FIDELITIES)}")
        if reward_mode not in REWARD_MODES:
            raise ValueError(f"reward_mode = {reward_mode!r}: must be one of {list(REWARD_MODES)}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode = {render_mode!r}: must be None or one of "
                f"{self.metadata['render_modes']}"
            )
        # what a pickle carries: the env is rebuilt from these (see __getstate__)
        self._init_args = {
            "scenario": scenario, "overrides": overrides, "config_file": config_file,
            "fidelity": fidelity, "reward_mode": reward_mode, "render_mode": render_mode,
            "device": device, "torch_threads": torch_threads, "surrogate": surrogate,
            "reward": reward,
        }
        problem = device_problem(device)
        if problem is not None:
            raise ValueError(f"device = {device!r}: {problem}")
        if surrogate is not None and fidelity != "surrogate":
            raise ConfigError(f"surrogate = {surrogate!r}: a fitted surrogate serves only "
                              f"fidelity='surrogate' (this env's is {fidelity!r})")
        if not isinstance(progress, (bool, np.bool_)):
            raise ValueError(f"progress = {progress!r}: must be True or False")
        if torch_threads is not None and (not is_integer(torch_threads)
                                          or not 1 <= torch_threads <= MAX_TORCH_THREADS):
            raise ValueError(f"torch_threads = {torch_threads!r}: must be None or an integer "
                             f">= 1 and <= {MAX_TORCH_THREADS}")
        # the config file read once (a preset: given, the file's, or small); a named reward
        # is the config's last override, checked like it, so it replaces one the overrides
        # name before that one is checked
        _, self.config = resolve_scenario(scenario, config_file,
                                          _with_reward(overrides, reward))
        # checked here, before any process-wide setting changes or a model is built
        reward_function = _reward_function(reward, self.config.env.reward, reward_mode)
        if torch_threads is not None and torch_threads > 1 and forked_after_torch_threads():
            warnings.warn(f"torch_threads = {torch_threads}: this process was forked from one "
                          "that ran torch, where torch can use one thread only (more could "
                          "hang in OpenMP); using 1", RuntimeWarning, stacklevel=2)
            torch_threads = 1
        check_memory(self.config, fidelity)  # refuse before allocating, with the estimate
        if self.config.placement.placement != "clustered":
            # every reset places the devices anew; nearest-server association would then move
            # devices between clusters, while the data split (per-cluster skew) and the action
            # space (cluster sizes) keep the clusters they were built for
            raise ConfigError(
                f"placement.placement = {self.config.placement.placement!r}: re-assigns devices "
                "to clusters at every reset, which the env's data split and action space cannot "
                "follow; the env needs 'clustered' (the network simulator and hffm describe "
                "take any placement)")
        self.fidelity = fidelity
        self.reward_mode = reward_mode
        self.render_mode = render_mode
        self._frames: RgbFrames | HumanWindow | None = None  # the figure, at the first frame
        self.device = device
        cfg = self.config

        self.surrogate: AccuracySurrogate | None = None
        """The fitted accuracy surrogate (``fidelity="surrogate"`` only)."""
        self._surrogate_rounds: SurrogateRounds | None = None
        if fidelity == "surrogate":  # (found before minutes of building anything)
            self.surrogate = find_surrogate(cfg, surrogate)
            if cfg.env.surrogate_noise == "residuals":
                try:  # none kept, or none that measured anything (no noise, unsaid)
                    self.surrogate.residual_noise()
                except ValueError as err:
                    raise ConfigError(f"env.surrogate_noise = 'residuals': {err}; or set "
                                      "env.surrogate_noise=none") from None
            if cfg.env.accuracy_local_mix > 0:
                warnings.warn(
                    f"env.accuracy_local_mix = {cfg.env.accuracy_local_mix} in surrogate "
                    "fidelity: the reward reads the local accuracy every round, but the "
                    "surrogate was fitted on it as real training measures it, every "
                    f"fl.eval_local_every_rounds = {cfg.fl.eval_local_every_rounds} rounds and "
                    "the last; on the other rounds it is a prediction no measurement checked",
                    UserWarning, stacklevel=2)
        threads_before = torch.get_num_threads()
        if torch_threads is not None:  # a process-wide setting: only once the rest is valid
            torch.set_num_threads(int(torch_threads))
        try:
            self._build(fidelity, device, progress, reward, reward_function, reward_mode)
        except BaseException:  # (a refused env leaves the process's setting as it was)
            torch.set_num_threads(threads_before)
            raise

    def _build(self, fidelity: str, device: str, progress: bool, reward: str | Reward | None,
               reward_function: Reward, reward_mode: str) -> None:
        """The engine, the spaces and the reward's cost scale of ``self.config`` (the rest of
        ``__init__``: a config whose round costs overflow is refused here)."""
        cfg = self.config
        # the config seed's streams: the first layout (clusters, action sizes) and the data split
        built = RandomStreams.from_seed(cfg.seed)
        self.engine = build_engine(cfg, fidelity, device=device, progress=progress,
                                   streams=built)
        network, self.data = self.engine.network, self.engine.data
        self.tasks = self.engine.tasks
        if self.surrogate is not None:
            self._surrogate_rounds = SurrogateRounds(
                self.surrogate, self.tasks, network.num_devices,
                resample_noise=cfg.env.surrogate_noise == "residuals")
        self.module_ids = list(self.engine.inventory.ids())
        """Every module id; ``info["pending_module"]`` and ``["relayed_module"]`` index it."""
        self._module_index = {m: k for k, m in enumerate(self.module_ids)}
        # the partner slots' candidates: an action-space notion, so the env derives them
        self._partners_topology = network.topology
        self.layout = ActionLayout(cfg, self._members(network),
                                   k_nearest_partners(network.topology, cfg.env.d2d_partner_k))
        self.action_space = spaces.MultiDiscrete(self.layout.nvec)
        self.action_slot_names = list(self.layout.slot_names)
        self.observation = Observation(self.tasks, self.engine.model.num_classes,
                                       network.num_clusters, cfg.fl.max_pending_requests,
                                       observe_target=cfg.env.observe_target)
        self.observation_names = self.observation.names
        self.observation_space = self.observation.space
        # Reward references: per-round cost of never aggregating and of star on the scenario's
        # own network, the 0 and 1 of the reward's cost scale, with every device taking part
        # (dropout is a round's draw: a build draw that dropped every device priced both at 0
        # and left the reward no scale)
        everyone = network.with_everyone_available()
        with np.errstate(divide="ignore", over="ignore"):  # a rate of 0: refused below
            star = self.engine.price_schedule(
                Schedule.uniform(Tier.CLOUD, network.num_clusters, Route.STAR), network=everyone)
            never = self.engine.price_schedule(
                Schedule.uniform(Tier.NONE, network.num_clusters, Route.DIRECT),
                network=everyone)
            priced = {"never": never, "star": star}
            # the references use no wireless link (star goes over the wired wide-area link):
            # a cloud round over the uplinks and one over D2D relays check those links, which
            # an agent would otherwise reach only mid-episode
            for route in (Route.DIRECT, Route.D2D_RELAY):
                priced[f"a cloud round over {route.name.lower()}"] = self.engine.price_schedule(
                    Schedule.uniform(Tier.CLOUD, network.num_clusters, route), network=everyone)
        for what, cost in priced.items():
            for name, value in (("latency_s", cost.latency_s), ("energy_j", cost.energy_j)):
                # an episode's totals (info's cumulative costs, the budgets) must stay finite
                if not math.isfinite(value * cfg.env.episode_rounds):
                    raise ConfigError(
                        f"a round's cost overflows on this config: {what}'s {name} = {value} "
                        f"(env.episode_rounds = {cfg.env.episode_rounds} of them must stay "
                        "finite); the channel, compute or cost values are too extreme (e.g. a "
                        "transmit power, bandwidth, backhaul rate or CPU frequency near 0, or "
                        "a path loss too high)")
        self.cost_range = CostRange(never.latency_s, star.latency_s, never.energy_j,
                                    star.energy_j)
        # the reward by name, its weights and its cost scale: public, so that a saved run can
        # be rescored under another reward (benchmarks/tradeoff.py --rescore)
        self.reward_function: Reward = reward_function
        self.reward_weights = RewardWeights(
            cfg.env.accuracy_weight, cfg.env.latency_weight, cfg.env.energy_weight,
            cfg.env.target_accuracy, cfg.env.target_miss_penalty,
        )
        if reward_mode == "vector":  # only there is the reward a vector (MO-Gymnasium)
            name = reward if isinstance(reward, str) else cfg.env.reward
            low, high = reward_bounds(name, self.cost_range, self.reward_weights)
            self.reward_space = spaces.Box(np.array(low, dtype=np.float32),
                                           np.array(high, dtype=np.float32), dtype=np.float32)
        self.network = network
        self._played_round = self._network_view()
        self._streams = built
        self._reset_state()
        self._needs_reset = True  # an episode starts with reset()

    # ----------------------------------------------------------------------------------------
    # Gymnasium API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode: new placement, fading, dropout, arrivals and data order from
        ``seed``; modules back to their initial state. The env has no ``options``; a mapping
        given is ignored, as Gymnasium's envs do, anything else refused."""
        if isinstance(self.engine, _Closed):  # before anything changes (it built a network)
            raise RuntimeError(_CLOSED)
        if options is not None and not isinstance(options, Mapping):
            raise ValueError(f"reset options = {options!r}: must be None or a dict (this env "
                             "takes no options)")
        if seed is not None:  # checked before any state changes: the env stays usable
            seed = check_seed(seed, "reset seed", bounded=False)
        self._needs_reset = True  # until the new episode is complete (a reset cut short)
        super().reset(seed=seed)
        # the episode's named streams, all from one draw of Gymnasium's np_random (so that
        # reset(seed=None) continues the sequence that the last seeded reset started)
        self._streams = RandomStreams.from_seed(int(self.np_random.integers(0, SEED_MAX)))
        self.network = Network(self.config, self._streams)
        self.engine.attach_network(self.network)
        self.engine.reset(self._streams.training_seed)
        self.layout.place(cluster_members=self._members(self.network))
        self._reset_state()
        # scored before round 1's draw, as step scores a round before the next one's: a task
        # arriving in round 1 was scored 0 here, so its arrival counted at reset
        scores = self.engine.evaluate()
        self._begin_round()
        self._played_round = self._network_view()
        if self._surrogate_rounds is not None:
            scores = self._surrogate_rounds.reset(self._streams.surrogate,
                                                  self._available_fraction())
            self._drift = self._surrogate_rounds.drift
        self._accuracy = scores.accuracy
        self._accuracy_local = scores.accuracy_local
        self._accuracy_held_out = scores.accuracy_held_out
        self._progress.start(self._score(scores.accuracy, scores.accuracy_local))
        info = self._get_info(None, None, None, {})
        self._add_next_action_info(info)
        obs = self._get_obs()
        self._needs_reset = False
        self._show_human_frame()
        return obs, info

    def step(
        self, action: np.ndarray
    ) -> tuple[np.ndarray, float | np.ndarray, bool, bool, dict[str, Any]]:
        """Run one round under ``action``; see the class docstring for the MDP."""
        if isinstance(self.engine, _Closed):
            raise RuntimeError(_CLOSED)
        if self._needs_reset:
            raise RuntimeError("call reset() before step() (and after an episode ends or a "
                               "step or reset was cut short)")
        schedule, repairs = self.decode(action)  # refuses a bad action before any change
        if self.surrogate is not None:  # ... and a schedule the surrogate cannot predict
            self.surrogate.check_schedule(schedule)
        # until the round is complete: a round cut short (an error, Ctrl-C) has trained or
        # priced part of itself and cannot be taken back or resumed
        self._needs_reset = True
        result = self._simulate(schedule)
        self._keep(result)  # what was played, even if measuring it in full fails below
        terminated, end = self._episode_end()
        if terminated:  # a budget's end too (the horizon's is measured)
            result = self._measure_in_full(result)
            self._keep(result)
        terms = self._reward_terms(result, last_round=terminated)
        info = self._get_info(result, schedule, repairs, terms, end=end)
        self._played_round = self._network_view()  # before the next round is drawn
        if not terminated:
            self._begin_round()
        self._add_next_action_info(info)
        obs = self._get_obs()
        self._needs_reset = terminated
        self._show_human_frame()
        # never truncated here: both ends are the MDP's (a TimeLimit wrapper truncates)
        return obs, self._reward(terms), terminated, False, info

    def __getstate__(self) -> dict[str, Any]:
        """A pickle holds the constructor's arguments only (a few kB, not the data and model),
        with the scenario as the config it resolved to (so that overrides or a config file
        edited since do not change the copy): unpickling rebuilds the env from the seed in
        its config, as a fresh env that needs ``reset()``; a train-fidelity rebuild loads the
        cached pre-trained model. A surrogate env's copy loads the file its fit came from (not
        whichever fit the cache holds then), and warns if that file changed since."""
        resolved: dict[str, Any] = {"scenario": self.config, "config_file": None,
                                    "overrides": None}
        if self.surrogate is not None and self.surrogate.path is not None:
            resolved["surrogate"] = str(self.surrogate.path.resolve())
        return {"init_args": {**self._init_args, **resolved}, "spec": self.spec,
                "surrogate_digest": None if self.surrogate is None else self.surrogate.digest}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state["init_args"])  # type: ignore[misc]
        self.spec = state.get("spec")  # what gym.make registered it as (id, kwargs)
        pinned = state.get("surrogate_digest")
        if pinned is not None and self.surrogate is not None and self.surrogate.digest != pinned:
            warnings.warn(f"{self.surrogate.origin} changed since this env was pickled (its "
                          f"digest was {pinned}, now {self.surrogate.digest}): the copy "
                          "predicts accuracy with the new fit", SurrogateMismatch, stacklevel=2)

    def action_masks(self) -> np.ndarray:
        """A flat boolean vector of the allowed values of every action slot, concatenated (the
        layout sb3-contrib's MaskablePPO expects for ``MultiDiscrete``)."""
        return self.layout.masks(
            self.network.available, self.network.is_feasible_pair, self.engine.pending,
            self._relay_candidates(),
        )

    def module_inventory(self) -> list[dict[str, Any]]:
        """Every module instance: id, type, parameter count, size in bits and bits on the wire
        (``wire_bits``: what the cost model charges for sending it; the size itself except
        where the scenario fixes the model's payload, as ``paper`` does)."""
        return self.engine.inventory.as_table(self.config.cost.model_payload_bits)

    # gymnasium hints render with a type variable its Env class does not bind
    def render(self) -> np.ndarray | str | None:  # type: ignore[override, unused-ignore]
        """``"rgb_array"``: topology and this round's transfers beside accuracy, latency and
        energy curves; ``"human"``: the same picture in a matplotlib window, drawn by
        ``reset`` and ``step`` themselves and paced at ``metadata["render_fps"]`` (``render``
        draws it again and returns ``None``; under a non-interactive backend such as Agg it
        is painted into a pyplot figure, not drawn: ``savefig`` shows it); ``"ansi"``: a text
        summary. ``None`` without a render mode."""
        from hffm_env.envs import render as rendering

        if isinstance(self.engine, _Closed):  # the frame would show a round of a closed env
            raise RuntimeError(_CLOSED)
        if self.render_mode == "rgb_array":
            if not isinstance(self._frames, RgbFrames):
                self._frames = RgbFrames()
            return self._frames.frame(self)
        if self.render_mode == "human":
            if not isinstance(self._frames, HumanWindow):
                self._frames = HumanWindow(self.metadata["render_fps"],
                                           title=f"hffm: {self.config.name}")
            self._frames.show(self)
            return None
        if self.render_mode == "ansi":
            return rendering.render_ansi(self)
        gym.logger.warn(  # as Gymnasium's own envs say it
            "You are calling render method without specifying any render mode. You can "
            'specify the render_mode at initialization: render_mode="human", "rgb_array" or '
            '"ansi"')
        return None

    def _show_human_frame(self) -> None:
        """In ``human`` mode, the frame of the reset or step just done (Gymnasium's rule)."""
        if self.render_mode == "human":
            self.render()

    def close(self) -> None:
        """Close the ``human`` window and free the model, features and network; any later use
        of the env raises ``RuntimeError`` (make a new one)."""
        if self._frames is not None:
            self._frames.close()
            self._frames = None
        self.engine = _Closed()  # type: ignore[assignment]
        self.network = _Closed()  # type: ignore[assignment]
        self.data = _Closed()  # type: ignore[assignment]
        super().close()

    # ----------------------------------------------------------------------------------------
    # internals

    def _reset_state(self) -> None:
        self.clock = PeriodClock()
        self.rounds_done = 0
        self.cumulative_latency_s = 0.0
        self.cumulative_energy_j = 0.0
        self._history: list[dict[str, float]] = []
        self._last_result: RoundResult | None = None
        self._last_schedule: Schedule | None = None
        self._last_reward_inputs: RewardInputs | None = None
        self._loss: dict[str, float] = {}
        self._drift = {t: (0.0, 0.0) for t in MODULE_TYPES}
        nan = {t: float("nan") for t in (*self.tasks, "mean")}
        self._accuracy, self._accuracy_local = dict(nan), dict(nan)
        self._accuracy_held_out = dict(nan)
        self._progress = EpisodeProgress(self.config.env.target_accuracy)

    def _available_fraction(self) -> float:
        """The share of devices available in the round being played (a surrogate input)."""
        return float(np.mean(self.network.available))

    @staticmethod
    def _members(network: Any) -> list[np.ndarray]:
        return [network.members(c) for c in range(network.num_clusters)]

    # the pieces of step, in the order step calls them

    def _simulate(self, schedule: Schedule) -> RoundResult:
        """Play the round: train (or predict) and price it, and advance the period clock and
        the episode's totals."""
        full = self._full_evaluation_due()
        result = self.engine.run_round(schedule, full_evaluation=full)
        if self._surrogate_rounds is not None:
            scores = self._surrogate_rounds.play(schedule.tiers, self._available_fraction(), full)
            result = self._surrogate_rounds.measured(result, scores)
            self._drift = self._surrogate_rounds.drift
        elif self.engine.train:
            self._drift = self.engine.drift()
        self.clock.advance(dict(schedule.tiers))
        self.rounds_done += 1
        self.cumulative_latency_s += result.cost.latency_s
        self.cumulative_energy_j += result.cost.energy_j
        self._last_schedule = schedule
        self._history.append({
            "round": self.rounds_done,
            "accuracy": result.accuracy.get("mean", float("nan")),
            "latency_s": result.cost.latency_s,
            "energy_j": result.cost.energy_j,
        })
        return result

    def _episode_end(self) -> tuple[bool, str]:
        """``(terminated, info["end"])`` after the round just played: the horizon and the
        energy budget both terminate (see the class docstring's Episode End)."""
        cfg = self.config.env
        rounds, energy_budget = EPISODE_ENDS
        if cfg.energy_budget_j is not None and self.cumulative_energy_j >= cfg.energy_budget_j:
            return True, energy_budget
        if self.rounds_done >= cfg.episode_rounds:
            return True, rounds
        return False, ""

    def _measure_in_full(self, result: RoundResult) -> RoundResult:
        """The round just played with its local and held-out accuracy measured, if the
        evaluation budget skipped them (an episode ended by the energy budget; the horizon's
        last round is always measured); the env's state is not changed."""
        if not (self.engine.train or self._surrogate_rounds is not None) \
                or math.isfinite(result.accuracy_local["mean"]):
            return result
        scores = (self.engine.evaluate() if self._surrogate_rounds is None
                  else self._surrogate_rounds.prediction)
        if scores is None:  # a surrogate episode predicts from its reset on
            raise RuntimeError("a surrogate round was played without a prediction")
        return dataclasses.replace(
            result, accuracy_local=scores.accuracy_local,
            accuracy_held_out=scores.accuracy_held_out,
            accuracy_local_per_device=scores.accuracy_local_per_device)

    def _keep(self, result: RoundResult) -> None:
        """Keep what the observation and ``last_result`` read of the round just played (its
        accuracies only where they were measured or predicted: cost fidelity keeps NaN)."""
        self._last_result = result
        self._loss = result.loss_per_task
        if self.engine.train or self.surrogate is not None:
            self._accuracy, self._accuracy_local = result.accuracy, result.accuracy_local
            self._accuracy_held_out = result.accuracy_held_out

    def _reward_terms(self, result: RoundResult, last_round: bool) -> dict[str, float]:
        """The reward function's terms for the round just played; remembers the score and
        whether the target was reached for the next round's reward."""
        score = self._score(result.accuracy, result.accuracy_local)
        inputs = self._progress.inputs(score, result.cost.latency_s, result.cost.energy_j,
                                       last_round)
        self._last_reward_inputs = inputs
        for name, value in (("latency_s", inputs.latency_s), ("energy_j", inputs.energy_j)):
            if not math.isfinite(value):  # the config's fault, not the reward's
                raise ConfigError(  # (step leaves the episode ended: the round was played)
                    f"round {self.rounds_done}: its {name} = {value} overflows on this config "
                    "(a link rate or compute time underflowed: a transmit power, bandwidth, "
                    "path gain or CPU frequency too close to 0); the episode ends: call reset()")
        try:
            terms = check_terms(
                self.reward_function(inputs, self.cost_range, self.reward_weights),
                self.reward_function)
        except Exception as err:
            # the round is played and cannot be taken back: the episode ends here (step's
            # flag stays set), loudly
            raise RuntimeError(f"the reward failed ({type(err).__name__}: {err}); round "
                               f"{self.rounds_done} was played without a transition, so the "
                               "episode ends: call reset()") from err
        self._progress.record(score)
        return terms

    def _reward(self, terms: dict[str, float]) -> float | np.ndarray:
        """The reward of ``reward_mode``: the terms' sum, or the vector of them."""
        if self.reward_mode == "vector":
            return np.array([terms.get(k, 0.0) for k in TERM_NAMES], dtype=np.float32)
        return float(sum(terms.values()))

    def _begin_round(self) -> None:
        """Draw the next round's network state (fading, dropout, D2D graphs) and module
        requests."""
        self.network.begin_round(self._streams)
        # with mobility (or a new placement) the nearest mates change: partner slots name
        # today's; the topology object is replaced whenever positions change
        topology = self.network.topology
        if topology is not self._partners_topology:
            self._partners_topology = topology
            self.layout.place(partners=k_nearest_partners(topology,
                                                          self.config.env.d2d_partner_k))
        self.engine.begin_round(self._streams.requests)

    def _relay_candidates(self) -> dict[ModuleRequest, list[RelaySource]]:
        return {r: self.engine.relay_candidates(r) for r in self.engine.pending}

    # ----------------------------------------------------------------------------------------
    # public read-only views of the state (render, baselines and tests read these)

    def decode(self, action: np.ndarray) -> tuple[Schedule, DecodeReport]:
        """The schedule ``action`` would play this round and what decoding repaired; changes
        nothing. A malformed action raises ``ValueError`` naming the slot."""
        action = self.layout.check(action)
        return self.layout.decode(
            action, self.clock, self.network.available, self.network.heads,
            self.network.is_feasible_pair, self.engine.pending, self._relay_candidates(),
        )

    @property
    def history(self) -> tuple[dict[str, float], ...]:
        """One row per round played this episode: ``round``, ``accuracy`` (mean global; NaN
        when not measured), ``latency_s``, ``energy_j``."""
        return tuple(dict(row) for row in self._history)

    @property
    def scores(self) -> dict[str, dict[str, float]]:
        """The ``accuracy``, ``accuracy_local`` and ``accuracy_held_out`` per task and
        ``"mean"`` that the round just played (or the reset) measured: NaN where it measured
        none (the evaluation budget skips the local and held-out sets on some rounds; cost
        fidelity measures nothing), not the last value measured earlier (``history`` has
        every round's)."""
        return {"accuracy": dict(self._accuracy), "accuracy_local": dict(self._accuracy_local),
                "accuracy_held_out": dict(self._accuracy_held_out)}

    @property
    def last_schedule(self) -> Schedule | None:
        """The schedule of the round just played; None after ``reset``. A copy: editing its
        ``tiers`` or ``relay_sources`` does not edit the env's record of the round."""
        s = self._last_schedule
        return None if s is None else dataclasses.replace(
            s, tiers=dict(s.tiers), relay_sources=dict(s.relay_sources))

    @property
    def pending(self) -> tuple[ModuleRequest, ...]:
        """The module requests the next action's relay slots answer, in slot order."""
        return tuple(self.engine.pending)

    @property
    def default_heads(self) -> np.ndarray:
        """``(C,)`` this round's default cluster heads (best uplink; -1: no available member)."""
        return np.array(self.network.heads, dtype=np.int64)

    @property
    def last_result(self) -> RoundResult | None:
        """The round just played, as the engine reported it (surrogate fidelity: with the
        surrogate's accuracies and losses); None after ``reset``. Frozen: its fields cannot
        be reassigned (its dicts and arrays are the env's record: read them, do not edit)."""
        return self._last_result

    def _network_view(self) -> PlayedRound:
        # the network replaces (never edits) these each round: references are a snapshot,
        # read-only views so that a caller editing one cannot edit the round about to be
        # played (the topology's arrays are read-only already)
        available = self.network.available.view()
        available.flags.writeable = False
        return PlayedRound(self.network.topology, available,
                           [graph.copy(as_view=True) for graph in self.network.d2d_graphs])

    @property
    def played_round(self) -> PlayedRound:
        """The network of the round just played (positions, availability, D2D graphs; at
        reset, of the round about to be played): what ``render`` draws. ``network`` already
        holds the next round's."""
        return self._played_round

    @property
    def last_reward_inputs(self) -> RewardInputs | None:
        """What the reward read about the round just played (``reward_function(inputs,
        cost_range, reward_weights)`` gives its terms); None after ``reset``."""
        return self._last_reward_inputs

    @property
    def drift(self) -> dict[str, tuple[float, float]]:
        """Per module type, the drift of device copies from their cluster and global means
        after the last round (see :meth:`FederatedEngine.drift`; zeros in cost fidelity)."""
        return dict(self._drift)

    def _full_evaluation_due(self) -> bool:
        """Whether the coming round measures the local and held-out accuracy too (the
        evaluation budget, ``fl.eval_local_every_rounds``): on every such round, on the
        episode's last round and every round when the reward reads the local accuracy."""
        coming = self.rounds_done + 1
        return (coming % self.config.fl.eval_local_every_rounds == 0
                or coming >= self.config.env.episode_rounds
                or self.config.env.accuracy_local_mix > 0)

    def _score(self, accuracy: dict[str, float], accuracy_local: dict[str, float]) -> float:
        return accuracy_score(accuracy.get("mean", float("nan")),
                              accuracy_local.get("mean", float("nan")),
                              self.config.env.accuracy_local_mix)

    def _get_obs(self) -> np.ndarray:
        network = self.network
        cfg = self.config
        summary = network.cluster_summary()
        budget = (cfg.env.energy_budget_j
                  or self.cost_range.reference_energy_j * cfg.env.episode_rounds)
        latency_budget = self.cost_range.reference_latency_s * cfg.env.episode_rounds
        requests = []
        for request in self.engine.pending:
            members = network.members(int(network.cluster_of_device[request.device]))
            holders = self.engine.holders(request.module_id)[members]
            is_head = split_module_id(request.module_id)[0] == "head"
            requests.append((is_head, float(np.mean(holders))))
        return self.observation.build(ObservationInputs(
            round_fraction=self.rounds_done / cfg.env.episode_rounds,
            accuracy=self._accuracy,
            loss=self._loss,
            num_classes=self.engine.model.num_classes,
            since_edge=self.clock.since_edge,
            since_cloud=self.clock.since_cloud,
            drift=self._drift,
            cluster_uplink_bps=summary.uplink_bps,
            cluster_d2d_bps=summary.d2d_bps,
            cluster_d2d_density=summary.d2d_density,
            cluster_available=summary.available,
            energy_used_fraction=self.cumulative_energy_j / budget,
            latency_used_fraction=self.cumulative_latency_s / latency_budget,
            requests=requests,
            target_reached=self._progress.target_reached,
            # what the target rewards read: the last measured score (NaN, observed as 0, when
            # nothing was measured)
            target_gap=max((cfg.env.target_accuracy or 0.0) - self._progress.previous_score,
                           0.0),
        ))

    def _get_info(
        self,
        result: RoundResult | None,
        schedule: Schedule | None,
        repairs: DecodeReport | None,
        terms: dict[str, float],
        end: str | None = None,
    ) -> dict[str, Any]:
        """The info dict: the same keys, types and shapes at reset and at every step, and no
        NaN (``info["measured"]`` says which numbers were measured; unmeasured ones are 0).
        Round results describe the round just played (at reset: an empty round, except
        ``available`` and ``idle_clusters``, which then describe round 1, the coming one, as
        the observation's availability does); ``pending`` and ``action_mask`` describe the
        state the observation shows, for the next action."""
        n, c = self.network.num_devices, self.network.num_clusters
        p = self.config.fl.max_pending_requests
        if result is None:  # reset: nothing has been played yet
            cost = self.network.account(self.network.new_table())
            transfers = self.network.new_table().summary()
            unavailable = ~np.asarray(self.network.available, dtype=bool)
            failed, outage, idle, relayed, flags = [], [], self.engine.idle_clusters(), [], []
            loss = float("nan")
        else:
            cost, transfers = result.cost, result.transfers.summary()
            unavailable = np.zeros(n, dtype=bool)
            unavailable[result.dropped_devices] = True
            failed, outage = result.failed_devices, result.outage_devices
            idle = np.zeros(c, dtype=bool)
            idle[result.idle_clusters] = True
            relayed, flags, loss = result.relayed, result.flags, result.train_loss
        cost_info = cost.to_dict()
        cost_info["energy_by_module_type_j"] = {
            t: cost_info["energy_by_module_type_j"].get(t, 0.0) for t in MODULE_TYPES}
        # copies: a caller editing info must not reach the env's state (last_result)
        cost_info["energy_by_device_j"] = np.array(cost.energy_by_device_j, dtype=np.float64)
        cost_info["latency_by_cluster_s"] = np.array(cost.latency_by_cluster_s,
                                                     dtype=np.float64)
        cost_info["energy_by_cluster_j"] = np.array(cost.energy_by_cluster_j, dtype=np.float64)
        cost_info["energy_charged_to_cluster_j"] = np.array(cost.energy_charged_to_cluster_j,
                                                            dtype=np.float64)
        transfers["by_module_type"] = {
            t: transfers["by_module_type"].get(t, {"flows": 0, "bits": 0.0})
            for t in MODULE_TYPES}
        measured = {
            "accuracy": _finite(self._accuracy.get("mean")),
            "accuracy_local": _finite(self._accuracy_local.get("mean")),
            "accuracy_held_out": _finite(self._accuracy_held_out.get("mean")),
            "train_loss": _finite(loss),
        }
        info: dict[str, Any] = {
            "round": self.rounds_done,
            "measured": measured,
            "accuracy": _zero_nan(self._accuracy),
            "accuracy_local": _zero_nan(self._accuracy_local),
            "accuracy_held_out": _zero_nan(self._accuracy_held_out),
            "train_loss": loss if measured["train_loss"] else 0.0,
            "latency_s": float(cost.latency_s),
            "energy_j": float(cost.energy_j),
            "cumulative_latency_s": self.cumulative_latency_s,
            "cumulative_energy_j": self.cumulative_energy_j,
            "reward_terms": {k: float(terms.get(k, 0.0))
                             for k in TERM_NAMES},
            "schedule": self._schedule_info(schedule, relayed),
            "transfers": transfers,
            "cost": cost_info,
            "available": ~unavailable,
            "failed": _flags(n, failed),
            "outage": _flags(n, outage),
            "idle_clusters": np.asarray(idle, dtype=bool),
            # modules as indices into ``env.unwrapped.module_ids`` (numbers only: the checkers
            # and vector-env buffers compare and stack info arrays numerically)
            "relayed_device": _padded([r.device for r in relayed], p),
            "relayed_module": _padded([self._module_index[r.module_id] for r in relayed], p),
            "repairs": repairs.to_dict() if repairs else DecodeReport().to_dict(),
            "flags": "; ".join(flags),
            "end": end or "",
        }
        return info

    def _add_next_action_info(self, info: dict[str, Any]) -> None:
        """The keys that describe the state the observation shows, for the next action: the
        pending requests and the action mask (drawn after the round in ``info`` was played)."""
        p = self.config.fl.max_pending_requests
        pending = self.engine.pending
        info["pending_device"] = _padded([r.device for r in pending], p)
        info["pending_module"] = _padded([self._module_index[r.module_id] for r in pending], p)
        info["action_mask"] = self.action_masks()

    def _schedule_info(self, schedule: Schedule | None,
                       served: Sequence[ModuleRequest] = ()) -> dict[str, Any]:
        """The decoded schedule in fixed-size arrays: tiers per module type, route and head
        per cluster (head -1: the cluster sat the round out), D2D partner per device (-1:
        none), and for the k-th request the round served (``served``: those of
        ``info["relayed_device"]``, in its order; a relay lost to outage served none) the
        source kind (-1: none, else ``SourceKind``: 0 device, 1 edge, 2 cloud) and source
        device (-1 unless a device). At reset: nothing aggregated, default heads."""
        n, c = self.network.num_devices, self.network.num_clusters
        p = self.config.fl.max_pending_requests
        partner = np.full(n, -1, dtype=np.int64)
        source = np.full(p, -1, dtype=np.int64)
        source_device = np.full(p, -1, dtype=np.int64)
        if schedule is None:
            return {"tiers": {t: "none" for t in MODULE_TYPES},
                    "routes": np.zeros(c, dtype=np.int64),
                    "heads": np.array(self.network.heads, dtype=np.int64), "partner": partner,
                    "relay_source": source, "relay_source_device": source_device}
        for i, j in schedule.pairs:
            partner[i], partner[j] = j, i
        for k, request in enumerate(served[:p]):  # (k-th as relayed_device's k-th)
            src = schedule.relay_sources[request]
            source[k], source_device[k] = int(src.kind), int(src.device)
        layout = RoundLayout.resolve(schedule, self.network)  # the schedule's defaults
        return {
            "tiers": schedule.tier_names(),
            "routes": np.asarray([int(r) for r in layout.routes], dtype=np.int64),
            "heads": np.asarray(layout.heads, dtype=np.int64),
            "partner": partner,
            "relay_source": source,
            "relay_source_device": source_device,
        }


def _with_reward(overrides: Any, reward: str | Reward | None) -> Any:
    """``overrides`` with ``env.reward`` set last to a named ``reward``, inside the ``env``
    section where the overrides give that section whole (as given otherwise: a callable
    reward is not the config's, and overrides the config cannot read are refused by its own
    check, in its words)."""
    if not isinstance(reward, str):
        return overrides
    if overrides is None:
        return {"env.reward": reward}
    try:
        items = (list(overrides.items()) if isinstance(overrides, Mapping)
                 else [parse_override(o) for o in overrides]
                 if isinstance(overrides, (list, tuple)) else None)
    except ConfigError:
        items = None
    if items is None:
        return overrides
    given = dict(items)  # (a key given twice: the later value, as the config takes it)
    section = given.get("env")
    if isinstance(section, Mapping):
        given["env"] = {**section, "reward": reward}
    elif "env" not in given:  # (an env section that is not a mapping: the config refuses it)
        given["env.reward"] = reward
    return given


def _reward_function(reward: str | Reward | None, configured: str, mode: str) -> Reward:
    """The env's reward: ``reward`` by name or as a callable with the signature of
    :data:`hffm_env.envs.reward.Reward` (as sumo-rl takes one), else ``env.reward`` of the
    config. A callable's bounds are unknown, so vector mode needs a named reward."""
    if reward is None or isinstance(reward, str):
        return get_reward(configured if reward is None else reward)
    if not callable(reward):
        raise ValueError(f"reward = {reward!r}: must be None, a name in {list(REWARDS)} or a "
                         "callable (RewardInputs, CostRange, RewardWeights) -> terms")
    if mode == "vector":
        raise ValueError("reward_mode = 'vector' needs a named reward (its reward_space bounds "
                         f"are known); got the callable {reward!r}")
    return reward


_CLOSED = "the env is closed (close() freed its model and network): make a new env to go on"


class _Closed:
    """What a closed env holds in place of its engine, network and data: reading anything of
    it says the env is closed, instead of failing deep inside on a missing object."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(_CLOSED)


def measured(info: Mapping[str, Any], key: str, task: str = "mean") -> float:
    """A measured number of ``info`` (``"accuracy"``, ``"accuracy_local"``,
    ``"accuracy_held_out"`` per task or ``"mean"``, or ``"train_loss"``), NaN when this
    round did not measure it (info itself holds 0.0 there and ``info["measured"][key]`` is
    False)."""
    if key not in info["measured"]:
        raise ValueError(f"measured key = {key!r}: allowed {list(info['measured'])}")
    value = info[key]
    tasks = list(value) if isinstance(value, dict) else ["mean"]
    if task not in tasks:  # checked even when unmeasured: a typo must not read as NaN
        raise ValueError(f"measured {key!r} task = {task!r}: allowed {tasks}")
    if not info["measured"][key]:
        return float("nan")
    return float(value[task] if isinstance(value, dict) else value)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _zero_nan(scores: dict[str, float]) -> dict[str, float]:
    """Scores with unmeasured (NaN) entries as 0.0 (``info["measured"]`` flags them)."""
    return {k: float(v) if math.isfinite(v) else 0.0 for k, v in scores.items()}


def _flags(size: int, indices: list[int]) -> np.ndarray:
    out = np.zeros(size, dtype=bool)
    out[list(indices)] = True
    return out


def _padded(values: list[int], size: int) -> np.ndarray:
    """``values`` in an int array of ``size``, padded with -1."""
    out = np.full(size, -1, dtype=np.int64)
    out[: min(len(values), size)] = values[:size]
    return out
