"""Build the M3T model: load its frozen pre-trained parts from the on-disk cache, or pre-train
them once (centrally, on pretext tasks) and cache the result.

Pre-training
    On ``generate_scenes(data.pretrain_samples)`` (drawn from the fixed :data:`PRETRAIN_SEED`, so
    every build seed shares one foundation model), the extractors, the fusion backbone, the
    initial encoders and the fusion query token learn a *pretext* objective, never the
    downstream labels (the environment, the object count, the VQA answer):

    * from each of image and audio alone (a probe on the extractor's tokens) and from the fused
      sequence (a probe on the mean of the query tokens' outputs): how many objects have each
      colour, each shape and each size;
    * from the text alone and from the fused sequence: the question's template.

    So the frozen parts know what objects look like, but the federated modules (encoders,
    prompts, experts, LoRA, heads) must still learn the tasks, from the devices' skewed data.
    After pre-training, linear probes on the frozen parts measure how much of each downstream
    task they carry (``pretrain_info["downstream_probe_accuracy"]``, reported by
    ``hffm pretrain`` and ``hffm describe``).

    The fused pass drops modalities at random (image and audio each kept with probability 0.7,
    at least one of them; text 0.8) and masks random groups of query slots, as devices will.
    None of the downstream heads, prompts, experts or LoRA weights are trained here.

``pretrained_path``
    Loads a local Hugging Face checkpoint of the backbone (``BertModel.from_pretrained(path,
    local_files_only=True)``), freezes it, and pre-trains only the extractors, encoders and
    query token against it. Its own sizes (hidden, layers, heads) replace ``model_config``'s.

Cache
    ``<cache_dir>/m3t-<key>.pt`` where ``cache_dir`` is the argument, else ``$HFFM_CACHE_DIR``,
    else ``~/.cache/hffm_env``; ``key`` hashes every field that changes the pre-trained weights
    (:func:`cache_key`). Files are written atomically (temporary file + ``os.replace``) and carry
    a checksum; an unreadable, partial or mismatching file is rebuilt with a warning. Processes
    building the same file at once take turns on ``<file>.lock`` (the first builds, the others
    wait and load its file). A cache folder that cannot be written, or anything but a regular
    file at the cache path, is reported before pre-training and a private temporary folder is
    used instead.
"""

from __future__ import annotations

import hashlib
import math
import os
import stat
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, cast, overload

import numpy as np
import torch
from torch import nn
from transformers import BertConfig, BertModel

from hffm_env import jsonio
from hffm_env.arguments import error_line
from hffm_env.config import DataConfig, ModelConfig
from hffm_env.data import (
    COLOURS,
    QUESTION_TYPES,
    SHAPES,
    SIZES,
    VOCAB_SIZE,
    SceneBatch,
    centre_pixel_paints,
    generate_scenes,
    noiseless,
)
from hffm_env.devices import float32_default
from hffm_env.files import (
    load_tensors,
    lock_file,
    non_finite_tensors,
    remove_staging_files,
    write_atomically,
)
from hffm_env.models.m3t import M3TModel
from hffm_env.values import is_real, shown

__all__ = [
    "CODE_VERSION",
    "PRETRAIN_SEED",
    "PRETRAIN_THREADS",
    "default_cache_dir",
    "cache_key",
    "cache_path",
    "load_backbone",
    "backbone_shape",
    "pretrain_model",
    "build_model",
    "cached_pretrain_info",
    "downstream_probes",
]

CODE_VERSION: str = "m3t-pretrain-4"
"""Bump when the architecture or the pretext recipe changes: old cache files then go unused."""

PRETRAIN_SEED: int = 0
"""Seed of the pre-training data and run; independent of the build seed on purpose."""

PRETRAIN_THREADS: int = 1
"""CPU threads pre-training runs on, whatever the caller's setting: float reductions run in
another order on another thread count, and the cached weights must not depend on which
process happened to build them (a cache built with 2 threads made every later run differ in
the last bits from one built with 1). Its tiny matrices lose little: about 18 s instead of
14 s on `small`, once per cache."""

_FORMAT = 1
_KEEP_IMAGE, _KEEP_AUDIO, _KEEP_TEXT, _KEEP_PROMPT_GROUP = 0.7, 0.7, 0.8, 0.7
_FUSED_WEIGHT = 3.0  # the fused probe is the one that trains the backbone: weigh it up

