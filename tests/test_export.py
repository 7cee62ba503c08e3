"""ONNX export of the bundled checkpoint: parity with torch, a self-describing manifest, quantised variants."""

from __future__ import annotations

import json

import logging
import shutil
from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from migr_rt.export.fused_step import STATIC_INPUTS, STATIC_OUTPUTS, cache_names
from migr_rt.export.onnx_export import GRAPH_IO, OPSET, STEP_GRAPH_FUSED, export_onnx, is_current_export
from migr_rt.training.synth.corpus import SynthConfig, render_clip

from migr_rt.artifact import GRAPH_NAMES, read_artifact, sha256_of
from migr_rt.backends import greedy_decode, load_backend
from migr_rt.backends.integer_matmul import matmul_integer_error
from migr_rt.backends import onnxruntime_backend
from migr_rt.backends.onnxruntime_backend import OnnxRuntimeBackend
from migr_rt.backends.torch_backend import TorchBackend
from migr_rt.model.layout import prefix_ids
from migr_rt.bundled import default_checkpoint
from migr_rt.predict import Predictor


@pytest.fixture(scope="module")
def clip():
    return render_clip(SynthConfig(n=1, seed=5), 0)


def test_onnxruntime_predicts_what_torch_predicts_on_a_synthetic_clip(bundled_onnx, clip):
    torch_pred = Predictor(backend="torch")
    ort_pred = Predictor(bundled_onnx, backend="onnxruntime")
    assert ort_pred.backend.name == "onnxruntime" and torch_pred.backend.name == "torch"
    a, b = torch_pred.predict(clip.frames, clip.audio), ort_pred.predict(clip.frames, clip.audio)
    assert a.label == b.label and a.dominant == b.dominant and a.face_box == b.face_box
    for key in a.mi:
        assert a.mi[key] == pytest.approx(b.mi[key], abs=1e-4)
        assert a.importance[key] == pytest.approx(b.importance[key], abs=1e-4)
    for label in a.probs:
        assert a.probs[label] == pytest.approx(b.probs[label], abs=1e-4)
    ra, rb = torch_pred.explain(clip.frames, clip.audio), ort_pred.explain(clip.frames, clip.audio)
    assert ra.text == rb.text and ra.answer is not None


def test_manifest_describes_everything_the_runtime_needs(bundled_onnx):
    manifest = read_artifact(bundled_onnx)
    source = default_checkpoint()
    assert manifest.format == "onnx" and manifest.precision == "fp32" and manifest.opset == OPSET
    assert manifest.source_checkpoint["sha256"] == sha256_of(source / "model.safetensors")
    config = json.loads((source / "config.json").read_text())
    assert manifest.labels == config["labels"] and manifest.modalities == config["modalities"]
    for key in ("face_size", "num_frames", "sample_rate", "audio_seconds", "n_mels", "special_token_ids"):
        assert manifest.model_config[key] == config[key]
    assert {"torch", "onnx", "onnxruntime", "transformers", "migr_rt"} <= manifest.tools.keys()
    assert set(manifest.graphs) == set(GRAPH_NAMES)
    layers = config["text_config"]["num_hidden_layers"]
    past, present = cache_names(layers)
    # the fused step (fp32) keeps its cache in place: its own inputs and outputs, not the traced step's
    io = {**GRAPH_IO, "step": ([*STATIC_INPUTS, *past], [*STATIC_OUTPUTS, *present])}
    for name, spec in manifest.graphs.items():
        model = onnx.load(str(bundled_onnx / spec.file))
        inits = {i.name for i in model.graph.initializer}
        assert [i.name for i in model.graph.input if i.name not in inits] == spec.input_names == io[name][0]
        assert [o.name for o in model.graph.output] == spec.output_names == io[name][1]
        assert spec.inputs[0].shape[0] in ("batch", "frames"), f"{name}: batch axis must be dynamic"
        assert manifest.parity[name] <= 1e-4
    step = manifest.graphs["step"]
    assert manifest.extra["step_graph"].startswith(STEP_GRAPH_FUSED)
    assert step.inputs[2].shape == ["batch", "capacity"] and step.inputs[3].shape == ["batch", 2, "capacity", 32]
    assert [o.shape for o in step.outputs[1:]] == [step.inputs[3].shape] * 2 * layers  # each output is its input
    assert manifest.graphs["prefill"].inputs[0].shape == ["batch", "seq"]
    assert manifest.parity["greedy_tokens_equal"] == 1.0
    assert (bundled_onnx / "tokenizer.json").is_file()


