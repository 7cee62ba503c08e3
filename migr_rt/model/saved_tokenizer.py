"""The tokenizer a checkpoint or artifact folder saved, read with ``tokenizers`` alone, for decoding rationales.

The runtime turns generated ids into rationale text. ``transformers.PreTrainedTokenizerFast`` does that, but
importing transformers imports torch when torch is installed (about 1.7 s), which a run on an exported artifact
otherwise never needs. :class:`SavedTokenizer` reads the same two files (``tokenizer.json``,
``tokenizer_config.json``) with the ``tokenizers`` package and decodes to exactly the text
``PreTrainedTokenizerFast.from_pretrained(folder).decode(ids)`` gives (``tests/test_saved_tokenizer.py``).

What transformers adds on top of ``tokenizers.Tokenizer.decode``, reproduced here:

* special tokens that ``tokenizer_config.json`` names (``bos_token``.., other ``*_token`` keys,
  ``extra_special_tokens``, ``added_tokens_decoder``) but ``tokenizer.json`` lacks as added tokens are added at
  load, in transformers' order (new ids after the vocabulary). Folders this project writes have none;
  a hand-edited config may.
* ``clean_up_tokenization_spaces`` (default off) strips spaces before punctuation, but not for a BPE model
  unless ``clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output`` forces it.
* special tokens are kept (``skip_special_tokens=False``) unless asked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Tokenizer

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"

#: transformers' named special tokens (``SpecialTokensMixin.SPECIAL_TOKENS_ATTRIBUTES``), in its order.
NAMED_SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")

#: Keys of ``AddedToken`` that a serialized token in ``tokenizer_config.json`` may carry.
_ADDED_TOKEN_KEYS = ("single_word", "lstrip", "rstrip", "normalized", "special")

#: transformers' ``clean_up_tokenization``: the spaces a word-piece tokenizer leaves before punctuation.
_CLEAN_UP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
             (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


def _added_token(value: Any, *, special: bool, named: bool = False) -> AddedToken | None:
    """A token ``tokenizer_config.json`` names: a string (``special``), or a serialized ``AddedToken`` dict (its
    own flag, default ``special``); transformers makes a named token (``bos_token``, ``image_token``) special."""
    if isinstance(value, str):
        return AddedToken(value, special=special or named)
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        props = {k: bool(value[k]) for k in _ADDED_TOKEN_KEYS if k in value}
        props["special"] = props.get("special", special) or named
        return AddedToken(value["content"], **props)
    return None


def _serialized(value: Any) -> Any:
    """``value`` if transformers reads it as a token outside ``added_tokens_decoder``: a string, or a dict marked
    ``"__type": "AddedToken"``; else None."""
    if isinstance(value, str) or (isinstance(value, Mapping) and value.get("__type") == "AddedToken"):
        return value
    return None


def _named_tokens(config: Mapping[str, Any]) -> list[AddedToken]:
    """The special tokens ``config`` names, in the order transformers adds the missing ones.

    ``added_tokens_decoder`` entries (by id); the named tokens; the model-specific ones (other ``*_token``
    keys, serialized ``AddedToken`` dicts first, then strings, then an ``extra_special_tokens`` dict, a later
    one replacing an earlier of the same name); then an ``extra_special_tokens`` (or the older
    ``additional_special_tokens``) list.
    """
    out: list[AddedToken | None] = []
    decoder = config.get("added_tokens_decoder") or {}
    if isinstance(decoder, Mapping):
        for _, value in sorted(decoder.items(), key=lambda item: int(item[0])):
            out.append(_added_token(value, special=False))
    out += [_added_token(_serialized(config.get(key)), special=True, named=True) for key in NAMED_SPECIAL_TOKENS]
    other = {key: _serialized(value) for key, value in config.items()
             if key.endswith("_token") and key not in NAMED_SPECIAL_TOKENS}
    specific = {key: value for key, value in other.items() if isinstance(value, Mapping)}
    specific |= {key: value for key, value in other.items() if isinstance(value, str)}
    extra = config.get("extra_special_tokens") or config.get("additional_special_tokens")
    if isinstance(extra, Mapping):
        specific |= {key: _serialized(value) for key, value in extra.items()}
    out += [_added_token(value, special=True, named=True) for value in specific.values()]
    if isinstance(extra, (list, tuple)):
        out += [_added_token(_serialized(value), special=True) for value in extra]
    return [token for token in out if token is not None]


#: Files transformers merges into the tokenizer when ``tokenizer_config.json`` has no ``added_tokens_decoder``.
LEGACY_TOKEN_FILES = ("special_tokens_map.json", "added_tokens.json")


@dataclass
class SavedTokenizer:
    """Decode (and encode) with the tokenizer files of a checkpoint or artifact folder, without transformers."""

    tokenizer: Tokenizer
    clean_up_tokenization_spaces: bool = False

    @classmethod
    def from_folder(cls, folder: str | Path) -> SavedTokenizer:
        """The tokenizer of ``folder`` (``tokenizer.json``, and ``tokenizer_config.json`` when there is one).

        Raises ``FileNotFoundError`` or ``ValueError`` naming the file when ``tokenizer.json`` is missing or
        unreadable, or ``tokenizer_config.json`` is unreadable.
        """
        folder = Path(folder)
        path = folder / TOKENIZER_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: missing; a checkpoint or exported artifact folder holds its "
                                    "tokenizer there") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: unreadable ({exc})") from exc
        try:
            tokenizer = Tokenizer.from_str(text)
        except Exception as exc:  # tokenizers raises a bare Exception for any malformed file
            raise ValueError(f"{path}: not a tokenizers file ({exc})") from exc
        config_path = folder / TOKENIZER_CONFIG_FILE
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:  # transformers loads a folder without one with the defaults
            config = {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{config_path}: not a readable JSON file ({exc})") from exc
        if not isinstance(config, Mapping):
            raise ValueError(f"{config_path}: must hold a JSON object, got {type(config).__name__}")
        if "added_tokens_decoder" not in config:
            legacy = [name for name in LEGACY_TOKEN_FILES if (folder / name).exists()]
            if legacy:
                raise ValueError(f"{folder}: holds {legacy}, which transformers merges into the tokenizer and this "
                                 f"reader does not; save the tokenizer again ({TOKENIZER_FILE} and "
                                 f"{TOKENIZER_CONFIG_FILE})")
        return cls.from_tokenizer(tokenizer, config)

    @classmethod
    def from_tokenizer(cls, tokenizer: Tokenizer, config: Mapping[str, Any]) -> SavedTokenizer:
        """Wrap ``tokenizer`` (changed in place) as transformers would load it with ``config``."""
        present = {str(token) for token in tokenizer.get_added_tokens_decoder().values()}
        missing: list[AddedToken] = []
        for token in _named_tokens(config):
            if token.content not in present:
                present.add(token.content)
                missing.append(token)
        if missing:
            tokenizer.add_tokens(missing)
        clean_up = bool(config.get("clean_up_tokenization_spaces", False))
        if clean_up and type(tokenizer.model).__name__ == "BPE":  # transformers skips it for BPE unless forced
            clean_up = bool(config.get("clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output"))
        return cls(tokenizer, clean_up)

    def __len__(self) -> int:
        """Vocabulary size with added tokens (``len(PreTrainedTokenizerFast)``)."""
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def decode(self, ids: Sequence[int] | Iterable[int] | int, *, skip_special_tokens: bool = False) -> str:
        """The text of ``ids``, as ``PreTrainedTokenizerFast.decode`` gives it (ids past the vocabulary are
        dropped, as there)."""
        ids = [int(ids)] if isinstance(ids, int) else [int(i) for i in ids]
        text = self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
        if self.clean_up_tokenization_spaces:
            for old, new in _CLEAN_UP:
                text = text.replace(old, new)
        return text

    def encode(self, text: str) -> list[int]:
        """The ids of ``text`` without special tokens added around it
        (``PreTrainedTokenizerFast.encode(text, add_special_tokens=False)``)."""
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)
