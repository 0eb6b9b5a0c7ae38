"""The modular multi-modal multi-task (M3T) model: frozen extractors and fusion backbone, and the
five trainable module types.

One forward pass fuses every modality and serves every task::

    sequence = [prompt/<task_1> x P, ..., prompt/<task_K> x P,       (K * P prompt tokens)
                encoder/image(features), encoder/audio(...), encoder/text(...)]
    h = LayerNorm(sequence + position embeddings)          frozen BERT embeddings (no word ids)
    for each BERT layer l (frozen, LoRA on query/value = adapter/fusion):
        h = layer_l(h, key mask);  h = h + moe_l(h)        moe/fusion, residual after the layer
    logits[:, k] = head/<task_k>(mean of task k's prompt token outputs)

Absent modalities and absent tasks are removed from attention through the key mask, never
zero-filled. The forward works on *cached features* (extractor outputs), and is written for
``torch.func.vmap`` over a leading device dimension of stacked trainable parameters and inputs.

The BERT layers are driven one by one (rather than through ``BertModel.forward``) so that the
mixture of adapters sits after each layer and the additive mask is built here, free of the
data-dependent shortcuts of the library's mask helpers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from peft import LoraConfig, inject_adapter_in_model
from torch import nn
from transformers import BertConfig, BertModel

from hffm_env.config import (
    FUSION,
    MODULE_TYPES,
    DataConfig,
    ModelConfig,
    module_id_of,
    split_module_id,
)
from hffm_env.data import VOCAB_SIZE, SceneBatch, task_specs
from hffm_env.models.extractors import build_extractor, tokens_per_modality
from hffm_env.models.modules import AdapterExperts, MixtureOfAdapters, ModalityEncoder
from hffm_env.values import is_integer

__all__ = ["M3TModel", "NEG_LOGIT", "MASK_VALUE", "bert_config", "masked_task_loss",
           "masked_task_losses"]

NEG_LOGIT: float = -1e9
"""Logit of the padding classes beyond a task's ``num_classes`` (finite, so gradients stay so)."""

MASK_VALUE: float = -1e9
"""Additive attention score of a masked key (finite: a sample with every key masked still gets a
finite, uniform attention instead of NaNs)."""

PRETRAINED_PREFIXES: tuple[str, ...] = ("extractors.", "backbone.", "encoders.", "query_token")
"""State-dict prefixes of what pre-training produces (LoRA tensors excluded, see
:meth:`M3TModel.pretrained_state`)."""


def bert_config(model_config: ModelConfig, max_positions: int) -> BertConfig:
    """The fusion backbone's :class:`~transformers.BertConfig` for ``model_config``: no dropout
    (the backbone is frozen, and vmapped code must not draw random numbers), eager attention,
    a two-word vocabulary (inputs always come as embeddings)."""
    return BertConfig(
        vocab_size=2,
        hidden_size=model_config.hidden_size,
        num_hidden_layers=model_config.num_layers,
        num_attention_heads=model_config.num_heads,
        intermediate_size=model_config.intermediate_size,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=max_positions,
        attn_implementation="eager",
    )


