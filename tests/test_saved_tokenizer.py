"""SavedTokenizer decodes exactly as transformers' PreTrainedTokenizerFast does, on the real tokenizer files."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

import migr_rt
from migr_rt.model.config import MigrConfig
from migr_rt.model.saved_tokenizer import SavedTokenizer
from migr_rt.model.spec import ModelSpec
from migr_rt.rationale import rationale_text
from migr_rt.traces import build_trace
from migr_rt.training.synth.cues import CUES, INTENSITY_WORDS

BUNDLED = Path(migr_rt.__file__).parent / "assets" / "default"


def hf_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)


@pytest.fixture(scope="module")
def bundled():
    return hf_tokenizer(BUNDLED), SavedTokenizer.from_folder(BUNDLED)


def assert_decodes_alike(hf, ours: SavedTokenizer, sequences) -> int:
    compared = 0
    for ids in sequences:
        assert ours.decode(ids) == hf.decode(ids), ids
        assert ours.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True), ids
        compared += 1
    return compared


def random_sequences(vocab: int, count: int, seed: int, longest: int = 64, beyond: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(vocab + beyond) for _ in range(rng.randrange(longest + 1))] for _ in range(count)]


def rationales(labels: list[str], count: int, seed: int) -> list[str]:
    """Target rationales as training writes them: cue statements per modality, a summary, the answer."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        descriptions = {}
        for modality in ("visual", "audio"):
            cues = rng.sample([c for c in CUES if c.modality == modality], rng.randrange(1, 4))
            descriptions[modality] = ", ".join(f"{rng.choice(list(INTENSITY_WORDS))} {c.phrase}" for c in cues)
        order = rng.sample(["visual", "audio"], 2)
        out.append(build_trace(descriptions, order, rng.choice([None, *order]), rng.choice(labels)))
    return out


def test_random_ids_over_the_whole_vocabulary(bundled):
    hf, ours = bundled
    assert len(ours) == len(hf) == 615
    # a few ids past the vocabulary too: both drop them
    assert assert_decodes_alike(hf, ours, random_sequences(len(hf), 3000, seed=0, beyond=5)) == 3000


def test_structural_and_label_tokens_among_words(bundled):
    hf, ours = bundled
    config = ModelSpec.from_pretrained(BUNDLED)
    marked = list(config.special_token_ids.values()) + list(config.label_token_ids)
    rng = random.Random(1)
    sequences = [[rng.choice(marked) if rng.random() < 0.4 else rng.randrange(len(hf))
                  for _ in range(rng.randrange(40))] for _ in range(1000)]
    sequences += [[i] for i in marked] + [marked, config.prompt_token_ids + config.label_token_ids]
    assert_decodes_alike(hf, ours, sequences)
    assert ours.decode(config.label_token_ids) == "".join(config.labels)  # labels show; they are not special
    assert ours.decode([config.special_token_ids["think_start"]], skip_special_tokens=True) == ""


def test_real_rationales_whole_and_cut_anywhere(bundled):
    hf, ours = bundled
    texts = rationales(ModelSpec.from_pretrained(BUNDLED).labels, 300, seed=2)
    texts += ["café naïve — 😀 “quoted” and ünïcödé", "  leading spaces\tand\nnewlines  ", ""]
    rng = random.Random(3)
    sequences = []
    for text in texts:
        ids = hf.encode(text, add_special_tokens=False)
        assert ours.encode(text) == ids
        start = rng.randrange(len(ids) + 1)
        sequences += [ids, ids[:start], ids[start:]]  # a cut may split a multi-byte character
    assert_decodes_alike(hf, ours, sequences)
    assert ours.decode(hf.encode(texts[0], add_special_tokens=False)) == texts[0]


def test_rationale_text_is_the_same_through_either_tokenizer(bundled):
    hf, ours = bundled
    config = MigrConfig.from_pretrained(str(BUNDLED))
    eos = config.special_token_ids["eos"]
    for text in rationales(config.labels, 50, seed=4):
        lead = "<visual>" if text.startswith("<think><visual>") else "<audio>"
        ids = hf.encode(text.removeprefix("<think>" + lead), add_special_tokens=False) + [eos]
        assert rationale_text(ours, config, ids, lead) == rationale_text(hf, config, ids, lead) == text


def with_config(tmp_path: Path, name: str, config: dict | None) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(BUNDLED / "tokenizer.json", folder)
    if config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


BASE = json.loads((BUNDLED / "tokenizer_config.json").read_text())
TOKEN = {"content": "<tok>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
         "special": True, "__type": "AddedToken"}
