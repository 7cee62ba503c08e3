"""The omni model: layout, modality masking, loss, config validation and pretrained-decoder init."""

from __future__ import annotations

import pytest
import torch
from model_fixtures import TINY_TEXT, random_inputs, tiny_config
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from migr_rt.model import MigrConfig, build_model
from migr_rt.model.layout import prefix_ids, scoring_batch, scoring_ids


def label_log_probs(model, ids, pixels, audio, **kwargs):
    with torch.no_grad():
        logits = model(ids, pixels, audio, **kwargs).logits[:, -1]
    return logits[:, model.label_token_ids].float().log_softmax(-1)


def test_scoring_layout_decodes_to_the_design_sequence(tiny_model):
    model, tok = tiny_model
    cfg = model.config
    text = tok.decode(scoring_ids(cfg))
    assert text == (
        "<bos><vis>" + "<v>" * cfg.num_visual_tokens + "</vis><aud>" + "<a>" * cfg.num_audio_tokens
        + "</aud>" + cfg.prompt + "<answer>"
    )
    assert scoring_ids(cfg)[: len(prefix_ids(cfg))] == prefix_ids(cfg)


def test_labels_are_single_tokens_and_answer_slot_reads_them(tiny_model):
    model, tok = tiny_model
    for label, tid in zip(model.config.labels, model.config.label_token_ids):
        assert tok.encode(label, add_special_tokens=False) == [tid]
    ids = tok.encode("<answer>happy</answer>", add_special_tokens=False)
    assert tok.convert_ids_to_tokens(ids) == ["<answer>", "happy", "</answer>"]


@pytest.mark.parametrize("masked", [0, 1])
def test_masking_a_modality_equals_removing_its_tokens(tiny_model, masked):
    model, _ = tiny_model
    cfg = model.config
    pixels, audio = random_inputs(cfg, 3, seed=1)
    ids = scoring_batch(cfg, 3)
    visible = torch.ones(3, 2, dtype=torch.bool)
    visible[:, masked] = False
    masked_lp = label_log_probs(model, ids, pixels, audio, modality_visible=visible)

    placeholder = cfg.special_token_ids["vis_token" if masked == 0 else "aud_token"]
    keep = ids[0] != placeholder
    positions = torch.arange(ids.shape[1])[keep][None].expand(3, -1)
    removed_lp = label_log_probs(
        model, ids[:, keep], None if masked == 0 else pixels, None if masked == 1 else audio, position_ids=positions
    )
    assert torch.allclose(masked_lp, removed_lp, atol=1e-5)
    # and the mask really hides something: the unmasked distribution differs
    full_lp = label_log_probs(model, ids, pixels, audio)
    assert (full_lp - masked_lp).abs().max() > 1e-4


def test_absent_input_is_masked_automatically(tiny_model):
    model, _ = tiny_model
    pixels, audio = random_inputs(model.config, 2, seed=2)
    ids = scoring_batch(model.config, 2)
    no_audio = label_log_probs(model, ids, pixels, None)
    masked = label_log_probs(model, ids, pixels, audio, modality_visible=torch.tensor([[True, False]] * 2))
    assert torch.allclose(no_audio, masked, atol=1e-6)
    nothing = label_log_probs(model, ids, None, None)
    assert torch.isfinite(nothing).all()


def test_hidden_modality_inputs_have_no_influence(tiny_model):
    model, _ = tiny_model
    pixels, audio = random_inputs(model.config, 2, seed=3)
    ids = scoring_batch(model.config, 2)
    vis = torch.tensor([[True, False]] * 2)
    a = label_log_probs(model, ids, pixels, audio, modality_visible=vis)
    b = label_log_probs(model, ids, pixels, audio * 5 + 1, modality_visible=vis)
    assert torch.equal(a, b)


def test_loss_trains_the_answer_slot(tiny_model):
    cfg = tiny_config()
    model, _ = build_model(cfg, tokenizer_texts=["x"], seed=1)
    model.train()
    pixels, audio = random_inputs(cfg, 4, seed=4)
    label_idx = torch.tensor([0, 3, 5, 6])
    answer = torch.tensor([cfg.label_token_ids[i] for i in label_idx])
    ids = torch.cat([scoring_batch(cfg, 4), answer[:, None]], dim=1)
    labels = torch.full_like(ids, -100)
    labels[:, -1] = answer
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        loss = model(ids, pixels, audio, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.5 * first
    grads = [p.grad for p in model.visual_encoder.parameters()] + [p.grad for p in model.audio_encoder.parameters()]
    assert all(g is not None for g in grads), "encoders must receive gradient through the placeholders"


def test_wrong_placeholder_count_is_a_clear_error(tiny_model):
    model, _ = tiny_model
    pixels, audio = random_inputs(model.config, 1)
    ids = scoring_batch(model.config, 1)
    ids = ids[:, ids[0] != model.config.special_token_ids["vis_token"]]  # drop visual placeholders
    with pytest.raises(ValueError, match="visual: every sequence needs 2 placeholder tokens"):
        model(ids, pixels, audio)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"labels": ["happy", "happy"]}, "duplicate labels"),
        ({"labels": ["very happy"]}, "invalid label"),
        ({"face_size": 40}, "multiple of 16"),
        ({"num_frames": 0}, "num_frames must be a positive integer"),
        ({"f_max": 9000.0}, "f_max"),
        ({"modalities": ["audio", "visual"]}, "modalities must be"),
    ],
)
def test_config_validation_names_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_model_without_token_ids_refuses_to_build():
    from migr_rt.model import MigrForEmotionReasoning

    with pytest.raises(ValueError, match="build_model"):
        MigrForEmotionReasoning(tiny_config())


