"""Cue lexicons: the contract, reading text, lexicon files, and one lexicon carried from training to every verdict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from data_fixtures import synth_dfew_tree
from migr_rt.training.judge import CueJudge, coverage, described_cues, grounding, judged_emotion, misplaced_cues
from migr_rt.training.lexicon import (
    LEXICON_FILE,
    NEGATION_WINDOW,
    NEGATION_WORDS,
    SCOPE_BREAKS,
    Cue,
    CueLexicon,
    LexiconError,
    lexicon_from_dict,
    load_lexicon,
    stored_lexicon,
    translate,
)
from migr_rt.training.reasoning_recipe import reward_contexts
from migr_rt.training.rewards import RewardContext, RewardWeights, score
from migr_rt.training.synth.cues import CUES, INTENSITY_WORDS, LEXICON
from migr_rt.training.windows import WindowSet
from model_fixtures import tiny_config

from migr_rt.cli import main
from migr_rt.labels import DFEW_LABELS
from migr_rt.traces import parse_trace

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "lexicon_example.json"


def _lexicon(**changes) -> dict:
    """A small valid lexicon file object; ``changes`` replace top-level keys."""
    obj = {
        "format": "migr-rt-lexicon", "version": 1, "name": "small",
        "intensity_words": {"a bit": 0.4, "very": 1.0},
        "cues": [
            {"name": "scowl", "modality": "visual", "phrases": ["scowl", "brows drawn low"], "support": {"angry": 1.0}},
            {"name": "forced_smile", "modality": "visual", "phrases": ["forced smile"], "support": {"disgust": 0.6}},
            {"name": "smile", "modality": "visual", "phrases": ["smile"], "support": {"happy": 1.0}},
            {"name": "shout", "modality": "audio", "phrases": ["shouting"], "support": {"angry": 0.9, "surprise": 0.3}},
        ],
    }
    obj.update(changes)
    return obj


def _cue_change(index: int, **changes) -> dict:
    obj = _lexicon()
    obj["cues"][index] = {**obj["cues"][index], **changes}
    return obj


# ------------------------------------------------------------------------------------------------ contract


@pytest.mark.parametrize("obj,message", [
    (_cue_change(0, phrases=["angry glare"]), r"my.json: cue 'scowl': phrase 'angry glare' contains the emotion word 'angr"),
    (_cue_change(2, phrases=["Brows  Drawn low"]), r"my.json: cue 'smile': phrase 'Brows  Drawn low' also states cue 'scowl'"),
    (_cue_change(1, name="scowl"), r"my.json: cue 'scowl': the name is used by two cues"),
    (_cue_change(3, modality="smell"), r"cues\[3\].*modality"),
    (_cue_change(3, support={"angry": -1.0}), r"cues\[3\].*support"),
    (_cue_change(3, support={"angry": 0.0}), r"my.json: cue 'shout': support must give at least one emotion"),
    (_cue_change(2, phrases=["(smile)"]), r"my.json: cue 'smile': phrase '\(smile\)' must start and end with a letter"),
    (_cue_change(2, phrases=["sadly drooping"]), r"phrase 'sadly drooping' contains the emotion word 'sad'"),
    (_cue_change(2, phrases=["bit lip"]), r"starts with 'bit', the end of the intensity word 'a bit'"),
    (_lexicon(intensity_words={"Very": 0.9, "very": 1.0}), r"intensity word 'very' is listed twice"),
    (_cue_change(2, phrases=["very wide smile"]), r"intensity word 'very'"),
    (_cue_change(2, phrases=[]), r"\"phrases\" must be a non-empty list of strings"),
    (_cue_change(2, colour="red"), r"cues\[2\].*unknown \['colour'\]"),
    (_lexicon(intensity_words={"very": 0}), r"weight must be a finite number > 0"),
    (_lexicon(intensity_words={"very!": 1.0}), r"intensity word 'very!'"),
    (_lexicon(cues=[]), r"\"cues\" must be a non-empty list"),
    (_lexicon(format="lexicon"), r"\"format\" must be 'migr-rt-lexicon'"),
    (_lexicon(version=3), r"\"version\" must be an integer from 1 to 2"),
    (_lexicon(version=2, negation_words=["no", "No"]), r"negation word 'No' is listed twice"),
    (_lexicon(version=2, negation_words=["no!"]), r"negation word 'no!' must be one or more words"),
    (_lexicon(version=2, negation_words=["_____"]), r"negation word '_____' must be one or more words"),
    (_lexicon(version=2, negation_words="no"), r"\"negation_words\" must be a list of strings"),
    (_lexicon(version=2, scope_breaks=["but", "n't"]), r"scope break \"n't\" must be one or more words"),
    (_lexicon(version=2, scope_breaks=["x_y"]), r"scope break 'x_y' must be one or more words"),
    (_lexicon(version=2, negation_words=["no", "very"]), r"intensity word 'very' is also a negation word or scope"),
    (_lexicon(version=2, scope_breaks=["a bit"]), r"intensity word 'a bit' is also a negation word or scope break"),
    (_lexicon(version=2, negation_words=["no", "but"], scope_breaks=["but"]),
     r"\['but'\] cannot be negation words and scope"),
    (_lexicon(extra=1), r"unknown keys \['extra'\]"),
    ({**_cue_change(0, phrases=["fierce glare"]), "emotion_words": ["glare"]}, r"emotion word 'glare'"),
])
def test_a_lexicon_that_breaks_the_contract_is_refused_naming_the_entry(obj, message) -> None:
    with pytest.raises(LexiconError, match=message):
        lexicon_from_dict(obj, "my.json")


def test_emotion_words_are_refused_at_word_starts_only_and_a_file_can_add_more() -> None:
    fine = lexicon_from_dict(_cue_change(2, phrases=["dangerous stare"]), "x")  # "anger" inside a word is no label
    assert [c.name for c, _ in fine.find("a dangerous stare")] == ["smile"]
    with pytest.raises(LexiconError, match="'scared eyes' contains the emotion word 'scared'"):
        lexicon_from_dict({**_cue_change(2, phrases=["scared eyes"]), "emotion_words": ["furious"]}, "x")


def test_load_lexicon_names_the_file_when_it_cannot_be_read(tmp_path) -> None:
    with pytest.raises(LexiconError, match="no such lexicon file"):
        load_lexicon(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(LexiconError, match=f"{bad}: not a readable JSON lexicon"):
        load_lexicon(bad)
    bad.write_text("[]")
    with pytest.raises(LexiconError, match=f"{bad}: a lexicon is a JSON object"):
        load_lexicon(bad)
    bad.write_text('{"format": "migr-rt-lexicon", "version": 1, "cues": [{"name": "a", "modality": "visual", '
                   '"phrases": ["scowl"], "support": {"angry": 1, "angry": 0.1}}]}')
    with pytest.raises(LexiconError, match=r"bad.json: keys \['angry'\] appear twice"):
        load_lexicon(bad)
    good = tmp_path / "mine.json"
    obj = _lexicon()
    del obj["name"]
    good.write_text(json.dumps(obj))
    assert load_lexicon(good).name == "mine"  # the file's stem when it names none


def test_check_labels_refuses_a_phrase_naming_a_label_and_warns_what_it_cannot_judge() -> None:
    small = lexicon_from_dict(_lexicon(), "x")
    warnings = small.check_labels(DFEW_LABELS)
    assert not any("not labels" in w for w in warnings)
    assert {w.split("'")[3] for w in warnings if "argues most" in w} == {"fear", "neutral", "sad", "surprise"}
    # a lexicon written for more labels than the model has: its extra support is reported, never counted
    assert any("['surprise']" in w and "not labels" in w for w in small.check_labels(("angry", "disgust", "happy")))
    calm = lexicon_from_dict(_cue_change(2, phrases=["calm smile"]), "x")  # fine for DFEW, not for RAVDESS
    calm.check_labels(DFEW_LABELS)
    with pytest.raises(LexiconError, match="'calm smile' contains the emotion word 'calm'"):
        calm.check_labels(DFEW_LABELS + ("calm",))
    assert LEXICON.check_labels(DFEW_LABELS) == []


# ------------------------------------------------------------------------------------------------ reading text


def test_find_reads_every_phrase_alias_case_spacing_and_intensity_word() -> None:
    small = lexicon_from_dict(_lexicon(), "x")
    found = [(c.name, w) for c, w in small.find("A bit  BROWS drawn\nlow, very shouting; a smile, a forced smile.")]
    assert found == [("scowl", 0.4), ("shout", 1.0), ("smile", 1.0), ("forced_smile", 1.0)]
    assert small.find("smiles and unsmile") == []  # whole words only
    assert [c.name for c, _ in small.find("a forced smile")] == ["forced_smile"]  # the longer phrase wins
    text = "very scowl then smile"
    assert [(text[a:b], c.name) for a, b, c, _ in small.spans(text)] == [("very scowl", "scowl"), ("smile", "smile")]


def test_case_insensitive_spellings_that_lower_differently_are_read_not_crashed_on() -> None:
    # Python's case-insensitive matching takes "ſ" for "s" and a dotless "ı" for "i"; lower() does not
    for text in ("raiſed brows", "raısed brows", "ſlightly lowered brows", "RAISED BROWS"):
        assert len(LEXICON.find(text)) == 1, text
    assert LEXICON.find("ſlightly lowered brows")[0][1] == INTENSITY_WORDS["slightly"]
    assert CueJudge().implied_emotion("raiſed brows") == "surprise"


def test_lexicons_and_judges_copy_and_pickle() -> None:
    import copy
    import pickle

    example = load_lexicon(EXAMPLE)
    assert pickle.loads(pickle.dumps(example)) == example
    judge = copy.deepcopy(CueJudge(DFEW_LABELS, example))
    assert judge.lexicon == example and judge.implied_emotion("intensely brows pulled down") == "angry"


def test_content_decides_equality_not_the_name_and_json_round_trips() -> None:
    a = lexicon_from_dict(_lexicon(), "x")
    b = lexicon_from_dict(_lexicon(name="renamed"), "y")
    assert a == b and a.digest == b.digest and hash(a) == hash(b)
    assert a != lexicon_from_dict(_cue_change(3, support={"angry": 0.8}), "z")
    assert a == lexicon_from_dict(_cue_change(0, phrases=["Scowl", "brows  drawn LOW"]), "w")  # read the same way
    back = lexicon_from_dict(json.loads(LEXICON.to_json()), "builtin.json")
    assert back == LEXICON and back.name == "builtin"
    assert [c.name for c in back.cues] == [c.name for c in CUES]


def test_the_example_lexicon_reads_a_paraphrase_as_the_builtin_vocabulary_reads_the_original() -> None:
    example = load_lexicon(EXAMPLE)
    assert example.check_labels(DFEW_LABELS) == []
    for cue in CUES:
        for word in (None, *INTENSITY_WORDS):
            original = cue.phrase if word is None else f"{word} {cue.phrase}"
            said = translate(f"the face shows {original}.", LEXICON, example)
            assert LEXICON.find(said) == [], said  # none of the built-in words are left
            assert CueJudge(lexicon=example).emotion_scores(said) == CueJudge().emotion_scores(original), said
            assert [c.name for c, _ in example.find(said)] == [cue.name]


# ------------------------------------------------------------------------------------------------ negation


@pytest.mark.parametrize("text,stated", [
    ("no lowered brows", []),
    ("Without a trembling voice", []),
    ("there isn't a trembling voice; there isn\u2019t a loud voice", []),
    ("not slightly raised brows", []),  # the intensity word belongs to the negated phrase
    ("neither raised brows nor widened eyes", []),
    ("no lowered brows or narrowed eyes", []),  # a phrase in between counts as one word of the scope
    ("no sign of any raised brows", []),  # four words between: inside the window
    ("no sign at all of any kind of raised brows", ["brows_raised"]),  # seven: outside it
    ("no lowered brows, narrowed eyes", ["eyes_narrowed"]),  # punctuation ends the scope
    ("no lowered brows and narrowed eyes", ["eyes_narrowed"]),
    ("no lowered brows but clearly narrowed eyes", ["eyes_narrowed"]),
    ("no lowered brows\nnarrowed eyes", ["eyes_narrowed"]),
    ("not only raised brows but widened eyes", ["brows_raised", "eyes_wide"]),  # not a negation
    ("nothing but raised brows", ["brows_raised"]),
    ("knotted lowered brows, a notable trembling voice", ["brows_lowered", "voice_trembling"]),  # whole words only
    ("no even and steady voice or trembling voice", []),  # "and" inside a phrase is no break
    ("no lowered brows or narrowed eyes or trembling voice or loud voice", []),  # a list goes on negating
    ("no lowered brows or narrowed eyes, loud voice", ["voice_loud"]),
    ("without lowered brows he shows narrowed eyes", ["eyes_narrowed"]),  # a negated phrase ends the window
    ("no lowered brows here so the face shows narrowed eyes then a loud voice", ["eyes_narrowed", "voice_loud"]),
    ("no lowered brows\uff08narrowed eyes\uff09", ["eyes_narrowed"]),
    ("no lowered brows--narrowed eyes", ["eyes_narrowed"]),
    ("isn\u2018t a loud voice", []),
    ("NO LOWERED BROWS", []),
    ("it cannot be lowered brows", []),
    ("a lack of narrowed eyes; an absence of lowered brows; free of trembling voice", []),
    ("not merely narrowed eyes", ["eyes_narrowed"]),
    ("no lowered brows (narrowed eyes)", ["eyes_narrowed"]),
    ("no lowered brows - narrowed eyes", ["eyes_narrowed"]),  # a hyphen between spaces is a dash
    ("no well-defined lowered brows", []),  # one inside a word is not
    ("no lowered brows\u2026 narrowed eyes", ["eyes_narrowed"]),
    ("no lowered brows\uff0cnarrowed eyes", ["eyes_narrowed"]),
    ("isn`t a loud voice, isn\u02bct a quiet voice", []),
])
def test_a_negated_cue_is_not_stated(text, stated) -> None:
    assert [c.name for c, _ in LEXICON.find(text)] == stated
    every = LEXICON.statements(text)
    assert [st.negated for st in every] == [st.cue.name not in stated for st in every]
    assert [(a, b) for a, b, _, _ in LEXICON.spans(text)] == [(st.start, st.end) for st in every if not st.negated]


def test_the_negation_window_is_five_words() -> None:
    filler = ["of", "any", "sort", "whatsoever", "here", "now"]
    for k in range(len(filler) + 1):
        text = " ".join(["no", *filler[:k], "lowered brows"])
        assert bool(LEXICON.find(text)) == (k > NEGATION_WINDOW), text
    assert NEGATION_WINDOW == 5


def test_a_negation_closing_one_segment_does_not_reach_the_next() -> None:
    text = ("<think><visual>slightly raised cheeks, no lowered brows</visual><audio>strongly loud voice</audio>"
            "</think><answer>angry</answer>")
    parsed = parse_trace(text, DFEW_LABELS)
    plain = parse_trace(text.replace(", no lowered brows", ""), DFEW_LABELS)
    assert CueJudge().implied_emotion(parsed.explanation) == CueJudge().implied_emotion(plain.explanation) == "angry"
    ctx = [RewardContext("angry", DFEW_LABELS, "audio", ("visual", "audio"),
                         {"visual": frozenset({"cheeks_raised"}), "audio": frozenset({"voice_loud"})})] * 2
    _, terms = score([text, text.replace(", no lowered brows", "")], ctx, RewardWeights())
    assert float(terms["consistency"][0]) == float(terms["consistency"][1]) == 1.0
    # the judge reads each part on its own: no phrase is assembled across two segments either
    split = parse_trace("<think><visual>raised cheeks, strongly lowered</visual><audio>brows</audio></think>"
                        "<answer>happy</answer>", DFEW_LABELS)
    assert CueJudge().implied_emotion(split.explanation.replace("\n", " ")) == "angry"
    assert judged_emotion(CueJudge(), split) == "happy"


def test_words_inside_a_phrase_are_neither_negations_nor_breaks() -> None:
    own = lexicon_from_dict(_cue_change(2, phrases=["smile", "no eye contact"]), "x")
    assert [(st.cue.name, st.negated) for st in own.statements("no eye contact")] == [("smile", False)]
    assert [(st.cue.name, st.negated) for st in own.statements("without no eye contact")] == [("smile", True)]
    assert [(st.cue.name, st.negated) for st in own.statements("no eye contact or scowl")] == [("smile", False),
                                                                                              ("scowl", False)]


def test_a_file_sets_its_own_negation_words_and_older_files_get_the_defaults() -> None:
    v1 = lexicon_from_dict(_lexicon(), "x")
    assert v1.negation_words == NEGATION_WORDS and v1.scope_breaks == SCOPE_BREAKS
    assert v1.find("no scowl") == [] and v1.find("kein scowl") != []
    german = lexicon_from_dict(_lexicon(version=2, negation_words=["kein", "ohne"], scope_breaks=["aber"]), "x")
    assert german.find("kein scowl") == [] and german.find("ohne scowl") == []
    assert [c.name for c, _ in german.find("no scowl")] == ["scowl"]
    assert [c.name for c, _ in german.find("kein scowl aber smile")] == ["smile"]
    off = lexicon_from_dict(_lexicon(version=2, negation_words=[]), "x")
    assert [c.name for c, _ in off.find("no scowl, isn't smile")] == ["scowl", "smile"]
    assert len({v1.digest, german.digest, off.digest}) == 3  # what reads text differently is another lexicon
    for lexicon in (v1, german, off):
        assert lexicon_from_dict(json.loads(lexicon.to_json()), "y") == lexicon
        import pickle
        back = pickle.loads(pickle.dumps(lexicon))
        assert back == lexicon and back.negation_words == lexicon.negation_words
        assert back.scope_breaks == lexicon.scope_breaks
    # the order of a list does not change how text is read, so it is not part of the content
    swapped = lexicon_from_dict(_lexicon(version=2, negation_words=["ohne", "kein"], scope_breaks=["aber"]), "x")
    assert swapped == german
    with pytest.raises(LexiconError, match="\"negation_words\" needs \"version\": 2"):
        lexicon_from_dict(_lexicon(negation_words=["kein"]), "x")
    assert CueLexicon(v1.cues, negation_words=()).find("no scowl") != []


def test_negation_reaches_the_judge_grounding_coverage_and_descriptions() -> None:
    text = ("<think><visual>no lowered brows, clearly upturned mouth corners</visual>"
            "<audio>without a loud voice</audio><summary>no narrowed eyes</summary></think><answer>happy</answer>")
    parsed = parse_trace(text, DFEW_LABELS)
    assert CueJudge().implied_emotion(parsed.explanation) == "happy"  # read with negation ignored: angry
    shown = {"visual": ["mouth_corners_up"], "audio": []}
    assert grounding(parsed, shown) == 1.0  # the negated cues are claimed by nobody, so none is invented
    assert coverage(parsed, ["visual", "audio"]) == 0.5  # the audio segment states no audio cue
    assert misplaced_cues(parse_trace(text.replace("a loud voice", "raised cheeks"), DFEW_LABELS)) == 0
    assert described_cues({"visual": "raised cheeks, no lowered brows", "audio": ""}) == {
        "visual": ["cheeks_raised"], "audio": []}
    assert described_cues({"visual": "no lowered brows", "audio": ""}) is None  # says what is absent, not what shows


def test_a_negated_cue_changes_no_reward() -> None:
    plain = "<think><visual>clearly upturned mouth corners</visual><audio>bright timbre</audio></think><answer>happy</answer>"
    negated = plain.replace("corners</visual>", "corners, no lowered brows</visual>").replace(
        "<audio>", "<audio>without a loud voice, ")
    cues = {"visual": frozenset({"mouth_corners_up"}), "audio": frozenset({"timbre_bright"})}
    ctx = [RewardContext("happy", DFEW_LABELS, "visual", ("visual", "audio"), cues, lexicon=LEXICON)] * 2
    total, terms = score([plain, negated], ctx, RewardWeights())
    for name in ("consistency", "grounding", "coverage", "first_segment"):
        assert float(terms[name][0]) == float(terms[name][1]), name
    assert float(terms["grounding"][1]) == 1.0 and float(terms["consistency"][1]) == 1.0


@pytest.mark.parametrize("text,unread", [
    ("slightly lowered brows and a furious glare", ["furious glare"]),
    ("no lowered brows, a booming voice; the eyes look tired", ["booming voice", "eyes look tired"]),
    ("Strongly raised cheeks.", []),
    ("", []),
    ("the face: 3 s", ["face", "3 s"]),
    ("raised cheeks, 3, 42.", []),  # pieces without a letter are dropped
    ("a Booming  VOICE and raised brows", ["booming voice"]),
    ("isn't a furious glare", ["furious glare"]),
    ("no lowered brows or narrowed eyes or a furious glare", ["furious glare"]),
    ("cafe\u0301 glare, nai\u0308ve stare", ["caf\u00e9 glare", "na\u00efve stare"]),  # decomposed accents
])
def test_unread_leaves_the_clauses_a_lexicon_cannot_read(text, unread) -> None:
    assert LEXICON.unread(text) == unread


@pytest.mark.parametrize("text,unread", [
    ("rock and roll", ["rock and roll"]),  # one expression: a lexicon may list it as one phrase
    ("a salt  AND pepper beard", ["salt and pepper beard"]),
    ("salt and the pepper beard and lowered brows", ["salt and the pepper beard"]),
    ("angry and sad", ["angry", "sad"]),  # a list: no phrase may name an emotion
    ("raised cheeks, angry and tired eyes", ["angry", "tired eyes"]),
    ("furrowed brow and clenched jaw", ["furrowed brow and clenched jaw"]),  # unknown here; migr-rt data knows more
])
def test_unread_keeps_an_expression_joined_by_and_whole(text, unread) -> None:
    assert LEXICON.unread(text) == unread
    listed = LEXICON.unread("furrowed brow and clenched jaw", alone={"furrowed brow"})
    assert listed == ["furrowed brow", "clenched jaw"]


def test_data_lists_expressions_with_and_whole_and_lists_apart(tmp_path) -> None:
    root, records = synth_dfew_tree(tmp_path, n=4, seed=45)
    visual = ["a salt and pepper beard, furrowed brow and clenched jaw", "salt and pepper beard and a smile",
              "furrowed brow", "angry and sad"]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"clip_id": str(k), "visual": visual[k - 1], "audio": "rock and roll voice"})
                            + "\n" for k in range(1, len(records) + 1)))
    lexicon = tmp_path / "small.json"
    lexicon.write_text(json.dumps(_lexicon()))
    result = CliRunner().invoke(main, ["data", f"dfew:{root}?fold=1&split=train&descriptions={path}",
                                       "--lexicon", str(lexicon), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["unread_words"] == {
        "visual": [["furrowed brow", 2], ["salt and pepper beard", 2], ["angry", 1], ["clenched jaw", 1], ["sad", 1]],
        "audio": [["rock and roll voice", 4]],
    }


def test_unread_trims_the_longest_edge_word_first() -> None:
    own = lexicon_from_dict(_lexicon(version=2, intensity_words={"a little bit": 0.3, "to some extent": 0.6},
                                     negation_words=["no", "not at all"]), "x")
    assert own.unread("a little bit furious glare") == ["furious glare"]
    assert own.unread("not at all furious glare to some extent") == ["furious glare"]


def test_unread_words_are_listed_in_a_fixed_order(tmp_path) -> None:
    from migr_rt.training.data_report import lexicon_coverage
    from migr_rt.training.sources import open_source

    root, records = synth_dfew_tree(tmp_path, n=3, seed=44)
    clauses = ["tense jaw", "tight lips", "pale skin", "clenched fists", "wide stance", "flat gaze", "stiff neck",
               "cold sweat", "dry mouth"]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"clip_id": str(k), "visual": ", ".join(clauses[::-1] if k % 2 else clauses),
                                        "audio": "loud voice, harsh tone" if k < 3 else "harsh tone"}) + "\n"
                            for k in range(1, len(records) + 1)))
    read = lexicon_coverage(open_source(f"dfew:{root}?fold=1&split=train&descriptions={path}"), LEXICON)
    assert read.most_unread() == {"visual": [[c, 3] for c in sorted(clauses)[:8]], "audio": [["harsh tone", 3]]}
    assert read.described == 3 and read.readable == 0  # a visual description with no cue phrase is not read


def test_translate_restates_negated_cues_and_keeps_the_negation() -> None:
    example = load_lexicon(EXAMPLE)
    said = translate("no lowered brows, clearly loud voice", LEXICON, example)
    assert said.startswith("no brows pulled down, markedly ")
    assert [(st.cue.name, st.negated) for st in example.statements(said)] == [("brows_lowered", True),
                                                                              ("voice_loud", False)]


# ------------------------------------------------------------------------------------------------ judging with it

PARAPHRASED = ("<think><visual>intensely brows pulled down, markedly squinting eyes</visual>"
               "<audio>markedly booming voice</audio><summary>the visual evidence decides: brows pulled down"
               "</summary></think><answer>angry</answer>")
ORIGINAL = ("<think><visual>strongly lowered brows, clearly narrowed eyes</visual>"
            "<audio>clearly loud voice</audio><summary>the visual evidence decides: lowered brows"
            "</summary></think><answer>angry</answer>")


def test_judge_grounding_coverage_and_misfiling_read_the_lexicon_they_are_given() -> None:
    example = load_lexicon(EXAMPLE)
    assert translate(ORIGINAL, LEXICON, example) == PARAPHRASED
    parsed = parse_trace(PARAPHRASED, DFEW_LABELS)
    shown = {"visual": ["brows_lowered", "eyes_narrowed"], "audio": ["voice_loud"]}
    assert CueJudge(DFEW_LABELS).implied_emotion(parsed.explanation) is None  # other words: no cue it knows
    assert CueJudge(DFEW_LABELS, example).implied_emotion(parsed.explanation) == "angry"
    assert grounding(parsed, shown) is None and grounding(parsed, shown, example) == 1.0
    assert grounding(parsed, {"visual": ["brows_lowered"], "audio": []}, example) == pytest.approx(1 / 3)
    assert coverage(parsed, ["visual", "audio"]) == 0.0 and coverage(parsed, ["visual", "audio"], example) == 1.0
    misfiled = parse_trace(PARAPHRASED.replace("squinting eyes", "booming voice"), DFEW_LABELS)
    assert misplaced_cues(misfiled) == 0 and misplaced_cues(misfiled, example) == 1
    assert described_cues({"visual": "mildly smile", "audio": ""}) is None
    assert described_cues({"visual": "mildly smile", "audio": ""}, example) == {"visual": ["mouth_corners_up"],
                                                                                "audio": []}


def test_every_reward_scores_a_paraphrase_with_its_lexicon_as_the_original_with_the_builtin_one() -> None:
    example = load_lexicon(EXAMPLE)
    originals = [
        ORIGINAL,
        ORIGINAL.replace("clearly narrowed eyes", "clearly loud voice"),  # misfiled and repeated
        ORIGINAL.replace("<answer>angry", "<answer>happy").replace("<visual>", "<audio>x</audio><visual>"),
        "<think><visual>slightly upturned mouth corners</visual></think><answer>happy</answer>",
    ]
    said = [translate(t, LEXICON, example) for t in originals]
    assert said[0] == PARAPHRASED
    cues = {"visual": frozenset({"brows_lowered", "eyes_narrowed"}), "audio": frozenset({"voice_loud"})}

    def contexts(lexicon: CueLexicon) -> list[RewardContext]:
        return [RewardContext("angry", DFEW_LABELS, "visual", ("visual", "audio"), cues, lexicon=lexicon)] * len(originals)

    base_total, base_terms = score(originals, contexts(LEXICON), RewardWeights())
    total, terms = score(said, contexts(example), RewardWeights())
    assert torch.equal(total, base_total)
    for name in base_terms:
        assert torch.equal(terms[name], base_terms[name]), name
    assert base_terms["grounding"][0] == 1.0 and base_terms["consistency"][0] == 1.0
    # read with the built-in words instead, the paraphrase earns no cue term at all
    _, blind = score(said, contexts(LEXICON), RewardWeights())
    for name in ("consistency", "grounding", "coverage", "coherence", "first_segment"):
        assert float(blind[name].sum()) == 0.0, name


def test_shown_cues_take_the_corpus_record_only_with_the_builtin_lexicon() -> None:
    cfg = tiny_config()
    said = {"visual": "mildly smile", "audio": "intensely booming voice"}
    windows = WindowSet(
        torch.zeros(1, cfg.num_frames, cfg.face_size, cfg.face_size, 3, dtype=torch.uint8),
        torch.zeros(1, cfg.audio_samples, dtype=torch.float16), torch.ones(1, 2, dtype=torch.bool),
        torch.zeros(1, dtype=torch.long), torch.full((1, 2), -1), torch.zeros(1, dtype=torch.bool), ["w0"], [said],
        [{"cues": {"visual": ["brows_lowered"], "audio": []}}],
    )
    example = load_lexicon(EXAMPLE)
    assert windows.shown_cues(0) == {"visual": ["brows_lowered"], "audio": []}  # the record, in built-in names
    assert windows.shown_cues(0, example) == {"visual": ["mouth_corners_up"], "audio": ["voice_loud"]}
    assert windows.shown_intensities(0, example) == {"mouth_corners_up": 0.35, "voice_loud": 1.0}
    assert windows.shown_intensities(0) is None  # the built-in words read neither description
    ctx = reward_contexts(windows, DFEW_LABELS, ["visual"], example)[0]
    assert ctx.lexicon == example and ctx.vocabulary
    assert ctx.actual_cues == {"visual": frozenset({"mouth_corners_up"}), "audio": frozenset({"voice_loud"})}


# ------------------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def own_words(tmp_path_factory):
    """A synthetic corpus laid out as DFEW twice: described in the example lexicon's words, and in the built-in ones."""
    tmp = tmp_path_factory.mktemp("ownwords")
    root, records = synth_dfew_tree(tmp, n=16, seed=43)
    example = load_lexicon(EXAMPLE)
    specs = {}
    for name, words in (("paraphrased", example), ("builtin", LEXICON)):
        path = tmp / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"clip_id": str(n), **{m: translate(rec[f"{m}_text"], LEXICON, words)
                                                                     for m in ("visual", "audio")}}) + "\n"
                                for n, rec in enumerate(records, start=1)))
        specs[name] = f"dfew:{root}?fold=1&split=train&descriptions={path}"
    return specs, len(records)


