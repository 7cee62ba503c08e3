"""Checkpoint -> TensorRT artifact folder: one serialized engine per inference graph, for this GPU only.

The path is ONNX first: :func:`export_onnx` writes and parity-checks an fp32
ONNX artifact in a temporary folder (its manifest gives the graphs' inputs,
outputs and named dynamic axes). The graphs TensorRT parses are traced again
with the same exporter but *not* passed through onnxruntime's optimiser,
whose fused ``com.microsoft`` operators (FusedMatMul, QuickGelu) TensorRT's
ONNX parser does not know.

Precision lives in the ONNX, and every network is built strongly typed:
TensorRT 11 removed the weak-typing builder flags (``BuilderFlag.FP16``,
``INT8``) and implicit calibration (``IInt8EntropyCalibrator2``), and this
way one code path serves TensorRT 10 and 11.

* ``fp32``: the traced graphs as they are.
* ``fp16``: weights and activations converted to half with fp32 inputs and
  outputs; the statistics that overflow half (RMSNorm's ``Pow``/``ReduceMean``)
  and the softmaxes (the torch graphs upcast them too) stay fp32.
* ``int8``: explicit quantisation: onnxruntime's ``quantize_static`` inserts
  symmetric int8 QuantizeLinear/DequantizeLinear pairs (what TensorRT
  expects) around MatMul/Gemm/Conv, with activation ranges calibrated on the
  CPU from real windows of ``calibration_data`` (see :func:`calibration_feeds`);
  everything else stays fp32.

The audio graph stays fp32 at every precision (spectral power overflows half).
Each engine gets one optimisation profile from :class:`ShapeLimits`
(:func:`optimization_profiles`); inputs outside it are refused at run time.
Engines are tied to the TensorRT version and GPU that built them; the
manifest records both and :class:`TensorRTBackend` checks them. Before the
folder is published (atomically), every engine is compared with torch on
fresh inputs and greedy decoding is compared token by token; the
differences go into the manifest (recorded, not gated: reduced precision is
judged by accuracy).
"""

from __future__ import annotations

import itertools
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from migr_rt.export.onnx_export import (GRAPH_IO, example_inputs, export_graph, export_onnx, greedy_tokens_equal,
                                        no_preprocessing_advice, to_fp16, untied)

from migr_rt.artifact import (
    ARTIFACT, FORMAT_VERSION, MANIFEST, ArtifactError, GraphSpec, Manifest, read_artifact, sha256_of,
)
from migr_rt.atomic import staged_folder, write_text_atomic
from migr_rt.backends.base import BackendUnavailable
from migr_rt.backends.tensorrt_backend import (  # noqa: F401  (check_engine_compatibility: re-exported)
    TensorRTBackend,
    available,
    check_engine_compatibility,
    device_info,
    trt_logger,
)
from migr_rt.model import MigrForEmotionReasoning, load_checkpoint
from migr_rt.model.config import MigrConfig
from migr_rt.model.graphs import build_graphs
from migr_rt.model.layout import prefix_ids

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
#: Graphs kept fp32 at reduced precision: the audio front end's spectral power overflows half.
FP32_GRAPHS = ("audio",)
#: Operators kept fp32 inside fp16 graphs: normalisation statistics (RMSNorm's Pow/ReduceMean overflow half),
#: softmaxes (the torch graphs upcast them too) and IsInf/IsNaN.
FP32_OPS = ("Pow", "ReduceMean", "InstanceNormalization", "Softmax", "LogSoftmax", "IsInf", "IsNaN")
#: Operators whose inputs get int8 Q/DQ pairs at ``int8``.
INT8_OPS = ["MatMul", "Gemm", "Conv"]
#: Windows of ``calibration_data`` used for int8 calibration, and greedy steps whose cache calibrates ``step``.
CALIBRATION_WINDOWS = 64
CALIBRATION_STEPS = 4
WORKSPACE_BYTES = 2 << 30
#: What a decoding run needs beyond the rationale prompt: the parity check decodes this many tokens.
PARITY_STEPS = 24


