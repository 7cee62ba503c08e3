"""Generate the synthetic talking-face corpus: MP4 clips plus a JSON-lines manifest.

Layout of ``out_dir``::

    corpus.json       generator version and the full config (identifies the corpus)
    manifest.jsonl    one JSON object per clip, keys sorted, floats rounded to 4 decimals
    clips/<id>.mp4    H.264 video + AAC audio

Determinism: all randomness of clip ``i`` comes from ``(seed, i)`` (one
independent stream per component), its kind from a seed-phased low-discrepancy
sequence and its label from ``i`` alone, so the same config writes a
byte-identical manifest and (with the same PyAV build) byte-identical MP4
files, clip ``i`` is the same whatever ``n`` is, and any number of worker
processes gives the same output.
(The video is encoded without x264's macroblock tree: with it, x264 read
uninitialised memory and the same clip came out differently from run to run;
see :data:`migr_rt.media.encode.X264_DEFAULTS`.)

The two modalities' emotional evidence is drawn and rendered independently;
the one deliberate link is lip sync (the mouth opens with the voice's
syllables), so the speech rhythm is faintly visible on the face.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from migr_rt.training.synth.describe import CueStatement, describe, describe_text
from migr_rt.training.synth.evidence import (
    DEFAULT_KIND_WEIGHTS,
    ClipEvidence,
    distractor,
    kind_for_index,
    sample_evidence,
    validate_kind_weights,
)
from migr_rt.training.synth.face import EXPRESSION_PROTOTYPES, Expression, render_face, sample_dynamics, sample_identity
from migr_rt.training.synth.params import as_dict, blend, param_ranges
from migr_rt.training.synth.voice import VOICE_PROTOTYPES, VoiceExpression, sample_speaker, synthesize_voice

from migr_rt.atomic import write_text_atomic
from migr_rt.labels import DFEW_LABELS, validate_labels
from migr_rt.media import write_media

log = logging.getLogger(__name__)

#: Bumped whenever the same config would render different clips.
GENERATOR_VERSION = "1.3"  # 1.3: H.264 without x264's macroblock tree, CRF 22 (heap-dependent bytes before)
# 1.2: neutral-labelled dominant clips show a faint other emotion, not one-sided
GENERATOR = "migr_rt.training.synth"
MANIFEST = "manifest.jsonl"
CORPUS_INFO = "corpus.json"
CLIPS_DIR = "clips"

#: x264 settings: fast enough for ~50 small frames, single-threaded so worker processes do not oversubscribe.
#: CRF 22 without x264's macroblock tree (write_media's default, for reproducible bytes) gives the PSNR that
#: CRF 20 with it gave (34.8 dB against the rendered frames, whose sensor noise bounds it).
VIDEO_OPTIONS: dict[str, str] = {"preset": "veryfast", "crf": "22", "threads": "1"}
#: ffmpeg's fast AAC coder: ~13 ms less per clip than the default, still deterministic.
AUDIO_OPTIONS: dict[str, str] = {"aac_coder": "fast"}

# One independent random stream per component of a clip, so changing how one
# component draws never shifts another.
_STREAMS = {"evidence": 0, "visual": 1, "audio": 2, "identity": 3, "dynamics": 4, "speaker": 5, "voice": 6, "sensor": 7}
_KIND_PHASE_STREAM = 1_000_003

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. Every field is validated on construction (ValueError naming the field)."""

    n: int = 256
    seed: int = 0
    workers: int = 1
    duration: float = 2.0
    fps: int = 25
    sample_rate: int = 16000
    size: int = 160
    labels: tuple[str, ...] = DFEW_LABELS
    kind_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_KIND_WEIGHTS))

    def __post_init__(self) -> None:
        _require_int("n", self.n, minimum=1)
        _require_int("seed", self.seed, minimum=0)
        _require_int("workers", self.workers, minimum=1)
        _require_int("fps", self.fps, minimum=1)
        _require_int("sample_rate", self.sample_rate, minimum=8000)
        _require_int("size", self.size, minimum=64)
        if (
            isinstance(self.duration, bool)
            or not isinstance(self.duration, (int, float))
            or not math.isfinite(self.duration)
        ):
            raise ValueError(f"duration must be a number of seconds, got {self.duration!r}")
        if not 0.5 <= self.duration <= 60:
            raise ValueError(f"duration must be between 0.5 and 60 seconds, got {self.duration!r}")
        try:
            labels = validate_labels(tuple(self.labels))
        except ValueError as exc:
            raise ValueError(f"labels: {exc}") from exc
        unknown = [lab for lab in labels if lab not in EXPRESSION_PROTOTYPES or lab not in VOICE_PROTOTYPES]
        if unknown:
            raise ValueError(
                f"labels: no face/voice prototype for {unknown}; "
                f"renderable emotions are {sorted(EXPRESSION_PROTOTYPES)}"
            )
        if len(labels) < 2:
            raise ValueError("labels: need at least two emotions (conflicting clips pair different ones)")
        if not isinstance(self.kind_weights, Mapping):
            raise ValueError(f"kind_weights must be a mapping kind -> weight, got {type(self.kind_weights).__name__}")
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "duration", float(self.duration))
        object.__setattr__(self, "kind_weights", validate_kind_weights(self.kind_weights))

    @property
    def n_frames(self) -> int:
        return int(round(self.duration * self.fps))

    @property
    def n_samples(self) -> int:
        return int(round(self.duration * self.sample_rate))

    def identity(self) -> dict[str, Any]:
        """What defines the corpus content (everything but ``workers``, which never changes output)."""
        d = asdict(self)
        d.pop("workers")
        d["labels"] = list(self.labels)
        d["kind_weights"] = dict(self.kind_weights)
        return d


