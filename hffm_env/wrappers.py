"""Thin action wrappers for learners that want a smaller action space.

``CoarseActions``
    ``MultiDiscrete``: per module type an edge period and a cloud period (values from
    ``env.period_menu``), and a route per cluster. Heads stay the network's defaults, no D2D
    pair exchange, pending modules are relayed from the edge server. 14 slots on ``small``
    instead of 39; every period schedule of the paper is one of its actions.
``ScheduleMenu``
    ``Discrete(k)`` over named fixed schedules (the paper's seven and ``never`` by default),
    for discrete-only libraries (DQN, morl-baselines).

Both keep the observation, reward and info of the env and expose ``action_masks()`` for their
own space (sb3-contrib's MaskablePPO finds it through the wrapper), derived from the env's;
``info["action_mask"]`` is that mask too (of the wrapper's space, not the env's full one).

``ActionMaskObservation``
    ``Dict(observation=Box, action_mask=Box(bool))``: the mask of the (possibly wrapped)
    action space inside the observation, where TorchRL's ``ActionMask`` transform, RLlib's
    and PettingZoo-style masking clients look for it. Put it outermost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from hffm_env.config import MODULE_TYPES, NEVER
from hffm_env.envs.action import (
    RELAY_EDGE,
    RELAY_WAIT,
    ActionLayout,
    check_action,
    per_module_type,
    period_index,
)
from hffm_env.fl.schedule import Route, choices, is_member
from hffm_env.values import is_integer

__all__ = ["ActionMaskObservation", "CoarseActions", "ScheduleMenu", "PAPER_MENU", "full_action",
           "relay_from_edge", "coarse_slot_names", "coarse_num_clusters", "encode_coarse"]

PAPER_MENU: dict[str, tuple[int, int, Route]] = {
    "star": (1, 1, Route.STAR),
    "edge-only": (1, NEVER, Route.DIRECT),
    "edge-only-d2d": (1, NEVER, Route.D2D_RELAY),
    "hffm-e2": (1, 2, Route.DIRECT),
    "hffm-e8": (1, 8, Route.DIRECT),
    "hffm-d2d-e2": (1, 2, Route.D2D_RELAY),
    "hffm-d2d-e8": (1, 8, Route.D2D_RELAY),
    "never": (NEVER, NEVER, Route.DIRECT),
}
"""The paper's seven schedules and ``never``: name -> (edge period, cloud period, route)."""


def relay_from_edge(slots: int, pending: int,
                    present: Sequence[bool] | None = None) -> list[int]:
    """Relay choices that serve every pending module from the edge server (choice 1) and
    wait on the empty request slots, and on those whose requester is not ``present`` (one
    flag per pending request: available this round; it can receive nothing)."""
    for name, value in (("slots", slots), ("pending", pending)):
        if not (is_integer(value) and value >= 0):
            raise ValueError(f"relay_from_edge: {name} = {value!r}: must be an integer >= 0")
    if present is not None and len(present) != pending:
        raise ValueError(f"relay_from_edge: present has {len(present)} flags: must have one "
                         f"per pending request ({pending})")
    return [RELAY_EDGE if r < pending and (present is None or present[r]) else RELAY_WAIT
            for r in range(slots)]


def full_action(env: Any, edge: Mapping[str, int] | int, cloud: Mapping[str, int] | int,
                routes: Sequence[Route] | Route, **choices: Any) -> np.ndarray:
    """The env's full action for periods (values from the menu) and routes, with default
    heads, no pair exchange, and pending modules relayed from the edge server. ``choices``:
    other arguments of :meth:`~hffm_env.envs.action.ActionLayout.encode` (``pair_exchange``,
    ``partners``, ``heads``, ``relay``) that replace those defaults."""
    _layout_of(env, "full_action", changed_space_ok=True)  # an HF-FM env, or a TypeError
    base = env.unwrapped
    layout = base.layout
    present = [bool(base.network.available[r.device]) for r in base.pending]
    defaults = {"heads": base.default_heads.tolist(),
                "relay": relay_from_edge(layout.num_requests, len(base.pending), present)}
    return layout.encode(edge, cloud, routes, **{**defaults, **choices})


def _layout_of(env: gym.Env, wrapper: str, changed_space_ok: bool = False) -> ActionLayout:
    """The action layout of the HF-FM env under ``env``, or a TypeError naming ``wrapper``;
    with ``changed_space_ok`` (a full action made for the env below any wrappers) that is
    all it checks."""
    layout = getattr(getattr(env, "unwrapped", None), "layout", None)
    if not isinstance(layout, ActionLayout):
        raise TypeError(f"{wrapper}: {env} is not an HF-FM env (its unwrapped env "
                        "has no ActionLayout); wrap gymnasium.make('hffm/HFFM-v0', ...)")
    if changed_space_ok:
        return layout
    inner = env
    while isinstance(inner, gym.Wrapper):  # its mask would describe the action space below
        if isinstance(inner, ActionMaskObservation):
            raise TypeError(f"{wrapper}: {env} has an ActionMaskObservation inside, whose mask "
                            f"would describe the action space below {wrapper}; put it "
                            f"outermost: ActionMaskObservation({wrapper}(env))")
        inner = inner.env
    if env.action_space != env.unwrapped.action_space:  # e.g. ScheduleMenu(CoarseActions(env))
        raise TypeError(f"{wrapper}: {env} already changes the action space (to "
                        f"{env.action_space}); wrap the env with the full action instead")
    return layout


