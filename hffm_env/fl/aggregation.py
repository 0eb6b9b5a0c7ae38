"""Aggregation as tensor arithmetic over the stacked device dimension.

Every function takes a tensor whose leading dimension indexes devices (or clusters) and per-row
weights; rows with zero weight do not take part. Weighting (who counts, and how much) is decided
by the caller; these functions only average. No Python loop over devices.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = [
    "GroupWeights",
    "broadcast_to_members",
    "group_mean",
    "group_weights",
    "pair_average",
]


class GroupWeights(NamedTuple):
    """Who counts how much in each group, built once by :func:`group_weights` and reused by
    :func:`group_mean` for every tensor averaged with the same weights (a module's
    parameters) rather than rebuilt per tensor.

    Attributes:
        matrix: ``(G, N)`` weight of each row in each group.
        totals: ``(G,)`` summed weights.
        safe_totals: ``totals`` with zeros replaced by ones (the divisor).
    """

    matrix: torch.Tensor
    totals: torch.Tensor
    safe_totals: torch.Tensor


def group_weights(
    weights: torch.Tensor, group: torch.Tensor, num_groups: int, dtype: torch.dtype
) -> GroupWeights:
    """The :class:`GroupWeights` of ``weights`` (``(N,)``, non-negative, zero excludes a row)
    over ``group`` (``(N,)`` group index of each row, in ``[0, num_groups)``)."""
    # A (G, N) matrix of weights: one matmul sums every group at once (on CPU it is far
    # faster than index_add_ for the few-groups, many-parameters shape of aggregation).
    membership = torch.nn.functional.one_hot(group, num_groups).T.to(dtype)
    matrix = membership * weights.to(dtype).unsqueeze(0)
    totals = matrix.sum(dim=1)
    return GroupWeights(matrix, totals, torch.where(totals > 0, totals, torch.ones_like(totals)))


def group_mean(values: torch.Tensor, weights: GroupWeights) -> torch.Tensor:
    """``(G, ...)`` weighted mean of ``values`` (``(N, ...)``) rows per group; rows of groups
    with zero total weight are zero and must not be used."""
    num_groups = weights.matrix.shape[0]
    sums = (weights.matrix @ values.reshape(values.shape[0], -1)).reshape(
        num_groups, *values.shape[1:]
    )
    return sums / weights.safe_totals.view((-1,) + (1,) * (values.dim() - 1))


def pair_average(values: torch.Tensor, first: torch.Tensor, second: torch.Tensor,
                 received: torch.Tensor | None = None) -> torch.Tensor:
    """``values`` with rows ``first[k]`` and ``second[k]`` both replaced by their mean: each
    row's own value and the copy it ``received`` of its partner's (``values`` itself when
    None; otherwise what the partner's row is after the transfer, e.g. quantised).

    Pairs must be disjoint (a matching), so the mean of every pair is preserved exactly when
    nothing is lost on the way.
    """
    if first.numel() == 0:
        return values
    arrived = values if received is None else received
    out = values.clone()
    out[first] = 0.5 * (values[first] + arrived[second])
    out[second] = 0.5 * (arrived[first] + values[second])
    return out


def broadcast_to_members(
    values: torch.Tensor, group_values: torch.Tensor, group: torch.Tensor, receives: torch.Tensor
) -> torch.Tensor:
    """``values`` where every row with ``receives`` True takes its group's row of
    ``group_values``; other rows are left as they are."""
    shape = (-1,) + (1,) * (values.dim() - 1)
    return torch.where(receives.view(shape), group_values[group], values)
