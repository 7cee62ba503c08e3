"""RAVDESS reader on fake trees with RAVDESS's exact file naming and real generated media."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import make_empty, ravdess_name, ravdess_path, truncate, write_av, write_ravdess
from migr_rt.training.data import (
    AnnotationError,
    DatasetNotFoundError,
    MalformedNameError,
    RAVDESSReader,
    UnknownLabelError,
)

from migr_rt.labels import DFEW_LABELS
from migr_rt.media import CorruptMediaError, MissingStreamError

# One full-AV speech file per emotion code for actor 1, with the expected label (None = calm).
EMOTIONS = {1: "neutral", 2: None, 3: "happy", 4: "sad", 5: "angry", 6: "fear", 7: "disgust", 8: "surprise"}


@pytest.fixture(scope="module")
def index_root(tmp_path_factory):
    """Placeholder files (names only): enough for everything decided at indexing."""
    root = tmp_path_factory.mktemp("RAVDESS")
    for code in EMOTIONS:
        write_ravdess(root, ravdess_name(emotion=code, intensity=2 if code > 1 else 1), media=False)
    write_ravdess(root, ravdess_name(channel=2, emotion=3, statement=2, repetition=2, actor=2), media=False)
    write_ravdess(root, ravdess_name(modality=2, emotion=5, actor=2), media=False)  # video-only
    write_ravdess(root, ravdess_name(modality=3, emotion=4, actor=1), media=False)  # audio-only wav
    make_empty(root / "Actor_01" / ".DS_Store")
    make_empty(root / "Actor_01" / "notes.txt")
    return root


def ids(reader):
    return [e.clip_id for e in reader.entries]


def test_labels_and_default_calm_skip(index_root):
    reader = RAVDESSReader(index_root, on_error="raise")
    got = {e.meta["emotion_code"]: e.label for e in reader.entries if e.meta["actor"] == 1}
    assert got == {code: label for code, label in EMOTIONS.items() if label is not None}
    assert reader.labels == DFEW_LABELS
    # calm is a documented, counted skip even in raise mode.
    assert reader.skipped == {"calm_unmapped": 1}
    assert reader.skip_examples == {"calm_unmapped": ["ravdess/01-01-02-02-01-01-01"]}
    # Only full-AV files by default: the video-only mp4 and the wav are ignored, not errors.
    assert len(reader) == 8 and reader.ignored == 2


def test_calm_as_maps_explicitly(index_root):
    reader = RAVDESSReader(index_root, calm_as="neutral")
    calm = [e for e in reader.entries if e.meta["emotion"] == "calm"]
    assert [(e.clip_id, e.label) for e in calm] == [("ravdess/01-01-02-02-01-01-01", "neutral")]
    assert reader.skipped == {}
    with pytest.raises(ValueError, match="calm_as"):
        RAVDESSReader(index_root, calm_as="relaxed")


def test_all_name_fields_parsed_into_meta(index_root):
    reader = RAVDESSReader(index_root)
    entry = next(e for e in reader.entries if e.clip_id == "ravdess/01-02-03-01-02-02-02")
    assert entry.label == "happy"
    assert entry.meta == {
        "modality": "av",
        "vocal_channel": "song",
        "emotion": "happy",
        "emotion_code": 3,
        "intensity": "normal",
        "statement": 2,
        "statement_text": "Dogs are sitting by the door",
        "repetition": 2,
        "actor": 2,
        "gender": "female",
    }
    fearful = next(e for e in reader.entries if e.meta["emotion_code"] == 6)
    assert fearful.label == "fear" and fearful.meta["emotion"] == "fearful"
    assert fearful.meta["intensity"] == "strong" and fearful.meta["gender"] == "male"


def test_modality_channel_and_actor_options(index_root):
    assert ids(RAVDESSReader(index_root, modality="video")) == ["ravdess/02-01-05-01-01-01-02"]
    # Audio-only files live under Audio_Speech_Actors_01-24/Actor_XX (one level down).
    audio = RAVDESSReader(index_root, modality="audio")
    assert ids(audio) == ["ravdess/03-01-04-01-01-01-01"]
    assert audio.entries[0].video_path is None and audio.entries[0].audio_path.suffix == ".wav"
    assert ids(RAVDESSReader(index_root, vocal_channels=["song"])) == ["ravdess/01-02-03-01-02-02-02"]
    assert ids(RAVDESSReader(index_root, actors=[2])) == ["ravdess/01-02-03-01-02-02-02"]
    with pytest.raises(ValueError, match="modality"):
        RAVDESSReader(index_root, modality="both")
    with pytest.raises(ValueError, match="actors"):
        RAVDESSReader(index_root, actors=[25])


def test_decoding_resamples_30fps_48k_to_requested_rates(tmp_path):
    root = tmp_path / "RAVDESS"
    write_ravdess(root, ravdess_name(emotion=6, actor=3), seed=1)
    write_ravdess(root, ravdess_name(modality=2, emotion=6, actor=3), seed=1)
    write_ravdess(root, ravdess_name(modality=3, emotion=6, actor=3))
    (clip,) = list(RAVDESSReader(root, on_error="raise"))
    assert clip.clip_id == "ravdess/01-01-06-01-01-01-03" and clip.label == "fear"
    assert clip.frames.shape == (15, 64, 64, 3) and clip.frames.dtype == np.uint8  # 0.6 s at 25 fps
    assert clip.sample_rate == 16000 and abs(len(clip.audio) - 9600) <= 1024
    assert clip.meta["actor"] == 3 and clip.meta["dataset"] == "ravdess" and clip.meta["missing"] == []

    (silent,) = list(RAVDESSReader(root, modality="video", on_error="raise"))
    assert silent.audio is None and silent.frames.shape == (15, 64, 64, 3)
    assert silent.meta["missing"] == ["audio"]

    (voice,) = list(RAVDESSReader(root, modality="audio", on_error="raise"))
    assert voice.frames is None and len(voice.audio) == 9600  # PCM WAV: exact length
    assert voice.meta["missing"] == ["video"]


@pytest.mark.parametrize(
    ("stem", "error", "kind", "text"),
    [
        ("01-01-03-01-01-01", MalformedNameError, "malformed_name", "MM-VV-EE-II-SS-RR-AA"),
        ("1-1-3-1-1-1-1", MalformedNameError, "malformed_name", "MM-VV-EE-II-SS-RR-AA"),
        ("my_clip", MalformedNameError, "malformed_name", "MM-VV-EE-II-SS-RR-AA"),
        ("01-03-03-01-01-01-01", MalformedNameError, "malformed_name", "vocal channel 03"),
        ("01-01-03-03-01-01-01", MalformedNameError, "malformed_name", "intensity 03"),
        ("04-01-03-01-01-01-01", MalformedNameError, "malformed_name", "modality 04"),
        ("03-01-03-01-01-01-01", MalformedNameError, "malformed_name", "files are .wav, not .mp4"),
        ("01-01-09-01-01-01-01", UnknownLabelError, "unknown_label", "unknown RAVDESS emotion code 09"),
        ("01-01-03-01-01-01-05", AnnotationError, "actor_mismatch", "disagrees with its folder Actor_01"),
    ],
)
def test_bad_file_names(tmp_path, stem, error, kind, text):
    root = tmp_path / "RAVDESS"
    good = write_ravdess(root, ravdess_name(emotion=5), media=False)
    bad = make_empty(root / "Actor_01" / f"{stem}.mp4")
    with pytest.raises(error) as info:
        RAVDESSReader(root, on_error="raise")
    assert str(bad) in str(info.value) and text in str(info.value)
    reader = RAVDESSReader(root)
    assert [e.audio_path for e in reader.entries] == [good]
    assert reader.skipped == {kind: 1}


def test_broken_media_and_missing_streams(tmp_path):
    root = tmp_path / "RAVDESS"
    names = [ravdess_name(emotion=e, actor=4) for e in (1, 3, 4, 5, 7)]
    for i, stem in enumerate(names):
        write_ravdess(root, stem, seed=i)
    truncate(ravdess_path(root, names[1]))
    write_av(ravdess_path(root, names[2]), audio=False, fps=30.0)  # full-AV name, no audio stream
    write_av(ravdess_path(root, names[3]), video=False, sample_rate=48000)  # full-AV name, no video stream

    reader = RAVDESSReader(root)
    assert [(c.clip_id, c.label) for c in reader] == [
        ("ravdess/01-01-01-01-01-01-04", "neutral"),
        ("ravdess/01-01-07-01-01-01-04", "disgust"),
    ]
    assert reader.skipped == {"corrupt_media": 1, "no_audio_stream": 1, "no_video_stream": 1}

    strict = RAVDESSReader(root, on_error="raise")
    with pytest.raises(CorruptMediaError, match=names[1]):
        list(strict)
    with pytest.raises(MissingStreamError, match=f"{names[2]}.*no audio stream"):
        strict.load(2)
    with pytest.raises(MissingStreamError, match=f"{names[3]}.*no video stream"):
        strict.load(3)

    lenient_audio = RAVDESSReader(root, require_audio=False, on_error="raise").load(2)
    assert lenient_audio.audio is None and lenient_audio.meta["missing"] == ["audio"]


def test_no_actor_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="Actor_XX"):
        RAVDESSReader(tmp_path / "empty")
