"""TensorRT export and backend.

Everywhere: optimisation profiles from a real ONNX manifest, the engine
compatibility check, the CPU half of the build (fp16/int8 ONNX the engines
are built from, checked through onnxruntime), and clear refusals where
TensorRT or a GPU is missing. On a CUDA machine with ``tensorrt``
(``-m gpu``): fp16 engines of the bundled checkpoint against the torch backend.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from migr_rt.export.onnx_export import GRAPH_IO, example_inputs, export_onnx
from migr_rt.export.tensorrt_build import (
    FP32_OPS,
    ShapeLimits,
    build_tensorrt,
    calibration_feeds,
    optimization_profiles,
    prepare_onnx,
)

from migr_rt.artifact import ArtifactError, TensorSpec, seal
from migr_rt.backends.base import BackendUnavailable
from migr_rt.backends.tensorrt_backend import TensorRTBackend, available, check_engine_compatibility
from migr_rt.model import load_checkpoint
from migr_rt.model.graphs import build_graphs
from migr_rt.model.layout import prefix_ids
from migr_rt.bundled import default_checkpoint

EXTRA = {"tensorrt_version": "10.13.0.35", "gpu": "NVIDIA L4", "compute_capability": "8.9"}


@pytest.fixture(scope="module")
def onnx_artifact(tmp_path_factory):
    """The bundled checkpoint as the fp32 ONNX artifact TensorRT builds from: every graph traced (the fused step
    keeps its cache in place with an onnxruntime operator, so build_tensorrt exports with fused_step=False)."""
    from migr_rt.artifact import read_artifact

    out = tmp_path_factory.mktemp("trt-onnx") / "default-fp32"
    export_onnx(default_checkpoint(), out, "fp32", check_parity=False, fused_step=False)
    return out, read_artifact(out)


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(default_checkpoint())[0].float().eval()


# -- optimisation profiles -----------------------------------------------------------------------------------------
def test_profiles_resolve_every_dynamic_axis(onnx_artifact):
    _, manifest = onnx_artifact
    limits = ShapeLimits()
    profiles = optimization_profiles(manifest, limits)
    assert set(profiles) == set(manifest.graphs)
    named = set()
    for graph, spec in manifest.graphs.items():
        assert set(profiles[graph]) == set(spec.input_names)
        for tensor in spec.inputs:
            low, opt, high = profiles[graph][tensor.name]
            assert len(low) == len(opt) == len(high) == len(tensor.shape)
            for dim, lo, op, hi in zip(tensor.shape, low, opt, high):
                assert all(isinstance(v, int) for v in (lo, op, hi))
                if isinstance(dim, int):
                    assert lo == op == hi == dim  # fixed sizes stay fixed
                else:
                    named.add(dim)
                    assert 1 <= lo <= op <= hi
    assert {"batch", "frames", "seq", "past"} <= named
    num_frames = manifest.model_config["num_frames"]
    assert profiles["visual_frames"]["frames"][2][0] == limits.max_batch * num_frames
    assert profiles["visual_frames"]["frames"][1][0] == num_frames  # opt: one window
    assert profiles["prefill"]["input_ids"] == ((1, 2), (1, limits.opt_seq), (limits.max_batch, limits.max_seq))
    step = profiles["step"]
    assert step["key_visible"] == ((1, 1), (1, limits.opt_past), (limits.max_batch, limits.max_past))
    assert [s[3] for s in step["keys"]] == [1, limits.opt_past, limits.max_past]  # (layers, B, kv, past, D)
    assert step["keys"] == step["values"]


def test_profiles_follow_the_limits(onnx_artifact):
    _, manifest = onnx_artifact
    profiles = optimization_profiles(manifest, ShapeLimits(max_batch=2, max_frames=5, max_past=300, opt_past=500))
    assert profiles["audio"]["waveform"][2][0] == 2
    assert profiles["visual_frames"]["frames"][2][0] == 5
    assert profiles["step"]["key_visible"][1] == (1, 300)  # opt is clamped into [min, max]


def test_profiles_refuse_an_unknown_axis(onnx_artifact):
    _, manifest = onnx_artifact
    audio = manifest.graphs["audio"]
    odd = dataclasses.replace(audio, inputs=[TensorSpec("waveform", "float32", ["windows", 32000])])
    with pytest.raises(ValueError, match="'audio' input 'waveform': dynamic axis 'windows'"):
        optimization_profiles(dataclasses.replace(manifest, graphs={**manifest.graphs, "audio": odd}), ShapeLimits())


def test_shape_limits_are_validated():
    with pytest.raises(ValueError, match="max_past .* must be >= max_seq"):
        ShapeLimits(max_seq=512, max_past=384)
    with pytest.raises(ValueError, match="max_batch must be a positive integer"):
        ShapeLimits(max_batch=0)


# -- engine compatibility ------------------------------------------------------------------------------------------
def test_compatible_engines_pass():
    check_engine_compatibility(EXTRA, "10.13.0.35", "NVIDIA L4", "8.9", folder="art")


def test_another_tensorrt_version_is_refused():
    with pytest.raises(ArtifactError, match=r"art-trt: .*TensorRT 10\.13\.0\.35 but this is TensorRT 10\.3\.0.*"
                                            r"not portable across TensorRT versions"):
        check_engine_compatibility(EXTRA, "10.3.0", "NVIDIA L4", "8.9", folder="art-trt")


@pytest.mark.parametrize("gpu, capability", [("NVIDIA H100 80GB HBM3", "9.0"), ("NVIDIA RTX 4090", "8.9")])
def test_another_gpu_is_refused(gpu, capability):
    with pytest.raises(ArtifactError, match=rf"art-trt: .*built for NVIDIA L4 \(compute capability 8\.9\) but this "
                                            rf"GPU is {gpu} \(compute capability {capability}\)"):
        check_engine_compatibility(EXTRA, "10.13.0.35", gpu, capability, folder="art-trt")


def test_a_manifest_without_build_facts_is_refused():
    with pytest.raises(ArtifactError, match=r"lacks \['gpu', 'compute_capability'\]"):
        check_engine_compatibility({"tensorrt_version": "10.13.0.35"}, "10.13.0.35", "NVIDIA L4", "8.9")


# -- refusals on a machine without TensorRT or a GPU ---------------------------------------------------------------
needs_no_tensorrt = pytest.mark.skipif(available() is None, reason="TensorRT and a CUDA GPU are present here")


def test_bad_arguments_fail_before_anything_else(tmp_path):
    with pytest.raises(ValueError, match="int8 engines need calibration_data"):
        build_tensorrt(default_checkpoint(), tmp_path / "out", "int8")
    with pytest.raises(ValueError, match="precision 'int4'"):
        build_tensorrt(default_checkpoint(), tmp_path / "out", "int4")


@needs_no_tensorrt
def test_build_says_what_is_missing_before_any_work(tmp_path):
    with pytest.raises(BackendUnavailable, match=r"(tensorrt|CUDA GPU).*--format onnx"):
        build_tensorrt(default_checkpoint(), tmp_path / "out", "fp16")
    assert list(tmp_path.iterdir()) == []  # nothing exported, no staging folder left


@needs_no_tensorrt
def test_available_names_the_missing_piece():
    assert any(word in available() for word in ("tensorrt", "CUDA GPU"))


def test_backend_refuses_an_onnx_artifact(onnx_artifact):
    folder, _ = onnx_artifact
    with pytest.raises(ArtifactError, match=r"holds a 'onnx' artifact; the tensorrt backend reads 'tensorrt' ones"):
        TensorRTBackend(folder)


@needs_no_tensorrt
def test_backend_without_tensorrt_says_so(onnx_artifact, tmp_path):
    folder = tmp_path / "trt"
    shutil.copytree(onnx_artifact[0], folder)
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps(seal({**data, "format": "tensorrt", "extra": EXTRA})))
    with pytest.raises(BackendUnavailable, match=r"(tensorrt|CUDA GPU).*--format onnx"):
        TensorRTBackend(folder)


# -- the CPU half of a build: the ONNX TensorRT parses ------------------------------------------------------------
def _ort_max_error(path, module, name, args, *, simulate_qdq: bool = False) -> float:
    """Largest difference between onnxruntime's run of ``path`` and torch's ``module``.

    ``simulate_qdq``: run Q/DQ pairs as written (quantise, dequantise, fp32 maths), which is what TensorRT's
    int8 computes with int32 sums. With graph optimisations on, onnxruntime fuses them into its own int8
    kernels, whose AVX2 path without VNNI saturates 16-bit partial sums (an error of ~10% of the output
    range on such CPUs): a property of that CPU kernel, not of the quantised graph.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if simulate_qdq:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    got = session.run(None, {k: a.numpy() for k, a in zip(GRAPH_IO[name][0], args)})
    with torch.no_grad():
        expected = module(*args)
    expected = expected if isinstance(expected, tuple) else (expected,)
    return max(float(np.abs(g - e.numpy()).max()) for g, e in zip(got, expected) if e.is_floating_point())


