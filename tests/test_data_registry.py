"""open_dataset spec parsing, layout detection, labels_for, and the skip ledger."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_fixtures import build_dfew, build_mafw, ravdess_name, write_cremad, write_ravdess
from migr_rt.training.data import (
    CREMADReader,
    DatasetNotFoundError,
    DFEWReader,
    MAFWReader,
    RAVDESSReader,
    SkipLog,
    canonical_name,
    detect_dataset,
    labels_for,
    open_dataset,
    parse_spec,
)

from migr_rt.labels import DFEW_LABELS, MAFW_LABELS


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """One placeholder tree per dataset (names only; nothing here decodes)."""
    base = tmp_path_factory.mktemp("datasets")
    build_dfew(base / "DFEW", {("train", 1): [(1, 4)], ("test", 2): [(2, 1), (3, 2)]}, media=False)
    build_mafw(base / "MAFW", {("train", 1): [(1, "anger")], ("test", 4): [(2, "contempt")]}, media=False)
    write_ravdess(base / "RAVDESS", ravdess_name(emotion=2, actor=1), media=False)
    write_ravdess(base / "RAVDESS", ravdess_name(emotion=5, actor=2), media=False)
    write_ravdess(base / "RAVDESS-audio", ravdess_name(modality=3, emotion=5, actor=2), media=False)
    write_cremad(base / "CREMA-D", "1001_DFA_ANG_XX", media=False)
    write_cremad(base / "CREMA-D", "1002_DFA_HAP_XX", media=False)
    return base


def test_parse_spec_types_query_options():
    name, root, options = parse_spec("dfew:/data/DFEW?fold=2&split=test&fps=12.5&require_audio=false&max_seconds=4")
    assert name == "dfew" and root == Path("/data/DFEW")
    assert options == {"fold": 2, "split": "test", "fps": 12.5, "require_audio": False, "max_seconds": 4.0}
    assert parse_spec("ravdess:/r?calm_as=neutral&actors=1,2,3&vocal_channels=speech")[2] == {
        "calm_as": "neutral",
        "actors": (1, 2, 3),
        "vocal_channels": ("speech",),
    }
    assert parse_spec("CREMA-D:/x")[0] == "cremad"
    assert parse_spec("crema_d:/x")[0] == "cremad"
    assert parse_spec("mafw:relative/dir")[1] == Path("relative/dir")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "affectnet:/data",
            r"unknown dataset 'affectnet'; known datasets: cremad \(crema-d, crema_d\), dfew, mafw, ravdess",
        ),
        ("dfew:", "names no root folder"),
        ("", "empty dataset spec"),
        ("dfew:/d?colour=red", "unknown option 'colour' for dfew"),
        ("dfew:/d?calm_as=neutral", "unknown option 'calm_as' for dfew"),
        ("dfew:/d?fold=two", "bad value for 'fold'"),
        ("dfew:/d?require_audio=maybe", "bad value for 'require_audio'"),
        ("dfew:/d?fold=1&fold=2", "given twice"),
        ("dfew:/d?fold", "malformed query"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_spec(spec)


def test_open_dataset_builds_the_named_reader(trees):
    dfew = open_dataset(f"dfew:{trees / 'DFEW'}?fold=2&split=test")
    assert isinstance(dfew, DFEWReader) and (dfew.fold, dfew.split) == (2, "test")
    assert [(e.clip_id, e.label) for e in dfew.entries] == [("dfew/00002", "happy"), ("dfew/00003", "sad")]

    mafw = open_dataset(f"mafw:{trees / 'MAFW'}", fold=4, split="test")
    assert isinstance(mafw, MAFWReader) and [e.label for e in mafw.entries] == ["contempt"]

    ravdess = open_dataset(f"ravdess:{trees / 'RAVDESS'}?calm_as=neutral")
    assert isinstance(ravdess, RAVDESSReader) and [e.label for e in ravdess.entries] == ["neutral", "angry"]

    cremad = open_dataset(f"crema-d:{trees / 'CREMA-D'}", on_error="raise")
    assert isinstance(cremad, CREMADReader) and len(cremad) == 2


def test_open_dataset_option_conflicts_and_unknown_keywords(trees):
    spec = f"dfew:{trees / 'DFEW'}?fold=2&split=test"
    assert open_dataset(spec, fold=2).fold == 2  # agreeing values are fine
    with pytest.raises(ValueError, match="'fold' is 2 in the spec but 1 as a keyword"):
        open_dataset(spec, fold=1)
    with pytest.raises(TypeError, match="unknown option"):
        open_dataset(spec, calm_as="neutral")
    with pytest.raises(DatasetNotFoundError):
        open_dataset(f"dfew:{trees / 'nowhere'}")


def test_bare_paths_are_detected_from_the_layout(trees):
    assert detect_dataset(trees / "DFEW") == "dfew"
    assert detect_dataset(trees / "MAFW") == "mafw"
    assert detect_dataset(trees / "RAVDESS") == "ravdess"
    assert detect_dataset(trees / "RAVDESS-audio") == "ravdess"  # Audio_Speech_Actors_01-24/Actor_02
    assert detect_dataset(trees / "CREMA-D") == "cremad"
    assert isinstance(open_dataset(trees / "CREMA-D"), CREMADReader)
    assert isinstance(open_dataset(f"{trees / 'DFEW'}?split=test&fold=2"), DFEWReader)

def test_undetectable_layouts(tmp_path):
    (tmp_path / "videos").mkdir()
    with pytest.raises(ValueError, match="matches no known dataset layout.*'<name>:<path>'"):
        detect_dataset(tmp_path)
    (tmp_path / "EmoLabel_DataSplit").mkdir()
    (tmp_path / "VideoFlash").mkdir()
    with pytest.raises(ValueError, match=r"matches several layouts \(dfew, cremad\)"):
        open_dataset(str(tmp_path))


def test_a_wrong_data_path_says_it_may_be_a_corpus_or_a_dataset(trees, tmp_path):
    # --data (and `migr-rt data`) takes a synthetic corpus or a dataset: a path that is neither says both, not only
    # that it "matches no known dataset layout" or is no "dataset root" (the corpus being the likelier meaning).
    from migr_rt.training.sources import open_source

    (tmp_path / "clips").mkdir()
    (tmp_path / "corpus.json").write_text("{}")
    for path, what in [(tmp_path / "missing", "does not exist"), (tmp_path / "corpus.json", "is a file"),
                       (tmp_path / "clips", "holds no manifest.jsonl and matches no dataset's layout")]:
        with pytest.raises(DatasetNotFoundError, match=f"{what}.*synthetic corpus.*manifest.jsonl.*dfew:"):
            open_source(str(path))
    assert open_source(f"{trees / 'DFEW'}?split=test&fold=2").description.startswith("dfew dataset")
    with pytest.raises(ValueError, match=r"matches several layouts"):  # a dataset's: name it, as before
        (tmp_path / "EmoLabel_DataSplit").mkdir()
        (tmp_path / "VideoFlash").mkdir()
        open_source(str(tmp_path))


def test_labels_for():
    assert labels_for("dfew") == DFEW_LABELS
    assert labels_for("ravdess") == DFEW_LABELS
    assert labels_for("CREMA-D") == DFEW_LABELS
    assert labels_for("mafw") == MAFW_LABELS
    assert canonical_name(" Crema-D ") == "cremad"
    with pytest.raises(ValueError, match="known datasets"):
        labels_for("synthetic")


def test_skip_log_counts_distinct_items_with_examples():
    log = SkipLog(max_examples=2)
    assert not log and log.total == 0
    assert log.add("corrupt_media", "a", "a.mp4: bad")
    assert not log.add("corrupt_media", "a", "a.mp4: bad")  # same item again (next epoch)
    log.add("corrupt_media", "b", "b.mp4: bad")
    log.add("corrupt_media", "c", "c.mp4: bad")
    log.add("missing_file", "d", "d.mp4: gone")
    assert log.counts == {"corrupt_media": 3, "missing_file": 1}
    assert log.examples == {"corrupt_media": ["a", "b"], "missing_file": ["d"]}
    assert log.total == 4
    assert log.summary() == "4 skipped: corrupt_media=3 (e.g. a.mp4: bad); missing_file=1 (e.g. d.mp4: gone)"
