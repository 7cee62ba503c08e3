"""The model config as plain numbers: what a run on an exported artifact reads, without transformers.

:class:`~migr_rt.model.config.MigrConfig` is a transformers config, and importing transformers'
``configuration_utils`` imports torch when torch is installed (about 1.7 s on a small CPU). A run on an ONNX
artifact needs only the config's numbers (frames per window, mel parameters, token ids, decoder dims), so
:class:`ModelSpec` reads the same dict (a checkpoint's ``config.json``, a manifest's ``model_config``) into plain
dataclasses with the same attribute names and values.

Both classes refuse the same dicts with the same messages: the field checks live here once
(:func:`check_model_fields`, :func:`check_decoder_fields`) and ``MigrConfig.__post_init__`` calls them too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from migr_rt.labels import DFEW_LABELS, MODALITIES, validate_labels

#: Default decoder: a small Qwen2 that a 2-core CPU trains in minutes. GQA
#: (6 query heads over 2 KV heads, head dim 32) keeps the kernels honest.
DEFAULT_TEXT_CONFIG: dict = {
    "hidden_size": 192,
    "intermediate_size": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 6,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
    "vocab_size": 1024,
    "rms_norm_eps": 1e-6,
    "attention_dropout": 0.0,
}

#: transformers' ``Qwen2Config`` defaults for the fields :class:`DecoderSpec` reads: a ``text_config`` dict that
#: leaves one out (``MigrConfig(text_config={"hidden_size": 64})``) gets these from transformers, so the spec must
#: too. ``tests/test_model_spec.py`` compares them with ``Qwen2Config()``.
QWEN2_DEFAULTS: dict[str, Any] = {
    "vocab_size": 151936,
    "hidden_size": 4096,
    "intermediate_size": 22016,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "hidden_act": "silu",
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}

#: transformers' default RoPE base when a config names none (``RotaryEmbeddingConfigMixin.default_theta``).
DEFAULT_ROPE_THETA = 10000.0

#: Fields of ``MigrConfig`` that must be positive integers.
POSITIVE_INT_FIELDS = ("num_frames", "face_size", "visual_dim", "num_visual_tokens", "sample_rate", "n_fft",
                       "hop_length", "n_mels", "audio_channels", "audio_dim", "num_audio_tokens")

#: Decoder dimensions that must be positive integers (``head_dim`` too when the config sets it).
DECODER_INT_FIELDS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                      "num_key_value_heads", "max_position_embeddings", "vocab_size", "head_dim")


#: Decoder fields for which None means the decoder's default (``head_dim``: hidden_size // heads; KV heads: heads).
_NONE_IS_DEFAULT = ("head_dim", "num_key_value_heads")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _rope_parameters(values: Mapping[str, Any]) -> Any:
    """The RoPE dict of a decoder config as transformers reads it (``rope_scaling`` is the older name)."""
    return values.get("rope_scaling") or values.get("rope_parameters") or {}


def check_decoder_fields(values: Mapping[str, Any]) -> None:
    """Refuse a decoder config (a ``text_config`` dict, or a built one's fields) whose dims cannot work.

    Only the fields present are checked: a dict may leave fields to the decoder's defaults (and None means
    "the default" for ``head_dim`` and ``num_key_value_heads`` only). Run on the dict *before* transformers builds
    the decoder config, so a wrong type gets this message, a ``ValueError`` naming the field, instead of
    transformers' own validation error (not a ``ValueError``).
    """
    for name in DECODER_INT_FIELDS:
        if name not in values or (values[name] is None and name in _NONE_IS_DEFAULT):
            continue
        if not _positive_int(values[name]):
            raise ValueError(f"MigrConfig.text_config.{name} must be a positive integer, got {values[name]!r}")
    heads, kv_heads = values.get("num_attention_heads"), values.get("num_key_value_heads")
    if heads is not None and kv_heads is not None and heads % kv_heads:
        raise ValueError(f"MigrConfig.text_config.num_attention_heads must be a multiple of num_key_value_heads "
                         f"(grouped-query attention), got {heads} and {kv_heads}")
    if "rms_norm_eps" in values and not (isinstance(values["rms_norm_eps"], float) and values["rms_norm_eps"] > 0):
        raise ValueError(
            f"MigrConfig.text_config.rms_norm_eps must be a positive float, got {values['rms_norm_eps']!r}")
    if "tie_word_embeddings" in values and not isinstance(values["tie_word_embeddings"], bool):
        raise ValueError(f"MigrConfig.text_config.tie_word_embeddings must be true or false, "
                         f"got {values['tie_word_embeddings']!r}")
    rope = _rope_parameters(values)
    if not isinstance(rope, Mapping):
        raise ValueError(f"MigrConfig.text_config.rope_parameters must be a dict, got {rope!r}")
    theta = rope.get("rope_theta", values.get("rope_theta"))
    if theta is not None and not (_number(theta) and theta > 0):
        raise ValueError(f"MigrConfig.text_config.rope_theta must be a positive number, got {theta!r}")
    model_type = values.get("model_type")
    if model_type is not None and not isinstance(model_type, str):
        raise ValueError(f"MigrConfig.text_config.model_type must be a string, got {model_type!r}")


def decoder_fields(text_config: Any) -> dict[str, Any]:
    """The checked fields a built decoder config (a transformers config or a :class:`DecoderSpec`) has."""
    names = (*DECODER_INT_FIELDS, "rms_norm_eps", "tie_word_embeddings", "rope_theta", "rope_parameters", "model_type")
    return {name: getattr(text_config, name) for name in names if hasattr(text_config, name)}


def check_model_fields(config: Any) -> None:
    """The checks of a model config, shared by ``MigrConfig.__post_init__`` and :class:`ModelSpec`.

    ``config`` is either of them: both have the same attribute names, so both refuse the same dicts with the
    same messages. Messages name ``MigrConfig.<field>`` (the field as written in ``config.json``).
    """
    check_decoder_fields(decoder_fields(config.text_config))
    validate_labels(config.labels)
    if list(config.modalities) != list(MODALITIES):
        raise ValueError(
            f"modalities must be {list(MODALITIES)} (the sequence layout is fixed), got {config.modalities}")
    for name in POSITIVE_INT_FIELDS:
        value = getattr(config, name)
        if not _positive_int(value):
            raise ValueError(f"MigrConfig.{name} must be a positive integer, got {value!r}")
    if not (_number(config.audio_seconds) and config.audio_seconds > 0):
        raise ValueError(f"MigrConfig.audio_seconds must be positive, got {config.audio_seconds!r}")
    f_min, f_max = config.f_min, config.f_max
    if not (_number(f_min) and _number(f_max) and 0 <= f_min < f_max <= config.sample_rate / 2):
        raise ValueError(f"MigrConfig needs 0 <= f_min < f_max <= sample_rate/2, got {f_min}, {f_max}")
    if config.face_size % 16:
        raise ValueError(f"MigrConfig.face_size must be a multiple of 16 (four stride-2 convs), got {config.face_size}")
    if config.label_token_ids and len(config.label_token_ids) != len(config.labels):
        raise ValueError(
            f"MigrConfig has {len(config.labels)} labels but {len(config.label_token_ids)} label token ids"
        )


@dataclass(frozen=True)
class DecoderSpec:
    """The decoder's dims, as ``MigrConfig.text_config`` gives them (a Qwen2 unless ``model_type`` says otherwise).

    ``head_dim`` is resolved: the config's own, else ``hidden_size // num_attention_heads`` (what Qwen2 uses).
    ``rope_theta``/``rope_type`` come from ``rope_parameters`` (or an older top-level ``rope_theta``).
    """

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    max_position_embeddings: int
    vocab_size: int
    rope_theta: float = DEFAULT_ROPE_THETA
    rope_type: str = "default"
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = True
    hidden_act: str = "silu"
    model_type: str = "qwen2"

    def __post_init__(self) -> None:
        check_decoder_fields({f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def from_dict(cls, value: Mapping[str, Any] | DecoderSpec | None) -> DecoderSpec:
        """The decoder of a ``text_config`` entry: a dict (its missing fields get Qwen2's defaults, as transformers
        gives them), a spec, or None (:data:`DEFAULT_TEXT_CONFIG`). Keys the spec does not read are ignored.

        A decoder of another ``model_type`` must give every field: the spec knows only Qwen2's defaults.
        """
        if isinstance(value, DecoderSpec):
            return value
        if value is None:
            value = DEFAULT_TEXT_CONFIG
        if not isinstance(value, Mapping):
            raise TypeError(f"MigrConfig.text_config must be a dict or None, got {type(value).__name__}")
        check_decoder_fields(value)
        model_type = value.get("model_type", "qwen2")
        given = {k: v for k, v in value.items() if k in QWEN2_DEFAULTS and v is not None}
        if model_type != "qwen2":
            missing = sorted(set(QWEN2_DEFAULTS) - set(given))
            if missing:
                raise ValueError(f"MigrConfig.text_config lacks {missing}: a {model_type!r} decoder's defaults are "
                                 "known to transformers only; a saved config.json lists every field")
        values = {**QWEN2_DEFAULTS, **given}
        if value.get("num_key_value_heads", 0) is None:  # transformers: None means one KV head per query head
            values["num_key_value_heads"] = values["num_attention_heads"]
        rope = _rope_parameters(value)
        thetas = (rope.get("rope_theta"), value.get("rope_theta"), DEFAULT_ROPE_THETA)
        theta = next(t for t in thetas if t is not None)
        head_dim = value.get("head_dim") or values["hidden_size"] // values["num_attention_heads"]
        return cls(
            **values,
            head_dim=head_dim,
            rope_theta=theta,
            rope_type=rope.get("rope_type", rope.get("type", "default")),
            model_type=model_type,
        )


@dataclass(frozen=True)
class ModelSpec:
    """The numbers of a MIGR model config, read without transformers (and so without torch).

    Same attribute names and values as :class:`~migr_rt.model.config.MigrConfig` for everything the runtime
    reads; defaults equal MigrConfig's. Build it with :meth:`from_dict` from a checkpoint's ``config.json`` or a
    manifest's ``model_config``.
    """

    text_config: DecoderSpec = field(default_factory=lambda: DecoderSpec.from_dict(None))
    labels: list[str] = field(default_factory=lambda: list(DFEW_LABELS))
    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))
    num_frames: int = 8
    face_size: int = 64
    visual_channels: list[int] = field(default_factory=lambda: [24, 48, 96, 128])
    visual_dim: int = 128
    num_visual_tokens: int = 4
    sample_rate: int = 16000
    audio_seconds: float = 2.0
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 64
    f_min: float = 50.0
    f_max: float = 7600.0
    audio_channels: int = 128
    audio_dim: int = 128
    num_audio_tokens: int = 8
    special_token_ids: dict[str, int] = field(default_factory=dict)
    label_token_ids: list[int] = field(default_factory=list)
    prompt: str = "which emotion does the person show?"
    prompt_token_ids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_model_fields(self)
        object.__setattr__(self, "labels", list(self.labels))

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> ModelSpec:
        """The spec of a model config dict, as ``MigrConfig.from_dict`` takes it; keys it does not read
        (transformers' own: ``transformers_version``, ``architectures``, ``model_type``, ...) are ignored."""
        if not isinstance(config, Mapping):
            raise TypeError(f"a model config must be a dict, got {type(config).__name__}")
        kwargs = {f.name: config[f.name] for f in fields(cls) if f.name in config and f.name != "text_config"}
        return cls(text_config=DecoderSpec.from_dict(config.get("text_config")), **kwargs)

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> ModelSpec:
        """The spec of a checkpoint folder's ``config.json``; errors name the file."""
        path = Path(folder) / "config.json"
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: missing; not a migr-rt checkpoint folder") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a readable JSON config ({exc})") from exc
        try:
            return cls.from_dict(config)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{path}: {exc}") from exc

    @property
    def tie_word_embeddings(self) -> bool:
        """Whether the LM head shares the embedding matrix: the decoder's setting, as in ``MigrConfig``."""
        return self.text_config.tie_word_embeddings

    @property
    def num_modalities(self) -> int:
        return len(self.modalities)

    @property
    def audio_samples(self) -> int:
        """Samples per analysis window."""
        return int(round(self.audio_seconds * self.sample_rate))

    @property
    def modality_token_counts(self) -> tuple[int, ...]:
        return (self.num_visual_tokens, self.num_audio_tokens)
