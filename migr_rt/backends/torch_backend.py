"""The torch backend: the inference graphs run eagerly on a loaded checkpoint (CPU or CUDA)."""

from __future__ import annotations

from pathlib import Path

import torch

from migr_rt.backends.base import Backend, DecoderState, ModalityTokens, importance_result
from migr_rt.backends.graph_decode import StaticDecoder, cuda_graphs_default
from migr_rt.kernels import kernels_wanted
from migr_rt.mi import ModalityImportance
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

    def _run(self, name: str, *args: torch.Tensor):
        graph = self.kernel_scoring if name == "scoring" and self.kernels else self.graphs[name]
        with torch.inference_mode():
            out = graph(*(a.to(self.device) for a in args))
        return out

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        return self._run("visual_frames", frames).float().cpu()

    def pool_frames(self, frame_embeddings: torch.Tensor) -> torch.Tensor:
        return self._run("visual_pool", frame_embeddings).float().cpu()

    def encode_audio(self, waveform: torch.Tensor) -> torch.Tensor:
        return self._run("audio", waveform).float().cpu()

    def score_mi(self, tokens: ModalityTokens, present: torch.Tensor) -> ModalityImportance:
        out = self._run("scoring", tokens.visual, tokens.audio, present.bool())
        return importance_result(*(o.cpu() for o in out), present=present)

    def prefill(self, input_ids, tokens, visible) -> tuple[torch.Tensor, DecoderState]:
        logits, keys, values, key_visible = self._run("prefill", input_ids, tokens.visual, tokens.audio, visible.bool())
        return logits.cpu(), DecoderState(keys, values, key_visible)

    def step(self, token, state) -> tuple[torch.Tensor, DecoderState]:
        if self.static_decoder is not None:
            logits, state = self.static_decoder.step(token.to(self.device), state)
            return logits.cpu(), state
        logits, keys, values, key_visible = self._run(
            "step", token.reshape(-1, 1), state.keys, state.values, state.key_visible)
        return logits.cpu(), DecoderState(keys, values, key_visible)
