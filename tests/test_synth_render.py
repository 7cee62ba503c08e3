"""Face renderer, voice synthesiser and the objective distinguishability of the seven emotions."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from migr_rt.training.synth.corpus import SynthConfig, generate_corpus
from migr_rt.training.synth.face import (
    EXPRESSION_PROTOTYPES,
    Expression,
    render_face,
    sample_dynamics,
    sample_identity,
)
from migr_rt.training.synth.params import blend, from_mapping, param_ranges, scaled
from migr_rt.training.synth.preview import CONTACT_SHEET, SPECTROGRAMS, log_mel_spectrogram, render_preview
from migr_rt.training.synth.reader import SynthCorpus
from migr_rt.training.synth.voice import VOICE_PROTOTYPES, VoiceExpression, sample_speaker, synthesize_voice

from migr_rt.labels import DFEW_LABELS


def _face(expression: Expression, seed: int = 0, talk: float = 0.0):
    rng = np.random.default_rng(seed)
    identity = sample_identity(rng)
    dynamics = sample_dynamics(rng, 50, 25)
    return render_face(expression, identity, dynamics, np.full(50, talk), rng=np.random.default_rng(1))


def _voice(expression: VoiceExpression, seed: int = 0):
    rng = np.random.default_rng(seed)
    return synthesize_voice(expression, sample_speaker(rng), duration=2.0, sample_rate=16000, rng=rng)


# --- parameter vectors ---------------------------------------------------------------------------


def test_blend_moves_strength_of_the_way_and_clips() -> None:
    zero = np.zeros(len(param_ranges(Expression)))
    half = blend(EXPRESSION_PROTOTYPES["angry"], 0.5, zero)
    assert half.brow_raise == pytest.approx(-0.5) and half.lip_press == pytest.approx(0.5)
    assert blend(EXPRESSION_PROTOTYPES["angry"], 0.0, zero) == Expression()
    pushed = blend(EXPRESSION_PROTOTYPES["happy"], 1.0, np.full(len(zero), 0.5))
    assert pushed.mouth_curve == 1.0 and pushed.lip_press == 0.5  # clipped to [-1, 1] / [0, 1]
    assert scaled(EXPRESSION_PROTOTYPES["sad"], 0.25).mouth_curve == pytest.approx(-0.25)
    with pytest.raises(ValueError, match="distractor"):
        blend(EXPRESSION_PROTOTYPES["happy"], 1.0, np.zeros(3))
    with pytest.raises(ValueError, match="no parameters"):
        from_mapping(Expression, {"smile": 1.0})


# --- face -----------------------------------------------------------------------------------------


def test_render_face_shapes_box_and_onset_ramp() -> None:
    r = _face(EXPRESSION_PROTOTYPES["surprise"], talk=0.5)
    assert r.frames.shape == (50, 160, 160, 3) and r.frames.dtype == np.uint8
    x, y, w, h = r.face_box
    assert 40 <= w <= 120 and 40 <= h <= 140 and x >= 0 and y >= 0
    assert 0 < r.apex_frame < 50
    # the expression develops: the apex differs from the first (neutral) frame inside the face
    crop = (slice(y, y + h), slice(x, x + w))
    change = np.abs(r.frames[-1][crop].astype(int) - r.frames[0][crop].astype(int)).mean()
    assert change > 3.0
    with pytest.raises(ValueError, match="talk"):
        render_face(
            Expression(),
            sample_identity(np.random.default_rng(0)),
            sample_dynamics(np.random.default_rng(0), 50, 25),
            np.zeros(3),
            rng=np.random.default_rng(0),
        )


def test_render_face_is_deterministic_given_its_inputs() -> None:
    a = _face(EXPRESSION_PROTOTYPES["fear"], seed=4, talk=0.3)
    b = _face(EXPRESSION_PROTOTYPES["fear"], seed=4, talk=0.3)
    assert np.array_equal(a.frames, b.frames) and a.face_box == b.face_box


def test_talking_moves_the_mouth_and_nothing_else() -> None:
    closed = _face(Expression(), seed=2, talk=0.0)
    open_ = _face(Expression(), seed=2, talk=1.0)
    x, y, w, h = closed.face_box
    diff = np.abs(open_.frames[-1].astype(int) - closed.frames[-1].astype(int)).max(axis=2)
    mouth = diff[y + int(0.6 * h) : y + int(0.85 * h), x + w // 4 : x + 3 * w // 4]
    upper = diff[y : y + int(0.5 * h), x : x + w]
    assert (mouth > 40).sum() >= 20, "the mouth opens (teeth and a dark gap appear)"
    assert (upper > 40).sum() == 0, "eyes and brows do not move with the voice"


@pytest.mark.parametrize("emotion", [e for e in DFEW_LABELS if e != "neutral"])
def test_each_expression_changes_the_face(emotion: str) -> None:
    neutral = _face(Expression(), seed=6)
    expressive = _face(EXPRESSION_PROTOTYPES[emotion], seed=6)
    x, y, w, h = neutral.face_box
    diff = np.abs(expressive.frames[-1].astype(int) - neutral.frames[-1].astype(int))[y : y + h, x : x + w]
    assert (diff.max(axis=2) > 40).mean() > 0.01, f"{emotion} barely differs from neutral"


# --- voice ----------------------------------------------------------------------------------------


def _rms_db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)) + 1e-12))


def _median_f0(audio: np.ndarray, sr: int = 16000) -> float:
    """Autocorrelation pitch over voiced 40 ms frames."""
    frames = np.lib.stride_tricks.sliding_window_view(audio.astype(np.float64), 640)[::320]
    energy = (frames**2).mean(axis=1)
    f0s = []
    for fr in frames[energy > 0.3 * energy.max()]:
        fr = fr - fr.mean()
        ac = np.fft.irfft(np.abs(np.fft.rfft(fr, 2048)) ** 2)[:640]
        lo, hi = sr // 450, sr // 55
        lag = lo + int(np.argmax(ac[lo:hi]))
        f0s.append(sr / lag)
    return float(np.median(f0s))


def test_voice_output_format_and_envelope() -> None:
    r = _voice(VoiceExpression())
    assert r.audio.shape == (32000,) and r.audio.dtype == np.float32
    assert np.all(np.isfinite(r.audio)) and np.abs(r.audio).max() <= 1.0
    assert r.envelope.shape == r.audio.shape and 0 <= r.envelope.min() and r.envelope.max() == pytest.approx(1.0)
    talk = r.frame_envelope(25, 50)
    assert talk.shape == (50,) and talk.max() > 0.3 and talk[0] < 0.2  # silent lead-in, then syllables


def test_voice_prosody_parameters_do_what_they_say() -> None:
    speaker = sample_speaker(np.random.default_rng(3))

    def render(**kw: float) -> np.ndarray:
        return synthesize_voice(VoiceExpression(**kw), speaker, rng=np.random.default_rng(8)).audio

    assert _rms_db(render(loudness=1.0)) > _rms_db(render()) + 5 > _rms_db(render(loudness=-1.0)) + 10
    high, mid, low = (_median_f0(render(pitch=p)) for p in (1.0, 0.0, -1.0))
    assert high > mid > low and high / low > 1.6  # +-6 semitones: a factor of 2 end to end

    def high_share(audio: np.ndarray) -> float:
        power = np.abs(np.fft.rfft(audio)) ** 2
        return power[len(power) // 4 :].sum() / power.sum()  # above 2 kHz

    assert (
        high_share(render(brightness=1.0, tension=1.0))
        > 2 * high_share(render())
        > 4 * high_share(render(brightness=-1.0))
    )


@pytest.mark.parametrize("emotion", DFEW_LABELS)
def test_voice_prototypes_render_finite_audio(emotion: str) -> None:
    r = _voice(VOICE_PROTOTYPES[emotion], seed=DFEW_LABELS.index(emotion))
    assert np.all(np.isfinite(r.audio)) and np.abs(r.audio).max() <= 1.0 and _rms_db(r.audio) > -45


# --- objective distinguishability on written files -------------------------------------------------


@pytest.fixture(scope="module")
def strong_corpus(tmp_path_factory: pytest.TempPathFactory) -> SynthCorpus:
    out = tmp_path_factory.mktemp("strong") / "corpus"
    manifest = generate_corpus(SynthConfig(n=42, seed=6, kind_weights={"consistent": 1.0}), out)
    return SynthCorpus(manifest)


def _nearest_centroid_loo(features: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out accuracy of a nearest-centroid classifier on standardised features."""
    x = (features - features.mean(0)) / (features.std(0) + 1e-9)
    classes = sorted(set(labels))
    correct = 0
    for i in range(len(x)):
        keep = np.arange(len(x)) != i
        centroids = np.stack([x[keep & (labels == c)].mean(0) for c in classes])
        correct += classes[int(np.argmin(((centroids - x[i]) ** 2).sum(1)))] == labels[i]
    return correct / len(x)