class _MaskInInfo:
    """``info["action_mask"]`` of the wrapper's own space (the env's describes its full
    action, which a client of the wrapper never plays)."""

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        """The env's reset, with this space's mask in ``info``."""
        obs, info = super().reset(**kwargs)  # type: ignore[misc]
        info["action_mask"] = self.action_masks()  # type: ignore[attr-defined]
        return obs, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        """The env's step, with this space's mask for the next action in ``info``."""
        obs, reward, terminated, truncated, info = super().step(action)  # type: ignore[misc]
        info["action_mask"] = self.action_masks()  # type: ignore[attr-defined]
        return obs, reward, terminated, truncated, info


def coarse_slot_names(num_clusters: int) -> list[str]:
    """The slots of a :class:`CoarseActions` action, in order: an edge period per module type,
    a cloud period per module type (both in :data:`~hffm_env.config.MODULE_TYPES`' order), a
    route per cluster; each named as the full action's slot it sets."""
    if not (is_integer(num_clusters) and num_clusters >= 1):
        raise ValueError(f"num_clusters = {num_clusters!r}: must be an integer >= 1")
    return ([f"edge_period/{t}" for t in MODULE_TYPES]
            + [f"cloud_period/{t}" for t in MODULE_TYPES]
            + [f"route/{c}" for c in range(num_clusters)])


def coarse_num_clusters(action_size: int) -> int:
    """The clusters of a :class:`CoarseActions` action of ``action_size`` slots (the inverse
    of :func:`coarse_slot_names`' length)."""
    periods = 2 * len(MODULE_TYPES)
    if not (is_integer(action_size) and action_size > periods):
        raise ValueError(f"action_size = {action_size!r}: must be an integer > {periods} (a "
                         "period slot per module type and tier, then a route per cluster)")
    return action_size - periods


def encode_coarse(menu: Sequence[int], edge: Mapping[str, int] | int,
                  cloud: Mapping[str, int] | int, routes: Sequence[Route | int],
                  num_clusters: int | None = None) -> np.ndarray:
    """A :class:`CoarseActions` action: the edge and cloud period of every module type (each
    a value of ``menu``, the env's ``env.period_menu``; one for all types or a mapping of
    each, as :meth:`~hffm_env.envs.action.ActionLayout.encode` takes them) and a route per
    cluster (``num_clusters`` of them, when given). Anything else raises ``ValueError``
    naming the argument, the value and what is allowed."""
    if isinstance(menu, (str, bytes)) or not isinstance(menu, (Sequence, np.ndarray)) \
            or not all(is_integer(p) for p in menu):
        raise ValueError(f"menu = {menu!r}: must be the env's period menu, a list of integers "
                         "(env.period_menu)")
    if num_clusters is not None and not (is_integer(num_clusters) and num_clusters >= 1):
        raise ValueError(f"num_clusters = {num_clusters!r}: must be an integer >= 1, or None")
    periods = [period_index(menu, value, f"{name}/{t}")
               for name, given in (("edge_period", edge), ("cloud_period", cloud))
               for t, value in per_module_type(given, name).items()]
    if isinstance(routes, (str, bytes)) or not isinstance(routes, (Sequence, np.ndarray)) or (
            num_clusters is not None and len(routes) != num_clusters) or not len(routes):
        count = f"{num_clusters} routes" if num_clusters is not None else "routes"
        raise ValueError(f"routes = {routes!r}: must be a list of {count}, one per cluster")
    for c, route in enumerate(routes):
        if not is_member(route, Route):
            raise ValueError(f"routes[{c}] = {route!r}: allowed {choices(Route)}")
    return np.array(periods + [int(r) for r in routes], dtype=np.int64)


class CoarseActions(_MaskInInfo, gym.ActionWrapper, gym.utils.RecordConstructorArgs):
    """Periods per module type and a route per cluster (see the module docstring)."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ActionWrapper.__init__(self, env)
        layout = _layout_of(env, "CoarseActions")
        self.menu = tuple(layout.menu)
        self.num_clusters = layout.num_clusters
        self.slot_names = coarse_slot_names(self.num_clusters)  # named as the full action's
        self._full_slot = [layout.slot_names.index(name) for name in self.slot_names]
        self.action_space = spaces.MultiDiscrete([int(layout.nvec[i]) for i in self._full_slot])

    def action(self, action: np.ndarray) -> np.ndarray:
        """The env's full action for a coarse one (slot errors name the coarse slot)."""
        space = cast(spaces.MultiDiscrete, self.action_space)  # set in __init__
        a = check_action(action, space.nvec, self.slot_names)
        value = dict(zip(self.slot_names, (int(v) for v in a), strict=True))
        edge = {t: self.menu[value[f"edge_period/{t}"]] for t in MODULE_TYPES}
        cloud = {t: self.menu[value[f"cloud_period/{t}"]] for t in MODULE_TYPES}
        routes = [Route(value[f"route/{c}"]) for c in range(self.num_clusters)]
        return full_action(self.env, edge, cloud, routes)

    def action_masks(self) -> np.ndarray:
        """The env's masks of the period and route slots (the slots this space keeps)."""
        hffm: Any = self.env.unwrapped  # an HF-FM env (_layout_of checked it)
        layout = hffm.layout
        per_slot = layout.split_mask(hffm.action_masks())
        return np.concatenate([per_slot[i] for i in self._full_slot])