def test_mafw_label_set_fits():
    from migr_rt.labels import MAFW_LABELS

    model, tok = build_model(tiny_config(labels=list(MAFW_LABELS)), tokenizer_texts=["x"])
    assert len(model.config.label_token_ids) == 11
    pixels, audio = random_inputs(model.config, 1)
    assert label_log_probs(model, scoring_batch(model.config, 1), pixels, audio).shape == (1, 11)


def _pretrained_decoder(folder, tie: bool):
    """A user's own Qwen2 folder (here a tiny one) with a Qwen-like tokenizer."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(
        ["the quick brown fox jumps over the lazy dog"] * 3,
        trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False),
    )
    src_tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    qwen = Qwen2ForCausalLM(Qwen2Config(**{**TINY_TEXT, "vocab_size": len(src_tok), "tie_word_embeddings": tie}))
    qwen.save_pretrained(folder)
    src_tok.save_pretrained(folder)
    return qwen, src_tok


@pytest.mark.parametrize("tie", [True, False])
def test_init_from_a_local_pretrained_decoder(tmp_path, tie):
    """The decoder's weights, embeddings and (un)tied head survive; our tokens are appended."""
    qwen, src_tok = _pretrained_decoder(tmp_path / "qwen", tie)
    model, tok = build_model(tiny_config(), decoder_path=tmp_path / "qwen")
    assert len(tok) > len(src_tok)  # our structural and label tokens were added
    assert tok.eos_token == "<|endoftext|>"  # the decoder's own eos is kept
    assert model.config.text_config.vocab_size == len(tok)
    old = qwen.model.layers[0].self_attn.q_proj.weight
    assert torch.equal(model.decoder.model.layers[0].self_attn.q_proj.weight, old)
    n = len(src_tok)
    assert torch.equal(model.decoder.model.embed_tokens.weight[:n], qwen.model.embed_tokens.weight)
    assert torch.equal(model.decoder.lm_head.weight[:n], qwen.lm_head.weight)
    shared = model.decoder.lm_head.weight.data_ptr() == model.decoder.model.embed_tokens.weight.data_ptr()
    assert shared == tie
    pixels, audio = random_inputs(model.config, 1)
    assert torch.isfinite(label_log_probs(model, scoring_batch(model.config, 1), pixels, audio)).all()


def test_pretrained_decoder_folder_with_only_pickle_weights_is_refused(tmp_path):
    (tmp_path / "dec").mkdir()
    (tmp_path / "dec" / "pytorch_model.bin").write_bytes(b"not safe")
    with pytest.raises(ValueError, match="no .safetensors"):
        build_model(tiny_config(), decoder_path=tmp_path / "dec")
    with pytest.raises(FileNotFoundError):
        build_model(tiny_config(), decoder_path=tmp_path / "absent")


def test_default_config_builds_a_model_under_the_bundle_budget():
    model, _ = build_model(MigrConfig(), tokenizer_texts=["brows drawn together"])
    n_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    assert n_bytes < 25e6


@pytest.mark.parametrize("visible", [(True, True), (False, True), (True, False)])
def test_cached_continuation_equals_full_forward(tiny_model, visible):
    """Prefill + step-by-step continuation gives the full forward's logits, masks kept on cached keys."""
    model, _ = tiny_model
    cfg = model.config
    pixels, audio = random_inputs(cfg, 2, seed=12)
    ids = scoring_batch(cfg, 2)
    tail = torch.tensor([[cfg.label_token_ids[0], cfg.special_token_ids["answer_end"]]] * 2)
    vis = torch.tensor([visible] * 2)
    with torch.no_grad():
        full = model(torch.cat([ids, tail], 1), pixels, audio, modality_visible=vis).logits[:, -2:]
        out = model(ids, pixels, audio, modality_visible=vis, use_cache=True)
        steps = []
        for t in range(tail.shape[1]):
            out = model(tail[:, t : t + 1], cache=out.cache, use_cache=True, past_key_visible=out.key_visible)
            steps.append(out.logits[:, -1])
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-5)


def test_continuing_a_cache_without_key_visibility_is_refused(tiny_model):
    model, _ = tiny_model
    pixels, audio = random_inputs(model.config, 1)
    with torch.no_grad():
        out = model(scoring_batch(model.config, 1), pixels, audio, use_cache=True)
        with pytest.raises(ValueError, match="past_key_visible"):
            model(torch.tensor([[5]]), cache=out.cache, use_cache=True)


def test_scoring_graph_exports_with_torch_export(tiny_model):
    """The answer-slot scoring path traces with torch.export (the ONNX exporter's front end)."""
    model, _ = tiny_model
    pixels, audio = random_inputs(model.config, 2)
    ids = scoring_batch(model.config, 2)

    class Scoring(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, pixel_values, audio_values):
            return self.inner(input_ids, pixel_values, audio_values).logits[:, -1]

    wrapper = Scoring(model).eval()
    program = torch.export.export(wrapper, (ids, pixels, audio))
    with torch.no_grad():
        assert torch.allclose(program.module()(ids, pixels, audio), wrapper(ids, pixels, audio), atol=1e-5)


def test_label_tokens_match_whole_words_only(tiny_model):
    _, tok = tiny_model
    sad = tok.convert_tokens_to_ids("sad")
    assert sad in tok.encode("the voice sounds sad.", add_special_tokens=False)
    assert tok.encode("<answer>sad</answer>", add_special_tokens=False)[1] == sad
    for word in ("saddle", "unhappy", "surprised", "fearful"):
        ids = tok.encode(word, add_special_tokens=False)
        assert not set(ids) & set(tok.convert_tokens_to_ids(["sad", "happy", "surprise", "fear"])), word
