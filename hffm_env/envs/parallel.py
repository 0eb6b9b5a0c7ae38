"""The multi-agent form: a PettingZoo ``ParallelEnv`` with one agent per edge server and one
for the cloud, over the single-agent env's engine and action decoding.

Decentralised orchestration as the HF-FM literature describes it: each edge server decides
for its cluster, the cloud decides the cloud tier. The agents' actions are assembled into the
single-agent env's full action and played by :class:`~hffm_env.envs.hffm_env.HFFMEnv` (its
decoding, repairs, cost model and training), so no rule exists twice.

## Agents
``edge_0`` ... ``edge_{C-1}`` and ``cloud_0``, all present from ``reset`` to the episode's end
(a cluster whose devices all dropped out stays an agent: its head, partner and relay slots
then allow only their defaults, and the cluster sits the round out; its period slots stay
free, and its periods still count when the agents' periods are combined). Every agent ends
together, when the single-agent env's episode ends.

## Action spaces (``MultiDiscrete``)
``edge_<c>``, in order:

| slots | count | values |
| --- | --- | --- |
| ``edge_period/<type>`` | 5 | index into the period menu: how often this edge wants the type |
| ``pair_exchange/<type>`` | 5 | 1: D2D pairs of this cluster gossip the type in idle rounds |
| ``route`` | 1 | 0 direct uplink, 1 D2D relay via the head, 2 star |
| ``head`` | 1 | index of the head among the cluster's members |
| ``partner/<m>`` | M | the partner choice of the cluster's m-th member (0 for padding) |
| ``relay/<r>`` | P | the relay choice of request slot r if its device is in this cluster |

``cloud_0``: ``cloud_period/<type>`` (5 slots, index into the period menu).

The engine aggregates a module type at the edge tier of every cluster in the same round, so
the edge agents' periods combine into one per type: the most frequent proposal (the smallest
period; "never" only if every edge agent says never); likewise a type's pair exchange is on
when any edge agent turns it on. Request slots of another cluster's device allow only 0.

## Observations and masks
Each observation is ``{"observation": Box, "action_mask": Tuple(MultiBinary(n_i))}``: the
observation of an edge agent is the single-agent observation's shared entries (round,
accuracy and loss per task, staleness and drift per module type, budgets, pending requests,
and the target entries when ``env.observe_target`` is on) followed by its own cluster's four
entries, and with ``agent_indicator=True`` a one-hot of its cluster (``num_clusters``
entries: what lets one policy shared by the edge agents tell them apart, as SuperSuit's
``agent_indicator`` does; the RLlib multi-agent engine turns it on); the cloud sees the whole
single-agent observation. ``action_mask`` holds one ``int8`` vector per slot, the form
``MultiDiscrete.sample(mask=...)`` takes (so PettingZoo's test and samplers use it), and
(with the default ``info="full"``) ``infos[agent]["action_mask"]`` is the same mask flat and
boolean (sb3-contrib's layout).
With ``action_mask="flat"`` the observed mask is that flat vector instead, as a
``Box(0, 1, (sum of the slots' sizes,), int8)`` (the form libraries that tensorise every
observation take, e.g. skrl's multi-agent wrapper); PettingZoo's ``parallel_api_test``
samples with the observed mask, which a ``MultiDiscrete`` takes per slot only. With
``action_mask="one-hot"`` it is the same values shaped as the agent's action in one-hot form
(:func:`flat_mask_shape`: ``(slots, n)`` when every slot has ``n`` choices, as the cloud's
period slots do, else flat), the shape TorchRL's ``PettingZooWrapper`` gives its action
masks; with ``info="numeric"`` (below) TorchRL wraps the env.

``observation_spaces`` and ``action_spaces`` hold every agent's spaces (the objects
``observation_space(a)`` and ``action_space(a)`` return); ``state()`` is the single-agent
observation of the last reset or step (what the cloud agent observes), in ``state_space``:
the global state centralised critics (MAPPO) take.

## Rewards
``reward_split="team"`` (default): every agent receives the single-agent env's scalar reward.
``"cost-share"``: every agent receives the accuracy term; each edge agent also an equal part
of what each cost term would be for a round that cost nothing, plus its cluster's share of the
rest (the charge): of the latency term's by its ``latency_by_cluster_s`` over their sum, of the
energy term's by its ``energy_charged_to_cluster_j`` (its devices' computation and every
transmission of its flows, its edge server's and the cloud's for it included) over their sum. So a
cluster that costs more never earns more, even when a term is positive (a round cheaper than
the reward's ``never`` reference). The cloud receives the team reward. The edge agents'
rewards sum to the team reward (up to the accuracy term counted per agent). To know what a
round at no cost would earn, cost-share calls the reward a second time each step (a custom
``reward`` that keeps state sees both calls).
## Infos
``info="full"`` (default): ``infos[agent]`` holds the flat mask and the whole single-agent
info of the round (``infos[a]["env"]``, nested dicts and strings included). ``info="numeric"``:
only the round's :data:`NUMERIC_INFO`, as Python numbers (accuracy and training loss NaN in a
round that did not measure them; costs 0 at reset; the mask is in the observation): the same
keys and shapes in every reset and step, the form libraries that turn every info value into
a tensor take (TorchRL's ``PettingZooWrapper``, BenchMARL).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, cast

import numpy as np
from gymnasium import spaces

from hffm_env.config import MODULE_TYPES, NEVER, REWARD_SPLITS
from hffm_env.envs.action import check_action
from hffm_env.envs.hffm_env import HFFMEnv, measured
from hffm_env.envs.render import RENDER_METADATA
from hffm_env.envs.reward import check_terms
from hffm_env.values import shown

try:  # PettingZoo is the optional extra ``pip install hffm-env[integrations]``
    from pettingzoo import ParallelEnv
    from pettingzoo.utils.wrappers import BaseWrapper
except ImportError:  # pragma: no cover - exercised only without the extra
    ParallelEnv = BaseWrapper = object

__all__ = ["INFO_FORMS", "MASK_FORMS", "NUMERIC_INFO", "REWARD_SPLITS", "CheckedAgentActions",
           "HFFMParallelEnv", "combine_periods", "flat_mask_shape", "numeric_info"]

CLOUD = "cloud_0"
SHARED_BLOCKS = ("edge_period", "pair_exchange")
"""Edge agents' action blocks that every agent proposes for one slot of the single-agent
action (the engine aggregates a module type at every cluster's edge at once):
:meth:`HFFMParallelEnv.joint_action` combines the proposals."""


def combine_periods(menu: tuple[int, ...], choices: list[int]) -> int:
    """The menu index of the shortest period among ``choices`` (menu indices): the one that
    aggregates most often; a period of 0 ("never") only when every choice is never."""
    return min(choices, key=lambda i: (menu[i] == NEVER, menu[i]))


def _check_indicator(agent_indicator: bool) -> None:
    if not isinstance(agent_indicator, (bool, np.bool_)):
        raise ValueError(f"agent_indicator = {agent_indicator!r}: must be True or False")


def _check_split(reward_split: str) -> None:
    if reward_split not in REWARD_SPLITS:
        raise ValueError(f"reward_split = {reward_split!r}: must be one of {list(REWARD_SPLITS)}")


MASK_FORMS: tuple[str, ...] = ("per-slot", "flat", "one-hot")
"""How the parallel env's observations carry the action mask (``action_mask=``)."""


def flat_mask_shape(nvec: np.ndarray, form: str) -> tuple[int, ...]:
    """The shape of an agent's observed mask in the ``"flat"`` and ``"one-hot"`` forms, for
    its action sizes ``nvec``: one vector, except ``"one-hot"`` with every slot of one size
    ``n``, which is ``(slots, n)`` (the shape of a one-hot ``MultiDiscrete`` of equal sizes,
    as TorchRL's action specs take it)."""
    if form == "one-hot" and len(set(nvec.tolist())) == 1:
        return (len(nvec), int(nvec[0]))
    return (int(nvec.sum()),)


def _check_mask_form(action_mask: str) -> None:
    if action_mask not in MASK_FORMS:
        raise ValueError(f"action_mask = {action_mask!r}: must be one of {list(MASK_FORMS)}")


INFO_FORMS: tuple[str, ...] = ("full", "numeric")
"""What each agent's info holds (``info=``): the whole single-agent info, or numbers only."""

NUMERIC_INFO: tuple[str, ...] = ("round", "accuracy", "train_loss", "latency_s", "energy_j",
                                 "cumulative_latency_s", "cumulative_energy_j")
"""The single-agent info's numbers in each agent's info with ``info="numeric"`` (accuracy is
the mean over tasks)."""


def _check_info_form(info: str) -> None:
    if info not in INFO_FORMS:
        raise ValueError(f"info = {info!r}: must be one of {list(INFO_FORMS)}")


def numeric_info(info: dict[str, Any]) -> dict[str, float]:
    """:data:`NUMERIC_INFO` of a single-agent ``info``, NaN for what the round did not
    measure."""
    return {key: (measured(info, key) if key in info["measured"] else float(info[key]))
            for key in NUMERIC_INFO}


class HFFMParallelEnv(ParallelEnv):
    """One agent per edge server plus the cloud (see the module docstring for the MAMDP).

    Args:
        scenario, overrides, config_file, fidelity, device, torch_threads, progress,
            surrogate, reward: as for :class:`~hffm_env.envs.hffm_env.HFFMEnv` (scalar
            reward mode).
        reward_split: ``"team"`` or ``"cost-share"``.
        render_mode: ``None``, ``"human"``, ``"rgb_array"`` or ``"ansi"``: the single-agent
            env's frame (``"human"``: a matplotlib window that ``reset`` and ``step`` draw,
            paced at ``metadata["render_fps"]``; ``render()`` returns ``None``).
        action_mask: ``"per-slot"`` (one ``int8`` vector per slot, a ``Tuple`` space),
            ``"flat"`` (one ``int8`` vector, a ``Box``) or ``"one-hot"`` (the same ``Box``
            shaped as the action's one-hot form, :func:`flat_mask_shape`; TorchRL's).
        info: ``"full"`` (the single-agent info under ``"env"``) or ``"numeric"`` (numbers
            only, :data:`NUMERIC_INFO`; for TorchRL's ``PettingZooWrapper``).
    """

    metadata = {"name": "hffm_parallel_v0",
                "render_modes": list(RENDER_METADATA["render_modes"]),
                "render_fps": RENDER_METADATA["render_fps"], "is_parallelizable": True}

    def __init__(self, scenario: Any = None, *, reward_split: str = "team",
                 render_mode: str | None = None, action_mask: str = "per-slot",
                 info: str = "full", agent_indicator: bool = False,
                 **env_kwargs: Any) -> None:
        if ParallelEnv is object:
            raise ImportError("hffm_env.parallel_env needs PettingZoo: "
                              "pip install 'hffm-env[integrations]' (or pettingzoo)")
        _check_split(reward_split)  # before the env is built
        _check_mask_form(action_mask)
        _check_info_form(info)
        _check_indicator(agent_indicator)
        if env_kwargs.get("reward_mode", "scalar") != "scalar":
            raise ValueError("reward_mode: the parallel env splits the scalar reward; "
                             "use reward_split for per-agent rewards")
        self._bind(HFFMEnv(scenario, render_mode=render_mode, **env_kwargs), reward_split,
                   action_mask, info, agent_indicator)

    @classmethod
    def over(cls, env: HFFMEnv, *, reward_split: str = "team",
             action_mask: str = "per-slot", info: str = "full",
             agent_indicator: bool = False) -> HFFMParallelEnv:
        """The multi-agent view of an existing single-agent env, which keeps driving the
        episode: :meth:`observe` splits its observation among the agents and
        :meth:`joint_action` assembles their actions (how a multi-agent policy plays in the
        baselines' runner)."""
        if not isinstance(env, HFFMEnv):
            raise TypeError(f"HFFMParallelEnv.over: expected an HFFMEnv (env.unwrapped), "
                            f"got {type(env).__name__}")
        _check_split(reward_split)
        _check_mask_form(action_mask)
        _check_info_form(info)
        _check_indicator(agent_indicator)
        if env.reward_mode != "scalar":
            raise ValueError(f"HFFMParallelEnv.over: the env's reward_mode = "
                             f"{env.reward_mode!r}: the agents share a scalar reward; build "
                             "the env with reward_mode='scalar'")
        view = cls.__new__(cls)
        view._bind(env, reward_split, action_mask, info, agent_indicator)
        return view

    def _bind(self, env: HFFMEnv, reward_split: str, action_mask: str, info: str,
              agent_indicator: bool) -> None:
        self.env = env
        self.agent_indicator = agent_indicator
        self.render_mode = env.render_mode
        self.reward_split = reward_split
        self.action_mask_form = action_mask
        self.info_form = info
        self.state_space = cast(spaces.Box, env.observation_space)
        """The space of :meth:`state`: the single-agent observation's."""
        self._state: np.ndarray | None = None
        layout = self.env.layout
        self.num_clusters = layout.num_clusters
        self.possible_agents = [f"edge_{c}" for c in range(self.num_clusters)] + [CLOUD]
        self.agents: list[str] = []
        self._slot = {name: i for i, name in enumerate(layout.slot_names)}
        names = self.env.observation_names
        self._shared = [i for i, n in enumerate(names) if not n.startswith("cluster/")]
        self._own = [[i for i, n in enumerate(names) if n.startswith(f"cluster/{c}/")]
                     for c in range(self.num_clusters)]
        edge_slots = ([f"edge_period/{t}" for t in MODULE_TYPES]
                      + [f"pair_exchange/{t}" for t in MODULE_TYPES] + ["route", "head"]
                      + [f"partner/{m}" for m in range(layout.max_cluster)]
                      + [f"relay/{r}" for r in range(layout.num_requests)])
        self.slot_names = {agent: edge_slots for agent in self.possible_agents[:-1]}
        self.slot_names[CLOUD] = [f"cloud_period/{t}" for t in MODULE_TYPES]
        self._nvec = {agent: self._sizes(agent) for agent in self.possible_agents}
        self.action_spaces: dict[str, spaces.MultiDiscrete] = {
            a: spaces.MultiDiscrete(self._nvec[a]) for a in self.possible_agents}
        """Every agent's action space (PettingZoo's attribute)."""
        self.observation_spaces: dict[str, spaces.Dict] = {
            a: self._observation_space(a) for a in self.possible_agents}
        """Every agent's observation space (PettingZoo's attribute)."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A copy starts without an episode, like the single-agent env it holds (which a
        pickle rebuilds fresh): no live agents until ``reset()``."""
        self.__dict__.update(state)
        self.agents = []
        self._state = None

    # ---------------------------------------------------------------------------- spaces

    def _sizes(self, agent: str) -> np.ndarray:
        nvec = self.env.layout.nvec
        partner_size = self.env.layout.k + 1  # a padding partner slot stands for none
        return np.array([partner_size if s is None else nvec[self._slot[s]]
                         for s in self._full_slots(agent)], dtype=np.int64)

    def _full_slots(self, agent: str, owners: list[int] | None = None) -> list[str | None]:
        """Per slot of ``agent``'s action, the single-agent action's slot it stands for: the
        cloud's, the period and pair slots as named; an edge agent's route and head those of
        its cluster, its m-th partner slot its m-th member's, a relay slot the request's
        when that request is its cluster's (``owners``: :meth:`_request_owners`; None: every
        relay slot, for its size). None: a slot the agent does not own (a partner slot past
        its cluster's size, another cluster's request). The one mapping that the spaces, the
        masks and the joint action follow."""
        if agent == CLOUD:
            return list(self.slot_names[CLOUD])
        c = int(agent.removeprefix("edge_"))
        members = self.env.layout.cluster_members[c]
        out: list[str | None] = []
        for name in self.slot_names[agent]:
            block, _, key = name.partition("/")
            if block in ("route", "head"):
                out.append(f"{block}/{c}")
            elif block == "partner":
                out.append(f"partner/{int(members[int(key)])}" if int(key) < len(members)
                           else None)
            elif block == "relay" and owners is not None and owners[int(key)] != c:
                out.append(None)
            else:
                out.append(name)
        return out

    def action_space(self, agent: str) -> spaces.MultiDiscrete:
        """The agent's ``MultiDiscrete`` (see the module docstring); the same object on
        every call, so that seeding it sticks."""
        return self.action_spaces[self._check_agent(agent)]

    def observation_space(self, agent: str) -> spaces.Dict:
        """``Dict(observation=Box(0, 1), action_mask=Tuple(MultiBinary(n) per slot))`` (with
        ``action_mask="flat"``: ``action_mask=Box(0, 1, (sum of n,), int8)``, ``"one-hot"``:
        the same values shaped by :func:`flat_mask_shape`); the same object on every call."""
        return self.observation_spaces[self._check_agent(agent)]

    def _observation_space(self, agent: str) -> spaces.Dict:
        size = len(self.env.observation_names) if agent == CLOUD else (
            len(self._shared) + len(self._own[0])
            + (self.num_clusters if self.agent_indicator else 0))
        nvec = self._nvec[agent]
        mask = (spaces.Tuple([spaces.MultiBinary(int(n)) for n in nvec])
                if self.action_mask_form == "per-slot"
                else spaces.Box(0, 1, shape=flat_mask_shape(nvec, self.action_mask_form),
                                dtype=np.int8))
        return spaces.Dict({
            "observation": spaces.Box(0.0, 1.0, shape=(size,), dtype=np.float32),
            "action_mask": mask,
        })

    def _check_agent(self, agent: str) -> str:
        if agent not in self.possible_agents:
            raise ValueError(f"agent {agent!r}: unknown; agents are {self.possible_agents}")
        return agent

    # ---------------------------------------------------------------------------- API

    def reset(self, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        """Reset the single-agent env with ``seed``; every agent is present."""
        obs, info = self.env.reset(seed=seed, options=options)
        self.agents = list(self.possible_agents)
        return self.observe(obs, info)

    def step(self, actions: dict[str, np.ndarray]) -> tuple[dict, dict, dict, dict, dict]:
        """Play one round with every live agent's action (each must act: a missing one is
        refused by name, since no default of its slots is a neutral choice)."""
        if not self.agents:
            raise RuntimeError("call reset() before step() (and after an episode ends)")
        if not isinstance(actions, Mapping):
            raise ValueError(f"actions = {actions!r}: must be a dict of agent name to action "
                             f"(agents: {self.agents})")
        unknown = set(actions) - set(self.agents)
        if unknown:
            raise ValueError(f"actions for {sorted(unknown)}: not live agents "
                             f"(live: {self.agents})")
        full = self.joint_action(actions)
        obs, reward, terminated, truncated, info = self.env.step(full)
        rewards = self._rewards(float(reward), info)
        observations, infos = self.observe(obs, info)
        done = terminated or truncated
        terms = dict.fromkeys(self.agents, bool(terminated))
        truncs = dict.fromkeys(self.agents, bool(truncated))
        if done:
            self.agents = []
        return observations, rewards, terms, truncs, infos

    def state(self) -> np.ndarray:
        """The global state: the single-agent observation of the last reset or step (what
        the cloud agent observes), in :attr:`state_space`."""
        if self._state is None:
            raise RuntimeError("call reset() before state()")
        return self._state.copy()

    def render(self) -> Any:
        """The single-agent env's frame (``"human"``: drawn in its window, ``None``)."""
        return self.env.render()

    def close(self) -> None:
        """Close the single-agent env (and its ``human`` window); ``state()`` and ``agents``
        are those of no episode afterwards."""
        self.env.close()
        self._state = None
        self.agents = []

    # ---------------------------------------------------------------------------- mapping

    def joint_action(self, actions: dict[str, np.ndarray]) -> np.ndarray:
        """The single-agent env's full action for the agents' actions, one for every agent
        (slot errors name the agent and its slot; an action for no agent is refused)."""
        if not isinstance(actions, Mapping):
            raise ValueError(f"actions = {shown(actions)}: must be a dict of agent name to "
                             f"action (agents: {self.possible_agents})")
        unknown = [a for a in actions if a not in self.possible_agents]
        if unknown:  # a misspelt name's action would be dropped without a word
            raise ValueError(f"actions for {unknown}: no such agent (agents: "
                             f"{self.possible_agents})")
        missing = [a for a in self.possible_agents if a not in actions]
        if missing:  # (its slots' index 0 is period 1: the dearest choice, not "nothing")
            raise ValueError(f"actions: none for {missing}; every agent acts each round "
                             f"(agents: {self.possible_agents})")
        layout = self.env.layout
        full = np.zeros(len(layout.nvec), dtype=np.int64)
        checked = {a: self.check_action(a, actions[a]) for a in self.possible_agents}
        edges = [checked[f"edge_{c}"] for c in range(self.num_clusters)]
        edge_at = {name: i for i, name in enumerate(self.slot_names["edge_0"])}  # all alike
        cloud_at = {name: i for i, name in enumerate(self.slot_names[CLOUD])}
        for t in MODULE_TYPES:
            full[self._slot[f"edge_period/{t}"]] = combine_periods(
                layout.menu, [int(a[edge_at[f"edge_period/{t}"]]) for a in edges])
            full[self._slot[f"pair_exchange/{t}"]] = int(
                any(a[edge_at[f"pair_exchange/{t}"]] for a in edges))
            full[self._slot[f"cloud_period/{t}"]] = int(checked[CLOUD][cloud_at[
                f"cloud_period/{t}"]])
        owners = self._request_owners()
        for c, a in enumerate(edges):  # each owns its cluster's route, head, partners, relays
            for value, target in zip(a, self._full_slots(f"edge_{c}", owners), strict=True):
                if target is not None and target.partition("/")[0] not in SHARED_BLOCKS:
                    full[self._slot[target]] = value
        return full

    def check_action(self, agent: str, action: Any) -> np.ndarray:
        """``agent``'s action as an int64 vector, or a ``ValueError`` naming the agent and its
        dtype, shape or slot."""
        nvec = self._nvec[self._check_agent(agent)]
        if action is None:  # (no default: index 0 is no neutral choice)
            raise ValueError(f"action of {agent} = None: every live agent acts each round "
                             f"(its space: {self.action_space(agent)})")
        return check_action(action, nvec, self.slot_names[agent], subject=f"action of {agent},")

    def _request_owners(self) -> list[int]:
        """Per request slot, the cluster of its pending request's device (-1: empty)."""
        cluster_of = self.env.network.cluster_of_device
        pending = self.env.pending
        return [int(cluster_of[pending[r].device]) if r < len(pending) else -1
                for r in range(self.env.layout.num_requests)]

    def action_masks(self, agent: str) -> np.ndarray:
        """The agent's flat boolean mask (sb3-contrib's layout) for the next action."""
        self._check_agent(agent)
        return np.concatenate(self._slot_masks(agent, self.env.action_masks(),
                                               self._request_owners()))

    def _slot_masks(self, agent: str, flat: np.ndarray, owners: list[int]) -> list[np.ndarray]:
        """The agent's mask per slot, cut from the single-agent env's ``flat`` mask
        (``owners``: :meth:`_request_owners`)."""
        layout = self.env.layout
        per_slot = layout.split_mask(flat)

        def of(name: str) -> np.ndarray:
            return per_slot[self._slot[name]]

        def only_default(size: int) -> np.ndarray:
            mask = np.zeros(size, dtype=bool)
            mask[0] = True
            return mask

        return [only_default(int(size)) if target is None else of(target)
                for target, size in zip(self._full_slots(agent, owners), self._nvec[agent],
                                        strict=True)]

    def observe(self, obs: np.ndarray, info: dict[str, Any]) -> tuple[dict, dict]:
        """Every agent's observation (with its per-slot masks) and info, from the
        single-agent env's ``obs`` and ``info`` of the same step."""
        observations, infos = {}, {}
        flat, owners = info["action_mask"], self._request_owners()  # one mask for all agents
        numbers = numeric_info(info) if self.info_form == "numeric" else None
        for agent in self.possible_agents:
            if agent == CLOUD:
                own = obs
            else:
                c = int(agent.removeprefix("edge_"))
                own = np.concatenate([obs[self._shared], obs[self._own[c]]])
                if self.agent_indicator:
                    own = np.concatenate([own, np.eye(self.num_clusters)[c]])
            slot_masks = self._slot_masks(agent, flat, owners)
            flat_mask = np.concatenate(slot_masks)
            observations[agent] = {
                "observation": own.astype(np.float32),
                "action_mask": (tuple(m.astype(np.int8) for m in slot_masks)
                                if self.action_mask_form == "per-slot"
                                else flat_mask.astype(np.int8).reshape(
                                    self.observation_spaces[agent]["action_mask"].shape)),
            }
            infos[agent] = ({"action_mask": flat_mask, "env": info} if numbers is None
                            else dict(numbers))
        self._state = np.asarray(obs, dtype=np.float32).copy()
        return observations, infos

    def _rewards(self, reward: float, info: dict[str, Any]) -> dict[str, float]:
        if self.reward_split == "team":
            return dict.fromkeys(self.agents, reward)
        terms = info["reward_terms"]
        # what the same round would earn if it cost nothing: only the part of each cost term
        # below that is charged by share (a term can be positive, e.g. a round cheaper than
        # the reward's `never` reference; a bigger share must never earn more)
        env = self.env
        played = env.last_reward_inputs
        if played is None:  # split only after a step, which records them
            raise RuntimeError("no round played yet: nothing to split")
        try:  # the reward once more, on the round at no cost (a second call per step)
            free = check_terms(env.reward_function(
                dataclasses.replace(played, latency_s=0.0, energy_j=0.0),
                env.cost_range, env.reward_weights), env.reward_function)
        except Exception as err:
            # the round is played: end the episode loudly, as the env does for its own call
            self.agents = []
            raise RuntimeError(f"the reward failed on the round at no cost that cost-share "
                               f"splits against ({type(err).__name__}: {err}); the episode "
                               "ends: call reset()") from err
        latency = np.asarray(info["cost"]["latency_by_cluster_s"], dtype=np.float64)
        energy = np.asarray(info["cost"]["energy_charged_to_cluster_j"], dtype=np.float64)
        rewards = {CLOUD: reward}
        c_all = self.num_clusters
        for c in range(c_all):
            lat_share = latency[c] / latency.sum() if latency.sum() > 0 else 1 / c_all
            en_share = energy[c] / energy.sum() if energy.sum() > 0 else 1 / c_all
            split = terms["accuracy"]
            for term, share in (("latency", lat_share), ("energy", en_share)):
                floor = free.get(term, 0.0)
                split += share * (terms[term] - floor) + floor / c_all
            rewards[f"edge_{c}"] = float(split)
        return rewards


class CheckedAgentActions(BaseWrapper):
    """PettingZoo's AEC form of :class:`HFFMParallelEnv` (``parallel_to_aec``), checking each
    agent's action when that agent acts: the conversion collects the actions and plays them
    when the last agent has acted, so a bad one would otherwise surface only then, and stick.
    A live agent must act (None is for agents that are done)."""

    def step(self, action: Any) -> None:
        """Check ``action`` of the agent whose turn it is, then play it."""
        agent = self.env.agent_selection
        if agent not in self.env.terminations:  # every agent is done: the episode ended
            raise RuntimeError("call reset() before step() (and after an episode ends)")
        if not (self.env.terminations[agent] or self.env.truncations[agent]):
            self.env.unwrapped.check_action(agent, action)
        self.env.step(action)