#: tokenizer_config.json variants that make transformers change the tokenizer at load (new special tokens),
#: or that it reads for decode (clean-up), and what it then holds beyond tokenizer.json's 615 tokens.
VARIANTS = {
    "no tokenizer_config.json": (None, 0),
    "extra tokens listed": ({**BASE, "extra_special_tokens": BASE["extra_special_tokens"] + ["<new1>", "<new2>"]}, 2),
    "older name of the list": ({**{k: v for k, v in BASE.items() if k != "extra_special_tokens"},
                                "additional_special_tokens": ["<think>", "<new>"]}, 1),
    "named tokens": ({**BASE, "mask_token": "<mask>", "cls_token": "<cls>"}, 2),
    "model-specific token": ({**BASE, "image_token": "<img>"}, 1),
    "extra tokens by name": ({**{k: v for k, v in BASE.items() if k != "extra_special_tokens"},
                              "extra_special_tokens": {"image_token": "<img2>", "vis": "<vis>"}}, 1),
    "added_tokens_decoder": ({**BASE, "added_tokens_decoder": {
        "701": {"content": "<q>", "special": False}, "700": {"content": "<p>", "special": True},
        "598": {"content": "<think>", "special": True}}}, 2),
    "serialized bos": ({**BASE, "bos_token": {**TOKEN, "content": "<BOS>"}}, 1),
    "all in one": ({"image_token": "<img>", "audio_token": {**TOKEN, "content": "<aud2>"},
                    **{k: v for k, v in BASE.items() if k != "extra_special_tokens"}, "mask_token": "<mask>",
                    "extra_special_tokens": {"zz_token": "<zz>", "image_token": "<img3>"},
                    "added_tokens_decoder": {"700": {"content": "<p>", "special": True}}}, 5),
    "clean-up asked, BPE": ({**BASE, "clean_up_tokenization_spaces": True}, 0),
    "clean-up forced on BPE": ({**BASE, "clean_up_tokenization_spaces": True,
                                "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output": True}, 0),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_tokenizer_config_variants_load_as_transformers_loads_them(tmp_path, variant):
    config, added = VARIANTS[variant]
    folder = with_config(tmp_path, "tok", config)
    hf, ours = hf_tokenizer(folder), SavedTokenizer.from_folder(folder)
    assert len(hf) == len(ours) == 615 + added
    for i in range(615, len(hf)):  # the tokens added at load, at the same ids
        assert ours.decode([i]) == hf.decode([i]) == hf.convert_ids_to_tokens(i)
    sequences = random_sequences(len(hf), 300, seed=5, beyond=2)
    text = "hello , world . it 's <think>sad</think> do n't !"
    sequences.append(hf.encode(text, add_special_tokens=False))
    assert_decodes_alike(hf, ours, sequences)


def test_forced_clean_up_changes_the_text(tmp_path):
    # the variant above passes only if the clean-up is applied: without it the text keeps its spaces
    config, _ = VARIANTS["clean-up forced on BPE"]
    ours = SavedTokenizer.from_folder(with_config(tmp_path, "tok", config))
    ids = ours.encode("hello , world . it 's")
    assert ours.tokenizer.decode(ids) == "hello , world . it 's"
    assert ours.decode(ids) == "hello, world. it's"


def test_clean_up_applies_to_a_word_level_tokenizer(tmp_path):
    words = ["[UNK]", "hello", ",", "world", ".", "it", "'s", "n't", "do", "?"]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.decoder = decoders.WordPiece(cleanup=False)  # the clean-up under test is transformers'
    for clean_up in (True, False):
        folder = tmp_path / f"clean_up_{clean_up}"
        folder.mkdir()
        core.save(str(folder / "tokenizer.json"))
        (folder / "tokenizer_config.json").write_text(json.dumps(
            {"unk_token": "[UNK]", "clean_up_tokenization_spaces": clean_up, "tokenizer_class": "TokenizersBackend"}))
        hf, ours = hf_tokenizer(folder), SavedTokenizer.from_folder(folder)
        sequences = random_sequences(len(words), 300, seed=6, longest=12)
        assert_decodes_alike(hf, ours, sequences)
        assert (ours.decode([1, 2, 3, 4]) == "hello, world.") is clean_up


def test_missing_or_broken_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"empty/tokenizer\.json: missing"):
        SavedTokenizer.from_folder(tmp_path / "empty")
    broken = with_config(tmp_path, "broken", BASE)
    (broken / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "Nothing"}}')
    with pytest.raises(ValueError, match=r"broken/tokenizer\.json: not a tokenizers file"):
        SavedTokenizer.from_folder(broken)
    (broken / "tokenizer.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match=r"broken/tokenizer\.json: unreadable"):
        SavedTokenizer.from_folder(broken)
    bad_config = with_config(tmp_path, "bad_config", None)
    (bad_config / "tokenizer_config.json").write_text("{")
    with pytest.raises(ValueError, match=r"bad_config/tokenizer_config\.json: not a readable JSON file"):
        SavedTokenizer.from_folder(bad_config)
    (bad_config / "tokenizer_config.json").write_text("[]")
    with pytest.raises(ValueError, match=r"tokenizer_config\.json: must hold a JSON object"):
        SavedTokenizer.from_folder(bad_config)


def test_legacy_token_files_are_refused_not_ignored(tmp_path):
    # transformers merges special_tokens_map.json into the tokenizer when the config has no added_tokens_decoder
    folder = with_config(tmp_path, "legacy", BASE)
    (folder / "special_tokens_map.json").write_text(json.dumps({"mask_token": "<mask>"}))
    assert len(hf_tokenizer(folder)) == 616  # what this reader would get wrong
    with pytest.raises(ValueError, match=r"holds \['special_tokens_map\.json'\], which transformers merges"):
        SavedTokenizer.from_folder(folder)


def test_an_exported_artifact_decodes_and_reads_alike(bundled_onnx):
    from migr_rt.artifact import read_artifact

    hf, ours = hf_tokenizer(bundled_onnx), SavedTokenizer.from_folder(bundled_onnx)
    assert len(ours) == len(hf)
    assert_decodes_alike(hf, ours, random_sequences(len(hf), 500, seed=7))
    model_config = read_artifact(bundled_onnx).model_config
    spec, config = ModelSpec.from_dict(model_config), MigrConfig.from_dict(model_config)
    assert spec == ModelSpec.from_pretrained(BUNDLED)
    assert spec.text_config.vocab_size == config.text_config.vocab_size == len(hf)
    assert spec.label_token_ids == config.label_token_ids
