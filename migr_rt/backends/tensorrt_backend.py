"""The TensorRT backend: serialized engines of a ``tensorrt`` artifact folder, run on a CUDA GPU.

An engine is only valid for the TensorRT version and the GPU (compute
capability) it was built on, so the folder's manifest records both
(``extra``: ``tensorrt_version``, ``gpu``, ``compute_capability``) and
:func:`check_engine_compatibility` refuses a mismatch with a message instead
of letting deserialisation fail obscurely. The builder
(``migr_rt.export.tensorrt_build``) imports that check and :func:`device_info`
from here, so the runtime never imports export code.

Buffers are torch CUDA tensors: inputs are copied to the GPU, outputs are
allocated by torch at the shapes TensorRT infers, and every engine runs on
one dedicated torch stream (``execute_async_v3``). Results come back as CPU
tensors like every backend's; the decoder cache stays on the GPU.
``tensorrt`` is imported lazily: without it (or without a GPU) the backend
raises :class:`BackendUnavailable` and :func:`available` says why.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from migr_rt.artifact import ArtifactError, Manifest, check_io, check_shapes, read_artifact
from migr_rt.backends.base import (Backend, BackendUnavailable, DecoderState, ModalityTokens, as_numpy,
                                   importance_result)
from migr_rt.importance import ModalityImportance
from migr_rt.model.graph_shapes import graph_dims
from migr_rt.model.spec import ModelSpec

logger = logging.getLogger(__name__)

CPU_HINT = "export with `migr-rt export --format onnx` and use the onnxruntime backend to run on a CPU"
#: TensorRT data type name -> torch dtype of the buffer bound to it
TORCH_DTYPES = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT8": torch.int8,
                "UINT8": torch.uint8, "INT32": torch.int32, "INT64": torch.int64, "BOOL": torch.bool}


def available() -> str | None:
    """None when TensorRT engines can run here, else the reason (what is missing and what to do)."""
    try:
        import tensorrt  # noqa: F401
    except Exception as exc:  # ImportError, or OSError when its libraries are missing
        return (f"the tensorrt package cannot be imported ({exc}); install it on a CUDA machine "
                f"(pip install 'migr-rt[gpu]'), or {CPU_HINT}")
    if not torch.cuda.is_available():
        return f"no CUDA GPU is visible to torch (TensorRT engines need one); {CPU_HINT}"
    return None


def _trt():
    reason = available()
    if reason is not None:
        raise BackendUnavailable(reason)
    import tensorrt

    return tensorrt


_LOGGER = None


def trt_logger():
    """The one TensorRT logger of this process (TensorRT expects a single one), warnings and errors only."""
    global _LOGGER
    if _LOGGER is None:
        trt = _trt()
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


def device_info(device: torch.device | int | None = None) -> tuple[str, str, str]:
    """``(tensorrt version, GPU name, compute capability "8.9")`` of ``device``: what an engine is tied to."""
    trt = _trt()
    major, minor = torch.cuda.get_device_capability(device)
    return trt.__version__, torch.cuda.get_device_name(device), f"{major}.{minor}"


def check_engine_compatibility(
    manifest_extra: dict[str, Any], trt_version: str, gpu_name: str, compute_capability: str,
    *, folder: str | Path = "the artifact folder",
) -> None:
    """Refuse engines built by another TensorRT version or for another GPU (they are not portable)."""
    missing = [k for k in ("tensorrt_version", "gpu", "compute_capability") if k not in manifest_extra]
    if missing:
        raise ArtifactError(f"{folder}: the manifest lacks {missing}; it was not written by the TensorRT builder")
    rebuild = f"rebuild it here with `migr-rt export --format tensorrt`, or {CPU_HINT}"
    built = manifest_extra["tensorrt_version"]
    if built != trt_version:
        raise ArtifactError(
            f"{folder}: its engines were built with TensorRT {built} but this is TensorRT {trt_version}; "
            f"engines are not portable across TensorRT versions: {rebuild}")
    built_gpu, built_cc = manifest_extra["gpu"], manifest_extra["compute_capability"]
    if built_cc != compute_capability or built_gpu != gpu_name:
        raise ArtifactError(
            f"{folder}: its engines were built for {built_gpu} (compute capability {built_cc}) but this GPU is "
            f"{gpu_name} (compute capability {compute_capability}); engines are tied to the GPU: {rebuild}")


def _in_manifest_order(actual: list[str], wanted: list[str]) -> list[str]:
    """``wanted`` when ``actual`` holds the same names (TensorRT does not promise the ONNX order), else ``actual``."""
    return list(wanted) if sorted(actual) == sorted(wanted) else actual


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, folder: str | Path, *, device: str | int | torch.device = "cuda",
                 manifest: Manifest | None = None) -> None:
        self.folder = Path(folder)
        self.manifest = manifest or read_artifact(self.folder)
        if self.manifest.format != "tensorrt":
            raise ArtifactError(
                f"{self.folder}: holds a {self.manifest.format!r} artifact; the tensorrt backend reads 'tensorrt' ones "
                f"(use the onnxruntime backend for it, or build engines with `migr-rt export --format tensorrt`)")
        trt = _trt()
        super().__init__(ModelSpec.from_dict(self.manifest.model_config))
        self.device = torch.device(device) if not isinstance(device, int) else torch.device("cuda", device)
        if self.device.type != "cuda":
            raise BackendUnavailable(f"the tensorrt backend runs on a CUDA device, not {self.device}")
        if self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.versions = device_info(self.device)
        check_engine_compatibility(self.manifest.extra, *self.versions, folder=self.folder)
        runtime = trt.Runtime(trt_logger())
        dims = graph_dims(self.config)
        self.engines, self.contexts, self.dtypes = {}, {}, {}
        with torch.cuda.device(self.device):
            self.stream = torch.cuda.Stream(self.device)
            for name, spec in self.manifest.graphs.items():
                path = self.folder / spec.file
                engine = runtime.deserialize_cuda_engine(path.read_bytes())
                if engine is None:
                    raise ArtifactError(f"{path}: TensorRT {trt.__version__} cannot deserialize engine {name!r}")
                names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
                inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
                outputs = [n for n in names if n not in inputs]
                check_io(path, spec, _in_manifest_order(inputs, spec.input_names),
                         _in_manifest_order(outputs, spec.output_names))
                # A sealed but edited manifest: refused here, naming the field, not by a shape error at run time.
                check_shapes(path, name, spec, {n: list(engine.get_tensor_shape(n)) for n in names},
                             dims.get(name, {}))
                self.dtypes[name] = {n: TORCH_DTYPES[str(engine.get_tensor_dtype(n)).rsplit(".", 1)[-1]] for n in names}
                self.engines[name] = engine
                self.contexts[name] = engine.create_execution_context()

    def describe(self) -> str:
        trt_version, gpu, cc = self.versions
        return f"tensorrt {trt_version} on {gpu} (compute capability {cc}), {self.manifest.precision}"

    def run_graph(self, name: str, *args) -> list[torch.Tensor]:
        """Run engine ``name`` on ``args`` (arrays or tensors, manifest input order): its outputs as CUDA tensors."""
        spec, context, dtypes = self.manifest.graphs[name], self.contexts[name], self.dtypes[name]
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            feeds = []  # keeps the input buffers alive until the engine has run
            for tensor_name, arg in zip(spec.input_names, args, strict=True):
                t = torch.as_tensor(arg).to(self.device, dtypes[tensor_name]).contiguous()
                if not context.set_input_shape(tensor_name, tuple(t.shape)):
                    limits = self.manifest.extra.get("profiles", {}).get(name, {}).get(tensor_name)
                    raise ValueError(
                        f"{self.folder}: {name} input {tensor_name!r} of shape {tuple(t.shape)} is outside the "
                        f"engine's optimisation profile (min, opt, max) {limits}; rebuild with larger ShapeLimits")
                context.set_tensor_address(tensor_name, t.data_ptr())
                feeds.append(t)
            outputs = []
            for tensor_name in spec.output_names:
                shape = tuple(context.get_tensor_shape(tensor_name))
                if any(d < 0 for d in shape):
                    raise RuntimeError(f"{name}: TensorRT cannot infer the shape of output {tensor_name!r} ({shape})")
                out = torch.empty(shape, dtype=dtypes[tensor_name], device=self.device)
                context.set_tensor_address(tensor_name, out.data_ptr())
                outputs.append(out)
            if not context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError(f"{self.folder}: TensorRT failed to run engine {name!r}")
            self.stream.synchronize()
        return outputs

    def encode_frames(self, frames) -> np.ndarray:
        return as_numpy(self.run_graph("visual_frames", frames)[0], np.float32)

    def pool_frames(self, frame_embeddings) -> np.ndarray:
        return as_numpy(self.run_graph("visual_pool", frame_embeddings)[0], np.float32)

    def encode_audio(self, waveform) -> np.ndarray:
        return as_numpy(self.run_graph("audio", waveform)[0], np.float32)

    def score_mi(self, tokens: ModalityTokens, present) -> ModalityImportance:
        out = self.run_graph("scoring", tokens.visual, tokens.audio, as_numpy(present, bool))
        return importance_result(*out, present=present)

    def prefill(self, input_ids, tokens, visible) -> tuple[np.ndarray, DecoderState]:
        logits, keys, values, key_visible = self.run_graph(
            "prefill", as_numpy(input_ids, np.int64), tokens.visual, tokens.audio, as_numpy(visible, bool))
        return as_numpy(logits, np.float32), DecoderState(keys, values, key_visible)

    def step(self, token, state) -> tuple[np.ndarray, DecoderState]:
        logits, keys, values, key_visible = self.run_graph(
            "step", as_numpy(token, np.int64).reshape(-1, 1), state.keys, state.values, state.key_visible)
        return as_numpy(logits, np.float32), DecoderState(keys, values, key_visible)