def _face_patch(frame: np.ndarray, box: list[int]) -> np.ndarray:
    x, y, w, h = box
    grey = cv2.cvtColor(frame[y : y + h, x : x + w], cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (24, 32), interpolation=cv2.INTER_AREA).astype(np.float32)


def test_emotions_are_objectively_distinguishable(strong_corpus: SynthCorpus) -> None:
    """Nearest-centroid on simple features of the decoded MP4s separates the seven emotions far above chance (1/7)."""
    visual, audio, labels = [], [], []
    for clip in strong_corpus:
        box = clip.meta["face_box"]
        change = _face_patch(clip.frames[-1], box) - _face_patch(clip.frames[0], box)  # apex minus neutral onset
        visual.append(change.ravel() / (np.linalg.norm(change) + 1e-6))

        a = clip.audio.astype(np.float64)
        rms = np.sqrt((np.lib.stride_tricks.sliding_window_view(a, 400)[::160] ** 2).mean(1))
        active = rms > 0.1 * rms.max()
        mel = log_mel_spectrogram(a, clip.sample_rate, n_mels=24)[:, : len(active)]
        shape = mel[:, active].mean(1)
        env = rms / (rms.max() + 1e-9)
        audio.append(
            np.concatenate(
                [[_rms_db(a), env.std(), active.mean(), 10 * np.abs(np.diff(env)).mean()], (shape - shape.mean()) / 10]
            )
        )
        labels.append(clip.label)
    labels_arr = np.array(labels)
    v_acc = _nearest_centroid_loo(np.array(visual), labels_arr)
    a_acc = _nearest_centroid_loo(np.array(audio), labels_arr)
    assert v_acc >= 0.4, f"visual nearest-centroid accuracy {v_acc:.2f}"
    assert a_acc >= 0.4, f"audio nearest-centroid accuracy {a_acc:.2f}"


