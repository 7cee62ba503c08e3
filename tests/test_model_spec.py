"""ModelSpec and graph_shapes: the model config's numbers without transformers, equal to MigrConfig's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from model_fixtures import TINY_TEXT
from transformers import Qwen2Config

import migr_rt
from migr_rt.model.config import DEFAULT_TEXT_CONFIG as CONFIG_DEFAULT_TEXT_CONFIG
from migr_rt.model.config import MigrConfig
from migr_rt.model.graph_shapes import graph_dims
from migr_rt.model.graphs import graph_dims as graphs_graph_dims
from migr_rt.model.spec import DEFAULT_TEXT_CONFIG, QWEN2_DEFAULTS, DecoderSpec, ModelSpec

BUNDLED = Path(migr_rt.__file__).parent / "assets" / "default"

#: Every attribute of the config the runtime reads (backends, engine, preprocess, rationale, layout, graph_dims).
MODEL_FIELDS = ("labels", "modalities", "num_frames", "face_size", "visual_channels", "visual_dim", "num_visual_tokens",
                "sample_rate", "audio_seconds", "n_fft", "hop_length", "n_mels", "f_min", "f_max", "audio_channels",
                "audio_dim", "num_audio_tokens", "special_token_ids", "label_token_ids", "prompt", "prompt_token_ids",
                "tie_word_embeddings", "num_modalities", "audio_samples", "modality_token_counts")
DECODER_FIELDS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                  "max_position_embeddings", "vocab_size", "rms_norm_eps", "tie_word_embeddings", "model_type",
                  "hidden_act")


def bundled_config() -> dict:
    return json.loads((BUNDLED / "config.json").read_text())


def assert_same(spec: ModelSpec, config: MigrConfig) -> None:
    for name in MODEL_FIELDS:
        got, want = getattr(spec, name), getattr(config, name)
        assert got == want and type(got) is type(want), name
    text, want_text = spec.text_config, config.text_config
    for name in DECODER_FIELDS:
        assert getattr(text, name) == getattr(want_text, name), f"text_config.{name}"
    head_dim = getattr(want_text, "head_dim", None) or want_text.hidden_size // want_text.num_attention_heads
    assert text.head_dim == head_dim
    assert text.rope_theta == want_text.rope_parameters["rope_theta"]
    assert text.rope_type == want_text.rope_parameters["rope_type"]


def other_decoder() -> dict:
    """A full text_config unlike the default one: no field left to a default."""
    return {"model_type": "qwen2", "hidden_size": 96, "intermediate_size": 160, "num_hidden_layers": 3,
            "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 32, "max_position_embeddings": 300,
            "vocab_size": 700, "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "hidden_act": "gelu",
            "rope_parameters": {"rope_type": "default", "rope_theta": 5000.0}, "transformers_version": "5.0"}


CASES = {
    "bundled": bundled_config,
    "empty": dict,
    "bundled via to_dict": lambda: MigrConfig.from_dict(bundled_config()).to_dict(),
    "other decoder": lambda: {**bundled_config(), "text_config": other_decoder()},
    "partial decoder (Qwen2 defaults)": lambda: {"text_config": dict(TINY_TEXT), "face_size": 32, "num_frames": 4},
    "decoder with few fields": lambda: {"text_config": {"hidden_size": 64, "num_attention_heads": 8,
                                                        "num_key_value_heads": None, "rope_theta": 20000.0}},
    "old rope spelling": lambda: {"text_config": {**DEFAULT_TEXT_CONFIG, "rope_scaling": {"type": "default"},
                                                  "rope_theta": 30000.0}},
    "other fields": lambda: {"labels": ["calm", "angry", "joy"], "label_token_ids": [5, 6, 7], "audio_seconds": 1.5,
                             "sample_rate": 8000, "f_max": 4000.0, "f_min": 0.0, "n_fft": 256, "prompt": "what?",
                             "special_token_ids": {"bos": 1, "eos": 2}, "prompt_token_ids": [3, 4],
                             "visual_channels": [8, 8, 16, 16], "num_visual_tokens": 3, "num_audio_tokens": 5},
}


@pytest.mark.parametrize("case", CASES)
def test_spec_equals_migr_config(case):
    d = CASES[case]()
    assert_same(ModelSpec.from_dict(json.loads(json.dumps(d))), MigrConfig.from_dict(json.loads(json.dumps(d))))


def test_spec_defaults_are_migr_config_defaults():
    assert_same(ModelSpec(), MigrConfig())
    assert ModelSpec.from_dict({}) == ModelSpec()
    assert DecoderSpec.from_dict(None) == ModelSpec().text_config


def test_qwen2_defaults_are_transformers_own():
    # a text_config dict that leaves a field out gets it from transformers' Qwen2Config: the spec copies them
    defaults = Qwen2Config()
    for name, value in QWEN2_DEFAULTS.items():
        assert getattr(defaults, name) == value, name
    assert defaults.rope_parameters["rope_theta"] == DecoderSpec.from_dict({}).rope_theta


def test_default_text_config_lives_in_the_spec_and_config_reexports_it():
    assert CONFIG_DEFAULT_TEXT_CONFIG is DEFAULT_TEXT_CONFIG


def test_unknown_keys_are_ignored():
    d = {**bundled_config(), "something_new": 1, "architectures": ["X"], "model_type": "migr"}
    d["text_config"] = {**d["text_config"], "some_decoder_option": True}
    assert ModelSpec.from_dict(d) == ModelSpec.from_dict(bundled_config())


def test_the_bundled_spec_has_the_bundled_numbers():
    # not only equal to MigrConfig: the numbers the file holds (a field silently left at its default would differ)
    d = bundled_config()
    spec = ModelSpec.from_dict(d)
    assert spec.text_config.vocab_size == d["text_config"]["vocab_size"] == 615
    assert spec.label_token_ids == d["label_token_ids"] and spec.special_token_ids == d["special_token_ids"]
    assert spec.text_config.head_dim == 32 and spec.audio_samples == 32000


def test_from_pretrained_reads_config_json_and_names_it(tmp_path):
    assert ModelSpec.from_pretrained(BUNDLED) == ModelSpec.from_dict(bundled_config())
    with pytest.raises(FileNotFoundError, match=r"config\.json: missing"):
        ModelSpec.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json: not a readable JSON config"):
        ModelSpec.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"num_frames": 0}))
    with pytest.raises(ValueError, match=r"config\.json: MigrConfig\.num_frames must be a positive integer, got 0"):
        ModelSpec.from_pretrained(tmp_path)


def with_decoder(**fields) -> dict:
    return {"text_config": {**DEFAULT_TEXT_CONFIG, **fields}}


INVALID = {
    "num_frames 0": ({"num_frames": 0}, "MigrConfig.num_frames must be a positive integer, got 0"),
    "num_frames str": ({"num_frames": "8"}, "MigrConfig.num_frames must be a positive integer, got '8'"),
    "num_frames bool": ({"num_frames": True}, "MigrConfig.num_frames must be a positive integer, got True"),
    "hop_length float": ({"hop_length": 160.0}, "MigrConfig.hop_length must be a positive integer, got 160.0"),
    "face_size": ({"face_size": 40}, "MigrConfig.face_size must be a multiple of 16"),
    "audio_seconds": ({"audio_seconds": 0}, "MigrConfig.audio_seconds must be positive, got 0"),
    "audio_seconds str": ({"audio_seconds": "2"}, "MigrConfig.audio_seconds must be positive, got '2'"),
    "f_max": ({"f_max": 9000.0}, "MigrConfig needs 0 <= f_min < f_max <= sample_rate/2, got 50.0, 9000.0"),
    "f_min": ({"f_min": -1.0}, "MigrConfig needs 0 <= f_min < f_max"),
    "labels dup": ({"labels": ["happy", "happy"]}, "duplicate labels in label set: ['happy']"),
    "labels space": ({"labels": ["very happy"]}, "invalid label 'very happy'"),
    "labels empty": ({"labels": []}, "label set is empty"),
    "modalities": ({"modalities": ["audio", "visual"]}, "modalities must be ['visual', 'audio']"),
    "label ids": ({"label_token_ids": [1, 2]}, "MigrConfig has 7 labels but 2 label token ids"),
    "hidden_size": (with_decoder(hidden_size=0),
                    "MigrConfig.text_config.hidden_size must be a positive integer, got 0"),
    "vocab str": (with_decoder(vocab_size="x"),
                  "MigrConfig.text_config.vocab_size must be a positive integer, got 'x'"),
    "layers": (with_decoder(num_hidden_layers=-1), "MigrConfig.text_config.num_hidden_layers must be a positive"),
    "positions": (with_decoder(max_position_embeddings=None),
                  "MigrConfig.text_config.max_position_embeddings must be a positive integer, got None"),
    "head_dim": (with_decoder(head_dim=0), "MigrConfig.text_config.head_dim must be a positive integer, got 0"),
    "gqa": (with_decoder(num_key_value_heads=4), "num_attention_heads must be a multiple of num_key_value_heads"),
    "gqa by default": ({"text_config": {"num_attention_heads": 6}},
                       "num_attention_heads must be a multiple of num_key_value_heads (grouped-query attention), "
                       "got 6 and 32"),
    "eps": (with_decoder(rms_norm_eps=1), "MigrConfig.text_config.rms_norm_eps must be a positive float, got 1"),
    "tie": (with_decoder(tie_word_embeddings="yes"),
            "MigrConfig.text_config.tie_word_embeddings must be true or false"),
    "rope": (with_decoder(rope_theta=-5.0), "MigrConfig.text_config.rope_theta must be a positive number, got -5.0"),
    "first error wins": ({"num_frames": 0, "labels": [], **with_decoder(hidden_size=0)},
                         "MigrConfig.text_config.hidden_size must be"),
}


@pytest.mark.parametrize("case", INVALID)
def test_spec_and_migr_config_refuse_the_same_dicts_alike(case):
    d, message = INVALID[case]
    with pytest.raises(ValueError) as from_config:
        MigrConfig.from_dict(json.loads(json.dumps(d)))
    with pytest.raises(ValueError) as from_spec:
        ModelSpec.from_dict(json.loads(json.dumps(d)))
    assert message in str(from_config.value)
    assert str(from_spec.value) == str(from_config.value)


def test_text_config_of_the_wrong_type_is_refused_by_both():
    with pytest.raises(TypeError, match="MigrConfig.text_config must be a dict"):
        MigrConfig.from_dict({"text_config": 5})
    with pytest.raises(TypeError, match="MigrConfig.text_config must be a dict"):
        ModelSpec.from_dict({"text_config": 5})


def test_another_decoder_type_needs_every_field():
    # MigrConfig asks transformers for a llama's defaults; the spec knows Qwen2's only and says so
    with pytest.raises(ValueError, match=r"text_config lacks \['hidden_act', .*'llama' decoder"):
        ModelSpec.from_dict({"text_config": {"model_type": "llama", "hidden_size": 64}})
    full = {**other_decoder(), "model_type": "llama"}
    assert ModelSpec.from_dict({"text_config": full}).text_config.model_type == "llama"
    assert_same(ModelSpec.from_dict({"text_config": full}), MigrConfig.from_dict({"text_config": full}))


def test_graph_dims_of_a_spec_equal_those_of_migr_config():
    for d in (bundled_config(), {**bundled_config(), "text_config": other_decoder()}):
        spec, config = ModelSpec.from_dict(d), MigrConfig.from_dict(d)
        assert graph_dims(spec) == graph_dims(config)
    dims = graph_dims(ModelSpec.from_dict({**bundled_config(), "text_config": other_decoder()}))
    assert dims["step"]["keys"][-1] == ("text_config.head_dim", 32)  # the config's own head_dim, not 96 // 4
    assert dims["prefill"]["logits"] == [None, ("text_config.vocab_size", 700)]


def test_graphs_reexports_graph_dims():
    assert graphs_graph_dims is graph_dims


def test_spec_tokenizer_and_graph_shapes_import_neither_torch_nor_transformers():
    probe = (
        "import sys, json\n"
        "from migr_rt.model.spec import ModelSpec\n"
        "from migr_rt.model.saved_tokenizer import SavedTokenizer\n"
        "from migr_rt.model.graph_shapes import graph_dims\n"
        f"folder = {str(BUNDLED)!r}\n"
        "spec = ModelSpec.from_pretrained(folder)\n"
        "tok = SavedTokenizer.from_folder(folder)\n"
        "text = tok.decode(spec.prompt_token_ids + spec.label_token_ids)\n"
        "dims = graph_dims(spec)\n"
        "print(json.dumps({'text': text, 'vocab': dims['step']['logits'][1][1],\n"
        "                  'heavy': sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["heavy"] == []
    assert out["vocab"] == 615
    assert out["text"] == "which emotion does the person show?angrydisgustfearhappyneutralsadsurprise"
