"""The bundled demo clip of ``migr-rt run --source demo``: a few synthetic people in a row, as one MP4.

Regenerate it with ``python -m migr_rt.demo_clip`` (deterministic: corpus
seed 0, fixed emotions and evidence kinds); it ships in
``migr_rt/assets/demo/demo.mp4`` so the runtime works with no camera and
nothing generated at start-up.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from migr_rt.demo import pick_index
from migr_rt.media import write_media

#: (emotion, evidence kind) of each segment, 3 s each
SEGMENTS = (("angry", "audio_dominant"), ("happy", "visual_dominant"), ("sad", "consistent"))
SECONDS = 3.0


def make_demo_clip(path: str | Path, seed: int = 0) -> Path:
    from migr_rt.training.synth.corpus import SynthConfig, render_clip

    config = SynthConfig(n=1, seed=seed, duration=SECONDS)
    clips = [render_clip(config, pick_index(seed, emotion, kind)) for emotion, kind in SEGMENTS]
    frames = np.concatenate([c.frames for c in clips])
    audio = np.concatenate([c.audio for c in clips])
    return write_media(path, frames, config.fps, audio, config.sample_rate, video_options={"crf": "30"})


if __name__ == "__main__":
    out = Path(__file__).with_name("assets") / "demo" / "demo.mp4"
    print(make_demo_clip(out))
