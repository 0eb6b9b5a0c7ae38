"""Frozen per-modality feature extractors: raw scene arrays -> token sequences of ``feature_dim``.

Each extractor is a small network that is pre-trained once (see :mod:`hffm_env.models.pretrain`)
and then frozen; the federated engine computes its output once per sample and caches it, so the
hot training path only ever sees ``(n, tokens, feature_dim)`` feature tensors.

=========  ==========================  =================================================
modality   raw input                   tokens
=========  ==========================  =================================================
image      ``(n, 3, H, W)`` float32    ``IMAGE_TOKENS`` = 16: a 4 x 4 grid of conv patches
audio      ``(n, length)`` float32     ``AUDIO_TOKENS`` = 8: strided 1-D conv windows
text       ``(n, q)`` int64, PAD = 0   ``q``: one token per question word
=========  ==========================  =================================================
"""

from __future__ import annotations

import torch
from torch import nn

from hffm_env.config import AUDIO_TOKENS, IMAGE_TOKENS

__all__ = [
    "IMAGE_GRID",
    "IMAGE_TOKENS",
    "AUDIO_TOKENS",
    "ImageExtractor",
    "AudioExtractor",
    "TextExtractor",
    "build_extractor",
    "tokens_per_modality",
]

IMAGE_GRID: int = 4
"""The image extractor pools its last feature map to an ``IMAGE_GRID x IMAGE_GRID`` grid
(:data:`~hffm_env.config.IMAGE_TOKENS` tokens per image)."""


class ImageExtractor(nn.Module):
    """A three-layer conv net (strides 2, 2, 1); the last map is pooled to a 4 x 4 grid, one
    token per cell."""

    def __init__(self, feature_dim: int, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 4, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(2 * width, feature_dim, 3, padding=1),
            nn.AdaptiveAvgPool2d(IMAGE_GRID),
        )
        self.norm = nn.LayerNorm(feature_dim)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(n, 3, H, W)`` -> ``(n, IMAGE_TOKENS, feature_dim)``."""
        maps = self.net(image)  # (n, d, 4, 4)
        return self.norm(maps.flatten(2).transpose(1, 2))


class AudioExtractor(nn.Module):
    """Strided 1-D convolutions over the waveform plus its short-time magnitude spectrum,
    pooled to ``AUDIO_TOKENS`` windows."""

    def __init__(self, feature_dim: int, audio_length: int, width: int = 32) -> None:
        super().__init__()
        self.window = max(8, audio_length // AUDIO_TOKENS)
        spectrum_bins = self.window // 2 + 1
        self.wave = nn.Sequential(
            nn.Conv1d(1, width, 9, stride=2, padding=4),
            nn.GELU(),
            nn.Conv1d(width, width, 9, stride=2, padding=4),
            nn.GELU(),
            nn.AdaptiveAvgPool1d(AUDIO_TOKENS),
        )
        self.spectrum = nn.Sequential(nn.Linear(spectrum_bins, width), nn.GELU())
        self.mix = nn.Sequential(
            nn.Linear(2 * width, 2 * width), nn.GELU(), nn.Linear(2 * width, feature_dim)
        )
        self.norm = nn.LayerNorm(feature_dim)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """``(n, length)`` -> ``(n, AUDIO_TOKENS, feature_dim)``."""
        wave = self.wave(audio.unsqueeze(1)).transpose(1, 2)  # (n, T, width)
        # Magnitude spectra of AUDIO_TOKENS equal windows (tones are what audio scenes carry).
        frames = nn.functional.adaptive_avg_pool1d(audio.unsqueeze(1), AUDIO_TOKENS * self.window)
        frames = frames.reshape(audio.shape[0], AUDIO_TOKENS, self.window)
        spectrum = torch.log1p(torch.fft.rfft(frames, dim=-1).abs())
        tokens = torch.cat([wave, self.spectrum(spectrum)], dim=-1)
        return self.norm(self.mix(tokens))


class TextExtractor(nn.Module):
    """Word embeddings refined by one residual convolution over neighbouring words."""

    def __init__(self, feature_dim: int, vocab_size: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, feature_dim, padding_idx=0)
        self.conv = nn.Conv1d(feature_dim, feature_dim, 3, padding=1)
        self.norm = nn.LayerNorm(feature_dim)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        """``(n, q)`` int64 -> ``(n, q, feature_dim)``."""
        words = self.embed(text)
        mixed = self.conv(words.transpose(1, 2)).transpose(1, 2)
        return self.norm(words + nn.functional.gelu(mixed))


def build_extractor(
    modality: str, feature_dim: int, *, audio_length: int, vocab_size: int
) -> nn.Module:
    """The extractor of ``modality`` ("image", "audio" or "text")."""
    if modality == "image":
        return ImageExtractor(feature_dim)
    if modality == "audio":
        return AudioExtractor(feature_dim, audio_length)
    if modality == "text":
        return TextExtractor(feature_dim, vocab_size)
    raise ValueError(f"modality {modality!r}: unknown; known are ['image', 'audio', 'text']")


def tokens_per_modality(modality: str, question_length: int) -> int:
    """How many tokens the extractor of ``modality`` produces per sample."""
    return {"image": IMAGE_TOKENS, "audio": AUDIO_TOKENS, "text": question_length}[modality]
