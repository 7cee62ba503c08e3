"""Inference backends behind one interface (:class:`Backend`): torch, onnxruntime, TensorRT.

:func:`load_backend` opens a checkpoint folder (torch) or an exported
artifact folder (onnxruntime for ``onnx``, TensorRT for ``tensorrt``).
``"auto"`` takes the fastest backend that can run what the folder holds here
and logs which, in its first line; an explicitly requested backend that
cannot run fails with a message listing what is available.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from migr_rt.artifact import is_artifact, read_artifact
from migr_rt.backends.base import Backend, BackendUnavailable, DecoderState, ModalityTokens
from migr_rt.backends.decode import AnswerAnchor, Decoded, greedy_decode, iter_greedy

logger = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime", "tensorrt")
#: Which backends read which folder kind, fastest first.
READERS = {"checkpoint": ("torch",), "onnx": ("onnxruntime",), "tensorrt": ("tensorrt",)}

__all__ = ["AnswerAnchor", "BACKENDS", "Backend", "BackendUnavailable", "DecoderState", "ModalityTokens", "Decoded",
           "available_backends", "greedy_decode", "iter_greedy", "load_backend", "folder_kind"]


def available_backends(names: tuple[str, ...] = BACKENDS) -> dict[str, str | None]:
    """Each backend of ``names`` -> None if its packages (and device) are present here, else why not.

    Ask only for the backends a folder can use: asking TensorRT means importing torch and CUDA's probe.
    """
    reasons: dict[str, str | None] = {}
    if "torch" in names:
        from migr_rt.bundled import missing_model_stack

        # The torch backend loads checkpoints with transformers and safetensors too: torch alone (as a TensorRT
        # install has it) would end in an import traceback when the checkpoint is opened.
        missing = missing_model_stack()
        if missing:
            what = "torch" if "torch" in missing else " and ".join(missing)
            fix = ("install it (pip install torch; the README says which build)" if "torch" in missing else
                   "install migr-rt with its dependencies")
            reasons["torch"] = (
                f"{what} {'are' if len(missing) > 1 and what != 'torch' else 'is'} not installed, which the torch "
                f"backend runs checkpoints with: {fix}, or run an ONNX artifact, which needs none of it: the bundled "
                f"model's (the default here, or --backend onnxruntime) or one exported on a machine that has "
                f"{what} (migr-rt export --checkpoint DIR --format onnx)")
        else:
            reasons["torch"] = None
    if "onnxruntime" in names:
        reasons["onnxruntime"] = None if importlib.util.find_spec("onnxruntime") else (
            "onnxruntime is not installed (pip install 'migr-rt[onnx]')")
    if "tensorrt" in names:
        try:
            from migr_rt.backends.tensorrt_backend import available as tensorrt_available
        except ImportError as exc:
            reasons["tensorrt"] = f"the TensorRT backend cannot be imported ({exc})"
        else:
            reasons["tensorrt"] = tensorrt_available()
    return reasons


def folder_kind(path: str | Path) -> str:
    """``checkpoint``, ``onnx`` or ``tensorrt``: what a model folder holds."""
    path = Path(path)
    if is_artifact(path):
        return read_artifact(path, verify_hashes=False).format
    return "checkpoint"


def load_backend(path: str | Path, backend: str = "auto", *, device: str = "cpu", threads: int | None = None) -> Backend:
    """Open ``path`` (checkpoint or artifact folder) with ``backend`` (a name from :data:`BACKENDS`, or ``auto``)."""
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: choose auto or one of {', '.join(BACKENDS)}")
    path = Path(path)
    kind = folder_kind(path)
    readers = READERS[kind]
    reasons = available_backends(readers)
    usable = [b for b in readers if reasons[b] is None]
    if backend == "auto":
        if not usable:
            raise BackendUnavailable(
                f"{path}: no backend here can run a {kind} folder: "
                + "; ".join(f"{b}: {reasons[b]}" for b in readers))
        chosen = usable[0]
    else:
        if backend not in readers:
            wanted = next(k for k, names in READERS.items() if backend in names)
            hint = ("pass the checkpoint folder it was exported from" if wanted == "checkpoint"
                    else f"export one with `migr-rt export --checkpoint DIR --format {wanted}`")
            raise BackendUnavailable(f"{path}: holds {kind} weights, which the {backend} backend cannot read; {hint} "
                                     f"(this folder runs on: {', '.join(readers)})")
        if reasons[backend] is not None:
            here = [b for b, r in available_backends().items() if r is None]
            raise BackendUnavailable(f"backend {backend!r} is not available: {reasons[backend]}; "
                                     f"available here: {', '.join(here)}")
        chosen = backend
    if threads is not None and chosen != "onnxruntime":
        logger.warning("threads=%d is for the onnxruntime backend; the %s backend runs on %s", threads, chosen,
                       "torch's own threads (torch.set_num_threads, OMP_NUM_THREADS)" if chosen == "torch"
                       else "the GPU")
    instance = _open(chosen, path, device, threads)
    logger.info("backend: %s (%s, %s)", instance.describe(), "chosen by auto" if backend == "auto" else "requested", path)
    return instance


def _open(name: str, path: Path, device: str, threads: int | None) -> Backend:
    if name == "torch":
        from migr_rt.backends.torch_backend import TorchBackend

        return TorchBackend.from_checkpoint(path, device=device)
    if name == "onnxruntime":
        from migr_rt.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, threads=threads)
    from migr_rt.backends.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(path)
