"""The MIGR omni model: config, encoders, decoder wrapper, tokenizer, layout and verified checkpoints.

Names are resolved on first use (PEP 562): the decoder wrapper pulls in transformers' modeling stack
(about 2 s of imports on a small CPU), which a run on an exported artifact never needs; importing
``migr_rt.model.config`` or ``.layout`` must not pay for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOMES = {
    "MigrConfig": "config",
    "MigrForEmotionReasoning": "modeling",
    "MigrOutput": "modeling",
    "build_model": "build",
    "save_checkpoint": "checkpoint",
    "check_checkpoint_out": "checkpoint",
    "load_checkpoint": "checkpoint",
    "verify_checkpoint": "checkpoint",
    "CheckpointError": "checkpoint",
}

__all__ = ["MigrConfig", "MigrForEmotionReasoning", "MigrOutput", "build_model", "save_checkpoint",
           "check_checkpoint_out", "load_checkpoint", "verify_checkpoint", "CheckpointError"]

if TYPE_CHECKING:
    from migr_rt.model.build import build_model
    from migr_rt.model.checkpoint import (
        CheckpointError, check_checkpoint_out, load_checkpoint, save_checkpoint, verify_checkpoint,
    )
    from migr_rt.model.config import MigrConfig
    from migr_rt.model.modeling import MigrForEmotionReasoning, MigrOutput


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'migr_rt.model' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"migr_rt.model.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
