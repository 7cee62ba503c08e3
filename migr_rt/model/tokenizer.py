"""Tokenizer of the MIGR model: trained with ``tokenizers``, or a pretrained decoder's extended.

The structural tokens (modality blocks, reasoning segments, answer slot) are
added as special tokens so they are never split; each label is one added
token, so the answer distribution is a softmax over exactly ``len(labels)``
vocabulary rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from typing import TYPE_CHECKING

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

if TYPE_CHECKING:  # transformers imports torch: readers of STRUCTURAL_TOKENS (the demo on an artifact) need neither
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

#: Roles of the structural tokens -> their text. Roles are what the config records.
STRUCTURAL_TOKENS: dict[str, str] = {
    "bos": "<bos>",
    "eos": "<eos>",
    "pad": "<pad>",
    "unk": "<unk>",
    "vis_start": "<vis>",
    "vis_end": "</vis>",
    "vis_token": "<v>",
    "aud_start": "<aud>",
    "aud_end": "</aud>",
    "aud_token": "<a>",
    "think_start": "<think>",
    "think_end": "</think>",
    "answer_start": "<answer>",
    "answer_end": "</answer>",
    "visual_start": "<visual>",
    "visual_end": "</visual>",
    "audio_start": "<audio>",
    "audio_end": "</audio>",
    "summary_start": "<summary>",
    "summary_end": "</summary>",
}

#: Structural roles that a pretrained tokenizer may already provide under its own text.
_INHERITABLE_ROLES = ("bos", "eos", "pad", "unk")


def train_tokenizer(texts: Iterable[str], labels: Sequence[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts`` and add the MIGR tokens.

    Byte-level BPE never produces ``<unk>`` on unseen text, so a tokenizer
    trained on the synthetic cue vocabulary still encodes any explanation a
    user or a bigger model writes.
    """
    if vocab_size < 300:
        raise ValueError(f"vocab_size must be at least 300 (256 byte symbols + merges), got {vocab_size}")
    texts = list(texts)
    if not texts:
        raise ValueError("train_tokenizer needs at least one training text")
    core = Tokenizer(models.BPE(unk_token=None))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(STRUCTURAL_TOKENS) - len(labels),
        min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=STRUCTURAL_TOKENS["bos"],
        eos_token=STRUCTURAL_TOKENS["eos"],
        pad_token=STRUCTURAL_TOKENS["pad"],
        unk_token=STRUCTURAL_TOKENS["unk"],
    )
    return extend_tokenizer(tok, labels)


def extend_tokenizer(tokenizer: PreTrainedTokenizerBase, labels: Sequence[str]) -> PreTrainedTokenizerBase:
    """Add the MIGR structural tokens and one token per label to any tokenizer (in place, and returned).

    A pretrained tokenizer keeps its own bos/eos/pad/unk when it has them; a
    missing one gets ours.
    """
    missing_roles = {}
    vocab = tokenizer.get_vocab()
    for role in _INHERITABLE_ROLES:
        current = getattr(tokenizer, f"{role}_token", None)
        if current is None or str(current) not in vocab:
            missing_roles[f"{role}_token"] = STRUCTURAL_TOKENS[role]
    if missing_roles:
        tokenizer.add_special_tokens(missing_roles)
    extra = [t for role, t in STRUCTURAL_TOKENS.items() if role not in _INHERITABLE_ROLES]
    tokenizer.add_special_tokens({"additional_special_tokens": extra})
    # Labels are ordinary (non-special) tokens: decoding shows them, and they
    # are never split into sub-words, so one row of the LM head is one class;
    # single_word keeps them out of longer words ("saddle", "surprised").
    tokenizer.add_tokens([AddedToken(lab, single_word=True, lstrip=False, rstrip=False, normalized=False) for lab in labels])
    return tokenizer


def token_ids(tokenizer: PreTrainedTokenizerBase, labels: Sequence[str]) -> tuple[dict[str, int], list[int]]:
    """The role -> id map of the structural tokens and the ids of the label tokens.

    Raises if a label does not encode to exactly one token, which would make
    the answer-slot distribution ill-defined.
    """
    special: dict[str, int] = {}
    vocab = tokenizer.get_vocab()
    for role, text in STRUCTURAL_TOKENS.items():
        if role in _INHERITABLE_ROLES:
            text = str(getattr(tokenizer, f"{role}_token"))
        if text not in vocab:
            raise ValueError(f"tokenizer lacks the structural token {text!r} ({role}); build it with extend_tokenizer()")
        special[role] = int(vocab[text])
    label_ids = []
    for lab in labels:
        ids = tokenizer.encode(lab, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"label {lab!r} encodes to {len(ids)} tokens {ids}; labels must be single tokens")
        label_ids.append(int(ids[0]))
    if len(set(label_ids)) != len(label_ids):
        raise ValueError(f"labels {list(labels)} do not map to distinct tokens: {label_ids}")
    return special, label_ids
