"""The MIGR omni model: encoders + projectors feeding a stock ``transformers`` decoder.

Modality masking (DESIGN.md): masking modality m makes its tokens invisible
to every position as keys, positions unchanged. One mechanism serves
modality dropout in training, absent inputs (no camera / no microphone) and
the B x (1 + M) variants of Modality Importance scoring.
"""

from __future__ import annotations

import inspect
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache
from transformers.utils import ModelOutput

from migr_rt.model.config import MigrConfig
from migr_rt.model.encoders import AudioEncoder, LogMel, Projector, VisualEncoder


#: accelerate's switch for rank-0-only weight loading under FSDP (see ``from_pretrained``)
_RAM_EFFICIENT_ENV = "FSDP_CPU_RAM_EFFICIENT_LOADING"
_LOAD_LOCK = threading.Lock()


@dataclass
class MigrOutput(ModelOutput):
    """Loss (when labels are given), logits over the vocabulary, and the decoder cache."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    cache: Cache | None = None
    #: (B, K) visibility of every key in the cache, to pass back as ``past_key_visible`` on the next step
    key_visible: torch.Tensor | None = None


class MigrPreTrainedModel(PreTrainedModel):
    config_class = MigrConfig
    base_model_prefix = "migr"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["Qwen2DecoderLayer"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Also (re)build what checkpoints do not store: derived buffers.

        transformers materialises a loaded model from the meta device and
        relies on this hook for non-persistent buffers.
        """
        if getattr(module, "_torch_default_init", False) and hasattr(module, "reset_parameters"):
            # Encoder convs/linears keep PyTorch's fan-in init: transformers'
            # N(0, 0.02) leaves a from-scratch CNN stuck at chance for hundreds
            # of steps. (Loaded weights are safe: transformers guards the
            # torch.nn.init calls against overwriting them.)
            module.reset_parameters()
            return
        super()._init_weights(module)
        if isinstance(module, LogMel):
            dft, mel = module.kernels()
            init.copy_(module.dft, dft)
            init.copy_(module.mel, mel)
        elif isinstance(module, MigrForEmotionReasoning):
            init.copy_(module.label_token_ids, torch.tensor(self.config.label_token_ids, dtype=torch.long))


