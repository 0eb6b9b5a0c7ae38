"""The M3T model layer: frozen pre-trained extractors and fusion backbone, the five trainable
module types (encoder, prompt, moe, adapter, head), and the module inventory.

Typical use::

    model = build_model(config.model, config.data, seed=seed)     # cached pre-training
    inventory = ModuleInventory(model)
    features = model.extract_features(scenes)                       # once per sample
    logits, balance = model(features, modality_mask, task_mask)     # vmap-friendly
"""

from hffm_env.models.extractors import AUDIO_TOKENS, IMAGE_TOKENS, tokens_per_modality
from hffm_env.models.inventory import (
    WIRE_SCALE_BITS,
    ModuleInventory,
    ModuleSpec,
    get_module_state,
    held_modules,
    on_the_wire,
    set_module_state,
    stack_state,
)
from hffm_env.models.m3t import NEG_LOGIT, M3TModel, masked_task_loss, masked_task_losses
from hffm_env.models.pretrain import (
    CODE_VERSION,
    backbone_shape,
    build_model,
    cache_key,
    cache_path,
    cached_pretrain_info,
    default_cache_dir,
    load_backbone,
    pretrain_model,
)

__all__ = [
    "AUDIO_TOKENS",
    "CODE_VERSION",
    "IMAGE_TOKENS",
    "M3TModel",
    "ModuleInventory",
    "ModuleSpec",
    "NEG_LOGIT",
    "WIRE_SCALE_BITS",
    "build_model",
    "cache_key",
    "cached_pretrain_info",
    "cache_path",
    "default_cache_dir",
    "get_module_state",
    "held_modules",
    "backbone_shape",
    "load_backbone",
    "masked_task_loss",
    "masked_task_losses",
    "on_the_wire",
    "pretrain_model",
    "set_module_state",
    "stack_state",
    "tokens_per_modality",
]
