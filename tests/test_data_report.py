"""`migr-rt data`: what a --data argument holds, checked from the index (and optionally by decoding)."""

from __future__ import annotations

import json

from click.testing import CliRunner
from data_fixtures import build_dfew, dfew_video, truncate
from migr_rt.training.synth.corpus import SynthConfig, generate_corpus

from migr_rt.cli import main

ANGRY, HAPPY, SAD = 4, 1, 2


def _run(*args: str):
    return CliRunner().invoke(main, ["data", *args])


def test_a_dataset_report_counts_labels_descriptions_and_skips_and_decoding_finds_corrupt_files(tmp_path):
    root = build_dfew(tmp_path / "DFEW", {("train", 1): [(1, ANGRY), (2, HAPPY), (3, SAD), (4, SAD)]})
    truncate(dfew_video(root, 3))
    desc = tmp_path / "desc.jsonl"
    desc.write_text("\n".join(json.dumps(d) for d in [
        {"clip_id": "1", "visual": "strongly lowered brows", "audio": "clearly loud voice"},  # cue vocabulary
        {"clip_id": "2", "visual": "a broad grin", "audio": "laughter"},  # free text
        {"clip_id": "3", "audio": "quiet voice"},  # the face unknown
    ]) + "\n{broken\n")
    spec = f"dfew:{root}?fold=1&descriptions={desc}"
    result = _run(spec, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # stdout holds the one JSON object; logs and progress go to stderr
    assert report["clips"] == 4 and report["decoded"] is None
    assert report["label_counts"] == {"angry": 1, "disgust": 0, "fear": 0, "happy": 1, "neutral": 0, "sad": 2,
                                      "surprise": 0}
    assert (report["described"], report["vocabulary_described"], report["partly_described"]) == (2, 1, 1)
    assert report["strength_described"] == 1  # clip 1 says how strong its cues are
    assert report["skipped"] == {} and report["description_lines_skipped"] == {"malformed_description": 1}

    decoded = _run(spec, "--decode")
    assert decoded.exit_code == 0, decoded.output
    assert "decoded: 3 of 4 clips" in decoded.stdout and "clips skipped: 1" in decoded.stdout
    assert "corrupt_media: 1" in decoded.stdout and "3.mp4" in decoded.stdout
    assert "decoding 4/4" in decoded.stderr  # progress counts every clip, failed ones included
    # the raise policy does not stop the check at the first bad file: finding them all is the point
    strict = _run(f"dfew:{root}?fold=1&on_error=raise", "--decode", "--json")
    assert strict.exit_code == 0, strict.output
    assert json.loads(strict.stdout)["skipped"] == {"corrupt_media": 1} and json.loads(strict.stdout)["decoded"] == 3


def test_the_report_says_whether_descriptions_give_cue_strengths(tmp_path):
    root = build_dfew(tmp_path / "DFEW", {("train", 1): [(1, ANGRY), (2, SAD), (3, SAD)]}, media=False)
    desc = tmp_path / "desc.jsonl"

    def report(*lines: dict) -> str:
        desc.write_text("".join(json.dumps(d) + "\n" for d in lines))
        result = _run(f"dfew:{root}?fold=1&descriptions={desc}")
        assert result.exit_code == 0, result.output
        return result.stdout

    bare = report({"clip_id": "1", "visual": "lowered brows", "audio": "loud voice"},
                  {"clip_id": "2", "visual": "downturned mouth corners", "audio": "quiet voice"})
    assert "cue strengths (intensity words) given in 0 of 2 readable clips: --reward-weight intensity rewards " \
           "nothing here" in bare
    worded = report({"clip_id": "1", "visual": "lowered brows", "audio": "clearly loud voice"},
                    {"clip_id": "2", "visual": "downturned mouth corners", "audio": "quiet voice"},
                    # a cue worded twice with different strengths: its strength is not known
                    {"clip_id": "3", "visual": "slightly downturned mouth corners, strongly downturned mouth corners",
                     "audio": ""})
    assert "given in 1 of 3 readable clips\n" in worded


def test_a_dataset_without_descriptions_says_what_it_can_train(tmp_path):
    root = build_dfew(tmp_path / "DFEW", {("train", 1): [(1, ANGRY)]}, media=False)
    result = _run(f"dfew:{root}")
    assert result.exit_code == 0, result.output
    assert "0 of 1 clips described" in result.output and "only --recipe base trains" in result.output


def test_no_usable_clip_is_exit_status_1(tmp_path):
    root = build_dfew(tmp_path / "DFEW", {("train", 1): [(1, ANGRY)]}, media=False)  # a zero-byte file
    result = _run(f"dfew:{root}", "--decode")
    assert result.exit_code == 1 and "no usable clip" in result.output
    missing = _run(f"dfew:{tmp_path / 'nope'}")
    assert missing.exit_code == 1 and "does not exist" in missing.output


def test_a_synthetic_corpus_report_reads_its_manifest(tmp_path):
    generate_corpus(SynthConfig(n=3, seed=5, workers=1), tmp_path / "c")
    result = _run(str(tmp_path / "c"), "--json", "--decode")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["clips"] == 3 and report["decoded"] == 3 and report["described"] == 3
    assert sum(report["label_counts"].values()) == 3
    refused = _run(str(tmp_path / "c"), "--template", str(tmp_path / "t.jsonl"))
    assert refused.exit_code == 2 and "needs a dataset spec" in refused.output and not (tmp_path / "t.jsonl").exists()


def test_a_template_spells_every_id_as_the_reader_does_and_never_overwrites(tmp_path):
    from migr_rt.training.data import open_dataset

    root = build_dfew(tmp_path / "DFEW", {("train", 1): [(7, ANGRY), (12, HAPPY)]}, media=False)
    template = tmp_path / "desc.jsonl"
    result = _run(f"dfew:{root}", "--template", str(template))
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in template.read_text().splitlines()]
    assert lines == [{"clip_id": "dfew/00007", "visual": None, "audio": None},
                     {"clip_id": "dfew/00012", "visual": None, "audio": None}]
    lines[1]["visual"] = "raised cheeks"  # the user fills one in: it reaches its clip
    template.write_text("".join(json.dumps(line) + "\n" for line in lines))
    meta = {e.clip_id: e.meta for e in open_dataset(f"dfew:{root}?descriptions={template}").entries}
    assert meta["dfew/00012"]["visual_text"] == "raised cheeks" and meta["dfew/00007"]["visual_text"] is None
    before = template.read_bytes()
    again = _run(f"dfew:{root}", "--decode", "--template", str(template))
    assert again.exit_code == 2 and "already exists" in again.output and template.read_bytes() == before
    assert "decoding" not in again.stderr  # refused before any work
    # a template made from a spec that has descriptions keeps what they know
    kept = tmp_path / "kept.jsonl"
    assert _run(f"dfew:{root}?descriptions={template}", "--template", str(kept)).exit_code == 0
    assert [json.loads(line)["visual"] for line in kept.read_text().splitlines()] == [None, "raised cheeks"]