_MODEL_FIELDS = (
    "hidden_size", "num_layers", "num_heads", "intermediate_size", "feature_dim",
    "num_prompt_tokens", "pretrain_steps", "pretrain_batch_size", "pretrain_lr",
)
_BACKBONE_SIZE_FIELDS = ("hidden_size", "num_layers", "num_heads", "intermediate_size")
"""The fields of :data:`_MODEL_FIELDS` a checkpoint (``pretrained_path``) replaces with its own."""
_DATA_FIELDS = (
    "modalities", "tasks", "image_size_px", "audio_length", "question_length", "max_objects",
    "noise_std", "pretrain_samples",
)


# --------------------------------------------------------------------------------------------
# cache keys and files


def default_cache_dir() -> Path:
    """``$HFFM_CACHE_DIR`` if set, else ``~/.cache/hffm_env``; where there is no home folder
    (``HOME`` unset and a user unknown to the system, as in some containers), a private
    folder in the temporary directory, with a warning."""
    env = os.environ.get("HFFM_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    try:
        return Path.home() / ".cache" / "hffm_env"
    except (RuntimeError, KeyError):  # no HOME and no passwd entry for this user
        fallback = _private_fallback_dir()
        warnings.warn(f"no home folder for the model cache; using {fallback} (set "
                      "HFFM_CACHE_DIR to a folder to keep the cache)", RuntimeWarning,
                      stacklevel=2)
        return fallback


@overload
def _checkpoint_dir(pretrained_path: str | Path) -> Path: ...
@overload
def _checkpoint_dir(pretrained_path: str | Path | None) -> Path | None: ...
def _checkpoint_dir(pretrained_path: str | Path | None) -> Path | None:
    if pretrained_path is None:
        return None
    path = Path(pretrained_path).expanduser().resolve()
    if not path.is_dir() or not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"model.pretrained_path = {str(pretrained_path)!r}: no local Hugging Face "
            f"checkpoint there (expected a folder with config.json and the weights, as written "
            f"by BertModel.save_pretrained); nothing is downloaded"
        )
    return path


def _checkpoint_fingerprint(path: Path) -> dict[str, Any]:
    files = sorted(p for p in path.iterdir() if p.is_file())
    return {
        "path": str(path),
        "files": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files],
    }


def cache_key(model_config: ModelConfig, data_config: DataConfig) -> str:
    """A hex digest of everything that changes the pre-trained weights: the backbone and
    pre-training fields of ``model_config`` (or the checkpoint's path, sizes and mtimes), the
    data fields that shape the pretext data, the vocabulary size and :data:`CODE_VERSION`.
    Trainable-module sizes (experts, LoRA rank, ...) and precision do not enter it, nor, with
    a checkpoint, the backbone sizes it replaces (changing them built the same weights
    again)."""
    checkpoint = _checkpoint_dir(model_config.pretrained_path)
    fields = _MODEL_FIELDS if checkpoint is None else tuple(
        f for f in _MODEL_FIELDS if f not in _BACKBONE_SIZE_FIELDS)
    payload = {
        "code": CODE_VERSION,
        "vocab_size": VOCAB_SIZE,
        "seed": PRETRAIN_SEED,
        "model": {f: getattr(model_config, f) for f in fields},
        "data": {f: getattr(data_config, f) for f in _DATA_FIELDS},
        "checkpoint": None if checkpoint is None else _checkpoint_fingerprint(checkpoint),
    }
    if centre_pixel_paints(data_config):
        # such scenes are rendered otherwise since 2026-12-07: weights cached before were
        # pre-trained on other images (the presets' are not: their keys stay)
        payload["centre_pixel"] = True
    if noiseless(data_config):  # its pretext data is drawn otherwise since 2026-12-07
        payload["noise_drawn"] = True
    return jsonio.digest(payload, length=24, default=list)


def cache_path(
    model_config: ModelConfig, data_config: DataConfig, cache_dir: str | Path | None = None
) -> Path:
    """Where the pre-trained weights for these configs are cached."""
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return folder / f"m3t-{cache_key(model_config, data_config)}.pt"