class MigrForEmotionReasoning(MigrPreTrainedModel):
    """Omni model: ``[bos] <vis> v.. </vis> <aud> a.. </aud> prompt ...`` with encoder outputs at the placeholders."""

    _tied_weights_keys = {"decoder.lm_head.weight": "decoder.model.embed_tokens.weight"}

    def __init__(self, config: MigrConfig) -> None:
        super().__init__(config)
        if not config.special_token_ids or not config.label_token_ids:
            raise ValueError(
                "MigrConfig has no token ids; build models with migr_rt.model.build_model() "
                "or load them with from_pretrained()"
            )
        hidden = config.text_config.hidden_size
        self.visual_encoder = VisualEncoder(config)
        self.audio_encoder = AudioEncoder(config)
        self.visual_projector = Projector(config.visual_dim, hidden)
        self.audio_projector = Projector(config.audio_dim, hidden)
        self.decoder = AutoModelForCausalLM.from_config(config.text_config)
        # transformers renamed the decoder's cache argument and output field from past_key_values to cache
        # within 5.x; both are in the supported range (5.17 is on the GPU machines).
        self._cache_name = ("cache" if "cache" in inspect.signature(self.decoder.forward).parameters
                            else "past_key_values")
        for part in (self.visual_encoder, self.audio_encoder, self.visual_projector, self.audio_projector):
            for sub in part.modules():
                sub._torch_default_init = True
        self.register_buffer(
            "label_token_ids", torch.tensor(config.label_token_ids, dtype=torch.long), persistent=False
        )
        self.post_init()

    # -- helpers on token layout ------------------------------------------------
    def modality_token_masks(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``(B, M, L)`` bool: which positions hold modality m's placeholder tokens."""
        ids = self.config.special_token_ids
        return torch.stack([input_ids == ids["vis_token"], input_ids == ids["aud_token"]], dim=1)

    def get_input_embeddings(self) -> nn.Module:
        return self.decoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.decoder.set_input_embeddings(value)

    # -- encoders --------------------------------------------------------------
    # Public methods never call one another: each delegates to a private body, so that under FSDP (which
    # hooks the public methods, see training/distributed.py) no hooked call nests inside another.
    def encode_visual(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Face crops ``(B, T, 3, S, S)`` in [0, 1] -> projected tokens ``(B, Nv, H)``."""
        return self._encode_visual(pixel_values)

    def encode_audio(self, audio_values: torch.Tensor) -> torch.Tensor:
        """Waveform ``(B, S)`` -> projected tokens ``(B, Na, H)``."""
        return self._encode_audio(audio_values)

    def _encode_visual(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.visual_projector(self.visual_encoder(pixel_values.to(self.dtype)))

    def _encode_audio(self, audio_values: torch.Tensor) -> torch.Tensor:
        return self.audio_projector(self.audio_encoder(audio_values))

    def encode_modalities(
        self, pixel_values: torch.Tensor, audio_values: torch.Tensor
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """Encoder features ``(visual, audio)`` before projection and the projected tokens, in one pass.

        Training reads both (auxiliary heads sit on the features). One method,
        rather than calls into the submodules, so that a sharded (FSDP) model
        gathers its weights here like in ``forward``.
        """
        features = (self.visual_encoder(pixel_values.to(self.dtype)), self.audio_encoder(audio_values))
        return features, (self.visual_projector(features[0]), self.audio_projector(features[1]))

    def embed_inputs(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        audio_values: torch.Tensor | None = None,
        modality_tokens: tuple[torch.Tensor | None, torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        """Token embeddings with encoder outputs written into the placeholder positions.

        ``modality_tokens`` takes already-encoded ``(visual, audio)`` tokens
        (e.g. repeated for MI variants) instead of raw inputs. A modality with
        no input keeps its placeholder embedding; callers mask it.
        """
        return self._embed_inputs(input_ids, pixel_values, audio_values, modality_tokens)

    def _embed_inputs(self, input_ids, pixel_values, audio_values, modality_tokens) -> torch.Tensor:
        embeds = self.get_input_embeddings()(input_ids)
        if modality_tokens is None:
            modality_tokens = (
                self._encode_visual(pixel_values) if pixel_values is not None else None,
                self._encode_audio(audio_values) if audio_values is not None else None,
            )
        masks = self.modality_token_masks(input_ids)
        for m, tokens in enumerate(modality_tokens):
            if tokens is None:
                continue
            where = masks[:, m]
            # A data-dependent check: skipped while tracing for export, where the
            # layout is fixed by the config and the check would break the graph.
            if not torch.compiler.is_compiling():
                expected = self.config.modality_token_counts[m]
                counts = where.sum(dim=1)
                if tokens.shape[1] != expected or bool((counts != expected).any()):
                    raise ValueError(
                        f"{self.config.modalities[m]}: every sequence needs {expected} placeholder tokens and "
                        f"{expected} encoder tokens, got {counts.tolist()} and {tokens.shape[1]}"
                    )
            embeds = embeds.masked_scatter(where[..., None], tokens.to(embeds.dtype))
        return embeds

    # -- masks -----------------------------------------------------------------
    def attention_bias(
        self,
        input_ids: torch.Tensor,
        modality_visible: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        past_length: int = 0,
        past_key_visible: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Additive 4D attention bias ``(B, 1, Q, K)`` and the key visibility ``(B, K)`` it encodes.

        A key is visible if it is not padding and does not belong to a masked
        modality. Queries see visible keys at or before their own position.
        ``past_key_visible`` carries the visibility of cached keys when
        decoding step by step.
        """
        bsz, q_len = input_ids.shape
        key_visible = torch.ones(bsz, q_len, dtype=torch.bool, device=input_ids.device)
        if attention_mask is not None:
            key_visible &= attention_mask[:, -q_len:].bool()
        if modality_visible is not None:
            hidden = self.modality_token_masks(input_ids) & ~modality_visible.bool()[:, :, None]
            key_visible &= ~hidden.any(dim=1)
        if past_length:
            if past_key_visible is None:
                past_key_visible = torch.ones(bsz, past_length, dtype=torch.bool, device=input_ids.device)
            key_visible = torch.cat([past_key_visible, key_visible], dim=1)
        k_len = key_visible.shape[1]
        q_pos = torch.arange(past_length, past_length + q_len, device=input_ids.device)
        causal = q_pos[:, None] >= torch.arange(k_len, device=input_ids.device)[None, :]
        allowed = causal[None] & key_visible[:, None, :]
        bias = torch.zeros(bsz, 1, q_len, k_len, dtype=self.dtype, device=input_ids.device)
        bias = bias.masked_fill(~allowed[:, None], torch.finfo(self.dtype).min)
        return bias, key_visible

    # -- forward ---------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        audio_values: torch.Tensor | None = None,
        modality_visible: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        cache: Cache | None = None,
        use_cache: bool = False,
        past_key_visible: torch.Tensor | None = None,
        **kwargs,
    ) -> MigrOutput:
        """Forward over a full sequence (training, scoring, prefill) or a continuation of a cache.

        ``modality_visible`` ``(B, M)`` bool: False hides that modality's
        tokens (modality dropout, a missing camera or microphone, or an MI
        variant). A modality whose input is ``None`` is hidden automatically.
        ``labels`` ``(B, L)``: next-token targets aligned with ``input_ids``
        (-100 = ignore); the loss is the usual shifted cross-entropy.

        With a non-empty ``cache``, ``input_ids`` continue it: positions
        follow the cached length, and ``past_key_visible`` (the previous
        output's ``key_visible``) keeps hidden modality keys hidden; it is
        required, since guessing it would silently unmask a modality.
        """
        past_length = cache.get_seq_length() if cache is not None else 0
        if past_length and past_key_visible is None:
            raise ValueError("continuing a cache needs past_key_visible (the key_visible of the previous output)")
        if past_key_visible is not None and past_key_visible.shape[1] != past_length:
            raise ValueError(f"past_key_visible covers {past_key_visible.shape[1]} keys but the cache holds {past_length}")
        visible = self._visibility(input_ids, pixel_values, audio_values, modality_visible)
        if inputs_embeds is None:
            inputs_embeds = self._embed_inputs(input_ids, pixel_values, audio_values, None)
        bias, key_visible = self.attention_bias(input_ids, visible, attention_mask, past_length, past_key_visible)
        if position_ids is None:
            position_ids = torch.arange(past_length, past_length + input_ids.shape[1], device=input_ids.device)
            position_ids = position_ids[None].expand_as(input_ids)
        out = self.decoder(
            inputs_embeds=inputs_embeds,
            attention_mask=bias,
            position_ids=position_ids,
            use_cache=use_cache,
            **{self._cache_name: cache},
        )
        loss = None
        if labels is not None:
            logits = out.logits[:, :-1].float()
            loss = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
            )
        return MigrOutput(
            loss=loss,
            logits=out.logits,
            cache=out.get(self._cache_name, None) if use_cache else None,
            key_visible=key_visible if use_cache else None,
        )

    def _visibility(self, input_ids, pixel_values, audio_values, modality_visible) -> torch.Tensor:
        bsz = input_ids.shape[0]
        visible = torch.ones(bsz, self.config.num_modalities, dtype=torch.bool, device=input_ids.device)
        if modality_visible is not None:
            if modality_visible.shape != visible.shape:
                raise ValueError(f"modality_visible must have shape {tuple(visible.shape)}, got {tuple(modality_visible.shape)}")
            visible &= modality_visible.to(device=input_ids.device, dtype=torch.bool)
        if pixel_values is None:
            visible[:, 0] = False
        if audio_values is None:
            visible[:, 1] = False
        return visible

    def hidden_states(
        self,
        inputs_embeds: torch.Tensor,
        input_ids: torch.Tensor,
        modality_visible: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Final decoder hidden states ``(B, L, H)`` without the LM head (scoring reads one row)."""
        bias, _ = self.attention_bias(input_ids, modality_visible, attention_mask)
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)[None].expand_as(input_ids)
        return self.decoder.model(inputs_embeds=inputs_embeds, attention_mask=bias, position_ids=position_ids).last_hidden_state

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits of hidden states ``(..., H)`` (the LM head, as a method: see ``encode_modalities``)."""
        return self.decoder.lm_head(hidden)

    def label_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Project hidden states ``(..., H)`` onto the label-token rows of the LM head only: ``(..., C)``."""
        weight = self.decoder.get_output_embeddings().weight[self.label_token_ids]
        return hidden @ weight.T

    # -- verified checkpoints ----------------------------------------------------
    def save_pretrained(self, save_directory, *args, **kwargs):  # noqa: D401 - documented in checkpoint.py
        """Save with safetensors only and record every file's SHA-256 (see ``migr_rt.model.checkpoint``)."""
        from migr_rt.model.checkpoint import write_checksums

        kwargs["safe_serialization"] = True
        result = super().save_pretrained(save_directory, *args, **kwargs)
        write_checksums(Path(save_directory))
        return result

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Load a local checkpoint after refusing pickle files and verifying recorded SHA-256 sums.

        Nothing is downloaded: a path that is not a local folder is an error.
        """
        from migr_rt.model.checkpoint import verify_checkpoint

        path = verify_checkpoint(pretrained_model_name_or_path)
        kwargs["use_safetensors"] = True
        kwargs["local_files_only"] = True
        # Under `accelerate launch --use_fsdp`, FSDP_CPU_RAM_EFFICIENT_LOADING makes from_pretrained give every
        # rank but the first zeros, to be filled by a broadcast when accelerate wraps the model. Our loads are
        # used as they are (MI labels, evaluation, resumed stages): every rank reads the whole (small) file.
        with _LOAD_LOCK:
            ram_efficient = os.environ.pop(_RAM_EFFICIENT_ENV, None)
            try:
                return super().from_pretrained(str(path), *args, **kwargs)
            finally:
                if ram_efficient is not None:
                    os.environ[_RAM_EFFICIENT_ENV] = ram_efficient
