"""CREMA-D reader on fake trees with CREMA-D's exact naming (VideoFlash FLV + AudioWAV) and real media."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import cremad_paths, make_empty, write_av, write_cremad
from migr_rt.training.data import (
    CREMADReader,
    DatasetNotFoundError,
    MalformedNameError,
    MissingMediaError,
    UnknownLabelError,
)

from migr_rt.media import CorruptMediaError, MissingStreamError

STEMS = {
    "1001_DFA_ANG_XX": "angry",
    "1001_IEO_DIS_HI": "disgust",
    "1002_TIE_FEA_LO": "fear",
    "1003_WSI_HAP_MD": "happy",
    "1091_ITS_NEU_XX": "neutral",
    "1091_TSI_SAD_HI": "sad",
}


def test_labels_ids_and_meta_from_file_names(tmp_path):
    root = tmp_path / "CREMA-D"
    for stem in STEMS:
        write_cremad(root, stem, media=False)
    reader = CREMADReader(root, on_error="raise")
    assert {e.clip_id: e.label for e in reader.entries} == {f"cremad/{s}": lab for s, lab in STEMS.items()}
    entry = next(e for e in reader.entries if e.clip_id == "cremad/1001_IEO_DIS_HI")
    assert (entry.video_path, entry.audio_path) == cremad_paths(root, "1001_IEO_DIS_HI")
    assert entry.meta == {
        "actor": 1001,
        "sentence": "IEO",
        "sentence_text": "It's eleven o'clock",
        "emotion_code": "DIS",
        "level": "high",
        "level_code": "HI",
    }
    assert reader.label_counts["surprise"] == 0
    assert [e.clip_id for e in CREMADReader(root, actors=[1091]).entries] == [
        "cremad/1091_ITS_NEU_XX",
        "cremad/1091_TSI_SAD_HI",
    ]


def test_video_from_flv_audio_from_wav(tmp_path):
    root = tmp_path / "CREMA-D"
    write_cremad(root, "1001_DFA_ANG_XX", wav_seconds=0.8)
    (clip,) = list(CREMADReader(root, on_error="raise"))
    assert clip.clip_id == "cremad/1001_DFA_ANG_XX" and clip.label == "angry"
    assert clip.frames.dtype == np.uint8 and clip.frames.shape[1:] == (64, 64, 3)
    assert abs(clip.frames.shape[0] - 15) <= 1  # 0.6 s of 30 fps FLV at 25 fps (FLV times are in ms)
    # The WAV lasts 0.8 s, the FLV's own audio 0.6 s: exactly the WAV's 12800 samples proves the source.
    assert clip.sample_rate == 16000 and len(clip.audio) == 12800
    assert clip.source.endswith("VideoFlash/1001_DFA_ANG_XX.flv")
    assert clip.meta["dataset"] == "cremad" and clip.meta["missing"] == []


@pytest.mark.parametrize(
    ("stem", "error", "kind", "text"),
    [
        ("1001_DFA_ANG", MalformedNameError, "malformed_name", "{actor}_{sentence}_{emotion}_{level}"),
        ("1001-DFA-ANG-XX", MalformedNameError, "malformed_name", "{actor}_{sentence}_{emotion}_{level}"),
        ("1092_DFA_ANG_XX", MalformedNameError, "malformed_name", "actor 1092"),
        ("1001_ABC_ANG_XX", MalformedNameError, "malformed_name", "sentence code 'ABC'"),
        ("1001_DFA_ANG_ZZ", MalformedNameError, "malformed_name", "level 'ZZ'"),
        ("1001_DFA_SUR_XX", UnknownLabelError, "unknown_label", "unknown CREMA-D emotion code 'SUR'"),
    ],
)
def test_bad_file_names(tmp_path, stem, error, kind, text):
    root = tmp_path / "CREMA-D"
    write_cremad(root, "1005_MTI_SAD_LO", media=False)
    bad_flv, _ = write_cremad(root, stem, media=False)
    with pytest.raises(error) as info:
        CREMADReader(root, on_error="raise")
    assert str(bad_flv) in str(info.value) and text in str(info.value)
    reader = CREMADReader(root)
    assert [e.clip_id for e in reader.entries] == ["cremad/1005_MTI_SAD_LO"]
    assert reader.skipped == {kind: 1}


def test_pair_with_a_missing_half(tmp_path):
    root = tmp_path / "CREMA-D"
    write_cremad(root, "1001_DFA_ANG_XX")
    write_cremad(root, "1002_DFA_HAP_XX", audio=False)  # FLV without its WAV
    write_cremad(root, "1003_DFA_SAD_XX", video=False)  # WAV without its FLV

    with pytest.raises(MissingMediaError) as info:
        CREMADReader(root, on_error="raise")
    assert "AudioWAV/1002_DFA_HAP_XX.wav" in str(info.value)
    reader = CREMADReader(root)
    assert [e.clip_id for e in reader.entries] == ["cremad/1001_DFA_ANG_XX"]
    assert reader.skipped == {"missing_file": 2}

    # An optional modality may be absent; the other one is still required.
    no_audio_needed = CREMADReader(root, require_audio=False)
    assert [e.clip_id for e in no_audio_needed.entries] == ["cremad/1001_DFA_ANG_XX", "cremad/1002_DFA_HAP_XX"]
    assert no_audio_needed.skipped == {"missing_file": 1}
    clip = no_audio_needed.load(1)
    assert clip.audio is None and clip.frames is not None and clip.meta["missing"] == ["audio"]

    no_video_needed = CREMADReader(root, require_video=False)
    assert [e.clip_id for e in no_video_needed.entries] == ["cremad/1001_DFA_ANG_XX", "cremad/1003_DFA_SAD_XX"]
    clip = no_video_needed.load(1)
    assert clip.clip_id == "cremad/1003_DFA_SAD_XX" and clip.frames is None and clip.meta["missing"] == ["video"]
    assert len(clip.audio) == 12800


def test_broken_media(tmp_path):
    root = tmp_path / "CREMA-D"
    stems = ["1001_DFA_ANG_XX", "1002_DFA_DIS_XX", "1003_DFA_FEA_XX", "1004_DFA_HAP_XX", "1005_DFA_NEU_XX"]
    for i, stem in enumerate(stems):
        write_cremad(root, stem, seed=i)
    make_empty(cremad_paths(root, stems[1])[0])  # zero-byte FLV
    cremad_paths(root, stems[2])[1].write_bytes(b"RIFF....junk")  # corrupt WAV
    silent = write_av(tmp_path / "silent.mp4", audio=False)
    silent.replace(cremad_paths(root, stems[3])[1])  # a "WAV" that holds only a video stream
    wav = cremad_paths(root, stems[4])[1]
    wav.write_bytes(wav.read_bytes()[:30])  # WAV cut inside its 44-byte header

    reader = CREMADReader(root)
    assert [c.clip_id for c in reader] == ["cremad/1001_DFA_ANG_XX"]
    assert reader.skipped == {"corrupt_media": 3, "no_audio_stream": 1}

    strict = CREMADReader(root, on_error="raise")
    with pytest.raises(CorruptMediaError, match=f"{stems[1]}.flv"):
        strict.load(1)
    with pytest.raises((CorruptMediaError, MissingStreamError), match=f"{stems[3]}.wav"):
        strict.load(3)


def test_missing_folders(tmp_path):
    root = tmp_path / "CREMA-D"
    write_cremad(root, "1001_DFA_ANG_XX", video=False, media=False)
    with pytest.raises(DatasetNotFoundError, match="VideoFlash"):
        CREMADReader(root)
    assert len(CREMADReader(root, require_video=False)) == 1
    with pytest.raises(ValueError, match="actors"):
        CREMADReader(root, actors=[7])