def test_fp16_onnx_keeps_fp32_io_and_statistics(model, tmp_path):
    import onnx

    graphs = build_graphs(model)
    path = prepare_onnx(graphs["step"], "step", example_inputs(model, 2)["step"], "fp16", tmp_path)
    graph = onnx.load(str(path)).graph
    fp32 = onnx.TensorProto.FLOAT
    assert {i.type.tensor_type.elem_type for i in graph.input if i.name in ("keys", "values")} == {fp32}
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.input, *graph.output]}
    kept = [n for n in graph.node if n.op_type in FP32_OPS]
    assert kept and all(types.get(n.output[0], fp32) == fp32 for n in kept)
    assert _ort_max_error(path, graphs["step"], "step", example_inputs(model, 3, seed=1)["step"]) < 5e-2
    assert prepare_onnx(graphs["audio"], "audio", example_inputs(model, 2)["audio"], "fp16", tmp_path).name == \
        "audio.fp32.onnx"  # the spectral front end stays fp32


def test_int8_onnx_is_calibrated_on_real_windows(model, tmp_path):
    from migr_rt.training.windows import WindowSet

    cfg, n = model.config, 6
    gen = torch.Generator().manual_seed(0)
    windows = WindowSet(
        torch.randint(0, 256, (n, cfg.num_frames, cfg.face_size, cfg.face_size, 3), dtype=torch.uint8, generator=gen),
        (0.1 * torch.randn(n, cfg.audio_samples, generator=gen)).half(), torch.ones(n, 2, dtype=torch.bool),
        torch.zeros(n, dtype=torch.long), torch.zeros(n, 2, dtype=torch.long), torch.zeros(n, dtype=torch.bool),
        [str(i) for i in range(n)], [{} for _ in range(n)])
    feeds = calibration_feeds(model, windows, batch=4, steps=2)
    assert {k: len(v) for k, v in feeds.items()}["step"] == 4 and len(feeds["prefill"]) == 2
    assert feeds["visual_frames"][0]["frames"].shape == (4 * cfg.num_frames, 3, cfg.face_size, cfg.face_size)
    prompt = len(prefix_ids(cfg)) + 1
    assert feeds["step"][1]["keys"].shape[3] == prompt + 1  # the cache after one greedy token
    graphs = build_graphs(model)
    with pytest.raises(ValueError, match="int8 needs calibration inputs"):
        prepare_onnx(graphs["visual_pool"], "visual_pool", example_inputs(model, 2)["visual_pool"], "int8", tmp_path)
    path = prepare_onnx(graphs["visual_pool"], "visual_pool", example_inputs(model, 2)["visual_pool"], "int8", tmp_path,
                        feeds["visual_pool"])
    import onnx

    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    feed = feeds["visual_pool"][0]["frame_embeddings"]
    with torch.no_grad():
        scale = float(graphs["visual_pool"](torch.from_numpy(feed)).abs().max())
    error = _ort_max_error(path, graphs["visual_pool"], "visual_pool", (torch.from_numpy(feed),), simulate_qdq=True)
    assert error < 0.05 * scale


