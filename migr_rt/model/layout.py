"""Token layout of a window: ``[bos] <vis> v.. </vis> <aud> a.. </aud> prompt`` and the answer slot.

Everything here derives from the config alone (token ids are recorded at
build time), so scoring needs no tokenizer and an exported graph can be fed
the same ids.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # neither is needed to lay the ids out; a run on an artifact imports neither
    import torch

    from migr_rt.model.config import MigrConfig


def prefix_ids(config: MigrConfig) -> list[int]:
    """The multimodal prefix followed by the prompt."""
    ids = config.special_token_ids
    return (
        [ids["bos"], ids["vis_start"]]
        + [ids["vis_token"]] * config.num_visual_tokens
        + [ids["vis_end"], ids["aud_start"]]
        + [ids["aud_token"]] * config.num_audio_tokens
        + [ids["aud_end"]]
        + list(config.prompt_token_ids)
    )


def scoring_ids(config: MigrConfig) -> list[int]:
    """Prefix + ``<answer>``: the label distribution is read at the last position (the answer slot)."""
    return prefix_ids(config) + [config.special_token_ids["answer_start"]]


def scoring_batch(config: MigrConfig, batch_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(B, L)`` scoring ids; every row is the same fixed layout (a torch tensor, for the torch reference)."""
    import torch

    return torch.tensor(scoring_ids(config), dtype=torch.long, device=device)[None].repeat(batch_size, 1)