@dataclass(frozen=True)
class ShapeLimits:
    """The range of shapes each engine accepts (its optimisation profile); ``opt`` is what it is tuned for.

    ``max_frames`` None means ``max_batch * num_frames`` of the model. The
    ``opt`` values are batch-1 decoding: one window, a rationale prompt of
    ``opt_seq`` tokens and a cache of ``opt_past`` positions.
    """

    max_batch: int = 8
    max_frames: int | None = None
    max_seq: int = 256
    max_past: int = 384
    opt_batch: int = 1
    opt_seq: int = 32
    opt_past: int = 96

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"ShapeLimits.{name} must be a positive integer, got {value!r}")
        if self.max_past < self.max_seq:
            raise ValueError(f"ShapeLimits.max_past ({self.max_past}) must be >= max_seq ({self.max_seq}): "
                             "the step graph continues a prefill's cache")

    def axes(self, num_frames: int) -> dict[str, tuple[int, int, int]]:
        """``(min, opt, max)`` of every named dynamic axis (the names the ONNX export gives them)."""
        max_frames = self.max_frames or self.max_batch * num_frames

        def span(low: int, opt: int, high: int) -> tuple[int, int, int]:
            return low, min(max(opt, low), high), high

        return {
            "batch": span(1, self.opt_batch, self.max_batch),
            "frames": span(1, self.opt_batch * num_frames, max_frames),
            "seq": span(2, self.opt_seq, self.max_seq),  # the export traces prefill with seq >= 2
            "past": span(1, self.opt_past, self.max_past),
        }


Shape = tuple[int, ...]


def optimization_profiles(manifest: Manifest, limits: ShapeLimits) -> dict[str, dict[str, tuple[Shape, Shape, Shape]]]:
    """Per graph and input, the ``(min, opt, max)`` shapes: named axes resolved by ``limits``, fixed sizes kept."""
    axes = limits.axes(int(manifest.model_config["num_frames"]))
    profiles: dict[str, dict[str, tuple[Shape, Shape, Shape]]] = {}
    for graph, spec in manifest.graphs.items():
        profiles[graph] = {}
        for tensor in spec.inputs:
            dims = []
            for dim in tensor.shape:
                if isinstance(dim, int):
                    dims.append((dim, dim, dim))
                elif dim in axes:
                    dims.append(axes[dim])
                else:
                    raise ValueError(f"graph {graph!r} input {tensor.name!r}: dynamic axis {dim!r} has no limit "
                                     f"(known: {sorted(axes)})")
            profiles[graph][tensor.name] = tuple(tuple(d[k] for d in dims) for k in range(3))  # type: ignore[misc]
    return profiles


# -- int8 calibration ------------------------------------------------------------------------------------------
def load_calibration_windows(spec: str | Path, config: MigrConfig, count: int = CALIBRATION_WINDOWS):
    """The first ``count`` windows of a synthetic corpus (folder or ``manifest.jsonl``) or dataset spec."""
    from migr_rt.training.sources import open_source
    from migr_rt.training.windows import extract_windows

    from migr_rt.face import HaarFaceDetector

    source = open_source(spec)
    clips = list(itertools.islice(iter(source.clips), count))
    return extract_windows(clips, config, HaarFaceDetector(), total=len(clips))


def calibration_feeds(model: MigrForEmotionReasoning, windows, batch: int = 8,
                      steps: int = CALIBRATION_STEPS) -> dict[str, list[dict[str, np.ndarray]]]:
    """Inputs of every graph for int8 calibration, from real windows (a ``WindowSet``).

    The encoders get the windows' face crops and audio; the decoder graphs get
    what the runtime would feed them: the torch encoders' tokens of those
    windows (scoring, prefill with the rationale prompt), and for ``step`` the
    cache after prefill and after each of ``steps`` greedy tokens.
    """
    cfg = model.config
    graphs = build_graphs(model)
    prompt = prefix_ids(cfg) + [cfg.special_token_ids["think_start"]]
    feeds: dict[str, list[dict[str, np.ndarray]]] = {name: [] for name in graphs}

    def add(name: str, *args: torch.Tensor) -> None:
        feeds[name].append({k: a.detach().cpu().numpy() for k, a in zip(GRAPH_IO[name][0], args)})

    with torch.no_grad():
        for start in range(0, len(windows), batch):
            pixels, audio, present, _ = windows.batch(torch.arange(start, min(start + batch, len(windows))))
            b, present = pixels.shape[0], present.bool()
            frames = pixels.reshape(b * cfg.num_frames, *pixels.shape[2:])
            embeddings = graphs["visual_frames"](frames).reshape(b, cfg.num_frames, -1)
            visual, audio_tokens = graphs["visual_pool"](embeddings), graphs["audio"](audio)
            ids = torch.tensor([prompt] * b)
            add("visual_frames", frames)
            add("visual_pool", embeddings)
            add("audio", audio)
            add("scoring", visual, audio_tokens, present)
            add("prefill", ids, visual, audio_tokens, present)
            logits, keys, values, key_visible = graphs["prefill"](ids, visual, audio_tokens, present)
            for _ in range(steps):
                token = logits.argmax(dim=-1, keepdim=True)
                add("step", token, keys, values, key_visible)
                logits, keys, values, key_visible = graphs["step"](token, keys, values, key_visible)
    return feeds


