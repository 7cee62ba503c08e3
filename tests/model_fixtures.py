"""Builders for a tiny but complete MIGR model (real encoders, real Qwen2 decoder) and its inputs."""

from __future__ import annotations

import torch

from migr_rt.model import MigrConfig

TINY_TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "vocab_size": 400,
    "tie_word_embeddings": True,
}


def tiny_config(**overrides) -> MigrConfig:
    kwargs = dict(
        text_config=dict(TINY_TEXT),
        num_frames=4,
        face_size=32,
        visual_channels=[8, 16, 16, 32],
        visual_dim=32,
        num_visual_tokens=2,
        audio_seconds=0.5,
        n_mels=32,
        audio_channels=32,
        audio_dim=32,
        num_audio_tokens=4,
    )
    kwargs.update(overrides)
    return MigrConfig(**kwargs)


def random_inputs(config: MigrConfig, batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.rand(batch, config.num_frames, 3, config.face_size, config.face_size, generator=gen)
    audio = torch.randn(batch, config.audio_samples, generator=gen) * 0.1
    return pixels, audio
