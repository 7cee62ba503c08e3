"""The MIGR omni model: config, encoders, decoder wrapper, tokenizer, layout and verified checkpoints."""

from migr_rt.model.build import build_model
from migr_rt.model.checkpoint import (
    CheckpointError, check_checkpoint_out, load_checkpoint, save_checkpoint, verify_checkpoint,
)
from migr_rt.model.config import MigrConfig
from migr_rt.model.modeling import MigrForEmotionReasoning, MigrOutput

__all__ = [
    "MigrConfig",
    "MigrForEmotionReasoning",
    "MigrOutput",
    "build_model",
    "save_checkpoint",
    "check_checkpoint_out",
    "load_checkpoint",
    "verify_checkpoint",
    "CheckpointError",
]