def test_preview_images_are_written_from_the_corpus(strong_corpus: SynthCorpus, tmp_path: Path) -> None:
    from PIL import Image

    paths = render_preview(strong_corpus.manifest_path, tmp_path / "docs")
    assert [p.name for p in paths] == [CONTACT_SHEET, SPECTROGRAMS]
    sheet = Image.open(paths[0])
    assert sheet.size[1] >= 7 * 160 and sheet.size[0] >= 6 * 160
    spec = np.asarray(Image.open(paths[1]).convert("RGB"))
    assert spec.std() > 20, "spectrogram panel is not blank"


def test_preview_spectrogram_uses_the_model_filterbank() -> None:
    """One mel filterbank in the code base: the encoder's (unit-area), so white noise comes out flat."""
    from migr_rt.training.synth import preview

    from migr_rt.model.encoders import mel_filterbank

    assert not hasattr(preview, "mel_filterbank"), "preview keeps its own copy of the filterbank"
    noise = np.random.default_rng(0).standard_normal(32000)
    mel = log_mel_spectrogram(noise, 16000, n_mels=40)
    assert mel.shape == (40, 32000 // 160 + 1)
    bands = mel[:, 5:-5].mean(1)
    # unit-area bands average the power under them: equal for white noise (a summing bank rises ~11 dB)
    assert bands.max() - bands.min() < 2.0, bands
    # and the numbers are exactly that filterbank applied to the power spectrum
    x = np.pad(noise, 512)[: 1024 + 160 * 10]
    frames = np.lib.stride_tricks.sliding_window_view(x, 1024)[::160] * np.hanning(1024)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    expected = 10 * np.log10(np.maximum(power @ mel_filterbank(1024, 40, 16000, 0.0, 8000.0), 1e-12)).T
    np.testing.assert_allclose(mel[:, : expected.shape[1]], expected, rtol=1e-5, atol=1e-4)
    # a 1 kHz tone peaks in the band centred nearest 1 kHz
    tone = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    peak = int(log_mel_spectrogram(tone, 16000, n_mels=40)[:, 10:-10].mean(1).argmax())
    centres = mel_filterbank(1024, 40, 16000, 0.0, 8000.0).argmax(0) * 16000 / 1024
    assert abs(centres[peak] - 1000) < 80, (peak, centres[peak])


def test_preview_images_are_written_atomically(strong_corpus: SynthCorpus, tmp_path: Path, monkeypatch) -> None:
    """A crash while saving leaves the previous PNGs untouched and no partial files behind."""
    from PIL import Image

    docs = tmp_path / "docs"
    paths = render_preview(strong_corpus.manifest_path, docs)
    before = {p: p.read_bytes() for p in paths}
    real_save = Image.Image.save

    def crashing_save(self, fp, *args, **kwargs):
        real_save(self, fp, *args, **kwargs)
        Path(fp).write_bytes(Path(fp).read_bytes()[:100])  # half-written, then the process dies
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        render_preview(strong_corpus.manifest_path, docs)
    assert {p: p.read_bytes() for p in paths} == before
    assert sorted(p.name for p in docs.iterdir()) == sorted(p.name for p in paths)
