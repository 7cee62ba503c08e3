"""The bundled model, in the two forms the repository ships it, and which one this installation runs.

The checkpoint (``migr_rt/assets/default``) is what training writes and what
the torch backend loads. Its fp32 ONNX export (``migr_rt/assets/default-onnx``,
``migr-rt export`` of the same weights, kept current by ``make bundle`` and
checked by a test) is the same model, with the same answers, for onnxruntime.
On a CPU it is the better default wherever onnxruntime can run it: the first
window 0.53 s after the command against 4.34 s on the checkpoint, and a decode
step 3x shorter (benchmarks/results/startup.md, bench_cpu_xeon.md). So
``auto`` runs the export on a CPU with onnxruntime installed, and on any
install without torch (docs/deploy.md, "Without torch"); the checkpoint
where onnxruntime is missing or too old, for a GPU device, and for
``--backend torch``.
"""

from __future__ import annotations

import importlib.util
from importlib import resources
from pathlib import Path

#: What loading the torch checkpoint imports, beyond a runtime-only install (docs/deploy.md).
MODEL_STACK = ("torch", "transformers", "safetensors")


def default_checkpoint() -> Path:
    """The bundled checkpoint (``migr_rt/assets/default``)."""
    path = Path(str(resources.files("migr_rt") / "assets" / "default"))
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: the bundled checkpoint is missing from this installation")
    return path


def bundled_artifact() -> Path:
    """The bundled checkpoint's fp32 ONNX export (``migr_rt/assets/default-onnx``)."""
    path = Path(str(resources.files("migr_rt") / "assets" / "default-onnx"))
    if not (path / "manifest.json").is_file():
        raise FileNotFoundError(f"{path}: the bundled model's ONNX export is missing from this installation")
    return path


def missing_model_stack() -> list[str]:
    """The packages of :data:`MODEL_STACK` that are not installed here."""
    return [name for name in MODEL_STACK if importlib.util.find_spec(name) is None]


def onnxruntime_runs_export() -> bool:
    """Whether an onnxruntime that runs the bundled export's fused step is installed (read from its package
    metadata: importing onnxruntime to ask would cost the torch path ~0.1 s)."""
    from importlib import metadata

    from migr_rt.backends.onnxruntime_backend import FUSED_STEP_ONNXRUNTIME, release_numbers

    if importlib.util.find_spec("onnxruntime") is None:
        return False
    for dist in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"):
        try:
            return release_numbers(metadata.version(dist)) >= FUSED_STEP_ONNXRUNTIME
        except metadata.PackageNotFoundError:
            continue
    return False


def runs_export(backend: str = "auto", device: str | None = "cpu") -> bool:
    """Whether the bundled model runs as its ONNX export on ``backend`` (and torch ``device``): always on
    ``onnxruntime``; with ``auto`` where the torch model's packages are missing (the onnxruntime backend then runs
    it, or says that onnxruntime is missing), or on a CPU where onnxruntime can run it; never on ``torch`` or
    ``tensorrt``."""
    if backend == "onnxruntime":
        return True
    if backend != "auto":
        return False
    return bool(missing_model_stack()) or (str(device or "cpu").startswith("cpu") and onnxruntime_runs_export())


def default_model(backend: str = "auto", device: str | None = "cpu") -> Path:
    """The bundled model as this installation runs it on ``backend``: its ONNX export where :func:`runs_export`,
    else the checkpoint (``torch`` asked for without torch says that torch is missing)."""
    return bundled_artifact() if runs_export(backend, device) else default_checkpoint()