def _require_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class RenderedClip:
    """One clip in memory: its manifest record (without file paths), frames and audio."""

    record: dict[str, Any]
    frames: np.ndarray
    audio: np.ndarray


def clip_id(seed: int, index: int) -> str:
    return f"synth-{seed}-{index:06d}"


def _rng(config: SynthConfig, index: int, stream: str) -> np.random.Generator:
    return np.random.default_rng([config.seed, index, _STREAMS[stream]])


def plan_clip(config: SynthConfig, index: int) -> tuple[str, str]:
    """(label, kind) of clip ``index``: labels cycle, kinds follow a seed-phased low-discrepancy sequence."""
    phase = float(np.random.default_rng([config.seed, _KIND_PHASE_STREAM]).random())
    return config.labels[index % len(config.labels)], kind_for_index(index, config.kind_weights, phase)


def render_clip(config: SynthConfig, index: int) -> RenderedClip:
    """Render clip ``index`` of the corpus ``config`` describes (a pure function of both)."""
    label, kind = plan_clip(config, index)
    evidence = sample_evidence(label, kind, config.labels, _rng(config, index, "evidence"))
    expression = _apply(evidence, "visual", EXPRESSION_PROTOTYPES, Expression, _rng(config, index, "visual"))
    voice_params = _apply(evidence, "audio", VOICE_PROTOTYPES, VoiceExpression, _rng(config, index, "audio"))

    voice = synthesize_voice(
        voice_params,
        sample_speaker(_rng(config, index, "speaker")),
        duration=config.duration,
        sample_rate=config.sample_rate,
        rng=_rng(config, index, "voice"),
    )
    n_frames = config.n_frames
    talk = voice.frame_envelope(config.fps, n_frames)
    face = render_face(
        expression,
        sample_identity(_rng(config, index, "identity")),
        sample_dynamics(_rng(config, index, "dynamics"), n_frames, config.fps),
        talk,
        size=config.size,
        rng=_rng(config, index, "sensor"),
    )
    visual_cues, audio_cues = describe("visual", expression), describe("audio", voice_params)
    record = {
        "id": clip_id(config.seed, index),
        "index": index,
        "seed": config.seed,
        "label": label,
        "kind": kind,
        "dominant": evidence.dominant,
        "one_sided": evidence.one_sided,
        "visual": _modality_record(evidence, "visual", visual_cues, as_dict(expression)),
        "audio": _modality_record(evidence, "audio", audio_cues, as_dict(voice_params)),
        "visual_text": describe_text(visual_cues),
        "audio_text": describe_text(audio_cues),
        "duration": config.duration,
        "fps": config.fps,
        "sample_rate": config.sample_rate,
        "n_frames": n_frames,
        "n_samples": len(voice.audio),
        "face_box": list(face.face_box),
        "apex_frame": face.apex_frame,
    }
    return RenderedClip(record=record, frames=face.frames, audio=voice.audio)


def _apply(evidence: ClipEvidence, modality: str, prototypes: Mapping[str, Any], cls: type, rng: np.random.Generator):
    ev = evidence.of(modality)
    return blend(prototypes[ev.emotion], ev.strength, distractor(len(param_ranges(cls)), ev.strength, rng))


def _modality_record(
    evidence: ClipEvidence, modality: str, cues: list[CueStatement], params: dict[str, float]
) -> dict[str, Any]:
    ev = evidence.of(modality)
    return {"emotion": ev.emotion, "strength": ev.strength, "cues": [c.to_json() for c in cues], "params": params}


