"""The demo: synthesise one clip, write it as a real MP4, read it back and ask the bundled model.

It exercises the whole default path (synthetic corpus -> PyAV -> face front
end -> encoders -> MI scoring) with nothing but the installed package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from migr_rt.labels import DFEW_LABELS
from migr_rt.media import decode_media, write_media
from migr_rt.predict import Prediction, Predictor, Rationale


@dataclass
class DemoReport:
    """The clip that was made, what the generator put in it, and what the model says."""

    clip_path: Path
    truth: dict
    prediction: Prediction
    rationale: Rationale | None = None  #: None for a checkpoint that was not trained to reason


def pick_index(seed: int, emotion: str | None, kind: str | None, limit: int = 10_000) -> int:
    """The first clip index of corpus ``seed`` whose planned label and kind match."""
    from migr_rt.training.synth.corpus import SynthConfig, plan_clip

    if emotion is not None and emotion not in DFEW_LABELS:
        raise ValueError(f"unknown emotion {emotion!r}; choose one of {', '.join(DFEW_LABELS)}")
    config = SynthConfig(n=1, seed=seed)
    for index in range(limit):
        label, clip_kind = plan_clip(config, index)
        if (emotion is None or label == emotion) and (kind is None or clip_kind == kind):
            return index
    raise ValueError(f"no clip with emotion={emotion!r}, kind={kind!r} among the first {limit} of seed {seed}")


def run_demo(
    out_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    seed: int = 0,
    emotion: str | None = None,
    kind: str | None = "audio_dominant",
    predictor: Predictor | None = None,
    backend: str = "auto",
) -> DemoReport:
    """Render clip ``(seed, index)`` into ``out_dir`` as MP4, decode it with PyAV and predict."""
    from migr_rt.training.synth.corpus import SynthConfig, render_clip

    config = SynthConfig(n=1, seed=seed)
    index = pick_index(seed, emotion, kind)
    clip = render_clip(config, index)
    path = write_media(Path(out_dir) / f"{clip.record['id']}.mp4", clip.frames, config.fps, clip.audio, config.sample_rate)
    predictor = predictor or Predictor(checkpoint, backend=backend)
    media = decode_media(path, fps=config.fps, sample_rate=predictor.config.sample_rate)
    truth = {k: clip.record[k] for k in ("id", "label", "kind", "dominant", "one_sided", "visual_text", "audio_text")}
    rationale = predictor.explain(media.frames, media.audio) if predictor.reasons else None
    return DemoReport(path, truth, predictor.predict(media.frames, media.audio), rationale)
