"""Preprocessed analysis windows of a corpus, held as tensors and cached as safetensors.

Training revisits every clip many times; decoding MP4s and running the face
detector once per clip (not per epoch) is what makes CPU training minutes
long instead of hours.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from migr_rt.training.judge import described_cues, described_intensities
from migr_rt.training.lexicon import CueLexicon
from migr_rt.training.synth.cues import LEXICON
from safetensors.torch import load_file, save_file

from migr_rt.face import FaceDetector
from migr_rt.media import Clip
from migr_rt.model.config import MigrConfig
from migr_rt.preprocess import center_window, prepare_window

logger = logging.getLogger(__name__)


@dataclass
class WindowSet:
    """``N`` windows: face crops ``(N, T, S, S, 3)`` uint8, audio ``(N, samples)`` fp16, presence, labels."""

    crops: torch.Tensor
    audio: torch.Tensor
    present: torch.Tensor
    labels: torch.Tensor  #: (N,) index into the label set
    #: (N, M) what each modality alone shows (label index), -1 where unknown or too weak to say
    modality_labels: torch.Tensor
    face_fallback: torch.Tensor
    ids: list[str]
    #: per window and modality, a description of its evidence: "" when nothing is notable, None when unknown
    descriptions: list[dict[str, str | None]]
    #: per window, what the source knows about it beyond the label (synthetic corpus: ``kind``,
    #: ``dominant``, ``one_sided`` and ``cues`` {modality: [cue names]}); empty dicts for real datasets
    meta: list[dict] | None = None

    def __post_init__(self) -> None:
        if self.meta is None:
            self.meta = [{} for _ in self.ids]
        if len(self.meta) != len(self.ids):
            raise ValueError(f"{len(self.meta)} meta records for {len(self.ids)} windows")

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Model-ready ``(pixel_values, audio_values, present, labels)`` for the rows in ``index``."""
        pixels = self.crops[index].permute(0, 1, 4, 2, 3).float().div_(255.0)
        return pixels, self.audio[index].float(), self.present[index], self.labels[index]

    def shown_cues(self, i: int, lexicon: CueLexicon | None = None) -> dict[str, list[str]] | None:
        """The cues window ``i`` shows, by modality; None when they are unknown.

        A synthetic corpus record names its cues in the built-in vocabulary,
        so those count only when ``lexicon`` is the built-in one. Otherwise,
        and for real datasets, they are read from the window's descriptions
        (:func:`~migr_rt.training.judge.described_cues`) with ``lexicon``.
        Reading at use time, not at extraction, keeps the window cache
        independent of the lexicon.
        """
        lexicon = lexicon or LEXICON
        recorded = self.meta[i].get("cues")
        if recorded is not None and lexicon == LEXICON:
            return {m: list(names) for m, names in recorded.items()}
        return described_cues(self.descriptions[i], lexicon)

    def shown_intensities(self, i: int, lexicon: CueLexicon | None = None) -> dict[str, float] | None:
        """Cue name -> the weight of the intensity word window ``i``'s descriptions state it with; None if unknown."""
        return described_intensities(self.descriptions[i], lexicon or LEXICON)

    def subset(self, index: Sequence[int]) -> WindowSet:
        idx = torch.as_tensor(list(index), dtype=torch.long)
        return WindowSet(
            self.crops[idx], self.audio[idx], self.present[idx], self.labels[idx], self.modality_labels[idx],
            self.face_fallback[idx],
            [self.ids[i] for i in idx.tolist()],
            [self.descriptions[i] for i in idx.tolist()],
            [self.meta[i] for i in idx.tolist()],
        )


#: Bump when what a cached window holds changes. 6: media as played (display rotation, square pixels, no cover
#: art; audio placed by its timestamps, default track, stereo that cancels in mono turned). 7: after a timestamp
#: restart in both streams (joined segments) voice and face go on together.
CACHE_FORMAT = 7
#: A modality whose generator evidence is weaker than this has no per-modality target of its own.
MIN_MODALITY_STRENGTH = 0.3


def modality_targets(clip: Clip, labels: Sequence[str], label_index: dict[str, int]) -> list[int]:
    """What each modality alone shows, as label indices (-1: unknown or too weak).

    The synthetic corpus records each modality's own emotion and strength
    (they differ in conflicting clips); a real dataset has only the clip
    label, which stands in for both.
    """
    out = []
    for m in ("visual", "audio"):
        info = clip.meta.get(m)
        if isinstance(info, dict) and "emotion" in info:
            strong = float(info.get("strength", 1.0)) >= MIN_MODALITY_STRENGTH
            out.append(label_index.get(info["emotion"], -1) if strong else -1)
        else:
            out.append(label_index[clip.label])
    return out


def preprocessing_key(config: MigrConfig) -> dict:
    """The config fields that decide what a cached window holds."""
    return {
        "format": CACHE_FORMAT,
        "num_frames": config.num_frames,
        "face_size": config.face_size,
        "sample_rate": config.sample_rate,
        "audio_samples": config.audio_samples,
        "labels": list(config.labels),
    }


