"""MAFW reader on fake trees with MAFW's exact layout and real generated media."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import build_mafw, mafw_txt, mafw_video, make_empty, truncate, write_av, write_mafw_txt
from migr_rt.training.data import (
    MAFW_NAME_TO_LABEL,
    AnnotationError,
    DatasetNotFoundError,
    MAFWReader,
    MissingMediaError,
    UnknownLabelError,
)

from migr_rt.labels import MAFW_LABELS
from migr_rt.media import CorruptMediaError, MissingStreamError

MAFW_NAMES = [
    "anger",
    "disgust",
    "fear",
    "happiness",
    "neutral",
    "sadness",
    "surprise",
    "contempt",
    "anxiety",
    "helplessness",
    "disappointment",
]


def test_all_eleven_names_map_to_our_labels(tmp_path):
    rows = [(i + 1, name) for i, name in enumerate(MAFW_NAMES)]
    root = build_mafw(tmp_path / "MAFW", {("train", 1): rows}, media=False)
    reader = MAFWReader(root, on_error="raise")
    assert [e.label for e in reader.entries] == [
        "angry",
        "disgust",
        "fear",
        "happy",
        "neutral",
        "sad",
        "surprise",
        "contempt",
        "anxiety",
        "helplessness",
        "disappointment",
    ]
    assert set(MAFW_NAME_TO_LABEL.values()) == set(MAFW_LABELS)
    assert reader.labels == MAFW_LABELS
    assert [e.clip_id for e in reader.entries][:2] == ["mafw/00001", "mafw/00002"]
    assert reader.entries[0].video_path == root / "data" / "clips" / "00001.mp4"
    assert reader.entries[3].meta == {"file_name": "00004.mp4", "mafw_label": "happiness", "fold": 1, "split": "train"}


def test_folds_and_splits(tmp_path):
    root = build_mafw(
        tmp_path / "MAFW",
        {
            ("train", 1): [(25, "anger"), (26, "happiness")],
            ("test", 1): [(27, "sadness")],
            ("train", 5): [(27, "sadness"), (25, "anger")],
        },
        media=False,
    )
    assert [e.clip_id for e in MAFWReader(root).entries] == ["mafw/00025", "mafw/00026"]
    assert [(e.clip_id, e.label) for e in MAFWReader(root, split="test").entries] == [("mafw/00027", "sad")]
    assert [e.clip_id for e in MAFWReader(root, fold=5).entries] == ["mafw/00027", "mafw/00025"]
    with pytest.raises(DatasetNotFoundError, match=r"set_2.*train\.txt"):
        MAFWReader(root, fold=2)


def test_decoded_clip(tmp_path):
    root = build_mafw(tmp_path / "MAFW", {("test", 3): [(25, "happiness")]})
    (clip,) = list(MAFWReader(root, fold=3, split="test", on_error="raise"))
    assert clip.clip_id == "mafw/00025" and clip.label == "happy"
    assert clip.frames.shape == (15, 64, 64, 3) and clip.frames.dtype == np.uint8
    assert clip.audio.dtype == np.float32 and abs(len(clip.audio) - 9600) <= 1024
    assert clip.sample_rate == 16000 and clip.fps == 25.0
    assert clip.meta["dataset"] == "mafw" and clip.meta["fold"] == 3 and clip.meta["split"] == "test"
    assert clip.source.endswith("data/clips/00025.mp4")


def test_tolerant_spellings(tmp_path):
    root = tmp_path / "MAFW"
    build_mafw(root, {("train", 1): [(1, "anger"), (2, "fear")]}, media=False)
    txt = mafw_txt(root, "train", 1)
    # BOM, tab separator, upper case, no extension, CRLF and blank lines.
    txt.write_bytes("\ufeff00001.mp4\tAnger\r\n\r\n00002 fear\r\n".encode())
    reader = MAFWReader(root, on_error="raise")
    assert [(e.clip_id, e.label) for e in reader.entries] == [("mafw/00001", "angry"), ("mafw/00002", "fear")]


@pytest.mark.parametrize(
    ("bad_line", "error", "kind", "text"),
    [
        ("00003.mp4 joy", UnknownLabelError, "unknown_label", "unknown MAFW label 'joy'"),
        ("00003.mp4 angry", UnknownLabelError, "unknown_label", "unknown MAFW label 'angry'"),
        ("00003.mp4", AnnotationError, "malformed_annotation", "malformed line"),
        ("00003.mp4 anger extra", AnnotationError, "malformed_annotation", "malformed line"),
        ("../secret.mp4 anger", AnnotationError, "malformed_annotation", "not a plain clip file name"),
    ],
)
def test_bad_annotation_lines(tmp_path, bad_line, error, kind, text):
    root = build_mafw(tmp_path / "MAFW", {("train", 1): [(1, "anger"), (2, "fear")]}, media=False)
    txt = write_mafw_txt(root, "train", 1, ["00001.mp4 anger", bad_line, "00002.mp4 fear"])
    with pytest.raises(error) as info:
        MAFWReader(root, on_error="raise")
    assert f"{txt}:2:" in str(info.value) and text in str(info.value)
    reader = MAFWReader(root)
    assert [e.clip_id for e in reader.entries] == ["mafw/00001", "mafw/00002"]
    assert reader.skipped == {kind: 1}


def test_missing_and_broken_media(tmp_path):
    root = build_mafw(
        tmp_path / "MAFW",
        {("train", 1): [(1, "anger"), (2, "fear"), (3, "contempt"), (4, "anxiety"), (5, "sadness")]},
    )
    mafw_video(root, 2).unlink()
    truncate(mafw_video(root, 3))
    make_empty(mafw_video(root, 4))
    write_av(mafw_video(root, 5), audio=False)

    with pytest.raises(MissingMediaError) as info:
        MAFWReader(root, on_error="raise")
    assert "00002.mp4" in str(info.value) and "train.txt:2" in str(info.value)

    reader = MAFWReader(root)
    assert len(reader) == 4
    clips = list(reader)
    assert [(c.clip_id, c.label) for c in clips] == [("mafw/00001", "angry")]
    assert reader.skipped == {"corrupt_media": 2, "missing_file": 1, "no_audio_stream": 1}
    assert sorted(reader.skip_examples["corrupt_media"]) == ["mafw/00003", "mafw/00004"]

    mafw_video(root, 2).write_bytes(mafw_video(root, 1).read_bytes())
    strict = MAFWReader(root, on_error="raise")
    it = iter(strict)
    assert next(it).clip_id == "mafw/00001"
    assert next(it).clip_id == "mafw/00002"
    with pytest.raises(CorruptMediaError, match="00003.mp4"):
        next(it)
    with pytest.raises(MissingStreamError, match="00005.mp4.*no audio stream"):
        strict.load(4)
