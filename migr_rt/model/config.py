"""Configuration of the MIGR omni model: encoders, projectors, the decoder and the token layout.

Everything the runtime needs to preprocess inputs (frames per window, face size,
audio window, mel parameters) lives here, so a checkpoint describes itself.
"""

from __future__ import annotations

from dataclasses import field
from typing import ClassVar

from transformers import AutoConfig, PreTrainedConfig
from transformers import __version__ as transformers_version

from migr_rt.labels import DFEW_LABELS, MODALITIES
# DEFAULT_TEXT_CONFIG is defined with the transformers-free spec and stays importable from here.
from migr_rt.model.spec import DEFAULT_TEXT_CONFIG, check_decoder_fields, check_model_fields


def decoder_config(value: dict | PreTrainedConfig | None) -> PreTrainedConfig:
    """The decoder's config from what a checkpoint or a caller gives: a config, a dict (Qwen2 unless its
    ``model_type`` says otherwise) or nothing (:data:`DEFAULT_TEXT_CONFIG`)."""
    if isinstance(value, PreTrainedConfig):
        return value
    if value is None:
        value = DEFAULT_TEXT_CONFIG
    if not isinstance(value, dict):
        raise TypeError(
            f"MigrConfig.text_config must be a dict, a PreTrainedConfig or None, got {type(value).__name__}")
    kwargs = dict(value)
    check_decoder_fields(kwargs)  # before transformers' own validation, whose errors are not ValueErrors
    model_type = kwargs.pop("model_type", "qwen2")
    try:
        return AutoConfig.for_model(model_type, **kwargs)
    except ValueError as exc:
        raise ValueError(f"MigrConfig.text_config: model_type {model_type!r} is not a decoder this transformers "
                         f"{transformers_version} knows") from exc


class MigrConfig(PreTrainedConfig):
    """Config of :class:`~migr_rt.model.modeling.MigrForEmotionReasoning`.

    ``special_token_ids`` and ``label_token_ids`` are filled from the tokenizer
    when the model is built, so the model finds its placeholder tokens and the
    answer-slot label tokens without needing the tokenizer at run time.
    """

    model_type = "migr"
    # The decoder config is built here rather than through transformers' sub-config specs, which only
    # newer 5.x releases have (5.17, on the GPU machines, has the plain ``sub_configs`` mapping).
    sub_configs: ClassVar[dict] = {"text_config": AutoConfig}

    text_config: dict | PreTrainedConfig | None = None
    labels: list[str] = field(default_factory=lambda: list(DFEW_LABELS))
    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))
    # visual front end: T face crops of face_size x face_size per window
    num_frames: int = 8
    face_size: int = 64
    visual_channels: list[int] = field(default_factory=lambda: [24, 48, 96, 128])
    visual_dim: int = 128
    num_visual_tokens: int = 4
    # audio front end: audio_seconds of mono audio at sample_rate -> log-mel
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
    # token layout (filled from the tokenizer)
    special_token_ids: dict[str, int] = field(default_factory=dict)
    label_token_ids: list[int] = field(default_factory=list)
    prompt: str = "which emotion does the person show?"
    prompt_token_ids: list[int] = field(default_factory=list)
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        self.text_config = decoder_config(self.text_config)
        super().__post_init__(**kwargs)
        # transformers ties the LM head by the outer config: follow the decoder's own setting.
        self.tie_word_embeddings = bool(getattr(self.text_config, "tie_word_embeddings", True))
        check_model_fields(self)  # shared with ModelSpec: both refuse the same dicts with the same messages
        self.labels = list(self.labels)

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
