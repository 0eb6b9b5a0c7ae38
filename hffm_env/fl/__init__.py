"""The federated engine: batched local training, D2D gossip, edge and cloud aggregation,
module relaying and evaluation, driven by a typed :class:`Schedule`. The transfers a schedule
implies, and their price, are planned in :mod:`hffm_env.fl.transfer_plan`."""

from hffm_env.fl.engine import FederatedEngine, RoundResult
from hffm_env.fl.schedule import ModuleRequest, RelaySource, Route, Schedule, SourceKind, Tier

__all__ = [
    "FederatedEngine",
    "ModuleRequest",
    "RelaySource",
    "Route",
    "RoundResult",
    "Schedule",
    "SourceKind",
    "Tier",
]