def _inputs(cfg, batch: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.rand(batch, cfg.num_frames, 3, cfg.face_size, cfg.face_size, generator=gen)
    audio = 0.1 * torch.randn(batch, int(cfg.sample_rate * cfg.audio_seconds), generator=gen)
    present = torch.tensor([[True, True], [True, False], [False, True], [True, True], [True, False]][:batch])
    return pixels, audio, present


@pytest.mark.parametrize("batch", [1, 5])
def test_every_graph_matches_torch_at_any_batch(bundled_onnx, batch):
    ref = TorchBackend.from_checkpoint(default_checkpoint())
    ort = OnnxRuntimeBackend(bundled_onnx)
    pixels, audio, present = _inputs(ref.config, batch, seed=batch)
    t_tokens, o_tokens = ref.encode(pixels, audio), ort.encode(pixels, audio)
    np.testing.assert_allclose(t_tokens.visual, o_tokens.visual, atol=1e-4)
    np.testing.assert_allclose(t_tokens.audio, o_tokens.audio, atol=1e-4)
    t_mi, o_mi = ref.score_mi(t_tokens, present), ort.score_mi(t_tokens, present)
    np.testing.assert_allclose(t_mi.log_probs, o_mi.log_probs, atol=1e-4)
    np.testing.assert_allclose(t_mi.mi, o_mi.mi, atol=1e-4)
    assert np.array_equal(t_mi.dominant, o_mi.dominant)
    ids = torch.tensor([prefix_ids(ref.config) + [ref.config.special_token_ids["think_start"]]] * batch)
    t_logits, t_state = ref.prefill(ids, t_tokens, present)
    o_logits, o_state = ort.prefill(ids, t_tokens, present)
    for _ in range(3):
        np.testing.assert_allclose(t_logits, o_logits, atol=1e-4)
        nxt = t_logits.argmax(-1)
        t_logits, t_state = ref.step(nxt, t_state)
        o_logits, o_state = ort.step(nxt, o_state)
    assert np.allclose(t_state.keys.numpy(), o_state.keys, atol=1e-4) and o_state.length == t_state.length


def test_greedy_rationales_are_token_identical(bundled_onnx):
    ref = TorchBackend.from_checkpoint(default_checkpoint())
    ort = load_backend(bundled_onnx, "auto")
    pixels, audio, present = _inputs(ref.config, 3, seed=9)
    ids = torch.tensor([prefix_ids(ref.config) + [ref.config.special_token_ids["think_start"]]] * 3)
    a = greedy_decode(ref, ids, ref.encode(pixels, audio), present, max_new_tokens=64)
    b = greedy_decode(ort, ids, ort.encode(pixels, audio), present, max_new_tokens=64)
    assert np.array_equal(a.tokens, b.tokens) and a.tokens.shape[1] > 8


@pytest.fixture(scope="module")
def int8_artifact(tmp_path_factory):
    folder = tmp_path_factory.mktemp("int8") / "int8"
    _assert_written_as_returned(export_onnx(default_checkpoint(), folder, "int8"), folder)
    return folder


def _assert_written_as_returned(returned, folder) -> None:
    written = read_artifact(folder)  # model_config aside: JSON turns its int keys (id2label) into strings
    for field in ("format", "precision", "graphs", "source_checkpoint", "parity", "extra", "opset"):
        assert getattr(written, field) == getattr(returned, field), field


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_precision_exports_run_and_stay_close(tmp_path, precision, request):
    folder = request.getfixturevalue("int8_artifact") if precision == "int8" else tmp_path / precision
    if precision != "int8":
        _assert_written_as_returned(export_onnx(default_checkpoint(), folder, precision), folder)
    manifest = read_artifact(folder)
    assert manifest.precision == precision
    ops = {n.op_type for spec in manifest.graphs.values() for n in onnx.load(str(folder / spec.file)).graph.node}
    if precision == "int8":
        assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops, "no quantised matmul in the int8 graphs"
        step_ops = {n.op_type for n in onnx.load(str(folder / manifest.graphs["step"].file)).graph.node}
        assert "MatMulNBits" in step_ops and "MatMul" not in step_ops  # the fused step: 8-bit weights
        assert manifest.extra["step_graph"].startswith("fused")
    else:
        types = {i.data_type for spec in manifest.graphs.values() if spec.file != "audio.onnx"
                 for i in onnx.load(str(folder / spec.file)).graph.initializer}
        assert onnx.TensorProto.FLOAT16 in types
        assert max(v for k, v in manifest.parity.items() if k in manifest.graphs) <= 5e-2  # documented fp16 tolerance
    ref = TorchBackend.from_checkpoint(default_checkpoint())
    low = OnnxRuntimeBackend(folder)
    pixels, audio, present = _inputs(ref.config, 5, seed=11)
    tokens = ref.encode(pixels, audio)
    a, b = ref.score_mi(tokens, present), low.score_mi(low.encode(pixels, audio), present)
    assert (a.predicted == b.predicted).mean() >= 0.8
    assert np.abs(a.probs - b.probs).max() < 0.2


def test_int8_weights_are_7_bit_and_this_cpu_sums_them_exactly(int8_artifact):
    """With full-range weights the exactness check fails on CPUs without VNNI (AVX2, AVX-512F), such as CI's."""
    manifest = read_artifact(int8_artifact)
    assert manifest.extra["int8_weight_bits"] == 7
    checked = 0
    for spec in manifest.graphs.values():
        model = onnx.load(str(int8_artifact / spec.file))
        weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        for node in model.graph.node:
            if node.op_type != "MatMulInteger":
                continue
            w = weights[node.input[1]]
            assert w.dtype == np.int8 and np.abs(w.astype(np.int16)).max() <= 64, f"{spec.file}: {node.name} too wide"
            assert matmul_integer_error(w) == 0, f"{spec.file}: {node.name} overflows on this CPU"
            checked += 1
    assert checked >= 10  # encoders, scoring and prefill: every projection


@pytest.mark.parametrize("overflows", [True, False])
def test_an_int8_artifact_from_before_7_bit_weights_warns_where_they_overflow(int8_artifact, tmp_path, caplog,
                                                                             monkeypatch, overflows):
    """Whether this CPU overflows is the probe's answer (tested in test_integer_matmul); here, what follows."""
    old = tmp_path / "old-int8"
    shutil.copytree(int8_artifact, old)
    raw = json.loads((old / "manifest.json").read_text())
    del raw["extra"]["int8_weight_bits"]  # what exports before 7-bit weights wrote
    del raw["content_sha256"]  # nor did they seal their manifest
    (old / "manifest.json").write_text(json.dumps(raw))
    monkeypatch.setattr(onnxruntime_backend, "full_range_int8_overflows", lambda: overflows)
    name = onnxruntime_backend.logger.name

    def warned() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == name and r.levelno >= logging.WARNING]

    with caplog.at_level(logging.WARNING, logger=name):
        OnnxRuntimeBackend(int8_artifact)  # 7-bit weights: nothing to say on any CPU
        assert warned() == []
        OnnxRuntimeBackend(old)
    if overflows:
        assert len(warned()) == 1 and str(old) in warned()[0] and "migr-rt export --precision int8" in warned()[0]
    else:
        assert warned() == []


