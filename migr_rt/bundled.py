"""The bundled model, in the two forms the repository ships it, and which one this installation runs.

The checkpoint (``migr_rt/assets/default``) is what training writes and what
the torch backend loads. Its fp32 ONNX export (``migr_rt/assets/default-onnx``,
``migr-rt export`` of the same weights, kept current by ``make bundle`` and
checked by a test) is the same model for an install without torch: a robot
that installed only the runtime (docs/deploy.md, "Without torch") runs the
bundled model out of the box instead of needing an export made elsewhere.
Where torch is installed, the checkpoint stays the default, as before, and
``--backend onnxruntime`` runs the export (the first window 0.53 s after the
command against 4.34 s on the checkpoint here: benchmarks/results/startup.md).
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


def default_model(backend: str = "auto") -> Path:
    """The bundled model as this installation runs it on ``backend``: its ONNX export for ``onnxruntime``, and for
    ``auto`` where the torch model's packages are missing (the onnxruntime backend then runs it, or says that
    onnxruntime is missing); else the checkpoint (``torch`` asked for without torch says that torch is missing)."""
    if backend == "onnxruntime" or (backend == "auto" and missing_model_stack()):
        return bundled_artifact()
    return default_checkpoint()