def _write_clip(job: tuple[SynthConfig, int, str]) -> dict[str, Any]:
    """Render clip ``index`` and write its MP4 under ``out_dir``; return its manifest record (worker entry point)."""
    config, index, out_dir = job
    return _save_clip(config, render_clip(config, index), out_dir)


def _save_clip(config: SynthConfig, clip: RenderedClip, out_dir: str) -> dict[str, Any]:
    """Encode a rendered clip as the corpus stores it (``clips/<id>.mp4``); return its manifest record."""
    rel = f"{CLIPS_DIR}/{clip.record['id']}.mp4"
    write_media(
        Path(out_dir) / rel,
        clip.frames,
        config.fps,
        clip.audio,
        config.sample_rate,
        video_options=VIDEO_OPTIONS,
        audio_options=AUDIO_OPTIONS,
    )
    return {**clip.record, "file": rel}


def generate_corpus(config: SynthConfig, out_dir: str | Path, progress: ProgressFn | None = None) -> Path:
    """Write the corpus to ``out_dir`` and return the manifest path.

    ``out_dir`` must be empty, absent, or hold this very corpus (same
    generator version and config; it is then rewritten in place). Any other
    content raises :class:`FileExistsError` rather than mixing corpora.
    ``progress(done, total)`` is called after each clip.
    """
    out = Path(out_dir)
    info = {"generator": GENERATOR, "version": GENERATOR_VERSION, "config": config.identity()}
    _claim_directory(out, info)
    (out / CLIPS_DIR).mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / CORPUS_INFO, json.dumps(info, sort_keys=True, indent=2) + "\n")

    jobs = [(config, i, str(out)) for i in range(config.n)]
    lines: list[str] = []
    for done, record in enumerate(_run(jobs, config.workers), start=1):
        lines.append(json.dumps(_rounded(record), sort_keys=True))
        if progress is not None:
            progress(done, config.n)
    manifest = out / MANIFEST
    write_text_atomic(manifest, "\n".join(lines) + "\n")
    log.info("wrote %d clips and %s", config.n, manifest)
    return manifest


def _run(jobs: list[tuple[SynthConfig, int, str]], workers: int) -> Iterable[dict[str, Any]]:
    """Records in job order, from this process or a spawn-context pool."""
    if workers == 1 or len(jobs) == 1:
        yield from map(_write_clip, jobs)
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(min(workers, len(jobs)), initializer=_worker_init) as pool:
        yield from pool.imap(_write_clip, jobs, chunksize=max(1, min(8, len(jobs) // (4 * workers))))


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already


def _claim_directory(out: Path, info: dict[str, Any]) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a directory")
    if not out.exists() or not any(out.iterdir()):
        return
    info_path = out / CORPUS_INFO
    if not info_path.is_file():
        raise FileExistsError(
            f"{out}: directory is not empty and holds no {CORPUS_INFO}; "
            "refusing to mix files into it (choose an empty directory)"
        )
    try:
        existing = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise FileExistsError(f"{out}: {CORPUS_INFO} is unreadable ({exc}); refusing to overwrite") from exc
    wanted = json.loads(json.dumps(info))
    if existing != wanted:
        differ = _differences(existing, wanted)
        raise FileExistsError(
            f"{out}: holds a different synthetic corpus ({'; '.join(differ[:4]) or 'its ' + CORPUS_INFO + ' differs'});"
            " use an empty directory or delete it first"
        )


def _differences(there: Any, asked: Any, at: str = "") -> list[str]:
    """``"key: X there, Y asked"`` for each leaf where two JSON values differ (nested keys dotted)."""
    if isinstance(there, dict) and isinstance(asked, dict):
        return [d for key in sorted(set(there) | set(asked), key=str)
                for d in _differences(there.get(key), asked.get(key), f"{at}.{key}" if at else str(key))]
    return [] if there == asked else [f"{at.removeprefix('config.')}: {there!r} there, {asked!r} asked"]


def _rounded(obj: Any) -> Any:
    """Floats rounded to 4 decimals (numpy scalars converted), recursively: a stable, readable manifest."""
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_rounded(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = round(float(obj), 4)
        return 0.0 if v == 0 else v  # no "-0.0"
    return obj


__all__ = [
    "GENERATOR_VERSION",
    "SynthConfig",
    "RenderedClip",
    "clip_id",
    "generate_corpus",
    "plan_clip",
    "render_clip",
]
