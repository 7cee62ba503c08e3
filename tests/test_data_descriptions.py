"""Descriptions files: real datasets gain per-clip cue descriptions, and with them the baseline/MIGR recipes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from migr_rt.training.base_recipe import load_or_extract
from data_fixtures import (
    build_dfew,
    make_empty,
    ravdess_name,
    synth_dfew_tree,
    write_cremad,
    write_mafw_txt,
    write_ravdess,
)
from migr_rt.training.data import DatasetNotFoundError, open_dataset
from migr_rt.training.data.descriptions import MAX_DESCRIPTION_CHARS, DescriptionError, parse_description
from migr_rt.training.judge import described_cues
from migr_rt.training.mi_labels import read_mi_labels
from migr_rt.training.reasoning_recipe import reward_contexts
from migr_rt.training.sources import open_source
from migr_rt.training.sft import SFTConfig, trace_texts, train_sft
from migr_rt.training.windows import WindowSet, window_meta
from model_fixtures import tiny_config

from migr_rt.cli import main
from migr_rt.model import build_model, load_checkpoint
from migr_rt.traces import parse_trace

ANGRY, HAPPY, SAD = 4, 1, 2  # DFEW label codes


def _write(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


@pytest.fixture()
def dfew(tmp_path):
    """Index-only DFEW tree: fold 1 train holds clips 1..3, fold 1 test clip 9."""
    return build_dfew(tmp_path / "DFEW", {("train", 1): [(1, ANGRY), (2, HAPPY), (3, SAD)], ("test", 1): [(9, SAD)]},
                      media=False)


# ------------------------------------------------------------------------------------------- one line


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"clip_id": "1", "vision": "x"}', "unknown key(s) ['vision']"),
        ('{"visual": "lowered brows"}', "'clip_id' must be a non-empty string"),
        ('{"clip_id": "  ", "visual": "x"}', "'clip_id' must be a non-empty string"),
        ('{"clip_id": "1"}', "describes no modality"),
        ('{"clip_id": "1", "audio": 3}', "'audio' must be a string or null, got int"),
        ('{"clip_id": "1", "visual": "brows</visual><answer>happy"}', "reserved token '</visual>'"),
        ('{"clip_id": "1", "audio": "a loud <eos> voice"}', "reserved token '<eos>'"),
        ("[" * 100000 + "]" * 100000, "nested too deeply"),
    ],
)
def test_a_bad_line_names_the_file_the_line_and_the_problem(tmp_path, text, problem):
    with pytest.raises(DescriptionError) as info:
        parse_description(tmp_path / "d.jsonl", 7, text)
    assert str(info.value).startswith(f"{tmp_path / 'd.jsonl'}:7: ") and problem in str(info.value)


def test_a_line_collapses_whitespace_keeps_empty_and_unknown_apart_and_bounds_length(tmp_path):
    d = parse_description(tmp_path / "d", 1, '{"clip_id": " 16 ", "visual": "lowered\\n  brows ", "audio": ""}')
    assert d.clip_id == "16" and d.texts == {"visual": "lowered brows", "audio": ""}
    assert parse_description(tmp_path / "d", 1, '{"clip_id": "16", "audio": null}').texts == {"visual": None, "audio": None}
    long = json.dumps({"clip_id": "16", "visual": "x" * (MAX_DESCRIPTION_CHARS + 1)})
    with pytest.raises(DescriptionError, match=f"longer than {MAX_DESCRIPTION_CHARS}"):
        parse_description(tmp_path / "d", 1, long)


# ------------------------------------------------------------------------------------------- a reader


def test_descriptions_reach_the_entries_by_full_or_short_id_and_other_folds_are_ignored(dfew, tmp_path):
    path = _write(tmp_path / "desc.jsonl", [
        {"clip_id": "dfew/00001", "visual": "strongly lowered brows", "audio": "clearly loud voice"},
        {"clip_id": "00002", "visual": "", "audio": "slightly bright voice"},
        "",  # blank lines are ignored
        {"clip_id": "dfew/00009", "visual": "downturned mouth corners", "audio": None},  # fold 1 test: not opened
    ])
    reader = open_dataset(f"dfew:{dfew}?fold=1&split=train&descriptions={path}")
    meta = {e.clip_id: e.meta for e in reader.entries}
    assert meta["dfew/00001"]["visual_text"] == "strongly lowered brows"
    assert meta["dfew/00001"]["audio_text"] == "clearly loud voice"
    assert meta["dfew/00002"]["visual_text"] == "" and meta["dfew/00002"]["audio_text"] == "slightly bright voice"
    assert "visual_text" not in meta["dfew/00003"] and meta["dfew/00003"]["fold"] == 1
    assert reader.skipped == {}


def test_ids_that_are_not_numbers_match_with_or_without_the_dataset_prefix(tmp_path):
    root = tmp_path / "RAVDESS"
    angry, happy = ravdess_name(emotion=5, actor=1), ravdess_name(emotion=3, actor=2)
    for stem in (angry, happy):
        write_ravdess(root, stem, media=False)
    path = _write(tmp_path / "desc.jsonl", [
        {"clip_id": f"ravdess/{angry}", "visual": "strongly lowered brows"},
        {"clip_id": happy, "audio": "clearly bright voice"},
        {"clip_id": "1", "audio": "not a RAVDESS id"},
    ])
    meta = {e.clip_id: e.meta for e in open_dataset(f"ravdess:{root}?descriptions={path}").entries}
    assert meta[f"ravdess/{angry}"]["visual_text"] == "strongly lowered brows"
    assert meta[f"ravdess/{angry}"]["audio_text"] is None
    assert meta[f"ravdess/{happy}"]["audio_text"] == "clearly bright voice"


def test_a_file_that_names_none_of_the_clips_says_how_the_ids_differ(dfew, tmp_path):
    path = _write(tmp_path / "desc.jsonl", [{"clip_id": "clip_1", "visual": "x"}, {"clip_id": "clip_2", "audio": "y"}])
    with pytest.raises(DescriptionError, match=r"describes none of the 3 indexed dfew clips \(ids like 'dfew/00001'; "
                                               r"the file has 'clip_1', 'clip_2'\)"):
        open_dataset(f"dfew:{dfew}?descriptions={path}")


def test_a_missing_descriptions_file_is_an_error_in_either_policy(dfew, tmp_path):
    for policy in ("skip", "raise"):
        with pytest.raises(DatasetNotFoundError, match="descriptions file does not exist"):
            open_dataset(f"dfew:{dfew}?on_error={policy}&descriptions={tmp_path / 'nope.jsonl'}")
    with pytest.raises(DatasetNotFoundError, match="descriptions file is not a file"):
        open_dataset(f"dfew:{dfew}?descriptions={tmp_path}")


def test_bad_and_conflicting_lines_follow_the_error_policy_and_repeats_count_once(dfew, tmp_path):
    one = {"clip_id": "1", "visual": "strongly lowered brows", "audio": "clearly loud voice"}
    path = _write(tmp_path / "desc.jsonl", [
        one,
        "{broken",
        {"clip_id": "2", "visual": "raised cheeks"},
        {"clip_id": "dfew/00002", "visual": "a wide smile"},  # the same clip again, other words
        {"clip_id": "3", "visual": "downturned mouth corners", "audio": "quiet voice"},
        {**one, "clip_id": "dfew/00001"},  # the same description repeated (per-fold files joined)
        {"clip_id": "9", "visual": "a"}, {"clip_id": "9", "visual": "b"},  # fold 1 test: not opened, not judged
    ])
    reader = open_dataset(f"dfew:{dfew}?descriptions={path}")  # skip (default): counted, the rest attached
    assert reader.skipped == {"duplicate_description": 2, "malformed_description": 1}
    meta = {e.clip_id: e.meta for e in reader.entries}
    assert "visual_text" not in meta["dfew/00002"]  # two versions: neither is trusted
    assert meta["dfew/00003"]["audio_text"] == "quiet voice"
    assert meta["dfew/00001"]["visual_text"] == "strongly lowered brows"
    assert len(reader) == 3  # a bad description never drops the clip itself
    with pytest.raises(DescriptionError, match=r"desc.jsonl:2: not valid JSON"):
        open_dataset(f"dfew:{dfew}?on_error=raise&descriptions={path}")
    _write(path, [one, {"clip_id": "2", "visual": "raised cheeks"}, {"clip_id": "2", "visual": "a wide smile"}])
    with pytest.raises(DescriptionError, match=r"desc.jsonl:2: 2 has different descriptions on lines 2, 3"):
        open_dataset(f"dfew:{dfew}?on_error=raise&descriptions={path}")


def test_a_file_whose_lines_are_all_rejected_says_so(dfew, tmp_path):
    path = _write(tmp_path / "desc.jsonl", [{"clip_id": "1", "visual": "a"}, {"clip_id": "1", "visual": "b"}])
    with pytest.raises(DescriptionError, match=r"describes none of the 3 .*duplicate_description=2"):
        open_dataset(f"dfew:{dfew}?descriptions={path}")


def test_clips_that_differ_only_by_padding_match_their_exact_spelling(tmp_path):
    root = tmp_path / "MAFW"
    write_mafw_txt(root, "train", 1, ["00025.mp4 happiness", "25.mp4 sadness", "00026.mp4 anger"])
    for name in ("00025.mp4", "25.mp4", "00026.mp4"):
        make_empty(root / "data" / "clips" / name)
    path = _write(tmp_path / "desc.jsonl", [
        {"clip_id": "mafw/00025", "visual": "raised cheeks"},
        {"clip_id": "25", "visual": "drooping eyelids"},
        {"clip_id": "26", "visual": "lowered brows"},  # unambiguous: padding still optional
    ])
    meta = {e.clip_id: e.meta for e in open_dataset(f"mafw:{root}?fold=1&descriptions={path}").entries}
    assert meta["mafw/00025"]["visual_text"] == "raised cheeks"
    assert meta["mafw/25"]["visual_text"] == "drooping eyelids"
    assert meta["mafw/00026"]["visual_text"] == "lowered brows"


def test_a_modality_whose_file_is_absent_shows_nothing(tmp_path):
    root = tmp_path / "CREMA-D"
    write_cremad(root, "1001_DFA_ANG_XX", video=False, media=False)
    write_cremad(root, "1001_DFA_HAP_XX", media=False)
    path = _write(tmp_path / "desc.jsonl", [
        {"clip_id": "1001_DFA_ANG_XX", "audio": "clearly loud voice"},
        {"clip_id": "1001_DFA_HAP_XX", "audio": "clearly bright voice"},
    ])
    meta = {e.clip_id: e.meta for e in open_dataset(f"cremad:{root}?require_video=false&descriptions={path}").entries}
    assert meta["cremad/1001_DFA_ANG_XX"]["visual_text"] == ""  # no video file: nothing to describe
    assert meta["cremad/1001_DFA_HAP_XX"]["visual_text"] is None  # a video it did not describe: unknown


def test_partly_described_data_warns_with_an_undescribed_id(dfew, tmp_path, caplog):
    path = _write(tmp_path / "desc.jsonl", [{"clip_id": "1", "visual": "x", "audio": "y"}])
    with caplog.at_level("WARNING"):
        open_dataset(f"dfew:{dfew}?descriptions={path}")
    assert "2 of 3 clips have no description" in caplog.text and "dfew/00002" in caplog.text


def test_a_non_utf8_file_is_refused_with_its_line(dfew, tmp_path):
    path = tmp_path / "desc.jsonl"
    path.write_bytes(b'{"clip_id": "1", "visual": "ok"}\n{"clip_id": "2", "visual": "caf\xe9"}\n')
    with pytest.raises(DescriptionError, match=r"desc.jsonl:2: not UTF-8"):
        open_dataset(f"dfew:{dfew}?descriptions={path}")


def test_the_fingerprint_follows_the_descriptions_and_their_texts_train_the_tokenizer(dfew, tmp_path):
    plain = open_source(f"dfew:{dfew}")
    path = _write(tmp_path / "desc.jsonl", [{"clip_id": "1", "visual": "furrowed forehead", "audio": "a growl"}])
    first = open_source(f"dfew:{dfew}?descriptions={path}")
    assert first.texts == ("furrowed forehead", "a growl") and plain.texts == ()
    _write(path, [{"clip_id": "1", "visual": "furrowed forehead", "audio": "a low growl"}])
    edited = open_source(f"dfew:{dfew}?descriptions={path}")
    assert len({plain.fingerprint, first.fingerprint, edited.fingerprint}) == 3
    # an undescribed dataset keeps the fingerprint it had before descriptions existed (its window cache stays valid)
    entries = [[e.clip_id, e.label, [(str(e.video_path), 0, e.video_path.stat().st_mtime_ns)] * 2]
               for e in open_dataset(f"dfew:{dfew}").entries]
    assert plain.fingerprint == hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def test_a_decoded_clip_carries_its_descriptions(tmp_path):
    root = build_dfew(tmp_path / "DFEW", {("train", 1): [(5, HAPPY)]})
    path = _write(tmp_path / "desc.jsonl", [{"clip_id": "5", "visual": "raised cheeks", "audio": ""}])
    clip = next(iter(open_dataset(f"dfew:{root}?descriptions={path}")))
    assert clip.meta["visual_text"] == "raised cheeks" and clip.meta["audio_text"] == ""
    assert clip.label == "happy" and clip.frames is not None


# ------------------------------------------------------------------------------------------- reading cues


def test_described_cues_read_the_vocabulary_and_refuse_to_half_know():
    vocab = described_cues({"visual": "strongly lowered brows", "audio": "clearly loud voice, sharp clipped syllable attacks"})
    assert vocab == {"visual": ["brows_lowered"], "audio": ["voice_loud", "attacks_sharp"]}
    assert described_cues({"visual": "", "audio": "clearly loud voice"}) == {"visual": [], "audio": ["voice_loud"]}
    assert described_cues({"visual": "a furious glare", "audio": "clearly loud voice"}) is None  # other words
    assert described_cues({"visual": None, "audio": "clearly loud voice"}) is None  # one modality unknown
    assert described_cues({}) is None
    # a cue of the other modality written under this one is not evidence of this one
    assert described_cues({"visual": "clearly loud voice", "audio": "clearly loud voice"}) is None
    # a real clip's record names no cues: they are read from its descriptions when used, with the model's lexicon
    assert window_meta({"visual_text": "strongly lowered brows", "audio_text": ""}, ("visual", "audio")) == {}


# ------------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def synth_as_dfew(tmp_path_factory):
    """A synthetic corpus laid out as DFEW, its cue records reduced to a descriptions file (like real data)."""
    tmp = tmp_path_factory.mktemp("dfewdesc")
    root, records = synth_dfew_tree(tmp, n=16, seed=41)
    described = [{"clip_id": str(n), "visual": rec["visual_text"], "audio": rec["audio_text"]}
                 for n, rec in enumerate(records, start=1)]
    # one clip described in words outside the cue vocabulary: it trains, but its cues are unknown
    described[0]["visual"] = "a furious glare with a clenched jaw"
    path = _write(tmp / "descriptions.jsonl", described)
    return root, path, records


def test_migr_recipe_trains_on_a_real_dataset_layout_with_a_descriptions_file(synth_as_dfew, tmp_path):
    root, path, records = synth_as_dfew
    spec = f"dfew:{root}?fold=1&split=train&descriptions={path}"
    out = tmp_path / "migr"
    result = CliRunner().invoke(main, ["train", "--recipe", "migr", "--smoke", "--data", spec, "--out", str(out),
                                       "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["finished"]) == {"base", "mi_labels", "sft", "grpo"}
    # the MIGR stages ran on DFEW clips, and GRPO could judge the cue terms from the descriptions
    mi = read_mi_labels(out / "mi_labels.jsonl")
    ids = {r.id for r in mi}  # the training split: the rest is held out for validation
    assert ids <= {f"dfew/{n:05d}" for n in range(1, len(records) + 1)} and len(ids) >= len(records) - 2
    model, tokenizer = load_checkpoint(out)
    # the tokenizer was trained with the descriptions: their out-of-vocabulary words are not spelled out byte by byte
    assert len(tokenizer.encode(" furious glare with a clenched jaw", add_special_tokens=False)) <= 8

    # the windows the recipe trained on: descriptions from the file, cues read from them where they can be
    windows = load_or_extract(open_source(spec), model.config, tmp_path / "cache", None)
    by_id = dict(zip(windows.ids, range(len(windows))))
    first = by_id["dfew/00001"]
    assert windows.descriptions[first]["visual"] == "a furious glare with a clenched jaw"
    assert "cues" not in windows.meta[first]
    ctxs = reward_contexts(windows, tuple(model.config.labels), [None] * len(windows))
    assert ctxs[first].actual_cues == {}  # unknown, so grounding is not applicable there
    assert not ctxs[first].vocabulary and all(c.vocabulary for k, c in enumerate(ctxs) if k != first)
    # GRPO's grounding and coverage terms apply to every other clip (the corpus shows cues in each)
    assert all(ctxs[k].actual_cues and ctxs[k].present for k in range(len(ctxs)) if k != first)
    for n, rec in enumerate(records[1:], start=2):
        i = by_id[f"dfew/{n:05d}"]
        assert windows.descriptions[i] == {"visual": rec["visual_text"], "audio": rec["audio_text"]}
        assert windows.shown_cues(i) == {m: [c["name"] for c in rec[m]["cues"]] for m in ("visual", "audio")}
        for m in ctxs[i].present:
            assert ctxs[i].actual_cues[m] == frozenset(c["name"] for c in rec[m]["cues"])

    # migr-rt eval reads the same spec (it scores grounding from the windows' shown cues checked above)
    ev = CliRunner().invoke(main, ["eval", "--checkpoint", str(out), "--data", spec, "--out", str(tmp_path / "ev"),
                                   "--cache-dir", str(tmp_path / "cache"), "--max-new-tokens", "48"])
    assert ev.exit_code == 0, ev.output
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())["metrics"]
    assert report["windows"] == len(records) and report["format_valid"] is not None


# ------------------------------------------------------------------------------------------- traces


def _windows(descriptions: list[dict], present: list[list[bool]]) -> WindowSet:
    n, cfg = len(descriptions), tiny_config()
    return WindowSet(
        torch.zeros(n, cfg.num_frames, cfg.face_size, cfg.face_size, 3, dtype=torch.uint8),
        torch.zeros(n, cfg.audio_samples, dtype=torch.float16), torch.tensor(present), torch.zeros(n, dtype=torch.long),
        torch.full((n, 2), -1), torch.zeros(n, dtype=torch.bool), [f"w{i}" for i in range(n)], descriptions,
    )


def test_an_audio_only_clip_described_by_its_audio_trains_an_audio_trace():
    desc = [{"visual": None, "audio": "clearly loud voice"}]
    texts = trace_texts(desc, ["angry"], ["audio"], ["audio"], torch.tensor([[False, True]]))
    assert [m for m, _ in parse_trace(texts[0]).segments] == ["audio"]
    # a visible face with an unknown description: the trace would teach leaving it out, so none
    assert trace_texts(desc, ["angry"], ["audio"], ["audio"], torch.tensor([[True, True]])) == [None]


def test_trace_sft_says_which_descriptions_are_missing():
    model, tokenizer = build_model(tiny_config())
    half = _windows([{"visual": None, "audio": "clearly loud voice"}], [[True, True]])
    with pytest.raises(ValueError, match="lacks the description of a modality it shows"):
        train_sft(model, tokenizer, half, ["audio"], ["audio"], SFTConfig(steps=1, batch_size=1))
    none = _windows([{"visual": None, "audio": None}], [[True, True]])
    with pytest.raises(ValueError, match="descriptions=/data/dfew_descriptions.jsonl"):
        train_sft(model, tokenizer, none, ["audio"], ["audio"], SFTConfig(steps=1, batch_size=1))