def _checksum(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def _save_cache(path: Path, key: str, state: dict[str, torch.Tensor], info: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "format": _FORMAT, "key": key, "code_version": CODE_VERSION,
        "state": {k: v.detach().cpu() for k, v in state.items()},
        "checksum": _checksum(state), "info": info,
    }
    write_atomically(path, lambda handle: torch.save(record, handle), sync=True)


def _load_cache(path: Path, key: str) -> tuple[dict[str, torch.Tensor], dict]:
    """The cached state and info, or an exception saying what is wrong with the file."""
    record = load_tensors(path)
    if not isinstance(record, dict):
        raise ValueError("not a cache record")
    missing = {"format", "key", "state", "checksum", "info"} - set(record)
    if missing:
        raise ValueError(f"missing entries {sorted(missing)}")
    if record["format"] != _FORMAT or record["key"] != key:
        raise ValueError("written for another format or key")
    if _checksum(record["state"]) != record["checksum"]:
        raise ValueError("checksum mismatch")
    # (the checksum covers the weights, not the info: an edited file could pass it)
    problem = _info_problem(record["info"])
    if problem:
        raise ValueError(f"info: {problem}")
    bad = non_finite_tensors(record["state"])
    if bad:
        raise ValueError(f"weights not finite ({bad[0]})")
    return record["state"], record["info"]


def _info_problem(info: Any) -> str:
    """What is wrong with a cache record's ``info`` (the pre-training report): empty when it
    is a mapping whose ``seconds``, ``steps``, ``final_loss`` are numbers and whose probe
    accuracies map names to numbers, as pre-training writes it."""
    if not isinstance(info, dict):
        return f"{shown(info)} is not a mapping"
    for key in ("seconds", "steps", "final_loss"):
        if key in info and not is_real(info[key]):
            return f"{key} = {shown(info[key])} is not a number"
    for key in ("probe_accuracy", "downstream_probe_accuracy"):
        value = info.get(key, {})
        if not (isinstance(value, dict) and all(is_real(v) for v in value.values())):
            return f"{key} = {shown(value)} is not a mapping of names to numbers"
    return ""


# --------------------------------------------------------------------------------------------
# backbone checkpoints


def _unreadable(folder: Path, what: str, err: Exception) -> ValueError:
    """The error for a checkpoint file transformers, safetensors or torch could not read."""
    reason = error_line(err, 160)
    return ValueError(f"model.pretrained_path = {str(folder)!r}: its {what} cannot be read "
                      f"({reason}); a damaged or truncated file? Write the checkpoint again "
                      "with BertModel.save_pretrained")


def _bert_config(folder: Path) -> BertConfig:
    """The checkpoint's config, refused unless it describes a BERT model."""
    try:  # (TypeError: valid JSON that is no object, such as a list)
        config = BertConfig.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, TypeError) as err:  # transformers' words for a bad config
        raise _unreadable(folder, "config.json", err) from None
    if config.model_type != "bert":
        raise ValueError(f"model.pretrained_path = {str(folder)!r}: a {config.model_type!r} "
                         "checkpoint; the fusion backbone must be a BERT checkpoint "
                         "(BertModel.save_pretrained)")
    if not (isinstance(config.type_vocab_size, int) and config.type_vocab_size >= 1):
        # (the backbone reads token type 0: an IndexError deep in the model)
        raise ValueError(f"model.pretrained_path = {str(folder)!r}: its config.json has "
                         f"type_vocab_size = {config.type_vocab_size!r}; a BERT backbone has "
                         "at least one token type")
    return config


def load_backbone(path: str | Path) -> BertModel:
    """A local Hugging Face BERT checkpoint as a frozen fusion backbone (never downloads).
    Another architecture, weights missing from the checkpoint (the pooler aside: it is not
    used), weights that cannot be read (a damaged file) or that are not finite raise
    ``ValueError``: they would leave a randomly initialised or broken "pre-trained"
    backbone."""
    folder = _checkpoint_dir(path)
    _bert_config(folder)
    try:  # with output_loading_info, from_pretrained returns (model, loading info)
        backbone, loading = cast("tuple[BertModel, dict[str, Any]]", BertModel.from_pretrained(
            str(folder), local_files_only=True, add_pooling_layer=False,
            attn_implementation="eager", output_loading_info=True,
        ))
    except MemoryError:  # too large for this machine, not damaged
        raise
    except Exception as err:  # safetensors, torch and transformers each raise their own kinds
        raise _unreadable(folder, "weights", err) from None
    missing = [k for k in [*loading["missing_keys"], *loading["mismatched_keys"]]
               if not str(k).startswith("pooler.")]
    if missing:
        raise ValueError(f"model.pretrained_path = {str(folder)!r}: the checkpoint lacks "
                         f"{len(missing)} of the backbone's weights (e.g. {missing[:3]})")
    # float32 whatever the checkpoint was saved in: the rest of the model is float32 (a
    # half-precision checkpoint failed deep in torch with "mixed dtype"); .float() rather
    # than from_pretrained's dtype, which older transformers lack
    backbone = backbone.float()
    broken = non_finite_tensors(backbone.state_dict())
    if broken:
        raise ValueError(f"model.pretrained_path = {str(folder)!r}: {len(broken)} of the "
                         f"checkpoint's weights hold NaN or infinite values (e.g. {broken[:3]}); "
                         "the checkpoint is damaged")
    return backbone


