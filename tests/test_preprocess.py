"""Window preprocessing: frame sampling, audio fitting, presence flags."""

from __future__ import annotations

import numpy as np
import pytest
from model_fixtures import tiny_config

from migr_rt.preprocess import fit_audio, prepare_window, sample_frames


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
    win = prepare_window(frames, audio, cfg, detector=None)
    assert win.pixel_values.shape == (cfg.num_frames, 3, cfg.face_size, cfg.face_size)
    assert 0.0 <= float(win.pixel_values.min()) and float(win.pixel_values.max()) <= 1.0
    assert win.audio_values.shape == (cfg.audio_samples,)
    assert win.present.tolist() == [True, True]
    assert win.face_fallback  # no detector: centre crop, flagged


def test_silent_or_missing_audio_is_absent():
    cfg = tiny_config()
    frames = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    assert prepare_window(frames, np.zeros(cfg.audio_samples, np.float32), cfg, None).present.tolist() == [True, False]
    assert prepare_window(frames, None, cfg, None).audio_values is None
    only_audio = prepare_window(None, np.full(100, 0.1, np.float32), cfg, None)
    assert only_audio.present.tolist() == [False, True] and only_audio.pixel_values is None


def test_nan_audio_is_an_error():
    cfg = tiny_config()
    with pytest.raises(ValueError, match="NaN or Inf"):
        prepare_window(None, np.array([0.1, np.nan], np.float32), cfg, None)