# -- ONNX for TensorRT -----------------------------------------------------------------------------------------
def _to_int8(src: Path, dst: Path, feeds: list[dict[str, np.ndarray]]) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    # TensorRT takes symmetric int8 Q/DQ (zero point 0) for weights and activations.
    with no_preprocessing_advice():
        quantize_static(str(untied(src, dst.parent)), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=INT8_OPS,
                        per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})


def prepare_onnx(module: torch.nn.Module, name: str, args: tuple[torch.Tensor, ...], precision: str, work: Path,
                 feeds: list[dict[str, np.ndarray]] | None = None) -> Path:
    """Trace graph ``name`` into ``work`` and give it ``precision``: the ONNX file TensorRT will parse."""
    traced = work / f"{name}.fp32.onnx"
    export_graph(module, name, args, traced)
    if precision == "fp32" or name in FP32_GRAPHS:
        return traced
    out = work / f"{name}.{precision}.onnx"
    if precision == "fp16":
        to_fp16(traced, out, FP32_OPS)
    elif not feeds:
        raise ValueError(f"graph {name!r}: int8 needs calibration inputs")
    else:
        _to_int8(traced, out, feeds)
    return out


def _build_engine(onnx_path: Path, shapes: dict[str, tuple[Shape, Shape, Shape]]) -> bytes:
    """Parse ``onnx_path`` into a strongly typed network and build a serialized engine with one profile."""
    import tensorrt as trt

    builder = trt.Builder(trt_logger())
    typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)  # always on in TensorRT 11
    network = builder.create_network(0 if typed is None else 1 << int(typed))
    parser = trt.OnnxParser(network, trt_logger())
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ArtifactError(f"{onnx_path}: TensorRT {trt.__version__} cannot parse it: {errors}")
    inputs = sorted(network.get_input(i).name for i in range(network.num_inputs))
    if inputs != sorted(shapes):
        raise ArtifactError(f"{onnx_path}: network inputs {inputs} differ from the profile's {sorted(shapes)}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    profile = builder.create_optimization_profile()
    for name, (low, opt, high) in shapes.items():
        profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ArtifactError(f"{onnx_path}: TensorRT could not build an engine (see its log above)")
    return bytes(plan)


def engine_parity(backend: TensorRTBackend, model: MigrForEmotionReasoning, batch: int = 3) -> dict[str, float]:
    """Max |TensorRT - torch| per graph on fresh inputs, and greedy decoding agreement (1.0 = same tokens)."""
    graphs = build_graphs(model)
    report = {}
    for name, args in example_inputs(model, batch, seed=1).items():
        with torch.no_grad():
            expected = graphs[name](*args)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = [g.cpu() for g in backend.run_graph(name, *args)]
        report[name] = max(float((g.double() - e.double()).abs().max()) for g, e in zip(got, expected)
                           if e.is_floating_point())
        exact = [torch.equal(g, e) for g, e in zip(got, expected) if not e.is_floating_point()]
        if exact:
            report[f"{name}_discrete_equal"] = float(all(exact))
    report["greedy_tokens_equal"] = greedy_tokens_equal(backend, model, batch, PARITY_STEPS)
    return report


def build_tensorrt(
    checkpoint: str | Path,
    out: str | Path,
    precision: str = "fp16",
    *,
    calibration_data: str | Path | None = None,
    limits: ShapeLimits = ShapeLimits(),
    on_progress: Callable[[str], None] | None = None,
) -> Manifest:
    """Build TensorRT engines of ``checkpoint`` for this GPU into the artifact folder ``out`` (replaced atomically).

    ``calibration_data`` (int8 only, required there): a synthetic corpus
    folder or ``manifest.jsonl``, or a dataset spec, whose first
    :data:`CALIBRATION_WINDOWS` windows calibrate the activation ranges.
    Raises :class:`BackendUnavailable` before any work where TensorRT or a
    CUDA GPU is missing.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: the tensorrt format supports {list(PRECISIONS)}")
    if precision == "int8" and calibration_data is None:
        raise ValueError("int8 engines need calibration_data (a synthetic corpus folder or dataset spec whose "
                         "windows calibrate the activation ranges); fp16 needs none")
    reason = available()
    if reason is not None:
        raise BackendUnavailable(f"cannot build TensorRT engines: {reason}")
    say = on_progress or (lambda _msg: None)
    checkpoint, out = Path(checkpoint), Path(out)
    trt_version, gpu, capability = device_info()
    with staged_folder(out, marker=MANIFEST, what=ARTIFACT) as staging, \
            tempfile.TemporaryDirectory(prefix=f".{out.name}.work-", dir=out.parent) as tmp:
        work = Path(tmp)
        say("onnx: export and parity check (fp32)")
        # TensorRT parses its own traced graphs; this export gives their I/O specs and torch parity
        export_onnx(checkpoint, work / "onnx", "fp32", check_parity=True, on_progress=say, fused_step=False)
        onnx_manifest = read_artifact(work / "onnx")
        model = load_checkpoint(checkpoint)[0].float().eval()
        prompt = len(prefix_ids(model.config)) + 1
        if prompt > limits.max_seq or prompt + PARITY_STEPS > limits.max_past:
            raise ValueError(f"{limits}: a rationale prompt has {prompt} tokens and decoding needs more; "
                             "raise max_seq/max_past")
        profiles = optimization_profiles(onnx_manifest, limits)
        feeds: dict[str, list[dict[str, np.ndarray]]] = {}
        calibration: dict[str, Any] = {}
        if precision == "int8":
            say(f"int8: calibration windows from {calibration_data}")
            windows = load_calibration_windows(calibration_data, model.config)
            feeds = calibration_feeds(model, windows, batch=min(8, limits.max_batch))
            calibration = {"data": str(calibration_data), "windows": len(windows), "method": "onnxruntime "
                           f"quantize_static QDQ, symmetric int8, MinMax, ops {INT8_OPS}"}
        graphs, examples = build_graphs(model), example_inputs(model, batch=2)
        specs: dict[str, GraphSpec] = {}
        for i, (name, module) in enumerate(graphs.items(), 1):
            say(f"[{i}/{len(graphs)}] {name}: {precision} engine")
            onnx_path = prepare_onnx(module, name, examples[name], precision, work, feeds.get(name))
            engine = staging / f"{name}.engine"
            engine.write_bytes(_build_engine(onnx_path, profiles[name]))
            onnx_spec = onnx_manifest.graphs[name]
            specs[name] = GraphSpec(engine.name, sha256_of(engine), onnx_spec.inputs, onnx_spec.outputs)
        for file in onnx_manifest.tokenizer_files:
            shutil.copyfile(work / "onnx" / file, staging / file)
        manifest = Manifest(
            format="tensorrt",
            precision=precision,
            graphs=specs,
            model_config=onnx_manifest.model_config,
            source_checkpoint=onnx_manifest.source_checkpoint,
            tools={**onnx_manifest.tools, "tensorrt": trt_version},
            opset=onnx_manifest.opset,
            tokenizer_files=list(onnx_manifest.tokenizer_files),
            extra={
                "tensorrt_version": trt_version, "gpu": gpu, "compute_capability": capability,
                "profiles": {g: {k: [list(s) for s in v] for k, v in p.items()} for g, p in profiles.items()},
                "fp32_graphs": list(FP32_GRAPHS) if precision != "fp32" else [],
                "calibration": calibration,
                "onnx_parity": onnx_manifest.parity,
                # what the checkpoint was trained as and the words its rationales are judged in
                "recipe": onnx_manifest.extra.get("recipe"),
                "lexicon": onnx_manifest.extra.get("lexicon"),
            },
            format_version=FORMAT_VERSION,
        )
        write_text_atomic(staging / MANIFEST, manifest.to_json())
        say("parity: tensorrt vs torch on fresh inputs")
        report = engine_parity(TensorRTBackend(staging), model, batch=min(3, limits.max_batch))
        manifest = Manifest(**{**manifest.__dict__, "parity": report})
        write_text_atomic(staging / MANIFEST, manifest.to_json())
    say(f"wrote {out}")
    return manifest