def backbone_shape(model_config: ModelConfig) -> BertModel | None:
    """With ``model_config.pretrained_path``, a backbone of the checkpoint's sizes without its
    weights (for pricing and inventories: module sizes follow the checkpoint's hidden size);
    ``None`` without one."""
    folder = _checkpoint_dir(model_config.pretrained_path)
    if folder is None:
        return None
    return BertModel(_bert_config(folder), add_pooling_layer=False)


# --------------------------------------------------------------------------------------------
# pretext tasks


_TINT_EDGES = np.array([0.10, 0.125, 0.15])
"""Bin edges of an image's median channel level (a dark background of 0.08 plus a tint of up
to about 0.1)."""


def _low_frequency_bins(audio_length: int) -> int:
    """FFT bins (above DC) below the objects' tones, which start at 0.09 cycles per sample."""
    return max(2, int(0.08 * audio_length))


def _pretext_targets(batch: SceneBatch, max_objects: int) -> dict[str, tuple[np.ndarray, int]]:
    """``name -> (labels (n,), classes)`` of the pretext targets. None is a downstream label:

    * per colour, shape and size, how many objects have it;
    * ``cue_image_<channel>``: the image's median level in each colour channel (the
      background's tint, objects covering little of the picture), in :data:`_TINT_EDGES` bins;
    * ``cue_audio_low``: the strongest low frequency of the audio (below the objects' tones),
      as its FFT bin.

    The cues are computed from the inputs themselves (self-supervision, like colourisation or
    spectral pretext tasks): the frozen parts learn to hear and see the background, and which
    backgrounds make which environment is left to the federated modules to learn.
    """
    objects = batch.objects
    present = objects.present
    targets: dict[str, tuple[np.ndarray, int]] = {}
    levels = np.median(batch.image.reshape(len(batch), 3, -1), axis=2)
    for c, channel in enumerate(("r", "g", "b")):
        targets[f"cue_image_{channel}"] = (np.digitize(levels[:, c], _TINT_EDGES),
                                           len(_TINT_EDGES) + 1)
    low_bins = _low_frequency_bins(batch.audio.shape[1])
    spectrum = np.abs(np.fft.rfft(batch.audio, axis=1))[:, 1 : low_bins + 1]
    targets["cue_audio_low"] = (spectrum.argmax(axis=1), low_bins)
    for attribute, names in (("colour", COLOURS), ("shape", SHAPES), ("size", SIZES)):
        values = getattr(objects, attribute)
        for i, name in enumerate(names):
            counts = ((values == i) & present).sum(axis=1)
            targets[f"{attribute}_{name}"] = (counts, max_objects + 1)
    return targets


def _own_cues(description: dict[str, int], modality: str) -> dict[str, int]:
    """The description targets one sensor can answer alone: no cue of the other sensor."""
    return {k: c for k, c in description.items()
            if not k.startswith("cue_") or k.startswith(f"cue_{modality}")}


class _Probe(nn.Module):
    """A two-layer MLP reading a flat vector and answering several classification targets."""

    def __init__(self, in_features: int, classes: dict[str, int], width: int = 128) -> None:
        super().__init__()
        self.classes = dict(classes)
        self.body = nn.Sequential(nn.Linear(in_features, width), nn.GELU())
        self.out = nn.Linear(width, sum(classes.values()))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.out(self.body(x))
        return dict(zip(self.classes, logits.split(list(self.classes.values()), dim=-1)))