def masked_task_losses(
    logits: torch.Tensor, labels: torch.Tensor, task_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy over the (sample, task) pairs that ``task_mask`` keeps, and per task.

    ``logits (B, K, C_max)``, ``labels (B, K)`` int64 (anything for masked pairs, e.g. -1),
    ``task_mask (B, K)`` bool. Returns the mean ``()`` and the per-task means ``(K,)``, each 0
    where nothing is kept. vmap- and grad-friendly.
    """
    safe = torch.where(task_mask, labels, torch.zeros_like(labels))
    log_probs = torch.log_softmax(logits, dim=-1)
    nll = -torch.gather(log_probs, -1, safe.unsqueeze(-1)).squeeze(-1)
    weight = task_mask.to(logits.dtype)
    kept = nll * weight
    return (kept.sum() / weight.sum().clamp_min(1.0),
            kept.sum(dim=0) / weight.sum(dim=0).clamp_min(1.0))


def masked_task_loss(
    logits: torch.Tensor, labels: torch.Tensor, task_mask: torch.Tensor
) -> torch.Tensor:
    """The mean of :func:`masked_task_losses`: the cross-entropy over the (sample, task)
    pairs that ``task_mask`` keeps (0 when nothing is kept)."""
    return masked_task_losses(logits, labels, task_mask)[0]


class M3TModel(nn.Module):
    """The M3T model. Build it with :func:`hffm_env.models.build_model`, which loads or
    pre-trains the frozen parts; constructing it directly gives random frozen parts.

    Args:
        model_config: sizes of the backbone and of the trainable modules.
        data_config: the modalities, tasks, and input shapes.
        seed: seeds every initialisation made here (the global torch RNG is left untouched).
        backbone: a ready :class:`~transformers.BertModel` (e.g. a local checkpoint) to use
            instead of building one from ``model_config``; its own sizes then win.

    Attributes:
        modalities: modality names, in the order of ``modality_mask`` columns.
        tasks: task names, in the order of ``task_mask`` columns and of the logits' ``K`` axis.
        num_classes: classes of each task.
        max_classes: ``C_max``, the logits' last dimension.
        tokens: tokens of each modality's features.
        hidden_size: the backbone's width.
        prefix_length: ``K * num_prompt_tokens``, the prompt tokens at the front of the sequence.
        sequence_length: the fused sequence's length.
    """

    def __init__(
        self,
        model_config: ModelConfig,
        data_config: DataConfig,
        *,
        seed: int = 0,
        backbone: BertModel | None = None,
    ) -> None:
        super().__init__()
        self.model_config = model_config
        self.data_config = data_config
        self.modalities: tuple[str, ...] = tuple(data_config.modalities)
        self.tasks: tuple[str, ...] = tuple(data_config.tasks)
        specs = task_specs(data_config)
        self.num_classes: dict[str, int] = {t: specs[t].num_classes for t in self.tasks}
        self.max_classes: int = max(self.num_classes.values())
        self.tokens: dict[str, int] = {
            m: tokens_per_modality(m, data_config.question_length) for m in self.modalities
        }
        self.num_prompt_tokens = model_config.num_prompt_tokens
        self.prefix_length = len(self.tasks) * self.num_prompt_tokens
        self.sequence_length = self.prefix_length + sum(self.tokens.values())

        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)  # (not the caller's CUDA stream)
            generator = torch.Generator().manual_seed(seed)
            self.extractors = nn.ModuleDict({
                m: build_extractor(
                    m, model_config.feature_dim, audio_length=data_config.audio_length,
                    vocab_size=VOCAB_SIZE,
                )
                for m in self.modalities
            })
            if backbone is None:
                backbone = BertModel(
                    bert_config(model_config, self.sequence_length), add_pooling_layer=False
                )
            self._check_backbone(backbone)
            self.backbone = backbone
            hidden = backbone.config.hidden_size
            self.hidden_size: int = hidden
            num_layers = backbone.config.num_hidden_layers
            # the pre-trained fusion query: the initial value of every prompt token
            self.query_token = nn.Parameter(torch.randn(hidden, generator=generator) * 0.02)

            self.encoders = nn.ModuleDict({
                m: ModalityEncoder(model_config.feature_dim, hidden) for m in self.modalities
            })
            self.prompts = nn.ParameterDict({
                t: nn.Parameter(torch.zeros(self.num_prompt_tokens, hidden)) for t in self.tasks
            })
            self.moe = MixtureOfAdapters(
                num_layers, hidden, model_config.num_experts, model_config.expert_hidden,
                model_config.moe_top_k, generator,
            )
            inject_adapter_in_model(
                LoraConfig(
                    r=model_config.lora_rank,
                    # peft hints an int but only divides by it (the scale alpha / r)
                    lora_alpha=model_config.lora_alpha,  # type: ignore[arg-type, unused-ignore]
                    lora_dropout=0.0,
                    target_modules=["query", "value"],
                ),
                self.backbone,
            )
            self.heads = nn.ModuleDict({
                t: nn.Linear(hidden, self.num_classes[t]) for t in self.tasks
            })
            self.reset_trainable(seed)
        self._module_params = self._group_parameters()
        self.freeze_pretrained()
        self.pretrain_info: dict[str, Any] = {}
        """Pre-training statistics, set by :func:`~hffm_env.models.build_model`."""
        self.cache_file: Path | None = None
        """The cache file the frozen parts came from or went to."""

    # ----------------------------------------------------------------------------------------
    # construction helpers

    def _check_backbone(self, backbone: BertModel) -> None:
        config = backbone.config
        if config.max_position_embeddings < self.sequence_length:
            raise ValueError(
                f"backbone: max_position_embeddings = {config.max_position_embeddings} is "
                f"shorter than the fused sequence ({self.sequence_length} tokens = "
                f"{self.prefix_length} prompt tokens + modality tokens {self.tokens})"
            )
        if config.is_decoder:
            raise ValueError("backbone: a decoder (causal) BERT cannot serve as fusion encoder")
        # eager attention: vmap/grad-safe and deterministic (the public setter where this
        # transformers has it; older releases read the config field)
        if hasattr(backbone, "set_attn_implementation"):
            backbone.set_attn_implementation("eager")
        else:
            config._attn_implementation = "eager"
        backbone.eval()

    def reset_trainable(self, seed: int) -> None:
        """Re-draw the fresh trainable modules (prompts, moe, LoRA, heads) from ``seed``.

        Encoders are left as they are (they start from pre-training); prompts start at the
        pre-trained fusion query plus small noise; the MoE up projections and LoRA ``B`` start at
        zero, so the pre-trained function is unchanged until training moves them.
        """
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for task in self.tasks:
                noise = torch.randn(self.prompts[task].shape, generator=generator) * 0.02
                self.prompts[task].copy_(self.query_token.detach().cpu() + noise)
            for module in self.moe.layers:
                layer = cast(AdapterExperts, module)  # MixtureOfAdapters holds only these
                bound = 1.0 / math.sqrt(self.hidden_size)
                layer.down_weight.copy_(_uniform(layer.down_weight.shape, bound, generator))
                layer.down_bias.zero_()
                layer.up_weight.zero_()
                layer.up_bias.zero_()
                layer.router.weight.copy_(
                    torch.randn(layer.router.weight.shape, generator=generator) * 0.02
                )
                layer.router.bias.zero_()
            for name, param in self.backbone.named_parameters():
                if "lora_A" in name:  # kaiming-uniform(a=sqrt(5)) as peft does, but seeded
                    bound = 1.0 / math.sqrt(param.shape[1])
                    param.copy_(_uniform(param.shape, bound, generator))
                elif "lora_B" in name:
                    param.zero_()
            for task in self.tasks:
                head = cast(nn.Linear, self.heads[task])
                bound = 1.0 / math.sqrt(self.hidden_size)
                head.weight.copy_(_uniform(head.weight.shape, bound, generator))
                head.bias.zero_()

    def _group_parameters(self) -> dict[str, tuple[str, ...]]:
        groups: dict[str, list[str]] = {}
        for name, _ in self.named_parameters():
            module_id = self._module_of_param(name)
            if module_id is not None:
                groups.setdefault(module_id, []).append(name)
        order = {t: i for i, t in enumerate(MODULE_TYPES)}
        ids = sorted(groups, key=lambda i: (order[split_module_id(i)[0]], self._name_rank(i)))
        return {i: tuple(groups[i]) for i in ids}

    def _name_rank(self, module_id: str) -> int:
        kind, name = split_module_id(module_id)
        if kind == "encoder":
            return self.modalities.index(name)
        if kind in ("prompt", "head"):
            return self.tasks.index(name)
        return 0

    def _module_of_param(self, param_name: str) -> str | None:
        parts = param_name.split(".")
        if parts[0] == "encoders":
            return module_id_of("encoder", parts[1])
        if parts[0] == "prompts":
            return module_id_of("prompt", parts[1])
        if parts[0] == "moe":
            return module_id_of("moe", FUSION)
        if parts[0] == "backbone" and any(p.startswith("lora_") for p in parts):
            return module_id_of("adapter", FUSION)
        if parts[0] == "heads":
            return module_id_of("head", parts[1])
        return None

    def freeze_pretrained(self) -> None:
        """Freeze extractors, the backbone (except LoRA) and the fusion query; everything of the
        five module types stays trainable."""
        trainable = {n for names in self._module_params.values() for n in names}
        for name, param in self.named_parameters():
            param.requires_grad_(name in trainable)

    def train(self, mode: bool = True) -> M3TModel:
        """Switch train/eval mode; the frozen extractors and backbone always stay in eval mode."""
        super().train(mode)
        self.extractors.eval()
        self.backbone.eval()
        return self

    # ----------------------------------------------------------------------------------------
    # the trainable surface

    def module_param_names(self) -> dict[str, tuple[str, ...]]:
        """``module_id -> parameter names`` of every trainable module, in inventory order
        (encoders, prompts, moe, adapter, heads)."""
        return dict(self._module_params)

    def trainable_names(self) -> list[str]:
        """Names (as in ``named_parameters``) of every trainable parameter."""
        return [n for n, p in self.named_parameters() if p.requires_grad]

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Detached clones of every trainable parameter, by name."""
        return {n: p.detach().clone() for n, p in self.named_parameters() if p.requires_grad}

    def load_trainable_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Copy ``state`` (a subset of :meth:`trainable_names`) into the model's parameters."""
        params = dict(self.named_parameters())
        unknown = sorted(set(state) - set(self.trainable_names()))
        if unknown:
            raise KeyError(f"load_trainable_state: unknown trainable names {unknown[:5]}")
        with torch.no_grad():
            for name, value in state.items():
                if params[name].shape != value.shape:
                    raise ValueError(
                        f"load_trainable_state: {name} has shape {tuple(params[name].shape)}, "
                        f"got {tuple(value.shape)}"
                    )
                params[name].copy_(value)

    def pretrained_state(self) -> dict[str, torch.Tensor]:
        """Detached copies of what pre-training produces: extractors, backbone (LoRA excluded),
        initial encoders and the fusion query, by state-dict name."""
        return {
            k: v.detach().clone()
            for k, v in self.state_dict().items()
            if k.startswith(PRETRAINED_PREFIXES) and "lora_" not in k
        }

    def load_pretrained_state(self, state: Mapping[str, torch.Tensor], seed: int) -> None:
        """Load :meth:`pretrained_state` output and re-seed the fresh trainable modules (prompts
        start from the loaded fusion query). Raises ``KeyError``/``ValueError`` on a mismatch."""
        expected = set(self.pretrained_state())
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or extra:
            raise KeyError(f"pretrained state: missing {missing[:5]}, unexpected {extra[:5]}")
        own = self.state_dict()
        for key, value in state.items():
            if own[key].shape != value.shape:
                raise ValueError(
                    f"pretrained state: {key} has shape {tuple(value.shape)}, the model wants "
                    f"{tuple(own[key].shape)}"
                )
        self.load_state_dict(dict(state), strict=False)
        self.reset_trainable(seed)

    # ----------------------------------------------------------------------------------------
    # masks and labels

    @property
    def device(self) -> torch.device:
        """Where the model's tensors live."""
        return self.query_token.device

    def modality_mask_for(self, profile: Any) -> torch.Tensor:
        """``(M,)`` bool: which of :attr:`modalities` ``profile`` senses. ``profile`` is a
        :class:`hffm_env.data.DeviceProfile` (anything with a ``modalities`` attribute) or a
        sequence of modality names."""
        held = _names_of(profile, "modalities")
        unknown = sorted(set(held) - set(self.modalities))
        if unknown:
            raise ValueError(
                f"modalities {unknown}: unknown; the model has {list(self.modalities)}"
            )
        return torch.tensor([m in held for m in self.modalities], dtype=torch.bool)

    def task_mask_for(self, profile: Any) -> torch.Tensor:
        """``(K,)`` bool: which of :attr:`tasks` ``profile`` runs (``profile.tasks`` or a
        sequence of task names)."""
        held = _names_of(profile, "tasks")
        unknown = sorted(set(held) - set(self.tasks))
        if unknown:
            raise ValueError(f"tasks {unknown}: unknown; the model has {list(self.tasks)}")
        return torch.tensor([t in held for t in self.tasks], dtype=torch.bool)

    def labels_of(self, batch: SceneBatch) -> torch.Tensor:
        """``(n, K)`` int64 labels of ``batch`` in :attr:`tasks` order."""
        return torch.as_tensor(
            np.stack([np.asarray(batch.labels[t]) for t in self.tasks], axis=1), dtype=torch.long
        )

    # ----------------------------------------------------------------------------------------
    # frozen features

    @torch.no_grad()
    def extract_features(
        self, batch: SceneBatch, batch_size: int = 512
    ) -> dict[str, torch.Tensor]:
        """Frozen extractor features of every modality of ``batch``: ``modality -> (n, T_m,
        feature_dim)`` float32 on the model's device. Compute once per sample and cache.
        ``batch_size``: scenes per pass, an integer >= 1."""
        if not is_integer(batch_size) or batch_size < 1:  # (-4 gave no features at all)
            raise ValueError(f"batch_size = {batch_size!r}: must be an integer >= 1")
        was_training = self.extractors.training
        self.extractors.eval()
        out: dict[str, list[torch.Tensor]] = {m: [] for m in self.modalities}
        n = len(batch)
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            for m in self.modalities:
                raw = torch.as_tensor(np.asarray(getattr(batch, m)[start:stop]))
                out[m].append(self.extractors[m](raw.to(self.device)))
        self.extractors.train(was_training)
        return {
            m: torch.cat(chunks) if chunks else self._empty_features(m)
            for m, chunks in out.items()
        }

    def _empty_features(self, modality: str) -> torch.Tensor:
        return torch.zeros(
            0, self.tokens[modality], self.model_config.feature_dim, device=self.device
        )

    # ----------------------------------------------------------------------------------------
    # forward

    def fuse(
        self,
        prefix: torch.Tensor,
        prefix_valid: torch.Tensor,
        features: Mapping[str, torch.Tensor],
        modality_mask: torch.Tensor,
        use_moe: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the fusion backbone over ``[prefix, encoded modality tokens]``.

        ``prefix (B, Lp, H)`` with ``prefix_valid (B, Lp)`` bool; returns the final hidden states
        ``(B, L, H)`` and the mean load-balancing loss over layers (unweighted). ``use_moe=False``
        skips the mixture of adapters (pre-training runs before the experts exist).
        """
        tokens = [prefix]
        valid = [prefix_valid]
        for i, modality in enumerate(self.modalities):
            encoded = self.encoders[modality](features[modality])
            tokens.append(encoded)
            valid.append(modality_mask[:, i : i + 1].expand(-1, encoded.shape[1]))
        sequence = torch.cat(tokens, dim=1)
        key_valid = torch.cat(valid, dim=1)

        embeddings = self.backbone.embeddings
        length = sequence.shape[1]
        hidden = sequence + embeddings.position_embeddings.weight[:length]
        hidden = hidden + embeddings.token_type_embeddings.weight[0]
        hidden = embeddings.LayerNorm(hidden)

        additive = (~key_valid).to(hidden.dtype)[:, None, None, :] * MASK_VALUE
        balance = hidden.new_zeros(())
        for layer, experts in zip(self.backbone.encoder.layer, self.moe.layers, strict=True):
            out = layer(hidden, additive)
            hidden = out[0] if isinstance(out, tuple) else out
            if use_moe:
                update, layer_balance = experts(hidden, key_valid)
                hidden = hidden + update
                balance = balance + layer_balance
        return hidden, balance / len(self.moe.layers)

    def forward(
        self,
        features: Mapping[str, torch.Tensor],
        modality_mask: torch.Tensor,
        task_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of every task and the weighted MoE balance loss.

        Args:
            features: ``modality -> (B, T_m, feature_dim)`` cached extractor features.
            modality_mask: ``(B, M)`` bool, which modalities each sample has.
            task_mask: ``(B, K)`` bool, which tasks each sample serves (absent tasks' prompt
                tokens are masked out of attention).

        Returns:
            ``logits (B, K, C_max)``, classes beyond task k's ``num_classes`` at ``NEG_LOGIT``;
            the balance loss times ``moe_balance_weight`` (a scalar).
        """
        batch = modality_mask.shape[0]
        num_tasks, num_prompt = len(self.tasks), self.num_prompt_tokens
        prompts = torch.stack([self.prompts[t] for t in self.tasks])  # (K, P, H)
        prefix = prompts.reshape(1, num_tasks * num_prompt, -1).expand(batch, -1, -1)
        prefix_valid = task_mask[:, :, None].expand(-1, -1, num_prompt).reshape(batch, -1)
        hidden, balance = self.fuse(prefix, prefix_valid, features, modality_mask)

        pooled = hidden[:, : self.prefix_length].reshape(batch, num_tasks, num_prompt, -1)
        pooled = pooled.mean(dim=2)  # (B, K, H)
        logits = []
        for k, task in enumerate(self.tasks):
            task_logits = self.heads[task](pooled[:, k])
            pad = self.max_classes - self.num_classes[task]
            if pad:
                task_logits = nn.functional.pad(task_logits, (0, pad), value=NEG_LOGIT)
            logits.append(task_logits)
        weighted = balance * self.model_config.moe_balance_weight
        return torch.stack(logits, dim=1), weighted


def _uniform(shape: torch.Size, bound: float, generator: torch.Generator) -> torch.Tensor:
    return torch.empty(shape).uniform_(-bound, bound, generator=generator)


def _names_of(profile: Any, attribute: str) -> tuple[str, ...]:
    value = getattr(profile, attribute, profile)
    if isinstance(value, str) or not isinstance(value, (Sequence, frozenset, set)):
        raise TypeError(
            f"expected a profile with a {attribute!r} attribute or a sequence of names, "
            f"got {type(profile).__name__}"
        )
    return tuple(value)
