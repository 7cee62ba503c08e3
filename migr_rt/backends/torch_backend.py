"""The torch backend: the inference graphs run eagerly on a loaded checkpoint (CPU or CUDA)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from migr_rt.backends.base import Backend, DecoderState, ModalityTokens, as_numpy, importance_result
from migr_rt.backends.graph_decode import StaticDecoder, cuda_graphs_default
from migr_rt.kernels import kernels_wanted
from migr_rt.importance import ModalityImportance
from migr_rt.model import MigrForEmotionReasoning, load_checkpoint
from migr_rt.model.graphs import build_graphs


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model: MigrForEmotionReasoning, *, kernels: bool | None = None,
                 cuda_graphs: bool | None = None) -> None:
        """``kernels``: score MI on the Triton kernels (+ CUDA graphs); ``None`` = on CUDA when Triton imports,
        unless ``MIGR_RT_KERNELS=0`` (see :func:`migr_rt.kernels.kernels_wanted`). ``cuda_graphs``: decode
        rationales from CUDA graphs over a static cache (:mod:`migr_rt.backends.graph_decode`); ``None`` = on
        CUDA unless ``MIGR_RT_CUDA_GRAPHS=0``."""
        super().__init__(model.config)
        self.model = model.eval()
        self.device = model.device
        # The graphs' own buffers (token ids, RoPE frequencies) are built on the CPU: move them to the model.
        self.graphs = {name: graph.to(self.device) for name, graph in build_graphs(model).items()}
        self.kernels = kernels_wanted(kernels, self.device)
        if self.kernels:
            from migr_rt.kernels.scoring import KernelScoring

            self.kernel_scoring = KernelScoring(self.graphs["scoring"])
        if cuda_graphs is None:
            cuda_graphs = self.device.type == "cuda" and cuda_graphs_default()
        if cuda_graphs and self.device.type != "cuda":
            raise RuntimeError(f"cuda_graphs=True needs the model on a CUDA device; it is on {self.device}")
        self.cuda_graphs = bool(cuda_graphs)
        self.static_decoder = (StaticDecoder(self.graphs["step"].decoder,
                                             model.config.text_config.max_position_embeddings, cuda_graphs=True)
                               if self.cuda_graphs else None)

    @classmethod
    def from_checkpoint(cls, folder: str | Path, device: str = "cpu", *, kernels: bool | None = None) -> TorchBackend:
        model, _ = load_checkpoint(folder, device=device)
        return cls(model, kernels=kernels)

    def describe(self) -> str:
        kernels = ", MI on triton kernels" if self.kernels else ""
        graphs = ", decoding from CUDA graphs" if self.cuda_graphs else ""
        return (f"torch {torch.__version__} on {self.device}, {str(self.model.dtype).removeprefix('torch.')}"
                f"{kernels}{graphs}")

    def _run(self, name: str, *args):
        graph = self.kernel_scoring if name == "scoring" and self.kernels else self.graphs[name]
        with torch.inference_mode():
            out = graph(*(torch.as_tensor(a).to(self.device) for a in args))
        return out

    def encode_frames(self, frames) -> np.ndarray:
        return as_numpy(self._run("visual_frames", as_numpy(frames, np.float32)), np.float32)

    def pool_frames(self, frame_embeddings) -> np.ndarray:
        return as_numpy(self._run("visual_pool", as_numpy(frame_embeddings, np.float32)), np.float32)

    def encode_audio(self, waveform) -> np.ndarray:
        return as_numpy(self._run("audio", as_numpy(waveform, np.float32)), np.float32)

    def score_mi(self, tokens: ModalityTokens, present) -> ModalityImportance:
        out = self._run("scoring", *_tokens(tokens), as_numpy(present, bool))
        return importance_result(*out, present=present)

    def prefill(self, input_ids, tokens, visible) -> tuple[np.ndarray, DecoderState]:
        logits, keys, values, key_visible = self._run(
            "prefill", as_numpy(input_ids, np.int64), *_tokens(tokens), as_numpy(visible, bool))
        return as_numpy(logits, np.float32), DecoderState(keys, values, key_visible)

    def step(self, token, state) -> tuple[np.ndarray, DecoderState]:
        token = torch.as_tensor(as_numpy(token, np.int64))
        if self.static_decoder is not None:
            logits, state = self.static_decoder.step(token.to(self.device), state)
            return as_numpy(logits, np.float32), state
        logits, keys, values, key_visible = self._run(
            "step", token.reshape(-1, 1), state.keys, state.values, state.key_visible)
        return as_numpy(logits, np.float32), DecoderState(keys, values, key_visible)


def _tokens(tokens: ModalityTokens) -> tuple[np.ndarray, np.ndarray]:
    """The encoder tokens as the interface's float32 (as the artifact backends take them: float64 arrays too)."""
    return as_numpy(tokens.visual, np.float32), as_numpy(tokens.audio, np.float32)

