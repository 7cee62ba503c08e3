"""Window preprocessing: frame sampling, audio fitting, presence flags."""

from __future__ import annotations

import numpy as np
import pytest
from model_fixtures import tiny_config

from migr_rt.face import FaceBox
from migr_rt.preprocess import center_window, fit_audio, prepare_window, sample_frames


def test_sample_frames_spreads_over_the_window():
    frames = np.arange(10)[:, None, None, None].repeat(3, axis=3).astype(np.uint8)
    assert sample_frames(frames, 4)[:, 0, 0, 0].tolist() == [0, 3, 6, 9]
    assert sample_frames(frames[:2], 4)[:, 0, 0, 0].tolist() == [0, 0, 1, 1]


def test_fit_audio_trims_and_pads():
    assert fit_audio(np.ones(10), 4).tolist() == [1, 1, 1, 1]
    assert fit_audio(np.ones(2), 4).tolist() == [1, 1, 0, 0]


def test_prepare_window_shapes_and_presence():
    cfg = tiny_config()
    frames = np.random.default_rng(0).integers(0, 255, (12, 48, 64, 3), dtype=np.uint8)
    audio = np.random.default_rng(1).normal(0, 0.1, cfg.audio_samples + 100).astype(np.float32)
    win = prepare_window(frames, audio, cfg, detector=None, fps=25)
    assert win.pixel_values.shape == (cfg.num_frames, 3, cfg.face_size, cfg.face_size)
    assert 0.0 <= float(win.pixel_values.min()) and float(win.pixel_values.max()) <= 1.0
    assert win.audio_values.shape == (cfg.audio_samples,)
    assert win.present.tolist() == [True, True] and win.pixel_values.dtype == np.float32 and win.present.dtype == bool
    assert not win.face_fallback  # no detector: the frames are trusted as faces


def test_silent_or_missing_audio_is_absent():
    cfg = tiny_config()
    frames = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    assert prepare_window(frames, np.zeros(cfg.audio_samples, np.float32), cfg, None, fps=25).present.tolist() == [True, False]
    assert prepare_window(frames, None, cfg, None, fps=25).audio_values is None
    only_audio = prepare_window(None, np.full(100, 0.1, np.float32), cfg, None, fps=25)
    assert only_audio.present.tolist() == [False, True] and only_audio.pixel_values is None


def test_nan_audio_is_an_error():
    cfg = tiny_config()
    with pytest.raises(ValueError, match="NaN or Inf"):
        prepare_window(None, np.array([0.1, np.nan], np.float32), cfg, None, fps=25)


def test_integer_audio_is_an_error_not_a_voice_32768_times_too_loud():
    # Predictor.predict/explain take audio through prepare_window, as Runtime.analyze refuses int16 PCM: read from a
    # WAV file as stored it would pass as float samples of +-32767 and give another label without a word.
    cfg = tiny_config()
    pcm = (np.random.default_rng(0).normal(0, 0.1, cfg.audio_samples) * 32767).astype(np.int16)
    with pytest.raises(ValueError, match="float samples.*int16.*divide by 32768"):
        prepare_window(None, pcm, cfg, None, fps=25)
    assert prepare_window(None, pcm / 32768, cfg, None, fps=25).present.tolist() == [False, True]


def test_face_and_voice_cover_the_same_span():
    """A 5 s input: both streams are cut to the model's window (0.5 s here), from the same instant."""
    cfg = tiny_config()  # audio_seconds = 0.5
    fps, sr = 20, cfg.sample_rate
    frames = np.repeat(np.arange(100, dtype=np.uint8)[:, None, None, None], 3, axis=3) * np.ones((1, 8, 8, 3), np.uint8)
    audio = np.linspace(0.1, 0.9, 5 * sr, dtype=np.float32)
    win = prepare_window(frames, audio, cfg, None, fps=fps)
    seen = (win.pixel_values[:, 0, 0, 0] * 255).round().astype(int).tolist()
    assert seen[0] == 0 and seen[-1] == 9  # frames 0..9 = the first 0.5 s at 20 fps
    assert float(win.audio_values[-1]) == pytest.approx(float(audio[cfg.audio_samples - 1]))


def test_center_window_cuts_both_streams_at_the_same_instant():
    fps, sr = 10, 100
    frames = np.arange(50, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)  # 5 s
    audio = np.arange(500, dtype=np.float32)  # 5 s
    f, a = center_window(frames, audio, fps, sr, 1.0)
    assert f[:, 0, 0, 0].tolist() == list(range(20, 30)) and a[0] == 200 and len(a) == 100


class NoFace:
    def detect(self, frame):
        return []


def test_detector_that_finds_no_face_makes_the_visual_modality_absent():
    cfg = tiny_config()
    frames = np.zeros((10, 32, 32, 3), dtype=np.uint8)
    win = prepare_window(frames, np.full(cfg.audio_samples, 0.1, np.float32), cfg, NoFace(), fps=25)
    assert win.face_fallback and win.present.tolist() == [False, True]
    assert win.pixel_values is not None  # the centre crop is still there, flagged


class FixedFace:
    def detect(self, frame):
        return [FaceBox(8, 8, 16, 16)]


def test_detected_face_is_present():
    cfg = tiny_config()
    win = prepare_window(np.zeros((10, 32, 32, 3), dtype=np.uint8), None, cfg, FixedFace(), fps=25)
    assert not win.face_fallback and win.present.tolist() == [True, False]
