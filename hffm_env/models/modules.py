"""The trainable module types that are not plain ``nn.Linear``/``nn.Parameter``: the per-modality
encoder (projector + modality type embedding) and the mixture of adapter experts (``moe``).

Everything here is written for ``torch.func.vmap`` over a leading device dimension: no
data-dependent Python control flow, no ``.item()``, no in-place updates of inputs. Top-k routing
computes every expert densely and masks the gates, which keeps shapes static.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ModalityEncoder", "AdapterExperts", "MixtureOfAdapters"]


class ModalityEncoder(nn.Module):
    """``encoder/<modality>``: projects frozen features ``feature_dim -> hidden`` and adds a
    learned modality type embedding."""

    def __init__(self, feature_dim: int, hidden_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(feature_dim, hidden_size)
        self.type_embedding = nn.Parameter(torch.zeros(hidden_size))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, T, feature_dim)`` -> ``(B, T, hidden)``."""
        return self.proj(features) + self.type_embedding


class AdapterExperts(nn.Module):
    """One layer's mixture: ``num_experts`` bottleneck adapters (down, GELU, up) and a router.

    The up projections start at zero, so the mixture adds nothing until it is trained and the
    pre-trained function of the backbone is unchanged at the start.
    """

    def __init__(
        self,
        hidden_size: int,
        num_experts: int,
        expert_hidden: int,
        top_k: int,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.num_experts = num_experts
        self.top_k = top_k
        self.router = nn.Linear(hidden_size, num_experts)
        # down_weight is (hidden, expert, bottleneck) so that all experts' down projections are
        # one matmul; up_weight is (expert, bottleneck, hidden) so that gating the bottleneck
        # activations and one matmul also sums the experts
        self.down_weight = nn.Parameter(torch.empty(hidden_size, num_experts, expert_hidden))
        self.down_bias = nn.Parameter(torch.zeros(num_experts, expert_hidden))
        self.up_weight = nn.Parameter(torch.zeros(num_experts, expert_hidden, hidden_size))
        self.up_bias = nn.Parameter(torch.zeros(num_experts, hidden_size))
        with torch.no_grad():
            bound = 1.0 / math.sqrt(hidden_size)
            self.down_weight.uniform_(-bound, bound, generator=generator)
            self.router.weight.normal_(0.0, 0.02, generator=generator)
            self.router.bias.zero_()

    def forward(
        self, hidden: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``hidden (B, L, H)``, ``valid (B, L)`` bool -> the residual update ``(B, L, H)`` and the
        Switch-style load-balancing loss over the valid tokens (a scalar, 1.0 when balanced)."""
        probs = torch.softmax(self.router(hidden), dim=-1)  # (B, L, E)
        kth = torch.topk(probs, self.top_k, dim=-1).values[..., -1:]
        chosen = (probs >= kth).to(probs.dtype)
        gates = probs * chosen
        gates = gates / gates.sum(dim=-1, keepdim=True).clamp_min(1e-9)

        num_experts, bottleneck = self.down_bias.shape
        inner = hidden @ self.down_weight.reshape(hidden.shape[-1], num_experts * bottleneck)
        inner = inner.unflatten(-1, (num_experts, bottleneck)) + self.down_bias
        gated = nn.functional.gelu(inner) * gates.unsqueeze(-1)  # (B, L, E, D)
        update = gated.flatten(-2) @ self.up_weight.reshape(num_experts * bottleneck, -1)
        update = update + gates @ self.up_bias

        weight = valid.to(probs.dtype).unsqueeze(-1)  # (B, L, 1)
        count = weight.sum().clamp_min(1.0)
        fraction_routed = (chosen * weight).sum(dim=(0, 1)) / (count * self.top_k)
        mean_prob = (probs * weight).sum(dim=(0, 1)) / count
        balance = self.num_experts * (fraction_routed * mean_prob).sum()
        return update, balance


class MixtureOfAdapters(nn.Module):
    """``moe/fusion``: one :class:`AdapterExperts` per backbone layer, applied residually to
    that layer's output."""

    def __init__(
        self,
        num_layers: int,
        hidden_size: int,
        num_experts: int,
        expert_hidden: int,
        top_k: int,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            AdapterExperts(hidden_size, num_experts, expert_hidden, top_k, generator)
            for _ in range(num_layers)
        )
