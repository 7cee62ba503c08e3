"""The ``base`` recipe end to end: data -> cached windows -> perception training -> checkpoint.

Writes into the output folder: the checkpoint (``save_checkpoint``: config,
safetensors, tokenizer, checksums), ``train_config.json`` (exactly what ran),
``metrics.json`` and, when given, a model card. The window cache lives
outside the checkpoint (``<out>.cache/`` beside it by default) so the
checkpoint folder stays small enough to bundle.
"""

from __future__ import annotations

import json
import logging
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from migr_rt.training import distributed
from migr_rt.training.perception import PerceptionConfig, TrainProgress, evaluate, train_perception
from migr_rt.training.sources import DataSource, open_source
from migr_rt.training.windows import (
    WindowSet,
    cache_name,
    extract_windows,
    load_windows,
    preprocessing_key,
    save_windows,
)

from migr_rt.face import HaarFaceDetector
from migr_rt.model import MigrConfig, build_model, check_checkpoint_out, save_checkpoint

logger = logging.getLogger(__name__)


@dataclass
class BaseRecipeConfig:
    data: str
    out: str
    val_data: str | None = None
    val_fraction: float = 0.1  #: held out from ``data`` when no ``val_data`` is given
    decoder_path: str | None = None
    cache_dir: str | None = None  #: window cache folder (default: ``<out>.cache`` beside the checkpoint)
    card: str | None = None  #: a model card file copied into the checkpoint as MODEL_CARD.md
    perception: PerceptionConfig = field(default_factory=PerceptionConfig)


def load_or_extract(
    source: DataSource, config: MigrConfig, cache_dir: Path, on_extract: Callable[[int, int | None], None] | None
) -> WindowSet:
    """Windows of a data source, from the cache when it was made from the same content and preprocessing."""
    key = {**preprocessing_key(config), "source": source.fingerprint}
    path = cache_dir / cache_name(source.fingerprint, key)
    with distributed.current().main_first():  # in a launched job rank 0 extracts, the others read its cache
        windows = load_windows(path, key)
        if windows is None:
            logger.info("preprocessing %s into %s", source.description, path)
            windows = extract_windows(source.clips, config, HaarFaceDetector(), total=len(source.clips),
                                      progress=on_extract)
            save_windows(windows, path, key)
    return windows


def split_holdout(windows: WindowSet, fraction: float, seed: int) -> tuple[WindowSet, WindowSet]:
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(windows), generator=gen).tolist()
    n_val = max(1, int(round(len(windows) * fraction)))
    return windows.subset(sorted(order[n_val:])), windows.subset(sorted(order[:n_val]))


def run_base_recipe(
    recipe: BaseRecipeConfig,
    *,
    model_config: MigrConfig | None = None,
    on_extract: Callable[[int, int | None], None] | None = None,
    on_progress: Callable[[TrainProgress], None] | None = None,
) -> dict:
    """Train the perception stage and write a loadable checkpoint folder; return the metrics."""
    from migr_rt.training.synth.cues import vocabulary_texts

    out = Path(recipe.out)
    check_checkpoint_out(out, keep={"--cache-dir": recipe.cache_dir})
    cache_dir = Path(recipe.cache_dir) if recipe.cache_dir else out.parent / f"{out.name}.cache"
    source = open_source(recipe.data)
    val_source = open_source(recipe.val_data) if recipe.val_data else None
    if val_source is not None and val_source.labels != source.labels:
        raise ValueError(f"validation labels {val_source.labels} differ from training labels {source.labels}")
    model_config = model_config or MigrConfig(labels=list(source.labels))
    if tuple(model_config.labels) != source.labels:
        raise ValueError(f"model labels {model_config.labels} differ from the data's {list(source.labels)}")
    # A real dataset's descriptions are what the rationales will say: a tokenizer that never saw
    # their words would spell them out in a few bytes per token.
    model, tokenizer = build_model(
        model_config, tokenizer_texts=vocabulary_texts() + list(source.texts), decoder_path=recipe.decoder_path,
        seed=recipe.perception.seed,
    )
    windows = load_or_extract(source, model.config, cache_dir, on_extract)
    if val_source is not None:
        train, val = windows, load_or_extract(val_source, model.config, cache_dir, on_extract)
    else:
        train, val = split_holdout(windows, recipe.val_fraction, recipe.perception.seed)
    metrics = train_perception(model, tokenizer, train, val, recipe.perception, on_progress)
    metrics["face_fallback_rate"] = float(windows.face_fallback.float().mean())
    metrics["environment"] = {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads()}
    train_config = {"recipe": "base", **asdict(recipe), "model": model.config.to_diff_dict()}
    extra = {
        "train_config.json": json.dumps(train_config, indent=2, sort_keys=True, default=str) + "\n",
        "metrics.json": json.dumps(metrics, indent=2, sort_keys=True) + "\n",
    }
    if recipe.card:
        extra["MODEL_CARD.md"] = Path(recipe.card).read_text()
    dist = distributed.current()
    model = dist.plain_model(model)  # FSDP: gathered on every rank, written by rank 0
    if dist.is_main:
        save_checkpoint(model, tokenizer, out, extra_files=extra)
    dist.barrier()
    return metrics


__all__ = ["BaseRecipeConfig", "run_base_recipe", "evaluate"]