# -- on a CUDA GPU with TensorRT -----------------------------------------------------------------------------------
def _require_tensorrt_gpu() -> None:
    try:
        import tensorrt  # noqa: F401
    except Exception:
        pytest.skip("tensorrt not installed")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")


@pytest.fixture(scope="module")
def trt_fp16(tmp_path_factory):
    _require_tensorrt_gpu()
    out = tmp_path_factory.mktemp("trt") / "fp16"
    build_tensorrt(default_checkpoint(), out, "fp16")
    return out


@pytest.mark.gpu
def test_fp16_manifest_describes_this_machine(trt_fp16):
    from migr_rt.artifact import read_artifact
    from migr_rt.backends.tensorrt_backend import device_info

    manifest = read_artifact(trt_fp16)
    assert (manifest.format, manifest.precision) == ("tensorrt", "fp16")
    assert tuple(manifest.extra[k] for k in ("tensorrt_version", "gpu", "compute_capability")) == device_info()
    assert manifest.parity["greedy_tokens_equal"] == 1.0


@pytest.mark.gpu
def test_fp16_engines_agree_with_torch(trt_fp16, model):
    from model_fixtures import random_inputs

    from migr_rt.backends.decode import greedy_decode
    from migr_rt.backends.torch_backend import TorchBackend

    cfg = model.config
    pixels, audio = random_inputs(cfg, 3, seed=5)
    present = torch.tensor([[True, True], [False, True], [True, False]])
    ids = torch.tensor([prefix_ids(cfg) + [cfg.special_token_ids["think_start"]]] * 3)
    trt_backend, torch_backend = TensorRTBackend(trt_fp16), TorchBackend(model)
    results = []
    for backend in (torch_backend, trt_backend):
        tokens = backend.encode(pixels, audio)
        scores = backend.score_mi(tokens, present)
        decoded = greedy_decode(backend, ids, tokens, present, max_new_tokens=24, stop_token_ids=())
        results.append((scores, decoded.tokens))
    (ref, ref_tokens), (got, got_tokens) = results
    assert np.array_equal(got.target, ref.target)
    assert np.allclose(got.mi, ref.mi, atol=5e-2)
    assert np.allclose(got.log_probs, ref.log_probs, atol=5e-2)
    assert np.array_equal(got_tokens, ref_tokens)
    _, state = trt_backend.prefill(ids, trt_backend.encode(pixels, audio), present)
    assert state.keys.is_cuda and state.length == ids.shape[1]


