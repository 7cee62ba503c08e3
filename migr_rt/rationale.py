"""The rationale prompt and its text, shared by :class:`~migr_rt.predict.Predictor` and the streaming runtime.

MIGR's point is the opening: the rationale starts with the modality MI
finds dominant (``opening``), forced by appending its start tag to the
prompt; ``None`` lets the model choose.
"""

from __future__ import annotations

from collections.abc import Sequence

from migr_rt.model.config import MigrConfig
from migr_rt.model.layout import prefix_ids


def rationale_prompt(config: MigrConfig, opening: str | None) -> tuple[list[int], str]:
    """Prompt ids (prefix, ``<think>``, and the opening modality's tag if any) and the text those tags stand for."""
    ids = prefix_ids(config) + [config.special_token_ids["think_start"]]
    if opening is None:
        return ids, ""
    if opening not in config.modalities:
        raise ValueError(f"opening modality {opening!r} is not one of {config.modalities}")
    ids.append(config.special_token_ids[f"{opening}_start"])
    return ids, f"<{opening}>"


def rationale_text(tokenizer, config: MigrConfig, generated: Sequence[int], lead: str) -> str:
    """The rationale as text: ``<think>``, the forced opening tag, then the generated tokens (eos dropped)."""
    eos = config.special_token_ids["eos"]
    ids = [int(t) for t in generated]
    if ids and ids[-1] == eos:
        ids = ids[:-1]
    return "<think>" + lead + tokenizer.decode(ids)
