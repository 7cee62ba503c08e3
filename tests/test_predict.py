"""Predictor: one window through face front end, encoders and MI; honest about missing evidence."""

from __future__ import annotations

import numpy as np
import pytest
from migr_rt.training.synth.corpus import SynthConfig, render_clip

from migr_rt.model import save_checkpoint
from migr_rt.predict import Predictor


@pytest.fixture(scope="module")
def predictor(tiny_model, tmp_path_factory):
    model, tok = tiny_model
    return Predictor(save_checkpoint(model, tok, tmp_path_factory.mktemp("p") / "ckpt"))


@pytest.fixture(scope="module")
def clip():
    return render_clip(SynthConfig(n=1, seed=3), 2)


def test_full_window(predictor, clip):
    pred = predictor.predict(clip.frames, clip.audio)
    assert pred.label in predictor.config.labels
    assert pred.face_found and len(pred.face_box) == 4
    assert pred.present == {"visual": True, "audio": True}
    assert sum(pred.importance.values()) == pytest.approx(1.0, abs=1e-5)


def test_no_face_means_no_visual_evidence(predictor, clip):
    noise = np.random.default_rng(0).integers(0, 255, clip.frames.shape, dtype=np.uint8)
    pred = predictor.predict(noise, clip.audio)
    assert not pred.face_found and pred.present == {"visual": False, "audio": True}
    assert pred.importance == {"visual": 0.0, "audio": 1.0} and pred.dominant == "audio"


def test_nothing_to_analyse_gives_no_label(predictor, clip):
    noise = np.random.default_rng(0).integers(0, 255, clip.frames.shape, dtype=np.uint8)
    pred = predictor.predict(noise, np.zeros(16000, np.float32))
    assert pred.label is None and pred.dominant is None and pred.probs == {}


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    from migr_rt.model import CheckpointError

    with pytest.raises(CheckpointError, match="not a local checkpoint folder"):
        Predictor(tmp_path / "none")