def test_data_reports_how_many_descriptions_a_lexicon_reads(own_words) -> None:
    specs, n = own_words
    with_it = CliRunner().invoke(main, ["data", specs["paraphrased"], "--lexicon", str(EXAMPLE), "--json"])
    assert with_it.exit_code == 0, with_it.output
    report = json.loads(with_it.output)
    assert report["vocabulary_described"] == report["described"] == n and report["unreadable_example"] is None
    assert "paraphrase" in report["lexicon"] and report["unread_words"] == {"visual": [], "audio": []}
    without = CliRunner().invoke(main, ["data", specs["paraphrased"]])
    assert without.exit_code == 0, without.output
    assert f"({0} readable by CueLexicon(name='builtin'" in without.output
    assert "not readable, e.g. dfew/00001" in without.output and "docs/lexicon.md" in without.output
    # what the built-in words leave unread is what a lexicon for these descriptions must list
    report = json.loads(CliRunner().invoke(main, ["data", specs["paraphrased"], "--json"]).output)
    example = load_lexicon(EXAMPLE)
    for modality in ("visual", "audio"):
        listed = report["unread_words"][modality]
        assert 0 < len(listed) <= 8 and all(0 < k <= n for _, k in listed)
        assert [k for _, k in listed] == sorted((k for _, k in listed), reverse=True)
        for words, _ in listed:  # each is a paraphrased cue, read by the example lexicon
            assert len(example.find(words)) == 1, words
    assert "visual words the lexicon does not read (clips): " in without.output


