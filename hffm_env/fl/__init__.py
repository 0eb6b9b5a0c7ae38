"""The federated engine: batched local training, D2D gossip, edge and cloud aggregation,
module relaying and evaluation, driven by a typed :class:`Schedule`. The transfers a schedule
implies, and their price, are planned in :mod:`hffm_env.fl.transfer_plan`."""

from typing import Any

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


def __getattr__(name: str) -> Any:
    # The engine pulls in torch and the model; import it only when asked for, so that the
    # schedule and transfer planning stay importable without torch.
    if name in ("FederatedEngine", "RoundResult"):
        from hffm_env.fl import engine

        return getattr(engine, name)
    raise AttributeError(name)
