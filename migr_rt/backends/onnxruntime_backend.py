"""The onnxruntime backend: the exported graphs of an ONNX artifact folder.

Execution providers: TensorRT, CUDA and CPU, in that order of preference,
kept only if onnxruntime both lists them and can actually create a session
with them (onnxruntime-gpu lists CUDA/TensorRT even when their libraries are
missing, so the session's own ``get_providers()`` is what counts). The
decoder cache stays in numpy arrays between steps: the fused step's in
fixed buffers it updates in place (:mod:`migr_rt.backends.static_cache`),
a traced step's (fp16, or an export from before) as a new array per step.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from migr_rt.artifact import ArtifactError, Manifest, check_io, check_shapes, read_artifact
from migr_rt.backends.base import (Backend, BackendUnavailable, DecoderState, ModalityTokens, as_numpy,
                                   importance_result)
from migr_rt.backends.integer_matmul import INT8_WEIGHT_BITS, full_range_int8_overflows
from migr_rt.backends.static_cache import StaticCacheStep, check_room, is_static_step
from migr_rt.importance import ModalityImportance
from migr_rt.model.graph_shapes import graph_dims
from migr_rt.model.spec import ModelSpec

logger = logging.getLogger(__name__)

#: Graphs run once per window, one after another (see the spinning note in OnnxRuntimeBackend).
ENCODER_GRAPHS = ("visual_frames", "visual_pool", "audio")
#: Graphs of the rationale's decoding loop.
DECODER_GRAPHS = ("prefill", "step")
#: A decoder with fewer fp32 weight bytes than this decodes on one thread by default (see ``decode_threads``).
SMALL_DECODER_BYTES = 64 * 2**20
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
#: The first onnxruntime that runs the fused decoder step right: 1.22 cannot read its opset 23 (IR 11), and 1.23.0's
#: ``Attention`` with a past cache, which the step used before its in-place cache, is wrong (0.63 max error on random
#: inputs; the bundled model's rationales came out garbled). Today's step is checked from 1.23.1 on.
FUSED_STEP_ONNXRUNTIME = (1, 23, 1)


def _ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailable("onnxruntime is not installed: pip install 'migr-rt[onnx]'") from exc
    return onnxruntime


def _session_options(ort, threads: int | None, spinning: bool):
    options = ort.SessionOptions()
    # The graphs were optimised at export; basic fusions again are cheap and safe for any machine.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def release_numbers(version: str) -> tuple[int, int, int]:
    """``"1.23.0"`` -> ``(1, 23, 0)``: the leading release numbers (a ``.dev``/``rc``/``+cu12`` tail is ignored)."""
    found = re.match(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", version)
    return tuple(int(n or 0) for n in found.groups()) if found else (0, 0, 0)


def _decoder_bytes(config: ModelSpec) -> int:
    """fp32 bytes of the decoder's weights, from its shape (the graph files may keep weights elsewhere)."""
    t = config.text_config
    head_dim = getattr(t, "head_dim", None) or t.hidden_size // t.num_attention_heads
    attention = t.hidden_size * head_dim * (2 * t.num_attention_heads + 2 * t.num_key_value_heads)
    mlp = 3 * t.hidden_size * t.intermediate_size
    return 4 * (t.num_hidden_layers * (attention + mlp) + t.vocab_size * t.hidden_size)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(
        self, folder: str | Path, *, providers: list[str] | None = None, threads: int | None = None,
        manifest: Manifest | None = None, spinning: bool = True, decode_threads: int | None = None,
    ) -> None:
        ort = _ort()
        self.folder = Path(folder)
        self.manifest = manifest or read_artifact(self.folder)
        if self.manifest.format != "onnx":
            raise ArtifactError(f"{self.folder}: a {self.manifest.format} artifact; the onnxruntime backend reads onnx ones")
        super().__init__(ModelSpec.from_dict(self.manifest.model_config))
        wanted = list(providers) if providers else [p for p in PREFERRED_PROVIDERS if p in ort.get_available_providers()]
        # Idle intra-op threads spin for a while after each run. That pays off for the decoder graphs, called
        # back to back in the decoding loop (step 0.32 vs 0.41 ms here), but the three encoder graphs run one
        # after the other, and each one's spinning pool steals the cores from the next (encode 7.3 vs 3.5 ms).
        options = _session_options(ort, threads, spinning)
        quiet = _session_options(ort, threads, spinning=False)
        # A small decoder's step is a few hundred tiny operators: on more than one thread their hand-offs cost
        # more than they save, and the pool's spinning between steps takes a core from the face detector and
        # the capture threads (window -> full rationale 136 -> 81 ms on 2 cores). Large decoders keep `threads`.
        if decode_threads is None and (threads is None or threads > 1) and _decoder_bytes(self.config) < SMALL_DECODER_BYTES:
            decode_threads = 1
        decoding = _session_options(ort, decode_threads, spinning) if decode_threads else options
        self.decode_threads = decode_threads or threads
        # The fused step looks rotary angles up in a table as long as the model's positions.
        fused = str(self.manifest.extra.get("step_graph", "")).startswith("fused")
        if fused and release_numbers(ort.__version__) < FUSED_STEP_ONNXRUNTIME:
            raise BackendUnavailable(
                f"{self.folder}: its decoder step needs onnxruntime >= "
                f"{'.'.join(map(str, FUSED_STEP_ONNXRUNTIME))}, this is {ort.__version__} (pip install -U onnxruntime)")
        self.max_positions = self.config.text_config.max_position_embeddings if fused else None
        self.sessions = {}
        dims = graph_dims(self.config)
        for name, spec in self.manifest.graphs.items():
            path = self.folder / spec.file
            chosen = quiet if name in ENCODER_GRAPHS else decoding if name in DECODER_GRAPHS else options
            try:
                session = ort.InferenceSession(str(path), chosen, providers=wanted)
            except Exception as exc:  # onnxruntime raises its own exception types
                raise ArtifactError(f"{path}: onnxruntime cannot load graph {name!r}: {exc}") from exc
            check_io(path, spec, [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
            shapes = {t.name: list(t.shape) for t in session.get_inputs() + session.get_outputs()}
            check_shapes(path, name, spec, shapes, dims.get(name, {}))
            self.sessions[name] = session
        self.providers = self.sessions["step"].get_providers()
        #: the fused step's in-place cache (None for a traced step, or one exported before it)
        self.static_step: StaticCacheStep | None = None
        if is_static_step([i.name for i in self.sessions["step"].get_inputs()]):
            try:
                self.static_step = StaticCacheStep(self.sessions["step"], self.config.text_config.num_hidden_layers,
                                               self.config.text_config.max_position_embeddings)
            except ValueError as exc:
                raise ArtifactError(f"{self.folder / self.manifest.graphs['step'].file}: {exc}; export the "
                                    "checkpoint again") from exc
        if providers and providers[0] not in self.providers:
            raise BackendUnavailable(
                f"onnxruntime could not use {providers[0]} (session runs on {self.providers}); "
                "its libraries or device are missing")
        self._warn_if_int8_overflows()

    def _warn_if_int8_overflows(self) -> None:
        # Exports before 7-bit int8 weights (no "int8_weight_bits" in the manifest) have full-range ones. The
        # GPU providers have no uint8 x int8 MatMulInteger: those nodes run on the CPU provider either way.
        if self.manifest.precision != "int8" or self.manifest.extra.get("int8_weight_bits") == INT8_WEIGHT_BITS:
            return
        if "CPUExecutionProvider" in self.providers and full_range_int8_overflows():
            logger.warning(
                "%s: this int8 artifact has full-range int8 weights, and onnxruntime's int8 kernel on this CPU "
                "(no VNNI) overflows their sums: labels, MI and rationales lose accuracy. Export it again "
                "(migr-rt export --precision int8) for 7-bit weights, which this CPU sums exactly.", self.folder)

    def describe(self) -> str:
        threads = f", decoder on {self.decode_threads} thread(s)" if self.decode_threads else ""
        return f"onnxruntime {_ort().__version__} ({', '.join(self.providers)}), {self.manifest.precision}{threads}"

    def _run(self, name: str, **feeds: np.ndarray) -> list[np.ndarray]:
        return self.sessions[name].run(None, feeds)

    def encode_frames(self, frames) -> np.ndarray:
        return self._run("visual_frames", frames=as_numpy(frames, np.float32))[0].astype(np.float32, copy=False)

    def pool_frames(self, frame_embeddings) -> np.ndarray:
        out = self._run("visual_pool", frame_embeddings=as_numpy(frame_embeddings, np.float32))[0]
        return out.astype(np.float32, copy=False)

    def encode_audio(self, waveform) -> np.ndarray:
        return self._run("audio", waveform=as_numpy(waveform, np.float32))[0].astype(np.float32, copy=False)

    def score_mi(self, tokens: ModalityTokens, present) -> ModalityImportance:
        present = as_numpy(present, bool)
        out = self._run("scoring", visual_tokens=as_numpy(tokens.visual, np.float32),
                        audio_tokens=as_numpy(tokens.audio, np.float32), present=present)
        return importance_result(*out, present=present)

    def prefill(self, input_ids, tokens, visible) -> tuple[np.ndarray, DecoderState]:
        logits, keys, values, key_visible = self._run(
            "prefill", input_ids=as_numpy(input_ids, np.int64), visual_tokens=as_numpy(tokens.visual, np.float32),
            audio_tokens=as_numpy(tokens.audio, np.float32), modality_visible=as_numpy(visible, bool))
        return logits.astype(np.float32, copy=False), DecoderState(keys, values, key_visible)

    def step(self, token, state) -> tuple[np.ndarray, DecoderState]:
        if self.static_step is not None:
            return self.static_step.step(token, state)
        if self.max_positions is not None:
            check_room(state.keys.shape[3], self.max_positions)
        logits, keys, values, key_visible = self._run(
            "step", token=as_numpy(token, np.int64).reshape(-1, 1), keys=state.keys, values=state.values,
            key_visible=state.key_visible)
        return logits.astype(np.float32, copy=False), DecoderState(keys, values, key_visible)
