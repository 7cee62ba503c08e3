"""The inference graphs: pure tensor-in, tensor-out modules over a loaded model's weights.

Each module here is one unit the runtime calls and one graph the exporter
writes: visual frames, visual pooling, audio, MI scoring, decoder prefill and
decoder step. The torch backend runs them eagerly and ``export/`` traces the
very same modules, so torch and ONNX share one definition and parity tests
compare like with like.

The decoder is written out (RMSNorm, RoPE, GQA attention, SwiGLU) on the
Qwen2 weights instead of calling ``transformers``' forward: the cache is two
plain tensors, ``keys``/``values`` ``(layers, B, kv_heads, T, head_dim)``,
which gives the exported step graph four inputs instead of a cache object,
and it skips the Python bookkeeping that dominates a 4-layer decoder's step.
``tests/test_graphs.py`` checks it against the ``transformers`` forward.

Masking follows the model (DESIGN.md): a hidden modality's tokens are
invisible as keys, positions unchanged. ``key_visible`` ``(B, T)`` travels
with the cache so that a modality hidden at prefill stays hidden while
decoding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from migr_rt.mi import importance_from_log_probs, variant_visibility
from migr_rt.model import graph_shapes
from migr_rt.model.layout import scoring_ids

if TYPE_CHECKING:  # the decoder wrapper imports transformers' modeling stack
    from migr_rt.model.modeling import MigrForEmotionReasoning

#: Re-exported: the table of config-fixed graph dimensions lives in the torch-free graph_shapes, which a run on an
#: exported artifact reads without importing torch.
ConfigDim = graph_shapes.ConfigDim
graph_dims = graph_shapes.graph_dims


class KVDecoder(nn.Module):
    """The Qwen2 decoder of ``model`` as explicit-cache prefill/step functions (weights shared, not copied)."""

    def __init__(self, model: MigrForEmotionReasoning) -> None:
        super().__init__()
        text = model.config.text_config
        self.embed = model.decoder.model.embed_tokens
        self.layers = model.decoder.model.layers
        self.norm = model.decoder.model.norm
        self.lm_head = model.decoder.lm_head
        self.heads = text.num_attention_heads
        self.kv_heads = text.num_key_value_heads
        self.head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        self.eps = text.rms_norm_eps
        rope = getattr(text, "rope_parameters", None) or {}
        if rope.get("rope_type", "default") != "default":
            raise ValueError(f"rope type {rope.get('rope_type')!r} is not supported by the inference graphs")
        theta = rope.get("rope_theta", getattr(text, "rope_theta", 10000.0))
        inv_freq = 1.0 / (theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.vis_token = model.config.special_token_ids["vis_token"]
        self.aud_token = model.config.special_token_ids["aud_token"]

    # -- pieces ---------------------------------------------------------------
    def _rms(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * x.to(dtype)

    def _rope(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = positions.float()[:, :, None] * self.inv_freq[None, None, :]  # (B, Q, D/2)
        emb = torch.cat([freqs, freqs], dim=-1)[:, None]  # (B, 1, Q, D)
        return emb.cos().to(dtype), emb.sin().to(dtype)

    @staticmethod
    def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin

    def key_visibility(self, input_ids: torch.Tensor, modality_visible: torch.Tensor) -> torch.Tensor:
        """``(B, L)``: False where a token belongs to a modality hidden in that row."""
        hidden_vis = (input_ids == self.vis_token) & ~modality_visible[:, :1]
        hidden_aud = (input_ids == self.aud_token) & ~modality_visible[:, 1:2]
        return ~(hidden_vis | hidden_aud)

    def run(
        self,
        embeds: torch.Tensor,
        positions: torch.Tensor,
        key_visible: torch.Tensor,
        past_keys: torch.Tensor | None = None,
        past_values: torch.Tensor | None = None,
        slot: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Hidden states ``(B, Q, H)`` after the final norm, and the whole cache ``(layers, B, kv, T, D)``.

        ``key_visible`` ``(B, T)`` covers past and new keys; queries see
        visible keys at or before their own position.

        With ``slot`` (a ``(1,)`` long tensor, one new token) ``past_keys``/
        ``past_values`` are fixed-size buffers ``(layers, B, kv, T_max, D)``:
        the new key and value are written into that slot in place and the
        token attends over the whole buffer as ``key_visible`` allows (unused
        slots invisible). No tensor changes shape from one step to the next,
        so the step can be captured in a CUDA graph; no cache is returned.
        """
        bsz, q_len, _ = embeds.shape
        k_len = key_visible.shape[1]
        past_len = k_len - q_len
        q_pos = torch.arange(q_len, device=embeds.device) + past_len
        causal = q_pos[:, None] >= torch.arange(k_len, device=embeds.device)[None, :]
        allowed = causal[None, None] & key_visible[:, None, None, :]  # (B, 1, Q, K)
        cos, sin = self._rope(positions, embeds.dtype)
        group = self.heads // self.kv_heads
        scale = self.head_dim ** -0.5
        x = embeds
        keys, values = [], []
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            h = self._rms(x, layer.input_layernorm.weight)
            q = attn.q_proj(h).view(bsz, q_len, self.heads, self.head_dim).transpose(1, 2)
            k = attn.k_proj(h).view(bsz, q_len, self.kv_heads, self.head_dim).transpose(1, 2)
            v = attn.v_proj(h).view(bsz, q_len, self.kv_heads, self.head_dim).transpose(1, 2)
            q, k = self._rotate(q, cos, sin), self._rotate(k, cos, sin)
            if slot is not None:
                past_keys[i].index_copy_(2, slot, k)
                past_values[i].index_copy_(2, slot, v)
                k, v = past_keys[i], past_values[i]
            else:
                if past_keys is not None:
                    k = torch.cat([past_keys[i], k], dim=2)
                    v = torch.cat([past_values[i], v], dim=2)
                keys.append(k)
                values.append(v)
            kk = k.repeat_interleave(group, dim=1)
            vv = v.repeat_interleave(group, dim=1)
            scores = (q @ kk.transpose(-1, -2)).float() * scale
            scores = scores.masked_fill(~allowed, torch.finfo(torch.float32).min)
            probs = scores.softmax(dim=-1).to(vv.dtype)
            out = (probs @ vv).transpose(1, 2).reshape(bsz, q_len, self.heads * self.head_dim)
            x = x + attn.o_proj(out)
            h = self._rms(x, layer.post_attention_layernorm.weight)
            mlp = layer.mlp
            x = x + mlp.down_proj(nn.functional.silu(mlp.gate_proj(h)) * mlp.up_proj(h))
        if slot is not None:
            return self._rms(x, self.norm.weight), None, None
        return self._rms(x, self.norm.weight), torch.stack(keys), torch.stack(values)