def _mean_ce(
    logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    losses = []
    for name, value in logits.items():
        ce = nn.functional.cross_entropy(value, targets[name], reduction="none")
        if weight is not None:
            ce = (ce * weight).sum() / weight.sum().clamp_min(1.0)
        else:
            ce = ce.mean()
        losses.append(ce)
    return torch.stack(losses).mean()


@float32_default()
def pretrain_model(
    model: M3TModel,
    *,
    train_backbone: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Pre-train ``model``'s extractors, encoders, fusion query and (if ``train_backbone``)
    backbone on the pretext tasks, in place; returns statistics (seconds, final losses, probe
    accuracies on held-out scenes). Trainable modules other than the encoders are untouched.

    Runs on :data:`PRETRAIN_THREADS` CPU threads whatever the caller's setting, so that the
    weights (and the cache built from them) are the same in every process; the caller's
    thread setting is restored afterwards.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(PRETRAIN_THREADS)
    try:  # (its layers' initial draws, overwritten, leave the caller's torch stream alone)
        with torch.random.fork_rng(devices=[]):
            return _pretrain(model, train_backbone=train_backbone, progress=progress)
    finally:
        torch.set_num_threads(threads)


def _pretrain(model: M3TModel, *, train_backbone: bool, progress: bool) -> dict[str, Any]:
    from hffm_env.progress import progress_bar

    started = time.perf_counter()
    mc, dc = model.model_config, model.data_config
    rng = np.random.default_rng(PRETRAIN_SEED)
    data = generate_scenes(dc.pretrain_samples, dc, rng)
    held_out = generate_scenes(max(256, dc.pretrain_samples // 10), dc, rng)
    device = model.device

    description = {k: c for k, (_, c) in _pretext_targets(held_out, dc.max_objects).items()}
    question = {"question": len(QUESTION_TYPES)}
    sensing: list[str] = [m for m in ("image", "audio") if m in model.modalities]

    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(PRETRAIN_SEED)  # (the CPU's: a caller's CUDA
        # stream is not reseeded, which torch.manual_seed does and fork_rng does not restore)
        probes = nn.ModuleDict()
        for m in model.modalities:
            width = model.tokens[m] * mc.feature_dim
            probes[m] = _Probe(width, _own_cues(description, m) if m in sensing else question)
        fused_classes = {**(description if sensing else {}),
                         **(question if "text" in model.modalities else {})}
        probes["fused"] = _Probe(model.hidden_size, fused_classes)
    probes.to(device)

    learned: list[nn.Parameter] = [model.query_token]
    learned += list(model.extractors.parameters()) + list(model.encoders.parameters())
    if train_backbone:
        learned += [p for n, p in model.backbone.named_parameters() if "lora_" not in n]
    learned += list(probes.parameters())
    for p in model.parameters():
        p.requires_grad_(False)
    for p in learned:
        p.requires_grad_(True)
    optimiser = torch.optim.AdamW(learned, lr=mc.pretrain_lr, weight_decay=0.01)
    steps = mc.pretrain_steps
    horizon, warmup = max(steps, 1), max(1, steps // 20)

    def lr_factor(step: int) -> float:  # linear warm-up, cosine decay
        cosine = 0.5 * (1 + math.cos(math.pi * min(step, horizon) / horizon))
        return min(1.0, (step + 1) / warmup) * cosine

    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lr_factor)

    def tensors(batch: SceneBatch) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        raw = {m: torch.as_tensor(getattr(batch, m)).to(device) for m in model.modalities}
        targets = {k: torch.as_tensor(v, dtype=torch.long).to(device)
                   for k, (v, _) in _pretext_targets(batch, dc.max_objects).items()}
        targets["question"] = torch.as_tensor(batch.question_type, dtype=torch.long).to(device)
        return raw, targets

    generator = torch.Generator().manual_seed(PRETRAIN_SEED)
    num_groups, num_prompt = len(model.tasks), model.num_prompt_tokens
    mod_index = {m: i for i, m in enumerate(model.modalities)}

    def step_loss(
        raw: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], drop: bool = True
    ) -> tuple[torch.Tensor, dict[str, dict[str, torch.Tensor]]]:
        n = next(iter(raw.values())).shape[0]
        features = {m: model.extractors[m](raw[m]) for m in model.modalities}
        outputs = {m: probes[m](features[m].flatten(1)) for m in model.modalities}
        loss = torch.stack([_mean_ce(outputs[m], targets) for m in model.modalities]).sum()

        keep = {m: (torch.rand(n, generator=generator) < p) | (not drop) for m, p in
                (("image", _KEEP_IMAGE), ("audio", _KEEP_AUDIO), ("text", _KEEP_TEXT))}
        if sensing:  # at least one sensing modality, so the description is answerable
            none = ~torch.stack([keep[m] for m in sensing]).any(0)
            pick = torch.randint(len(sensing), (n,), generator=generator)
            for i, m in enumerate(sensing):
                keep[m] = keep[m] | (none & (pick == i))
        modality_mask = torch.zeros(n, len(model.modalities), dtype=torch.bool)
        for m, i in mod_index.items():
            modality_mask[:, i] = keep[m]
        groups = (torch.rand(n, num_groups, generator=generator) < _KEEP_PROMPT_GROUP) | (not drop)
        groups[torch.arange(n), torch.randint(num_groups, (n,), generator=generator)] = True
        prefix_valid = groups[:, :, None].expand(-1, -1, num_prompt).reshape(n, -1).to(device)
        modality_mask = modality_mask.to(device)
        prefix = model.query_token.expand(n, model.prefix_length, -1)
        hidden, _ = model.fuse(prefix, prefix_valid, features, modality_mask, use_moe=False)
        weights = prefix_valid.to(hidden.dtype).unsqueeze(-1)
        pooled = (hidden[:, : model.prefix_length] * weights).sum(1) / weights.sum(1)
        fused = probes["fused"](pooled)
        if sensing:
            description_logits = {k: v for k, v in fused.items() if k != "question"}
            loss = loss + _FUSED_WEIGHT * _mean_ce(description_logits, targets)
        if "question" in fused:
            text_kept = modality_mask[:, mod_index["text"]].to(hidden.dtype)
            loss = loss + _mean_ce({"question": fused["question"]}, targets, text_kept)
        outputs["fused"] = fused
        return loss, outputs

    model.train()
    probes.train()
    n_train = len(data)
    batch_size = min(mc.pretrain_batch_size, n_train)
    order = np.random.default_rng(PRETRAIN_SEED + 1)
    permutation = order.permutation(n_train)
    cursor = 0
    bar = progress_bar(range(steps), desc="pre-training M3T backbone", disable=not progress,
                       leave=False, mininterval=1.0)
    loss_value = float("nan")
    for step in bar:
        if cursor + batch_size > n_train:
            permutation, cursor = order.permutation(n_train), 0
        idx = permutation[cursor : cursor + batch_size]
        cursor += batch_size
        raw, targets = tensors(data.subset(idx))
        loss, _ = step_loss(raw, targets)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(learned, 1.0)
        optimiser.step()
        schedule.step()
        if step % 10 == 0 or step == steps - 1:
            loss_value = float(loss.detach())
            bar.set_postfix(loss=f"{loss_value:.3f}")
    bar.close()

    # held-out pretext accuracy, fused with every modality present (for reports)
    accuracy: dict[str, float] = {}
    model.eval()
    with torch.no_grad():
        raw, targets = tensors(held_out)
        _, outputs = step_loss(raw, targets, drop=False)
        for source, logits in outputs.items():
            hits = [(logits[k].argmax(-1) == targets[k]).float().mean() for k in logits]
            accuracy[f"{source}/pretext"] = round(float(torch.stack(hits).mean()), 4)
        downstream = downstream_probes(model, generate_scenes(_PROBE_SAMPLES, dc, rng))
    model.train()
    model.freeze_pretrained()
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "steps": steps,
        "final_loss": round(loss_value, 4),
        "probe_accuracy": accuracy,
        "downstream_probe_accuracy": downstream,
        "backbone": "pretrained_path" if not train_backbone else "pre-trained here",
    }


_PROBE_SAMPLES = 1200
_PROBE_STEPS = 300


@torch.no_grad()
def _frozen_views(model: M3TModel, batch: SceneBatch) -> dict[str, torch.Tensor]:
    """Flat representations of ``batch`` by each frozen part: every extractor's tokens and the
    fused query (the pooled query tokens, every modality present, no trainable module)."""
    device = model.device
    raw = {m: torch.as_tensor(getattr(batch, m)).to(device) for m in model.modalities}
    features = {m: model.extractors[m](raw[m]) for m in model.modalities}
    n = len(batch)
    prefix = model.query_token.expand(n, model.prefix_length, -1)
    valid = torch.ones(n, model.prefix_length, dtype=torch.bool, device=device)
    mask = torch.ones(n, len(model.modalities), dtype=torch.bool, device=device)
    hidden, _ = model.fuse(prefix, valid, features, mask, use_moe=False)
    views = {m: f.flatten(1) for m, f in features.items()}
    views["fused"] = hidden[:, : model.prefix_length].mean(1)
    return views


def downstream_probes(model: M3TModel, batch: SceneBatch) -> dict[str, float]:
    """How much of each downstream task the frozen parts carry: a linear probe per (frozen
    part, task) fitted on the first half of ``batch`` and scored on the second half.

    Keys are ``"<part>/<task>"`` with part an extractor's modality or ``fused``; only tasks
    the part can serve alone are probed on an extractor (vqa needs the question, so only
    ``fused`` is probed on it). A high fused score means a linear head on the frozen model
    already solves the task; the federated modules then have little left to learn.
    """
    views = _frozen_views(model, batch)
    half = len(batch) // 2
    out: dict[str, float] = {}
    generator = torch.Generator().manual_seed(PRETRAIN_SEED)
    for source, x in views.items():
        x = (x - x[:half].mean(0)) / x[:half].std(0).clamp_min(1e-6)
        for task in model.tasks:
            if source != "fused" and (task == "vqa" or source == "text"):
                continue
            y = torch.as_tensor(batch.labels[task], dtype=torch.long, device=x.device)
            probe = nn.Linear(x.shape[1], model.num_classes[task]).to(x.device)
            with torch.no_grad():
                probe.weight.copy_(torch.randn(probe.weight.shape, generator=generator) * 0.01)
                probe.bias.zero_()
            optimiser = torch.optim.Adam(probe.parameters(), lr=1e-2, weight_decay=1e-4)
            with torch.enable_grad():
                for _ in range(_PROBE_STEPS):
                    loss = nn.functional.cross_entropy(probe(x[:half]), y[:half])
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
            with torch.no_grad():
                hits = (probe(x[half:]).argmax(-1) == y[half:]).float().mean()
            out[f"{source}/{task}"] = round(float(hits), 4)
    return out


# --------------------------------------------------------------------------------------------
# the entry point


def cached_pretrain_info(
    model_config: ModelConfig, data_config: DataConfig, cache_dir: str | Path | None = None
) -> dict[str, Any] | None:
    """The pre-training statistics stored with the cached weights for these configs (probe
    accuracies, seconds), or ``None`` when nothing usable is cached yet. Builds nothing."""
    path = cache_path(model_config, data_config, cache_dir)
    if not path.is_file():
        return None
    try:
        _, info = _load_cache(path, path.stem.removeprefix("m3t-"))
    except Exception:  # noqa: BLE001 - an unusable file is reported as not built
        return None
    return {**info, "cache_file": str(path)}


@float32_default()
def build_model(
    model_config: ModelConfig,
    data_config: DataConfig,
    *,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> M3TModel:
    """The M3T model for these configs, its frozen parts loaded from the cache or pre-trained
    (and cached), its fresh trainable modules drawn from ``seed``, on ``device`` (pre-training
    itself runs on the CPU, on one thread, so that the weights are the same on every
    machine; a device this machine lacks is refused first).

    ``model.pretrain_info`` holds the pre-training statistics and whether they came from the
    cache (``"cached": True``).

    Raises:
        FileNotFoundError: ``model_config.pretrained_path`` is set but holds no checkpoint.
    """
    from hffm_env.devices import device_problem

    problem = device_problem(str(device))
    if problem is not None:  # (before pre-training: the model moved there only at the end)
        raise ValueError(f"device = {str(device)!r}: {problem}")
    checkpoint = _checkpoint_dir(model_config.pretrained_path)
    backbone = load_backbone(checkpoint) if checkpoint is not None else None
    # the frozen parts start from PRETRAIN_SEED whatever ``seed`` is, so that the cached file
    # (whose key has no seed) is the same whichever build writes it; ``seed`` then draws only
    # the fresh trainable modules (load_pretrained_state re-seeds them)
    model = M3TModel(model_config, data_config, seed=PRETRAIN_SEED, backbone=backbone)
    path = cache_path(model_config, data_config, cache_dir)
    key = path.stem.removeprefix("m3t-")
    # a finished file loads without the lock (files are replaced whole, never written in
    # place), so a cache folder that is only readable (a shared one) still serves it
    info = _load_into(model, path, key, seed, report=False) if path.is_file() else None
    if info is not None:
        model.pretrain_info = info
        model.cache_file = path
        return model.to(device)
    path = _usable_cache_path(path)
    cache_file: Path | None = path  # None when the pre-trained parts could not be saved
    # one process builds; the others wait here, then load its file
    with lock_file(_lock_path(path), on_busy=lambda: print(
            f"hffm-env: waiting for another process that is building {path}", file=sys.stderr,
            flush=True)) as locked:
        info = _load_into(model, path, key, seed)
        if info is None and locked:  # temporary files of this name are a killed build's
            remove_staging_files(path)
        if info is None:
            print(
                f"hffm-env: pre-training the frozen parts of the M3T model for this "
                f"configuration ({model_config.pretrain_steps} steps on one CPU thread, so "
                f"that the weights do not depend on the thread count; 20-30 s for `small`); "
                f"done once, then cached in {path}", file=sys.stderr, flush=True,
            )
            info = pretrain_model(model, train_backbone=backbone is None, progress=progress)
            try:
                _save_cache(path, key, model.pretrained_state(), info)
            except (OSError, RuntimeError) as err:  # a full disk (torch says RuntimeError)
                warnings.warn(f"could not save the pre-trained model to {path} "
                              f"({error_line(err, 200)}); using it from memory, "
                              "it is pre-trained again next time", RuntimeWarning,
                              stacklevel=_CALLER_OF_BUILD_MODEL - 1)  # (from build_model)
                cache_file = None
            model.load_pretrained_state(model.pretrained_state(), seed)
            info = {**info, "cached": False}
    model.pretrain_info = info
    model.cache_file = cache_file
    return model.to(device)


_CALLER_OF_BUILD_MODEL = 4
"""The stack level of a warning raised by a helper :func:`build_model` calls, to point at
``build_model``'s caller: the helper, ``build_model``, the frame of its ``float32_default``
decorator (a context manager's), then the caller."""


def _load_into(model: M3TModel, path: Path, key: str, seed: int, *,
               report: bool = True) -> dict[str, Any] | None:
    """Load the cached frozen parts into ``model``; ``None`` when there is no usable file (an
    unreadable one is reported, unless not ``report``, and will be rewritten)."""
    if not path.exists():
        return None
    try:
        state, info = _load_cache(path, key)
        model.load_pretrained_state(state, seed)
    except Exception as err:  # noqa: BLE001 - any unreadable file is rebuilt
        if not report:
            return None
        warnings.warn(
            f"pre-trained model cache {path} is unusable ({type(err).__name__}: {err}); "
            "pre-training again and rewriting it",
            RuntimeWarning,
            stacklevel=_CALLER_OF_BUILD_MODEL,
        )
        return None
    return {**info, "cached": True}


def _usable_cache_path(path: Path) -> Path:
    """``path`` if its folder is writable and nothing but a regular file stands there; else
    the same name in a private temporary folder, with a warning (checked before pre-training,
    so a bad cache folder never costs a whole pre-training run)."""
    problem = None
    lock = _lock_path(path)
    if path.exists() and not path.is_file():  # a FIFO would block the read forever
        problem = "is not a regular file"
    elif path.exists() and not os.access(path, os.R_OK):  # another user's, say
        problem = "cannot be read (permission denied)"
    elif lock.exists() and not lock.is_file():
        problem = f"has a lock path {lock.name} that is not a regular file"
    elif (blocker := next((p for p in path.parents if p.exists()), None)) is not None \
            and not blocker.is_dir():  # (mkdir would say only "File exists")
        problem = f"is in a folder that cannot be created ({blocker} is a file)"
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".write-test-"):
                pass
        except OSError as err:
            problem = f"is in a folder that cannot be written ({err.strerror or err})"
        else:
            try:
                with open(lock, "a"):  # another user's lock file in a shared folder
                    pass
            except OSError as err:
                problem = f"has a lock file {lock.name} that cannot be opened " \
                          f"({err.strerror or err})"
    if problem is None:
        return path
    fallback = _private_fallback_dir()
    warnings.warn(
        f"pre-trained model cache {path} {problem}; using {fallback} instead (set "
        "HFFM_CACHE_DIR to a writable folder to keep the cache)",
        RuntimeWarning,
        stacklevel=_CALLER_OF_BUILD_MODEL,
    )
    return fallback / path.name


def _private_fallback_dir() -> Path:
    """``<tmp>/hffm_env-cache-<uid>``, when this user owns it and no one else may write it;
    else a fresh private folder (a shared /tmp lets anyone create that name first)."""
    user = os.getuid() if hasattr(os, "getuid") else None
    folder = Path(tempfile.gettempdir()) / f"hffm_env-cache-{user if user is not None else 'user'}"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        status = folder.lstat()
        if user is None:
            return folder
        if stat.S_ISDIR(status.st_mode) and status.st_uid == user:  # ours (older versions
            if status.st_mode & 0o022:  # made it with the umask's mode): make it private
                folder.chmod(0o700)
            return folder
    except OSError:
        pass
    global _FRESH_FALLBACK
    if _FRESH_FALLBACK is None or not _FRESH_FALLBACK.is_dir():  # one per process
        _FRESH_FALLBACK = Path(tempfile.mkdtemp(prefix="hffm_env-cache-"))
    return _FRESH_FALLBACK


_FRESH_FALLBACK: Path | None = None


def _lock_path(path: Path) -> Path:
    """The lock file of the cache file ``path``: ``<path>.lock``."""
    return path.with_name(path.name + ".lock")
