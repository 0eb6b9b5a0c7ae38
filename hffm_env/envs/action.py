"""The action vector: its layout, its masks, and its decoding into a :class:`Schedule`.

Everything about the ``MultiDiscrete`` action lives here, in one place:
:class:`ActionLayout` names every slot, builds the space's ``nvec``, checks an action (shape,
dtype, range, naming the slot on error), decodes it into the engine's :class:`Schedule` with
deterministic repairs, and produces MaskablePPO's flat mask.

Slots, in order (``T`` = 5 module types, ``C`` clusters, ``N`` devices, ``P`` request slots,
``M`` the largest cluster size, ``k`` = ``env.d2d_partner_k``, ``len(menu)`` = period menu size):

| slots | count | values |
| --- | --- | --- |
| ``edge_period/<type>`` | T | index into ``env.period_menu`` (0 in the menu = never) |
| ``cloud_period/<type>`` | T | index into ``env.period_menu`` |
| ``pair_exchange/<type>`` | T | 1: D2D pairs gossip this type when no edge/cloud round is due |
| ``route/<cluster>`` | C | 0 direct uplink, 1 D2D relay via the head, 2 star (cloud over WAN) |
| ``head/<cluster>`` | C | index of the head among the cluster's members (sorted ids) |
| ``partner/<device>`` | N | 0 none, ``i`` in 1..k: the device's i-th nearest cluster mate |
| ``relay/<slot>`` | P | 0 wait, 1 edge, 2 cloud, ``3 + j``: j-th member of the cluster |
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hffm_env.config import MODULE_TYPES, NEVER, ScenarioConfig
from hffm_env.fl.schedule import (
    ModuleRequest,
    PeriodClock,
    RelaySource,
    Route,
    Schedule,
    SourceKind,
    Tier,
    choices,
    is_member,
)
from hffm_env.sim import repair_pairing
from hffm_env.values import is_integer

__all__ = ["ActionLayout", "DecodeReport", "PeriodClock", "check_action", "check_slot_range",
           "per_module_type", "period_index", "RELAY_WAIT", "RELAY_EDGE", "RELAY_CLOUD",
           "RELAY_FIXED_CHOICES", "NUM_ROUTES"]


def check_slot_range(action: np.ndarray, nvec: np.ndarray, slot_names: list[str],
                     subject: str = "action") -> None:
    """Raise ``ValueError`` naming the first slot of ``action`` outside ``0..nvec-1``: the one
    range check of every MultiDiscrete action here (the env's, the wrappers', each agent's)."""
    bad = np.flatnonzero((action < 0) | (action >= nvec))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{subject} slot {i} ({slot_names[i]}) = {int(action[i])}: allowed "
                         f"0..{int(nvec[i]) - 1}")


def check_action(action: object, nvec: np.ndarray, slot_names: list[str],
                 subject: str = "action") -> np.ndarray:
    """``action`` as an int64 vector for a MultiDiscrete space of sizes ``nvec``, or a
    ``ValueError`` naming its dtype, its shape or the first slot out of range. Floats pass only
    when every one is a whole number (what some libraries' samplers return)."""
    try:
        array = np.asarray(action)
    except ValueError:  # ragged: numpy cannot make one array of it
        raise ValueError(f"{subject} = {action!r}: not a flat vector of {len(nvec)} integers "
                         f"(slots: {slot_names[0]} ... {slot_names[-1]})") from None
    if array.shape != nvec.shape:
        raise ValueError(f"{subject} shape {array.shape}: expected {nvec.shape} "
                         f"(slots: {slot_names[0]} ... {slot_names[-1]})")
    # (booleans are 0 and 1, as the space's contains() says)
    if array.dtype.kind not in "iubf":
        array = _integers_of_mixed(action, array, nvec, slot_names, subject)
    elif array.dtype.kind == "f":
        fractional = np.flatnonzero(~np.isfinite(array) | (array != np.round(array)))
        if fractional.size:
            i = int(fractional[0])
            raise ValueError(f"{subject} slot {i} ({slot_names[i]}) = {float(array[i])}: must "
                             f"be a whole number in 0..{int(nvec[i]) - 1}")
    check_slot_range(array, nvec, slot_names, subject)  # before the cast: 1e19 stays 1e19
    return array.astype(np.int64)


