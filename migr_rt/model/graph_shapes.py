"""Which dimensions of each inference graph's tensors the model config fixes, without torch or transformers.

Loading an exported artifact checks its graphs' static dimensions against its manifest's config (:func:`graph_dims`,
read by :func:`migr_rt.artifact.check_shapes` and the backends). That check runs on every artifact load, so it lives
apart from :mod:`migr_rt.model.graphs` (the torch modules the exporter traces) and reads either a
:class:`~migr_rt.model.spec.ModelSpec` or a :class:`~migr_rt.model.config.MigrConfig`: both have the same fields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # MigrConfig imports transformers; graph_dims only reads attributes both classes have
    from migr_rt.model.config import MigrConfig
    from migr_rt.model.spec import ModelSpec

#: One dimension of a graph tensor as the config sets it: (the config field, in the manifest's spelling, and its
#: value), or None for an axis the graph leaves dynamic (batch, frames, sequence) or that no field sets.
ConfigDim = tuple[str, int] | None


def graph_dims(config: ModelSpec | MigrConfig) -> dict[str, dict[str, list[ConfigDim]]]:
    """Graph -> tensor -> the size of each dimension that ``config`` fixes, and the field that fixes it.

    A graph bakes these sizes in when it is traced, while the runtime sizes its inputs from the config (frames per
    window, audio samples, token counts). An artifact whose manifest config disagrees with its graphs (edited and
    sealed again) would load and then fail inside onnxruntime on the first window; comparing the graphs' static
    dimensions with this table refuses it at load, naming the field (:func:`migr_rt.artifact.check_shapes`).
    """
    t = config.text_config
    hidden = ("text_config.hidden_size", t.hidden_size)
    head_dim = getattr(t, "head_dim", None) or t.hidden_size // t.num_attention_heads
    frames, face = ("num_frames", config.num_frames), ("face_size", config.face_size)
    visual_dim = ("visual_dim", config.visual_dim)
    visual = [None, ("num_visual_tokens", config.num_visual_tokens), hidden]
    audio = [None, ("num_audio_tokens", config.num_audio_tokens), hidden]
    modalities = [None, ("modalities (their number)", config.num_modalities)]
    cache = [("text_config.num_hidden_layers", t.num_hidden_layers), None,
             ("text_config.num_key_value_heads", t.num_key_value_heads), None, ("text_config.head_dim", head_dim)]
    logits = [None, ("text_config.vocab_size", t.vocab_size)]
    # the fused step's in-place cache: one buffer per layer, its capacity chosen by the caller
    layer_cache = [None, ("text_config.num_key_value_heads", t.num_key_value_heads), None,
                   ("text_config.head_dim", head_dim)]
    return {
        "visual_frames": {"frames": [None, None, face, face], "frame_embeddings": [None, visual_dim]},
        "visual_pool": {"frame_embeddings": [None, frames, visual_dim], "visual_tokens": visual},
        "audio": {"waveform": [None, ("audio_seconds x sample_rate", config.audio_samples)], "audio_tokens": audio},
        "scoring": {"visual_tokens": visual, "audio_tokens": audio, "present": modalities,
                    "log_probs": [None, ("modalities (their number) + 1", 1 + config.num_modalities),
                                  ("labels (their number)", len(config.labels))],
                    "mi": modalities, "importance": modalities},
        "prefill": {"visual_tokens": visual, "audio_tokens": audio, "modality_visible": modalities,
                    "logits": logits, "keys": cache, "values": cache},
        "step": {"logits": logits, "keys": cache, "values": cache, "keys_out": cache, "values_out": cache,
                 **{f"{io}_{kind}_{i}": layer_cache for i in range(t.num_hidden_layers) for kind in ("key", "value")
                    for io in ("past", "present")}},
    }