class _Embedder(nn.Module):
    """Token embeddings with the modality tokens written at their placeholders (layout fixed by the config)."""

    def __init__(self, model: MigrForEmotionReasoning) -> None:
        super().__init__()
        self.embed = model.decoder.model.embed_tokens
        ids = model.config.special_token_ids
        self.vis_token, self.aud_token = ids["vis_token"], ids["aud_token"]

    def forward(self, input_ids: torch.Tensor, visual_tokens: torch.Tensor, audio_tokens: torch.Tensor) -> torch.Tensor:
        embeds = self.embed(input_ids)
        for token, values in ((self.vis_token, visual_tokens), (self.aud_token, audio_tokens)):
            where = (input_ids == token)[..., None]
            embeds = embeds.masked_scatter(where, values.to(embeds.dtype))
        return embeds


class VisualFramesGraph(nn.Module):
    """Face crops ``(N, 3, S, S)`` in [0, 1] -> frame embeddings ``(N, D)``: per frame, so the runtime caches them."""

    def __init__(self, model: MigrForEmotionReasoning) -> None:
        super().__init__()
        self.frame_encoder = model.visual_encoder.frame_encoder

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.frame_encoder(frames.to(self.frame_encoder.proj.weight.dtype))


class VisualPoolGraph(nn.Module):
    """Frame embeddings ``(B, T, D)`` -> projected visual tokens ``(B, Nv, H)``."""

    def __init__(self, model: MigrForEmotionReasoning) -> None:
        super().__init__()
        self.encoder = model.visual_encoder
        self.projector = model.visual_projector

    def forward(self, frame_embeddings: torch.Tensor) -> torch.Tensor:
        return self.projector(self.encoder.pool_frames(frame_embeddings))


class AudioGraph(nn.Module):
    """Waveform ``(B, S)`` -> projected audio tokens ``(B, Na, H)``."""

    def __init__(self, model: MigrForEmotionReasoning) -> None:
        super().__init__()
        self.encoder = model.audio_encoder
        self.projector = model.audio_projector

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.projector(self.encoder(waveform))