class ScheduleMenu(_MaskInInfo, gym.ActionWrapper, gym.utils.RecordConstructorArgs):
    """``Discrete(k)``: action i plays the i-th named schedule this round.

    Args:
        env: an HF-FM env.
        schedules: name -> (edge period, cloud period, route); default :data:`PAPER_MENU`.
    """

    def __init__(self, env: gym.Env,
                 schedules: Mapping[str, tuple[int, int, Route]] | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, schedules=schedules)
        gym.ActionWrapper.__init__(self, env)
        if schedules is not None and not isinstance(schedules, Mapping):
            raise TypeError(f"ScheduleMenu: schedules = {schedules!r}: must be a mapping of name "
                            "-> (edge period, cloud period, route), or None for PAPER_MENU")
        self.schedules = dict(PAPER_MENU if schedules is None else schedules)
        if not self.schedules:
            raise ValueError("ScheduleMenu: schedules is empty")
        layout = _layout_of(env, "ScheduleMenu")
        for name, entry in self.schedules.items():
            if not isinstance(entry, Sequence) or isinstance(entry, (str, bytes)) \
                    or len(entry) != 3:
                raise ValueError(f"ScheduleMenu: schedule {name!r} = {entry!r}: must be "
                                 "(edge period, cloud period, route)")
            edge, cloud, route = entry
            for what, value in (("edge period", edge), ("cloud period", cloud)):
                layout.period_index(value, f"ScheduleMenu: schedule {name!r}, {what}")
            if not is_member(route, Route):
                raise ValueError(f"ScheduleMenu: schedule {name!r} has route {route!r}: "
                                 f"allowed {choices(Route)}")
        self.names = list(self.schedules)
        self.action_space = spaces.Discrete(len(self.names))

    def action(self, action: int | np.integer) -> np.ndarray:
        """The env's full action for menu entry ``action``."""
        if isinstance(action, np.ndarray) and action.shape == ():
            action = action.item()
        # (a bool passes, as Discrete.contains says: True is entry 1)
        if not isinstance(action, (int, np.integer)) or not 0 <= int(action) < len(self.names):
            raise ValueError(f"action = {action!r}: must be an integer in 0..{len(self.names) - 1} "
                             f"({self.names})")
        edge, cloud, route = self.schedules[self.names[int(action)]]
        return full_action(self.env, edge, cloud, Route(route))

    def action_masks(self) -> np.ndarray:
        """Every schedule is always allowed."""
        return np.ones(len(self.names), dtype=bool)


class ActionMaskObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """The observation as ``{"observation": obs, "action_mask": mask}``.

    ``mask`` is ``action_masks()`` of the wrapped env (the outermost wrapper that has one, so
    ``ActionMaskObservation(ScheduleMenu(env))`` masks the menu), a boolean vector with one
    entry per value of every action slot, concatenated: the layout of TorchRL's
    ``MultiOneHot``/``OneHot`` action specs and of sb3-contrib's masks. It describes the state
    the observation shows, for the next action, and equals ``info["action_mask"]`` on an
    unwrapped env.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        space = env.action_space
        if isinstance(space, spaces.MultiDiscrete):
            size = int(space.nvec.sum())
        elif isinstance(space, spaces.Discrete):
            size = int(space.n)
        else:
            raise TypeError(f"ActionMaskObservation: action space {space} is neither "
                            "MultiDiscrete nor Discrete")
        try:
            env.get_wrapper_attr("action_masks")
        except AttributeError:
            raise TypeError(f"ActionMaskObservation: {env} has no action_masks(); wrap an "
                            "HF-FM env (or a wrapper of one)") from None
        self.observation_space = spaces.Dict({
            "observation": env.observation_space,
            # gymnasium's hint omits bool, which Box supports
            "action_mask": spaces.Box(0, 1, shape=(size,), dtype=np.bool_),  # type: ignore[arg-type, unused-ignore]
        })

    def observation(self, observation: np.ndarray) -> dict[str, np.ndarray]:
        """The observation with the mask for the next action."""
        mask = np.asarray(self.env.get_wrapper_attr("action_masks")(), dtype=bool)
        expected = cast(spaces.Dict, self.observation_space)["action_mask"].shape
        if mask.shape != expected:  # a wrapper between changed the space but not the mask
            raise TypeError(
                f"ActionMaskObservation: action_masks() of the wrapped env has shape "
                f"{mask.shape}, but its action space {self.env.action_space} needs "
                f"{expected}: an action wrapper that changes the action space must define "
                "action_masks() for its own space")
        return {"observation": observation, "action_mask": mask}