def test_benchmarks_reuse_only_exports_written_as_export_onnx_writes_them_now(bundled_onnx):
    manifest = read_artifact(bundled_onnx)
    weights = sha256_of(default_checkpoint() / "model.safetensors")

    def current(precision: str = "fp32", sha: str = weights, **changes) -> bool:
        extra = {k: v for k, v in {**manifest.extra, **changes}.items() if v is not None}
        return is_current_export(replace(manifest, precision=precision, extra=extra), sha, precision)

    assert current()
    assert not current(sha="0" * 64)  # other weights
    assert not is_current_export(manifest, weights, "int8")  # another precision
    assert not is_current_export(replace(manifest, format="tensorrt"), weights, "fp32")
    assert not current(step_graph="traced")  # written before the fused step existed
    assert not current(step_graph="fused (opset 23 + com.microsoft)")  # a fused step before its in-place cache
    assert current(step_graph="traced (decoder over the fused step's 1.5 GB inline limit)")  # too large to fuse
    assert current("fp16", step_graph="traced") and not current("fp16", step_graph="fused (opset 23)")
    assert current("int8", int8_weight_bits=7)
    assert not current("int8") and not current("int8", int8_weight_bits=8)  # full-range int8 weights



def test_a_decoder_whose_head_dim_groupqueryattention_refuses_keeps_the_traced_step(tmp_path):
    # onnxruntime's GroupQueryAttention (the fused step's) runs only head sizes in multiples of 16: a decoder with
    # head_dim 8 is exported with the traced step, named in the manifest, and runs (the fused one failed at run time)
    from model_fixtures import TINY_TEXT, tiny_config

    from migr_rt.model import build_model, save_checkpoint

    model, tokenizer = build_model(tiny_config(text_config={**TINY_TEXT, "num_attention_heads": 8}),
                                   tokenizer_texts=["brows drawn together"], seed=0)
    assert model.config.text_config.hidden_size // 8 == 8
    checkpoint = save_checkpoint(model, tokenizer, tmp_path / "ckpt")
    manifest = export_onnx(checkpoint, tmp_path / "onnx", "fp32")  # parity: the step runs through the backend
    assert manifest.extra["step_graph"] == "traced (head_dim 8: GroupQueryAttention needs a multiple of 16)"
    assert manifest.graphs["step"].input_names == GRAPH_IO["step"][0]
    assert manifest.parity["step"] <= 1e-4 and manifest.parity["greedy_tokens_equal"] == 1.0
    assert is_current_export(manifest, manifest.source_checkpoint["sha256"], "fp32")

    from migr_rt.export.fused_step import build_fused_step, unfused_reason

    assert unfused_reason(model) == "head_dim 8: GroupQueryAttention needs a multiple of 16"
    with pytest.raises(ValueError, match="head_dim 8"):  # not a graph that fails only when it runs
        build_fused_step(model, "fp32")