def _integers_of_mixed(action: object, array: np.ndarray, nvec: np.ndarray,
                       slot_names: list[str], subject: str) -> np.ndarray:
    """An action numpy could not make integers of (a list holding None, a string or an integer
    beyond int64: numpy turned all of it into objects or strings) as an object array of its
    integers, or a ``ValueError`` naming the first slot that holds something else."""
    # (the values as given: numpy turned every slot of ['1', 0, ...] into a string)
    values = list(action) if isinstance(action, (list, tuple)) else array.tolist()
    for i, value in enumerate(values):
        whole = isinstance(value, (float, np.floating)) and float(value).is_integer()
        if not (is_integer(value) or whole or isinstance(value, (bool, np.bool_))):
            raise ValueError(f"{subject} slot {i} ({slot_names[i]}) = {value!r}: must be an "
                             f"integer in 0..{int(nvec[i]) - 1}")
    return np.array([int(v) for v in values], dtype=object)


NUM_ROUTES = len(Route)
RELAY_WAIT, RELAY_EDGE, RELAY_CLOUD = 0, 1, 2
RELAY_FIXED_CHOICES = 3  # wait, edge, cloud; then the members of the requester's cluster


@dataclass
class DecodeReport:
    """What decoding had to repair (counted in ``info``)."""

    head_repairs: int = 0
    pair_repairs: int = 0
    relay_repairs: int = 0

    def to_dict(self) -> dict[str, int]:
        """Counts as a dict."""
        return {
            "heads": self.head_repairs,
            "pairs": self.pair_repairs,
            "relays": self.relay_repairs,
            "total": self.head_repairs + self.pair_repairs + self.relay_repairs,
        }


def per_module_type(choice: Any, what: str) -> dict[str, Any]:
    """``choice`` for every module type: a mapping that gives each of :data:`MODULE_TYPES` and
    no other, or one value for all; otherwise a ``ValueError`` naming ``what``."""
    if isinstance(choice, Mapping):
        missing = [t for t in MODULE_TYPES if t not in choice]
        extra = [t for t in choice if t not in MODULE_TYPES]
        if missing or extra:
            raise ValueError(f"{what} = {dict(choice)!r}: must give every module type "
                             f"{list(MODULE_TYPES)} and no other (missing {missing}, "
                             f"unknown {extra})")
        return dict(choice)
    return dict.fromkeys(MODULE_TYPES, choice)


def period_index(menu: Sequence[int], value: Any, what: str) -> int:
    """The index in ``menu`` (``env.period_menu``; 0 is "never") of period ``value``, or a
    ``ValueError`` naming ``what``, the value and the menu."""
    if not is_integer(value) or value not in menu:
        never = ' (0 is "never")' if NEVER in menu else ""
        raise ValueError(f"{what} = {value!r}: not in the config's env.period_menu "
                         f"{list(menu)}{never}")
    return list(menu).index(value)