class ScoringGraph(nn.Module):
    """MI scoring: B windows x (1 + M) variants in one decoder pass, label log-probs and MI out.

    Inputs: ``visual_tokens`` ``(B, Nv, H)``, ``audio_tokens`` ``(B, Na, H)``,
    ``present`` ``(B, M)`` bool (an absent modality's tokens are ignored).
    Outputs: ``log_probs`` ``(B, 1+M, C)`` (variant 0 all present visible,
    1+m modality m masked), then ``mi``, ``importance`` ``(B, M)`` and
    ``dominant`` ``(B,)`` for the predicted label, as :mod:`migr_rt.mi` defines them.
    """

    def __init__(self, model: MigrForEmotionReasoning) -> None:
        super().__init__()
        self.embedder = _Embedder(model)
        self.decoder = KVDecoder(model)
        self.register_buffer("ids", torch.tensor(scoring_ids(model.config), dtype=torch.long), persistent=False)
        self.register_buffer("label_ids", torch.tensor(model.config.label_token_ids, dtype=torch.long), persistent=False)
        self.variants = 1 + model.config.num_modalities

    def variant_rows(
        self, visual_tokens: torch.Tensor, audio_tokens: torch.Tensor, present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The ``B * (1+M)`` decoder rows of the variants: embeddings, positions and key visibility."""
        bsz = visual_tokens.shape[0]
        ids = self.ids[None].expand(bsz, -1)
        embeds = self.embedder(ids, visual_tokens, audio_tokens)
        visible = variant_visibility(present).reshape(bsz * self.variants, -1)
        rows = ids.repeat_interleave(self.variants, dim=0)
        key_visible = self.decoder.key_visibility(rows, visible)
        positions = torch.arange(rows.shape[1], device=rows.device)[None].expand_as(rows)
        return embeds.repeat_interleave(self.variants, dim=0), positions, key_visible

    def label_log_probs(self, hidden_last: torch.Tensor) -> torch.Tensor:
        """Log-softmax over the label tokens of the answer slot's hidden states ``(..., H)``."""
        return (hidden_last @ self.decoder.lm_head.weight[self.label_ids].T).float().log_softmax(dim=-1)

    def forward(
        self, visual_tokens: torch.Tensor, audio_tokens: torch.Tensor, present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        bsz = visual_tokens.shape[0]
        # Only the answer slot (the last position) is read; the decoder still needs every position as keys.
        hidden, _, _ = self.decoder.run(*self.variant_rows(visual_tokens, audio_tokens, present))
        log_probs = self.label_log_probs(hidden[:, -1]).reshape(bsz, self.variants, -1)
        target = log_probs[:, 0].argmax(dim=-1)
        mi, importance, dominant = importance_from_log_probs(log_probs, target, present)
        return log_probs, mi, importance, dominant


class PrefillGraph(nn.Module):
    """Rationale prefill: ``input_ids`` ``(B, L)`` (every row the same length) -> last logits and the cache.

    ``modality_visible`` ``(B, M)`` bool hides a modality for the whole
    rationale. Outputs ``logits`` ``(B, V)`` at the last position, ``keys``,
    ``values`` ``(layers, B, kv, L, D)`` and ``key_visible`` ``(B, L)``.
    """

    def __init__(self, model: MigrForEmotionReasoning) -> None:
        super().__init__()
        self.embedder = _Embedder(model)
        self.decoder = KVDecoder(model)

    def forward(
        self, input_ids: torch.Tensor, visual_tokens: torch.Tensor, audio_tokens: torch.Tensor,
        modality_visible: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        embeds = self.embedder(input_ids, visual_tokens, audio_tokens)
        key_visible = self.decoder.key_visibility(input_ids, modality_visible)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None].expand_as(input_ids)
        hidden, keys, values = self.decoder.run(embeds, positions, key_visible)
        return self.decoder.lm_head(hidden[:, -1]).float(), keys, values, key_visible


class StepGraph(nn.Module):
    """One decoding step: ``token`` ``(B, 1)`` and the cache -> logits ``(B, V)`` and the cache one longer."""

    def __init__(self, model: MigrForEmotionReasoning) -> None:
        super().__init__()
        self.decoder = KVDecoder(model)

    def forward(
        self, token: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, key_visible: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        bsz = token.shape[0]
        past_len = keys.shape[3]
        embeds = self.decoder.embed(token)
        key_visible = torch.cat([key_visible, torch.ones(bsz, 1, dtype=torch.bool, device=token.device)], dim=1)
        positions = torch.full((bsz, 1), past_len, dtype=torch.long, device=token.device)
        hidden, keys, values = self.decoder.run(embeds, positions, key_visible, keys, values)
        return self.decoder.lm_head(hidden[:, -1]).float(), keys, values, key_visible


GRAPHS: dict[str, type[nn.Module]] = {
    "visual_frames": VisualFramesGraph,
    "visual_pool": VisualPoolGraph,
    "audio": AudioGraph,
    "scoring": ScoringGraph,
    "prefill": PrefillGraph,
    "step": StepGraph,
}


def build_graphs(model: MigrForEmotionReasoning) -> dict[str, nn.Module]:
    """Every inference graph over ``model``'s weights, in eval mode."""
    return {name: cls(model).eval() for name, cls in GRAPHS.items()}
