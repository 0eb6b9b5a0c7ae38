"""The network world of HF-FM: placement, channel, D2D routing, dynamics and cost accounting.

Pure numpy + networkx: no module here imports torch or gymnasium (the package's own
``__init__`` registers the env ids, so ``import hffm_env.sim`` still loads gymnasium).
:class:`Network` is the facade: it owns the topology and the per-round state (rates,
availability, D2D graphs, heads); the engine records what it moved in a
:class:`TransferTable` (:mod:`hffm_env.sim.transfers`) and gets a :class:`CostReport` from
:meth:`Network.account` (:mod:`hffm_env.sim.cost`).
"""

from hffm_env.sim.channel import Channel, LinkRates, backhaul_time_s, draw_link_rates
from hffm_env.sim.cost import CostAccountant, CostReport
from hffm_env.sim.describe import describe_network, format_network_report
from hffm_env.sim.dynamics import RandomWaypoint, draw_available
from hffm_env.sim.network import Network, default_heads
from hffm_env.sim.routing import (
    broadcast_tree,
    build_d2d_graphs,
    is_feasible_pair,
    k_nearest_partners,
    relay_paths,
    repair_pairing,
)
from hffm_env.sim.topology import (
    SERVER_PLACEMENT_RESTARTS,
    PlacementError,
    Topology,
    associate,
    place_network,
    sample_in_disc,
)
from hffm_env.sim.transfers import (
    LINK_KINDS,
    STAGE_NAMES,
    LinkKind,
    Stage,
    TransferTable,
    module_type_of,
)

__all__ = [
    "LINK_KINDS",
    "STAGE_NAMES",
    "Channel",
    "CostAccountant",
    "CostReport",
    "LinkKind",
    "LinkRates",
    "Network",
    "PlacementError",
    "SERVER_PLACEMENT_RESTARTS",
    "RandomWaypoint",
    "Stage",
    "Topology",
    "TransferTable",
    "associate",
    "backhaul_time_s",
    "broadcast_tree",
    "build_d2d_graphs",
    "default_heads",
    "describe_network",
    "draw_available",
    "draw_link_rates",
    "format_network_report",
    "is_feasible_pair",
    "k_nearest_partners",
    "module_type_of",
    "place_network",
    "relay_paths",
    "repair_pairing",
    "sample_in_disc",
]
