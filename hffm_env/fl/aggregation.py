"""Aggregation as tensor arithmetic over the stacked device dimension.

Every function takes a tensor whose leading dimension indexes devices (or clusters) and per-row
weights; rows with zero weight do not take part. Weighting (who counts, and how much) is decided
by the caller; these functions only average. No Python loop over devices.
"""

from __future__ import annotations

import torch

__all__ = ["group_weighted_mean", "pair_average", "broadcast_to_members"]


def group_weighted_mean(
    values: torch.Tensor, weights: torch.Tensor, group: torch.Tensor, num_groups: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean of ``values`` rows per group.

    Args:
        values: ``(N, ...)`` one row per member.
        weights: ``(N,)`` non-negative weights; zero excludes a row.
        group: ``(N,)`` group index of each row, in ``[0, num_groups)``.
        num_groups: number of groups ``G``.

    Returns:
        ``(means, totals)``: ``means`` is ``(G, ...)`` (rows of groups with zero total weight are
        zero and must not be used), ``totals`` is ``(G,)`` the summed weights.
    """
    # A (G, N) matrix of weights: one matmul sums every group at once (on CPU it is far
    # faster than index_add_ for the few-groups, many-parameters shape of aggregation).
    membership = torch.nn.functional.one_hot(group, num_groups).T.to(values.dtype)
    weight_matrix = membership * weights.to(values.dtype).unsqueeze(0)
    sums = (weight_matrix @ values.reshape(values.shape[0], -1)).reshape(
        num_groups, *values.shape[1:]
    )
    totals = weight_matrix.sum(dim=1)
    safe = torch.where(totals > 0, totals, torch.ones_like(totals))
    return sums / safe.view((-1,) + (1,) * (values.dim() - 1)), totals


def pair_average(values: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """``values`` with rows ``first[k]`` and ``second[k]`` both replaced by their mean.

    Pairs must be disjoint (a matching), so the mean of every pair is preserved exactly.
    """
    if first.numel() == 0:
        return values
    out = values.clone()
    mean = 0.5 * (values[first] + values[second])
    out[first] = mean
    out[second] = mean
    return out


def broadcast_to_members(
    values: torch.Tensor, group_values: torch.Tensor, group: torch.Tensor, receives: torch.Tensor
) -> torch.Tensor:
    """``values`` where every row with ``receives`` True takes its group's row of
    ``group_values``; other rows are left as they are."""
    shape = (-1,) + (1,) * (values.dim() - 1)
    return torch.where(receives.view(shape), group_values[group], values)