class ActionLayout:
    """The action space of one scenario: slot names, sizes, checks, masks and decoding.

    Args:
        scenario: the scenario (period menu, partner count, request slots).
        cluster_members: per cluster, the sorted device ids of its members.
        partners: ``(N, k)`` candidate partners per device (-1 padding).
    """

    def __init__(
        self,
        scenario: ScenarioConfig,
        cluster_members: list[np.ndarray],
        partners: np.ndarray,
    ) -> None:
        self.menu = tuple(scenario.env.period_menu)
        self.k = scenario.env.d2d_partner_k
        self.num_clusters = len(cluster_members)
        self.num_devices = int(sum(len(m) for m in cluster_members))
        self.max_cluster = max(len(m) for m in cluster_members)
        self.num_requests = scenario.fl.max_pending_requests
        self.cluster_members = [np.asarray(m) for m in cluster_members]
        self.partners = np.asarray(partners)
        # one table of the blocks, in slot order: (block, the keys of its slots, slot size)
        blocks: list[tuple[str, Sequence[object], int]] = [
            ("edge_period", MODULE_TYPES, len(self.menu)),
            ("cloud_period", MODULE_TYPES, len(self.menu)),
            ("pair_exchange", MODULE_TYPES, 2),
            ("route", range(self.num_clusters), NUM_ROUTES),
            ("head", range(self.num_clusters), self.max_cluster),
            ("partner", range(self.num_devices), self.k + 1),
            ("relay", range(self.num_requests), RELAY_FIXED_CHOICES + self.max_cluster),
        ]
        self.slot_names = [f"{block}/{key}" for block, keys, _ in blocks for key in keys]
        self.nvec = np.asarray([size for _, keys, size in blocks for _ in keys], dtype=np.int64)
        self._offsets = {}
        start = 0
        for block, keys, _ in blocks:
            self._offsets[block] = slice(start, start + len(keys))
            start += len(keys)

    def place(self, cluster_members: list[np.ndarray] | None = None,
              partners: np.ndarray | None = None) -> None:
        """Follow a new placement: each cluster's members (a reset's network) and/or each
        device's partner candidates (the nearest mates, which mobility changes). The action
        space stays as built, so the placement must fit it: the same clusters and devices,
        no cluster larger than the largest one built for, and the same ``(N, k)`` partners."""
        if cluster_members is not None:
            sizes = [len(m) for m in cluster_members]
            if len(sizes) != self.num_clusters or sum(sizes) != self.num_devices \
                    or max(sizes) > self.max_cluster:
                raise ValueError(f"cluster_members of sizes {sizes}: the action space was "
                                 f"built for {self.num_clusters} clusters of "
                                 f"{self.num_devices} devices, at most {self.max_cluster} "
                                 "each")
            self.cluster_members = [np.asarray(m) for m in cluster_members]
        if partners is not None:
            partners = np.asarray(partners)
            if partners.shape != self.partners.shape:
                raise ValueError(f"partners of shape {partners.shape}: the action space was "
                                 f"built for {self.partners.shape}")
            self.partners = partners

    def block(self, action: np.ndarray, name: str) -> np.ndarray:
        """The slots of one block (``"edge_period"``, ``"route"``, ...) of ``action``."""
        return np.asarray(action)[self._offsets[name]]

    def check(self, action: object) -> np.ndarray:
        """``action`` as an int64 vector, or a ``ValueError`` that names the slot and range."""
        return check_action(action, self.nvec, self.slot_names)

    # ----------------------------------------------------------------------------------------

    def encode(
        self,
        edge_period: dict[str, int] | int,
        cloud_period: dict[str, int] | int,
        route: Route | list[Route] = Route.DIRECT,
        pair_exchange: dict[str, bool] | bool = False,
        heads: list[int] | None = None,
        partners: np.ndarray | None = None,
        relay: list[int] | None = None,
    ) -> np.ndarray:
        """Build an action from readable choices (periods as values from the menu, one for
        every module type or a dict of each; routes one for all clusters or a list of one per
        cluster, -1 only for a cluster nobody of which is available this round (it encodes as
        slot 0, the lowest-id member, which decoding repairs then and plays otherwise: the
        layout does not know the round); partners as indices 0..k, one per
        device; relay choices as slot values, one per request slot). Left out: no pair
        exchange, every cluster's head slot 0 (its lowest-id member), no D2D partners and
        every pending request waiting (relay slot 0). The baselines build their actions with
        :func:`hffm_env.wrappers.full_action` instead, whose defaults are the round's best
        uplink heads and relays from the edge. Anything else raises ``ValueError`` naming the
        argument, the value and what is allowed."""
        action = np.zeros(len(self.nvec), dtype=np.int64)

        def flag(value: Any, what: str) -> int:
            if isinstance(value, (bool, np.bool_)) or (
                    isinstance(value, numbers.Integral) and value in (0, 1)):
                return int(value)
            raise ValueError(f"{what} = {value!r}: must be True or False")

        edge = per_module_type(edge_period, "edge_period")
        cloud = per_module_type(cloud_period, "cloud_period")
        pairs = per_module_type(pair_exchange, "pair_exchange")
        for k, t in enumerate(MODULE_TYPES):
            action[self._offsets["edge_period"].start + k] = self.period_index(
                edge[t], f"edge_period/{t}")
            action[self._offsets["cloud_period"].start + k] = self.period_index(
                cloud[t], f"cloud_period/{t}")
            action[self._offsets["pair_exchange"].start + k] = flag(pairs[t],
                                                                    f"pair_exchange/{t}")
        if isinstance(route, (list, tuple, np.ndarray)):  # one per cluster
            routes = route
        elif is_member(route, Route):  # one for every cluster
            routes = [route] * self.num_clusters
        else:
            raise ValueError(f"route = {route!r}: allowed {choices(Route)}, or a list of one per "
                             "cluster")
        action[self._offsets["route"]] = self._one_per_slot("route", routes, "route", "cluster")
        if heads is not None:
            action[self._offsets["head"]] = [
                self._head_index(c, int(h))
                for c, h in enumerate(self._one_per_slot("head", heads, "heads", "cluster"))]
        if partners is not None:
            action[self._offsets["partner"]] = self._one_per_slot("partner", partners,
                                                                  "partners", "device")
        if relay is not None:
            action[self._offsets["relay"]] = self._one_per_slot("relay", relay, "relay",
                                                                "request slot")
        return check_action(action, self.nvec, self.slot_names, subject="encoded action")

    def period_index(self, value: Any, what: str) -> int:
        """The menu index of period ``value`` (:func:`period_index` on this menu)."""
        return period_index(self.menu, value, what)

    def _one_per_slot(self, block: str, values: Any, what: str, unit: str) -> np.ndarray:
        """``values`` for ``block``: exactly one integer per slot (ranges are checked on the
        whole action)."""
        slots = self._offsets[block]
        count = slots.stop - slots.start
        array = np.asarray(values)
        if array.shape != (count,) or array.dtype.kind not in "iu":
            raise ValueError(f"{what} = {values!r}: must be {count} integers, one per {unit}")
        return array

    def _head_index(self, cluster: int, head: int) -> int:
        """The head slot's value for device ``head`` of ``cluster``; -1 (the network's "no
        head": nobody in the cluster is available) is slot value 0, which decoding repairs
        when nobody is available, and plays as the lowest-id member when someone is."""
        if head == -1:
            return 0
        index = np.flatnonzero(self.cluster_members[cluster] == head)
        if index.size == 0:
            raise ValueError(
                f"heads[{cluster}] = {head}: not a device of cluster {cluster} (its devices: "
                f"{self.cluster_members[cluster].tolist()}; -1 for none available)")
        return int(index[0])

    def decode(
        self,
        action: np.ndarray,
        clock: PeriodClock,
        available: np.ndarray,
        default_heads: np.ndarray,
        feasible_pair: Callable[[int, int], bool],
        pending: list[ModuleRequest],
        relay_candidates: dict[ModuleRequest, list[RelaySource]],
    ) -> tuple[Schedule, DecodeReport]:
        """Decode a checked action into a :class:`Schedule`, repairing deterministically:

        - a head index beyond the cluster's size, or a head that dropped out, becomes the
          network's default head (the available member with the best uplink); a cluster with
          no available member gets head -1 and sits the round out;
        - a type's pair flag in a round without edge or cloud aggregation gives it
          ``Tier.D2D_PAIRS`` only when some pair forms (else ``Tier.NONE``: nothing moved);
        - partners follow the simulator's one pairing rule,
          :func:`~hffm_env.sim.routing.repair_pairing`: in ascending device id, device ``i``
          choosing ``j`` is paired when both are available, unpaired and D2D neighbours (two
          devices choosing each other form one pair, no repair); ``feasible_pair`` is the
          network's rule (:meth:`~hffm_env.sim.Network.is_feasible_pair`); every other choice
          is dropped and counted as a repair;
        - a relay choice for an empty request slot is ignored; a source that cannot serve the
          request now (lacks the module, dropped out, another cluster; any source while the
          requester itself dropped out) becomes "wait".
        """
        report = DecodeReport()
        routes = tuple(Route(int(r)) for r in self.block(action, "route"))
        heads = []
        for c, index in enumerate(self.block(action, "head")):
            members = self.cluster_members[c]
            if not available[members].any():
                heads.append(-1)  # the cluster sits this round out: nothing to repair
            elif index < len(members) and available[members[index]]:
                heads.append(int(members[index]))
            else:
                heads.append(int(default_heads[c]))
                report.head_repairs += 1
        choices = self.block(action, "partner")
        proposed = np.where(choices > 0, self.partners[np.arange(self.num_devices),
                                                       np.maximum(choices - 1, 0)], -1)
        padding = (choices > 0) & (proposed < 0)  # a choice beyond the cluster's size
        pairs, repaired = repair_pairing(proposed, feasible_pair)
        report.pair_repairs += repaired + int(padding.sum())
        tiers: dict[str, Tier] = {}
        edge = self.block(action, "edge_period")
        cloud = self.block(action, "cloud_period")
        pair_flag = self.block(action, "pair_exchange")
        for k, t in enumerate(MODULE_TYPES):
            tier = clock.due(t, self.menu[edge[k]], self.menu[cloud[k]])
            # gossip only where a pair formed: a flag without one moved nothing, yet its label
            # was a surrogate input (it predicted accuracy for gossip that never happened)
            if tier == Tier.NONE and pair_flag[k] and pairs:
                tier = Tier.D2D_PAIRS
            tiers[t] = tier
        sources: dict[ModuleRequest, RelaySource] = {}
        for r, choice in enumerate(self.block(action, "relay")):
            if r >= len(pending) or choice == 0:
                continue
            request = pending[r]
            source = self._relay_choice(request, int(choice))
            if source is not None and source in relay_candidates.get(request, []):
                sources[request] = source
            else:
                report.relay_repairs += 1
        schedule = Schedule(tiers=tiers, routes=routes, heads=tuple(heads), pairs=tuple(pairs),
                            relay_sources=sources)
        return schedule, report

    def _relay_choice(self, request: ModuleRequest, choice: int) -> RelaySource | None:
        if choice == RELAY_EDGE:
            return RelaySource(SourceKind.EDGE)
        if choice == RELAY_CLOUD:
            return RelaySource(SourceKind.CLOUD)
        j = choice - RELAY_FIXED_CHOICES
        members = self._members_of(request.device)
        if j >= len(members):
            return None
        return RelaySource(SourceKind.DEVICE, int(members[j]))

    def _members_of(self, device: int) -> np.ndarray:
        return next(m for m in self.cluster_members if device in m)

    def relay_value(self, request: ModuleRequest, source: RelaySource | None) -> int:
        """The ``relay/<slot>`` value that serves ``request`` from ``source`` (``None``:
        wait); the inverse of decoding. A device outside the requester's cluster raises
        ``ValueError``."""
        if source is None:
            return RELAY_WAIT
        if source.kind == SourceKind.EDGE:
            return RELAY_EDGE
        if source.kind == SourceKind.CLOUD:
            return RELAY_CLOUD
        members = self._members_of(request.device).tolist()
        if source.device not in members:
            raise ValueError(f"relay source device {source.device}: not in the cluster of "
                             f"requesting device {request.device} (its devices: {members})")
        return RELAY_FIXED_CHOICES + members.index(source.device)

    # ----------------------------------------------------------------------------------------

    def split_mask(self, flat: np.ndarray) -> list[np.ndarray]:
        """The flat mask of :meth:`masks` (every slot's values, concatenated) cut into one
        boolean array per slot, in slot order."""
        flat = np.asarray(flat, dtype=bool)
        if flat.shape != (int(self.nvec.sum()),):
            raise ValueError(f"mask shape {flat.shape}: expected ({int(self.nvec.sum())},), "
                             "every slot's values concatenated (action_masks())")
        return np.split(flat, np.cumsum(self.nvec)[:-1])

    def masks(
        self,
        available: np.ndarray,
        feasible_pair: Callable[[int, int], bool],
        pending: list[ModuleRequest],
        relay_candidates: dict[ModuleRequest, list[RelaySource]],
    ) -> np.ndarray:
        """One flat boolean vector, the concatenation of each slot's allowed values (the layout
        sb3-contrib's MaskablePPO expects for ``MultiDiscrete``). Masked out: heads beyond a
        cluster's size or dropped out, partners that are padding, unavailable or not D2D
        neighbours, relay sources that cannot serve the request (and all but "wait" for empty
        request slots). Every slot keeps at least one allowed value."""
        parts: list[np.ndarray] = []
        for name, size in zip(self.slot_names, self.nvec):
            allowed = np.ones(int(size), dtype=bool)
            block, _, index = name.partition("/")
            if block == "head":
                members = self.cluster_members[int(index)]
                allowed[:] = False
                allowed[: len(members)] = available[members]
                if not allowed.any():
                    allowed[0] = True
            elif block == "partner":
                i = int(index)
                for choice in range(1, int(size)):
                    j = int(self.partners[i, choice - 1])
                    allowed[choice] = j >= 0 and feasible_pair(i, j)
            elif block == "relay":
                r = int(index)
                allowed[1:] = False
                if r < len(pending):
                    request = pending[r]
                    ok = relay_candidates.get(request, [])
                    for choice in range(1, int(size)):
                        allowed[choice] = self._relay_choice(request, choice) in ok
            parts.append(allowed)
        return np.concatenate(parts)
