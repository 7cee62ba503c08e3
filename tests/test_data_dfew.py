"""DFEW reader on fake trees with DFEW's exact layout and real generated media."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from data_fixtures import (
    build_dfew,
    dfew_csv,
    dfew_video,
    make_empty,
    tone,
    truncate,
    write_av,
    write_dfew_csv,
)
from migr_rt.training.data import (
    DFEW_CODE_TO_LABEL,
    AnnotationError,
    DatasetError,
    DatasetNotFoundError,
    DFEWReader,
    MissingMediaError,
    UnknownLabelError,
)

from migr_rt.labels import DFEW_LABELS
from migr_rt.media import CorruptMediaError, MediaNotFoundError, MissingStreamError, write_media

# Clip numbers 1..7 carry label codes 1..7 in train set_1.
TRAIN_1 = [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6), (7, 7)]
TEST_1 = [(16, 4), (17, 6)]
TRAIN_2 = [(16, 4), (1234, 2)]


@pytest.fixture(scope="module")
def dfew_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("DFEW")
    return build_dfew(root, {("train", 1): TRAIN_1, ("test", 1): TEST_1, ("train", 2): TRAIN_2})


def good_tree(root, rows=((1, 4), (2, 1), (3, 7))):
    """A small train set_1 with real media, for tests that then break one file."""
    return build_dfew(root, {("train", 1): list(rows)})


def test_label_codes_follow_the_dfew_readme():
    assert DFEW_CODE_TO_LABEL == {1: "happy", 2: "sad", 3: "neutral", 4: "angry", 5: "surprise", 6: "disgust", 7: "fear"}
    assert set(DFEW_CODE_TO_LABEL.values()) == set(DFEW_LABELS)


def test_index_has_exact_ids_and_labels(dfew_root):
    reader = DFEWReader(dfew_root, fold=1, split="train")
    assert len(reader) == 7
    assert [(e.clip_id, e.label) for e in reader.entries] == [
        ("dfew/00001", "happy"),
        ("dfew/00002", "sad"),
        ("dfew/00003", "neutral"),
        ("dfew/00004", "angry"),
        ("dfew/00005", "surprise"),
        ("dfew/00006", "disgust"),
        ("dfew/00007", "fear"),
    ]
    assert reader.entries[3].video_path == dfew_root / "Clip" / "original" / "4.mp4"
    assert reader.skipped == {}
    assert reader.labels == DFEW_LABELS
    assert reader.label_counts == {label: 1 for label in DFEW_LABELS}


def test_folds_and_splits_select_their_csv(dfew_root):
    test_1 = DFEWReader(dfew_root, fold=1, split="test")
    train_2 = DFEWReader(dfew_root, fold=2, split="train")
    assert [(e.clip_id, e.label) for e in test_1.entries] == [("dfew/00016", "angry"), ("dfew/00017", "disgust")]
    assert [(e.clip_id, e.label) for e in train_2.entries] == [("dfew/00016", "angry"), ("dfew/01234", "sad")]
    assert train_2.entries[1].video_path.name == "1234.mp4"
    with pytest.raises(DatasetNotFoundError, match=r"set_3\.csv"):
        DFEWReader(dfew_root, fold=3, split="train")
    with pytest.raises(ValueError, match="fold"):
        DFEWReader(dfew_root, fold=6)
    with pytest.raises(ValueError, match="split"):
        DFEWReader(dfew_root, split="val")


def test_decoded_clips_have_fixed_rates_and_meta(dfew_root):
    reader = DFEWReader(dfew_root, fold=1, split="test")
    clips = list(reader)
    assert [c.clip_id for c in clips] == ["dfew/00016", "dfew/00017"]
    clip = clips[0]
    assert clip.label == "angry"
    assert clip.frames.shape == (15, 64, 64, 3) and clip.frames.dtype == np.uint8  # 0.6 s at 25 fps
    assert clip.fps == 25.0 and clip.sample_rate == 16000
    assert clip.audio.ndim == 1 and clip.audio.dtype == np.float32
    assert abs(len(clip.audio) - 9600) <= 1024  # 0.6 s at 16 kHz, up to one AAC frame of padding
    assert np.abs(clip.audio).max() > 0.1
    assert clip.source == str(dfew_root / "Clip" / "original" / "16.mp4")
    assert clip.meta == {
        "dataset": "dfew",
        "video_name": 16,
        "label_code": 4,
        "fold": 1,
        "split": "test",
        "missing": [],
    }


def test_requested_rates_and_max_seconds(dfew_root):
    reader = DFEWReader(dfew_root, fold=1, split="test", fps=10.0, sample_rate=8000, max_seconds=0.3)
    clip = reader.load(0)
    assert clip.frames.shape == (3, 64, 64, 3)
    assert clip.fps == 10.0 and clip.sample_rate == 8000
    assert len(clip.audio) == 2400


def test_bom_crlf_blank_lines_and_padded_file_names(tmp_path):
    root = tmp_path / "DFEW"
    write_dfew_csv(root, "train", 1, [(1, 5), (), (22, 3)], bom=True, crlf=True)
    write_av(dfew_video(root, 1))
    write_av(root / "Clip" / "original" / "00022.mp4", seed=22)
    reader = DFEWReader(root, on_error="raise")
    assert [(e.clip_id, e.label) for e in reader.entries] == [("dfew/00001", "surprise"), ("dfew/00022", "neutral")]
    assert reader.entries[1].video_path.name == "00022.mp4"
    assert [c.clip_id for c in reader] == ["dfew/00001", "dfew/00022"]


# --------------------------------------------------------------- annotation errors


@pytest.mark.parametrize(
    ("bad_row", "error", "kind", "line", "text"),
    [
        ((8, 9), UnknownLabelError, "unknown_label", 3, "unknown DFEW label code 9"),
        ((8, 0), UnknownLabelError, "unknown_label", 3, "unknown DFEW label code 0"),
        ((8, "happy"), AnnotationError, "malformed_annotation", 3, "not an integer code"),
        (("clip8", 2), AnnotationError, "malformed_annotation", 3, "not a clip number"),
        ((8,), AnnotationError, "malformed_annotation", 3, "malformed row"),
    ],
)
def test_bad_annotation_rows(tmp_path, bad_row, error, kind, line, text):
    root = tmp_path / "DFEW"
    build_dfew(root, {("train", 1): [(1, 4), (2, 1)]}, media=False)
    csv_path = write_dfew_csv(root, "train", 1, [(1, 4), bad_row, (2, 1)])
    with pytest.raises(error) as info:
        DFEWReader(root, on_error="raise")
    assert isinstance(info.value, DatasetError)
    assert f"{csv_path}:{line}:" in str(info.value) and text in str(info.value)
    assert info.value.line == line

    reader = DFEWReader(root, on_error="skip")
    assert [e.clip_id for e in reader.entries] == ["dfew/00001", "dfew/00002"]
    assert reader.skipped == {kind: 1}


def test_bad_header_and_missing_folders_always_raise(tmp_path):
    root = tmp_path / "DFEW"
    build_dfew(root, {("train", 1): [(1, 4)]}, media=False)
    dfew_csv(root, "train", 1).write_text("name;emotion\n1;4\n")
    with pytest.raises(AnnotationError, match="header"):
        DFEWReader(root, on_error="skip")
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        DFEWReader(tmp_path / "nowhere")
    other = tmp_path / "NoClips"
    write_dfew_csv(other, "train", 1, [(1, 4)])
    with pytest.raises(DatasetNotFoundError, match="Clip/original"):
        DFEWReader(other)


def test_annotated_file_absent(tmp_path):
    root = good_tree(tmp_path / "DFEW")
    dfew_video(root, 2).unlink()
    with pytest.raises(MissingMediaError) as info:
        DFEWReader(root, on_error="raise")
    assert str(dfew_video(root, 2)) in str(info.value) and "set_1.csv:3" in str(info.value)
    reader = DFEWReader(root)
    assert reader.skipped == {"missing_file": 1}
    assert reader.skip_examples == {"missing_file": ["dfew/00002"]}
    assert [c.clip_id for c in reader] == ["dfew/00001", "dfew/00003"]


def test_duplicates(tmp_path):
    root = tmp_path / "DFEW"
    build_dfew(root, {("train", 1): [(1, 4), (2, 1), (3, 3)]}, media=False)
    write_dfew_csv(root, "train", 1, [(1, 4), (2, 1), (1, 4), (3, 3), (2, 5)])
    with pytest.raises(DatasetError, match="conflicting labels|listed again"):
        DFEWReader(root, on_error="raise")
    reader = DFEWReader(root)
    # The identical repeat is dropped; clip 2 has two labels, so neither is trusted.
    assert [(e.clip_id, e.label) for e in reader.entries] == [("dfew/00001", "angry"), ("dfew/00003", "neutral")]
    assert reader.skipped == {"duplicate_entry": 2}


# --------------------------------------------------------------- media errors


def _break(root, how):
    path = dfew_video(root, 2)
    if how == "zero_byte":
        make_empty(path)
    elif how == "truncated":
        truncate(path)
    elif how == "garbage":
        path.write_bytes(b"not a video" * 50)
    elif how == "no_audio":
        write_av(path, audio=False)
    elif how == "no_video":
        write_av(path, video=False)
    return path


@pytest.mark.parametrize(
    ("how", "error", "kind"),
    [
        ("zero_byte", CorruptMediaError, "corrupt_media"),
        ("truncated", CorruptMediaError, "corrupt_media"),
        ("garbage", CorruptMediaError, "corrupt_media"),
        ("no_audio", MissingStreamError, "no_audio_stream"),
        ("no_video", MissingStreamError, "no_video_stream"),
    ],
)
def test_bad_media_raise_and_skip(tmp_path, how, error, kind, caplog):
    root = good_tree(tmp_path / "DFEW")
    path = _break(root, how)

    strict = DFEWReader(root, on_error="raise")
    assert len(strict) == 3  # indexing never opens media
    it = iter(strict)
    assert next(it).clip_id == "dfew/00001"
    with pytest.raises(error) as info:
        next(it)
    assert str(path) in str(info.value)

    lenient = DFEWReader(root, on_error="skip")
    with caplog.at_level(logging.WARNING, logger="migr_rt.training.data"):
        clips = list(lenient)
    assert [c.clip_id for c in clips] == ["dfew/00001", "dfew/00003"]
    assert [c.label for c in clips] == ["angry", "fear"]
    assert lenient.skipped == {kind: 1}
    assert lenient.skip_examples == {kind: ["dfew/00002"]}
    assert any("dfew/00002" in r.getMessage() for r in caplog.records)
    # A second epoch skips the same clip without counting it twice.
    assert [c.clip_id for c in lenient] == ["dfew/00001", "dfew/00003"]
    assert lenient.skipped == {kind: 1}


def test_load_always_raises(tmp_path):
    root = good_tree(tmp_path / "DFEW")
    _break(root, "zero_byte")
    reader = DFEWReader(root, on_error="skip")
    with pytest.raises(CorruptMediaError):
        reader.load(1)


def test_file_deleted_after_indexing_is_a_counted_skip(tmp_path):
    root = good_tree(tmp_path / "DFEW")
    reader = DFEWReader(root)
    dfew_video(root, 3).unlink()
    assert [c.clip_id for c in reader] == ["dfew/00001", "dfew/00002"]
    assert reader.skipped == {"missing_file": 1}
    with pytest.raises(MediaNotFoundError):
        reader.load(2)


def test_optional_audio_yields_clip_without_audio(tmp_path):
    root = good_tree(tmp_path / "DFEW")
    _break(root, "no_audio")
    reader = DFEWReader(root, require_audio=False, on_error="raise")
    clips = list(reader)
    assert len(clips) == 3
    silent = clips[1]
    assert silent.clip_id == "dfew/00002" and silent.label == "happy"
    assert silent.audio is None and silent.frames.shape == (15, 64, 64, 3)
    assert silent.meta["missing"] == ["audio"]
    assert clips[0].meta["missing"] == []


def test_optional_video_yields_clip_without_video(tmp_path):
    root = good_tree(tmp_path / "DFEW")
    _break(root, "no_video")
    clip = DFEWReader(root, require_video=False, on_error="raise").load(1)
    assert clip.frames is None and clip.audio is not None
    assert clip.meta["missing"] == ["video"]


def test_option_validation(dfew_root):
    with pytest.raises(ValueError, match="on_error"):
        DFEWReader(dfew_root, on_error="ignore")
    with pytest.raises(ValueError, match="fps"):
        DFEWReader(dfew_root, fps=0)
    with pytest.raises(TypeError):
        DFEWReader(dfew_root, colour="red")


def _resolution_change(path):
    """Overwrite ``path`` with two MPEG-TS recordings (64x64, then 128x96) joined byte for byte."""
    parts = []
    for i, (h, w) in enumerate(((64, 64), (96, 128))):
        frames = np.full((15, h, w, 3), 60 + 80 * i, np.uint8)
        part = write_media(path.with_name(f"part{i}.ts"), frames, 25.0, tone(0.6), 16000)
        parts.append(part.read_bytes())
        part.unlink()
    path.write_bytes(b"".join(parts))
    return path


def test_resolution_change_mid_file_does_not_end_the_epoch(tmp_path):
    root = good_tree(tmp_path / "DFEW")
    _resolution_change(dfew_video(root, 2))
    for on_error in ("skip", "raise"):
        reader = DFEWReader(root, on_error=on_error)
        clips = list(reader)
        assert [c.clip_id for c in clips] == ["dfew/00001", "dfew/00002", "dfew/00003"]
        changed = clips[1]
        assert changed.frames.shape[1:] == (64, 64, 3) and len(changed.frames) >= 28  # both parts, first size
        assert reader.skipped == {}


def test_any_decode_failure_is_a_counted_skip_not_the_end_of_the_epoch(tmp_path, monkeypatch, caplog):
    """A conversion failing inside decoding (here: the resize of the second part) is a corrupt clip, not a crash."""
    import cv2

    def broken_resize(*args, **kwargs):
        raise cv2.error("simulated conversion failure")

    root = good_tree(tmp_path / "DFEW")
    path = _resolution_change(dfew_video(root, 2))
    monkeypatch.setattr(cv2, "resize", broken_resize)

    lenient = DFEWReader(root, on_error="skip")
    with caplog.at_level(logging.WARNING, logger="migr_rt.training.data"):
        clips = list(lenient)
    assert [c.clip_id for c in clips] == ["dfew/00001", "dfew/00003"]
    assert lenient.skipped == {"corrupt_media": 1}
    assert lenient.skip_examples == {"corrupt_media": ["dfew/00002"]}
    assert any("simulated conversion failure" in r.getMessage() for r in caplog.records)

    strict = DFEWReader(root, on_error="raise")
    with pytest.raises(CorruptMediaError, match="simulated conversion failure") as info:
        list(strict)
    assert str(path) in str(info.value)