def test_data_counts_negated_cue_statements_and_does_not_read_them_as_shown(own_words, tmp_path) -> None:
    specs, n = own_words
    spec, _, path = specs["builtin"].rpartition("&descriptions=")
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    negated = tmp_path / "negated.jsonl"
    negated.write_text("".join(json.dumps({**r, "visual": r["visual"] + "; no dropped jaw"}) + "\n" for r in rows))
    result = CliRunner().invoke(main, ["data", f"{spec}&descriptions={negated}", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["negated_statements"] == n and report["vocabulary_described"] == n
    shown = CliRunner().invoke(main, ["data", f"{spec}&descriptions={negated}"])
    assert f"{n} cue statements are negated" in shown.output
    for r in rows:
        assert described_cues({"visual": r["visual"] + "; no dropped jaw", "audio": r["audio"]}) == \
            described_cues({"visual": r["visual"], "audio": r["audio"]})


def test_training_refuses_a_lexicon_that_reads_none_of_the_descriptions(own_words, tmp_path) -> None:
    specs, n = own_words
    result = CliRunner().invoke(main, ["train", "--recipe", "migr", "--smoke", "--data", specs["builtin"],
                                       "--out", str(tmp_path / "m"), "--lexicon", str(EXAMPLE)])
    assert result.exit_code == 1
    assert f"reads the cues of none of the {n} described clips" in result.output
    assert not (tmp_path / "m").exists() and not (tmp_path / "m.work").exists()  # refused before any work
    base = CliRunner().invoke(main, ["train", "--recipe", "base", "--data", specs["builtin"],
                                     "--out", str(tmp_path / "b"), "--lexicon", str(EXAMPLE)])
    assert base.exit_code == 2 and "--lexicon applies to baseline and migr only, not to --recipe base" in base.output


def test_a_lexicon_trains_with_migr_and_judges_eval_the_runtime_and_exports(own_words, tmp_path) -> None:
    from migr_rt.export.onnx_export import export_onnx

    from migr_rt.model import load_checkpoint
    from migr_rt.predict import Predictor
    from migr_rt.training.base_recipe import load_or_extract
    from migr_rt.training.sources import open_source

    specs, _ = own_words
    example = load_lexicon(EXAMPLE)
    out, cache = tmp_path / "migr", tmp_path / "cache"
    args = ["train", "--recipe", "migr", "--smoke", "--data", specs["paraphrased"], "--out", str(out),
            "--cache-dir", str(cache)]
    result = CliRunner().invoke(main, args + ["--lexicon", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert stored_lexicon(out) == example and (out / LEXICON_FILE).is_file()
    assert json.loads((out / "metrics.json").read_text())["lexicon"]["digest"] == example.digest

    # GRPO's cue terms applied on every clip: the lexicon reads each paraphrased description
    model, _ = load_checkpoint(out)
    windows = load_or_extract(open_source(specs["paraphrased"]), model.config, cache, None)
    ctxs = reward_contexts(windows, tuple(model.config.labels), [None] * len(windows), stored_lexicon(out))
    assert all(c.vocabulary and c.actual_cues for c in ctxs)

    # an edited lexicon file is a different run: resuming the work folder with it is refused
    edited = tmp_path / "edited.json"
    obj = json.loads(EXAMPLE.read_text())
    obj["cues"][0]["support"]["angry"] = 0.5
    edited.write_text(json.dumps(obj))
    again = CliRunner().invoke(main, args + ["--lexicon", str(edited)])
    assert again.exit_code == 1 and "different config" in again.output

    # eval judges with the checkpoint's lexicon unless told otherwise
    for extra, name, lexicon in (([], "own", example), (["--lexicon", str(edited)], "edited", load_lexicon(edited))):
        ev = CliRunner().invoke(main, ["eval", "--checkpoint", str(out), "--data", specs["paraphrased"],
                                       "--out", str(tmp_path / f"ev-{name}"), "--cache-dir", str(cache),
                                       "--max-new-tokens", "24"] + extra)
        assert ev.exit_code == 0, ev.output
        assert f"digest={lexicon.digest[:12]}" in json.loads((tmp_path / f"ev-{name}" / "eval.json").read_text())["judge"]

    # the runtime's verdicts read the same words, from the checkpoint and from its ONNX export
    assert Predictor(out, backend="torch").judge.lexicon == example
    manifest = export_onnx(out, tmp_path / "onnx", precision="fp32", check_parity=False)
    assert lexicon_from_dict(manifest.extra["lexicon"], "manifest") == example
    assert Predictor(tmp_path / "onnx", backend="onnxruntime").judge.lexicon == example


def test_folders_without_a_lexicon_are_judged_with_the_builtin_vocabulary(bundled_onnx, tmp_path) -> None:
    from migr_rt.artifact import MANIFEST, read_manifest
    from migr_rt.bundled import default_checkpoint
    from migr_rt.predict import Predictor

    assert not (default_checkpoint() / LEXICON_FILE).exists()  # trained before lexicons existed
    assert stored_lexicon(default_checkpoint()) == LEXICON
    assert lexicon_from_dict(read_manifest(bundled_onnx).extra["lexicon"], "manifest") == LEXICON
    assert Predictor(bundled_onnx, backend="onnxruntime").judge.lexicon == LEXICON
    # an artifact exported before lexicons existed has none in its manifest; a file beside it is not its record
    old = tmp_path / "old-artifact"
    shutil.copytree(bundled_onnx, old)
    manifest = json.loads((old / MANIFEST).read_text())
    del manifest["extra"]["lexicon"]
    del manifest["content_sha256"]  # nor was its manifest sealed
    (old / MANIFEST).write_text(json.dumps(manifest))
    shutil.copy(EXAMPLE, old / LEXICON_FILE)
    assert stored_lexicon(old) == LEXICON


def test_a_checkpoint_lexicon_that_its_checksums_do_not_vouch_for_is_refused(tiny_model, tmp_path) -> None:
    from migr_rt.model import CheckpointError, save_checkpoint

    model, tok = tiny_model
    example = load_lexicon(EXAMPLE)
    ckpt = save_checkpoint(model, tok, tmp_path / "ckpt", extra_files={LEXICON_FILE: example.to_json()})
    assert stored_lexicon(ckpt) == example
    edited = json.loads((ckpt / LEXICON_FILE).read_text())
    edited["cues"][0]["support"] = {"happy": 1.0}
    (ckpt / LEXICON_FILE).write_text(json.dumps(edited))
    with pytest.raises(CheckpointError, match="SHA-256 differs"):
        stored_lexicon(ckpt)
    plain = save_checkpoint(model, tok, tmp_path / "plain")
    shutil.copy(EXAMPLE, plain / LEXICON_FILE)  # added after saving: no checksum records it
    with pytest.raises(CheckpointError, match="not recorded in"):
        stored_lexicon(plain)


def test_evaluation_refuses_a_judge_and_a_lexicon_that_read_different_words() -> None:
    from migr_rt.training.evaluation import window_record

    example = load_lexicon(EXAMPLE)
    with pytest.raises(ValueError, match="different words"):
        window_record(PARAPHRASED, id="w", label="angry", labels=DFEW_LABELS, visible=["visual"],
                      judge=CueJudge(DFEW_LABELS), lexicon=example)
    record = window_record(PARAPHRASED, id="w", label="angry", labels=DFEW_LABELS, visible=["visual", "audio"],
                           meta={"cues": {"visual": ["brows_lowered", "eyes_narrowed"], "audio": ["voice_loud"]}},
                           judge=CueJudge(DFEW_LABELS, example))
    assert record.implied == "angry" and record.grounding == 1.0 and record.coverage == 1.0


def test_a_copied_cue_keeps_its_aliases() -> None:
    import copy

    cue = Cue("smile", "visual", "smile", {"happy": 1.0}, ("grin",))
    assert cue.phrases == ("smile", "grin")
    assert copy.deepcopy(cue).aliases == ("grin",)
