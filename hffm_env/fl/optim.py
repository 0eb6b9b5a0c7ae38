"""AdamW over parameters stacked along a leading device dimension.

Every device has its own moments and its own step count, and an update mask says which devices
(and which of their modules) take a step, so one call updates all devices at once.
"""

from __future__ import annotations

import torch

__all__ = ["StackedAdamW"]


class StackedAdamW:
    """Decoupled-weight-decay Adam (Loshchilov & Hutter) for a dict of ``(N, ...)`` tensors.

    Args:
        lr: learning rate.
        weight_decay: decoupled weight decay (multiplied by ``lr``).
        betas: moment decay rates.
        eps: denominator floor.
    """

    def __init__(
        self,
        lr: float,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.lr = lr
        self.weight_decay = weight_decay
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.exp_avg: dict[str, torch.Tensor] = {}
        self.exp_avg_sq: dict[str, torch.Tensor] = {}
        self.steps: dict[str, torch.Tensor] = {}

    def reset(self, params: dict[str, torch.Tensor], devices: torch.Tensor | None = None) -> None:
        """Clear the moments and step counts (of ``devices`` only, a boolean ``(N,)`` mask, when
        given)."""
        for name, value in params.items():
            if devices is None or name not in self.exp_avg:
                self.exp_avg[name] = torch.zeros_like(value)
                self.exp_avg_sq[name] = torch.zeros_like(value)
                self.steps[name] = torch.zeros(value.shape[0], dtype=value.dtype,
                                               device=value.device)
            else:  # where, not a product with 0: a failed device's NaN moments are cleared too
                shape = (-1,) + (1,) * (value.dim() - 1)
                clear = devices.to(torch.bool)
                self.exp_avg[name] = torch.where(clear.view(shape), 0.0, self.exp_avg[name])
                self.exp_avg_sq[name] = torch.where(clear.view(shape), 0.0,
                                                    self.exp_avg_sq[name])
                self.steps[name] = torch.where(clear, 0.0, self.steps[name])

    @torch.no_grad()
    def step(
        self,
        params: dict[str, torch.Tensor],
        grads: dict[str, torch.Tensor],
        update: dict[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """One AdamW step on the rows where ``update[name]`` (a boolean ``(N,)`` mask) is True.

        Returns the new parameter dict; rows that do not update are returned unchanged, and
        their moments and step counts do not move.
        """
        new_params: dict[str, torch.Tensor] = {}
        for name, value in params.items():
            grad = grads.get(name)
            if grad is None:
                new_params[name] = value
                continue
            shape = (-1,) + (1,) * (value.dim() - 1)
            mask = update[name].to(value.dtype).view(shape)
            steps = self.steps[name] + update[name].to(value.dtype)
            exp_avg = self.exp_avg[name]
            exp_avg_sq = self.exp_avg_sq[name]
            new_avg = self.beta1 * exp_avg + (1 - self.beta1) * grad
            new_avg_sq = self.beta2 * exp_avg_sq + (1 - self.beta2) * grad * grad
            # where, not lerp: a row that does not update keeps its moments even when its
            # gradient is not finite (0 * inf is NaN)
            moves = mask.bool()
            self.exp_avg[name] = torch.where(moves, new_avg, exp_avg)
            self.exp_avg_sq[name] = torch.where(moves, new_avg_sq, exp_avg_sq)
            self.steps[name] = steps
            safe_steps = steps.clamp(min=1.0).view(shape)
            bias1 = 1 - self.beta1**safe_steps
            bias2 = 1 - self.beta2**safe_steps
            denom = (self.exp_avg_sq[name] / bias2).sqrt() + self.eps
            delta = self.lr * (self.exp_avg[name] / bias1) / denom
            decayed = value * (1 - self.lr * self.weight_decay)
            new_params[name] = torch.where(mask.bool().expand_as(value), decayed - delta, value)
        return new_params