@pytest.mark.gpu
def test_shapes_outside_the_profile_are_refused(trt_fp16):
    backend = TensorRTBackend(trt_fp16)
    too_many = ShapeLimits().max_batch + 1
    with pytest.raises(ValueError, match="outside the engine's optimisation profile"):
        backend.encode_audio(torch.zeros(too_many, backend.config.audio_samples))


def _resealed_copy(folder, to, change):
    """A copy of the artifact ``folder`` whose manifest ``change`` edited and that was sealed again."""
    shutil.copytree(folder, to)
    path = to / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(seal(data)))
    return to


@pytest.mark.gpu
def test_engines_of_another_tensorrt_version_are_refused(trt_fp16, tmp_path):
    folder = _resealed_copy(trt_fp16, tmp_path / "old", lambda d: d["extra"].update(tensorrt_version="9.0.0"))
    with pytest.raises(ArtifactError, match="not portable across TensorRT versions"):
        TensorRTBackend(folder)


@pytest.mark.gpu
def test_a_sealed_manifest_whose_config_does_not_fit_the_engines_is_refused_at_load(trt_fp16, tmp_path):
    # edited and sealed again: every hash matches, and without the check the first window fails inside TensorRT
    folder = _resealed_copy(trt_fp16, tmp_path / "edited", lambda d: d["model_config"].update(num_frames=3))
    with pytest.raises(ArtifactError, match=r"tensor 'frame_embeddings' of graph 'visual_pool' has size 8 at "
                                            r"dimension .* gives model_config num_frames = 3"):
        TensorRTBackend(folder)
