"""Build a fresh MIGR model: a trained-from-scratch tokenizer, or a local pretrained decoder.

Kept apart from loading (``checkpoint.py``): building decides shapes and
vocabulary once; loading only restores what was built.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from migr_rt.model.config import MigrConfig
from migr_rt.model.modeling import MigrForEmotionReasoning
from migr_rt.model.tokenizer import extend_tokenizer, token_ids, train_tokenizer

logger = logging.getLogger(__name__)


def build_model(
    config: MigrConfig | None = None,
    *,
    tokenizer_texts: Iterable[str] | None = None,
    decoder_path: str | Path | None = None,
    seed: int = 0,
) -> tuple[MigrForEmotionReasoning, PreTrainedTokenizerBase]:
    """A randomly initialised model and its tokenizer.

    Without ``decoder_path`` the tokenizer is trained on ``tokenizer_texts``
    and the decoder is a fresh Qwen2 from ``config.text_config``. With it,
    the decoder and tokenizer come from that local folder (e.g. the user's
    own Qwen2.5-0.5B), the tokenizer is extended with our special and label
    tokens and the embeddings are resized; encoders and projectors are new.
    """
    config = config or MigrConfig()
    if decoder_path is None:
        # Label names stay out of BPE training: a learned "sad" merge would
        # share its id with the answer token and turn up inside "saddle".
        texts = list(tokenizer_texts or []) + [config.prompt]
        tokenizer = train_tokenizer(texts, config.labels, vocab_size=config.text_config.vocab_size)
        decoder = None
    else:
        tokenizer, decoder = _load_pretrained_decoder(Path(decoder_path), config.labels)
        config.text_config = decoder.config
        config.tie_word_embeddings = bool(decoder.config.tie_word_embeddings)
    special, label_ids = token_ids(tokenizer, config.labels)
    config.special_token_ids = special
    config.label_token_ids = label_ids
    config.prompt_token_ids = tokenizer.encode(config.prompt, add_special_tokens=False)
    config.text_config.vocab_size = len(tokenizer)
    for role in ("bos", "eos", "pad"):
        setattr(config.text_config, f"{role}_token_id", special[role])
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(seed)
        model = MigrForEmotionReasoning(config)
    if decoder is not None:
        missing, unexpected = model.decoder.load_state_dict(decoder.state_dict(), strict=False)
        if unexpected or [k for k in missing if "lm_head" not in k or not config.tie_word_embeddings]:
            raise ValueError(f"{decoder_path}: decoder weights do not fit (missing {missing}, unexpected {unexpected})")
        if config.tie_word_embeddings:
            model.tie_weights()
    return model, tokenizer


def _load_pretrained_decoder(path: Path, labels) -> tuple[PreTrainedTokenizerBase, torch.nn.Module]:
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: pretrained decoder folder not found (nothing is downloaded)")
    if not list(path.glob("*.safetensors")):
        raise ValueError(f"{path}: no .safetensors weights; migr-rt does not load pickle checkpoints")
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    decoder = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, use_safetensors=True)
    extend_tokenizer(tokenizer, labels)
    decoder.resize_token_embeddings(len(tokenizer))
    logger.info("initialised decoder from %s (%s, vocab %d)", path, decoder.config.model_type, len(tokenizer))
    return tokenizer, decoder