def extract_windows(
    clips: Iterable[Clip],
    config: MigrConfig,
    detector: FaceDetector | None,
    *,
    total: int | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> WindowSet:
    """Preprocess every clip into one window (face crops + fixed-length audio)."""
    label_index = {lab: i for i, lab in enumerate(config.labels)}
    crops, audio, present, labels, fallback, ids, descriptions = [], [], [], [], [], [], []
    modality_labels, metas = [], []
    blank_crops = torch.zeros(config.num_frames, config.face_size, config.face_size, 3, dtype=torch.uint8)
    for n, clip in enumerate(clips, start=1):
        if clip.label not in label_index:
            raise ValueError(f"{clip.clip_id}: label {clip.label!r} is not in the model's label set {config.labels}")
        if clip.has_audio and clip.sample_rate != config.sample_rate:
            raise ValueError(
                f"{clip.clip_id}: audio at {clip.sample_rate} Hz, the model expects {config.sample_rate} Hz "
                "(decode with sample_rate=config.sample_rate)"
            )
        frames, audio_clip = center_window(clip.frames, clip.audio, clip.fps, clip.sample_rate, config.audio_seconds)
        win = prepare_window(frames, audio_clip, config, detector, fps=clip.fps)
        if win.pixel_values is not None:
            crops.append(torch.from_numpy(np.rint(win.pixel_values.transpose(0, 2, 3, 1) * 255.0).astype(np.uint8)))
        else:
            crops.append(blank_crops)
        audio.append(torch.from_numpy(win.audio_values).half() if win.audio_values is not None
                     else torch.zeros(config.audio_samples, dtype=torch.float16))
        present.append(torch.from_numpy(win.present))
        labels.append(label_index[clip.label])
        # no evidence, no per-modality target (e.g. a face the detector missed)
        targets = modality_targets(clip, config.labels, label_index)
        modality_labels.append([t if bool(p) else -1 for t, p in zip(targets, win.present)])
        fallback.append(win.face_fallback)
        ids.append(clip.clip_id)
        descriptions.append({m: clip.meta.get(f"{m}_text") for m in config.modalities})
        metas.append(window_meta(clip.meta, config.modalities))
        if progress is not None:
            progress(n, total)
    if not ids:
        raise ValueError("no clips to extract windows from")
    return WindowSet(
        torch.stack(crops), torch.stack(audio), torch.stack(present), torch.tensor(labels),
        torch.tensor(modality_labels), torch.tensor(fallback), ids, descriptions, metas,
    )


def window_meta(meta: dict, modalities: Sequence[str]) -> dict:
    """What evaluation and rewards need from a clip's record: kind, true dominant modality, cues shown.

    Cues are the synthetic corpus record's; a real dataset's are read from
    its descriptions when used (:meth:`WindowSet.shown_cues`), with whichever
    lexicon the model has.
    """
    out = {key: meta[key] for key in ("kind", "dominant", "one_sided") if key in meta}
    cues = {m: [c["name"] for c in meta[m].get("cues", [])] for m in modalities if isinstance(meta.get(m), dict)}
    if cues:
        out["cues"] = cues
    return out


def save_windows(windows: WindowSet, path: str | Path, key: dict) -> Path:
    """Write a window cache atomically; ``key`` (see :func:`preprocessing_key`) is stored beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    meta = {
        "key": json.dumps(key, sort_keys=True),
        "ids": json.dumps(windows.ids),
        "descriptions": json.dumps(windows.descriptions),
        "meta": json.dumps(windows.meta),
    }
    save_file(
        {
            "crops": windows.crops.contiguous(),
            "audio": windows.audio.contiguous(),
            "present": windows.present.to(torch.uint8),
            "labels": windows.labels,
            "modality_labels": windows.modality_labels,
            "face_fallback": windows.face_fallback.to(torch.uint8),
        },
        str(tmp),
        metadata=meta,
    )
    os.replace(tmp, path)
    return path


def load_windows(path: str | Path, key: dict) -> WindowSet | None:
    """A cached window set if it exists and was made with the same preprocessing, else None."""
    path = Path(path)
    if not path.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    if meta.get("key") != json.dumps(key, sort_keys=True):
        logger.info("%s: cache made with other preprocessing; rebuilding", path)
        return None
    t = load_file(str(path))
    return WindowSet(
        t["crops"], t["audio"], t["present"].bool(), t["labels"], t["modality_labels"], t["face_fallback"].bool(),
        json.loads(meta["ids"]), json.loads(meta["descriptions"]), json.loads(meta.get("meta", "null")),
    )


def cache_name(source: str, key: dict) -> str:
    """A file name unique to a data source and preprocessing."""
    digest = hashlib.sha256((source + json.dumps(key, sort_keys=True)).encode()).hexdigest()[:16]
    return f"windows-{digest}.safetensors"
