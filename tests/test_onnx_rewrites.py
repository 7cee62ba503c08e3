"""The ONNX rewrites the exporters apply before conversion, on small hand-built graphs run in onnxruntime.

They guard against what some torch/onnxruntime pairs in our supported range produce: a tied embedding/LM-head
initializer read by both a Gather and a Gemm (torch 2.11), which dynamic quantization corrupts by rewriting the
Gemm's weight in place; and a value feeding two fp32-blocked nodes, which onnxruntime 1.30's fp16 converter
casts twice under one name.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from migr_rt.export.onnx_export import (  # noqa: E402
    _dedupe_casts, _unique_node_names, no_preprocessing_advice, quantize_int8, to_fp16, untie_weights)

VOCAB, HIDDEN = 37, 16


def _tied_graph(path):
    """ids -> embedding (Gather) -> logits through the same table as a transposed Gemm (a tied LM head)."""
    rng = np.random.default_rng(0)
    table = numpy_helper.from_array(rng.standard_normal((VOCAB, HIDDEN)).astype(np.float32), "lm_head.weight")
    nodes = [helper.make_node("Gather", ["lm_head.weight", "ids"], ["h"], name="embed"),
             helper.make_node("Gemm", ["h", "lm_head.weight"], ["logits"], name="head", transB=1)]
    graph = helper.make_graph(nodes, "tied", [helper.make_tensor_value_info("ids", TensorProto.INT64, [5])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [5, VOCAB])], [table])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), str(path))


def _run(path, feeds):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def test_untie_gives_the_gemm_its_own_copy_and_keeps_the_outputs(tmp_path):
    _tied_graph(tmp_path / "tied.onnx")
    model = onnx.load(str(tmp_path / "tied.onnx"))
    assert untie_weights(model.graph) == 1
    gather, gemm = model.graph.node
    assert gather.input[0] == "lm_head.weight" and gemm.input[1] != "lm_head.weight"
    assert untie_weights(model.graph) == 0  # nothing left to untie
    onnx.checker.check_model(model)
    onnx.save(model, str(tmp_path / "untied.onnx"))
    ids = {"ids": np.array([0, 3, 7, 36, 3])}
    np.testing.assert_array_equal(_run(tmp_path / "untied.onnx", ids), _run(tmp_path / "tied.onnx", ids))


def test_int8_of_a_tied_head_stays_close_to_fp32(tmp_path):
    _tied_graph(tmp_path / "tied.onnx")
    quantize_int8(tmp_path / "tied.onnx", tmp_path / "int8.onnx")
    onnx.checker.check_model(str(tmp_path / "int8.onnx"))
    ids = {"ids": np.array([1, 2, 30, 36, 0])}
    ref, got = _run(tmp_path / "tied.onnx", ids), _run(tmp_path / "int8.onnx", ids)
    assert got.shape == ref.shape
    # int8 weights: close to fp32 in relative terms, and the same argmax per row as a tied head should give
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()
    np.testing.assert_array_equal(got.argmax(-1), ref.argmax(-1))


@pytest.mark.parametrize("bits,widest", [(7, 64), (8, 127)])
def test_int8_weights_span_the_bits_asked_for_and_the_quantiser_keeps_its_advice_to_itself(tmp_path, caplog, bits,
                                                                                         widest):
    _tied_graph(tmp_path / "tied.onnx")
    with caplog.at_level(logging.WARNING):
        quantize_int8(tmp_path / "tied.onnx", tmp_path / "int8.onnx", weight_bits=bits)
    assert not [r for r in caplog.records if "pre-processing" in r.getMessage()]
    model = onnx.load(str(tmp_path / "int8.onnx"))
    weights = [numpy_helper.to_array(i) for i in model.graph.initializer if i.data_type == TensorProto.INT8]
    assert weights and max(int(np.abs(w.astype(np.int16)).max()) for w in weights) == widest
    with pytest.raises(ValueError, match="weight_bits 4"):
        quantize_int8(tmp_path / "tied.onnx", tmp_path / "int4.onnx", weight_bits=4)


def test_no_preprocessing_advice_drops_both_wordings_only_while_active(caplog):
    with caplog.at_level(logging.WARNING):
        with no_preprocessing_advice():
            logging.warning("Please consider to run pre-processing before quantization. Refer to example: ...")
            logging.warning("Please consider pre-processing before quantization. See ...")
            logging.warning("calibration data has NaN")
        logging.warning("Please consider pre-processing before quantization. See ...")
    assert [r.getMessage() for r in caplog.records] == [
        "calibration data has NaN", "Please consider pre-processing before quantization. See ..."]
    assert not logging.getLogger().filters


def test_fp16_of_a_value_read_by_two_blocked_nodes_is_valid(tmp_path):
    """x -> Mul -> y; y feeds two IsNaN nodes (kept fp32) and an Add: one Cast back to fp32, one name."""
    nodes = [helper.make_node("Mul", ["x", "x"], ["y"], name="square"),
             helper.make_node("IsNaN", ["y"], ["nan_a"], name="nan_a"),
             helper.make_node("IsNaN", ["y"], ["nan_b"], name="nan_b"),
             helper.make_node("Or", ["nan_a", "nan_b"], ["any_nan"], name="either"),
             helper.make_node("Add", ["y", "x"], ["z"], name="add")]
    graph = helper.make_graph(nodes, "blocked", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("any_nan", TensorProto.BOOL, [4]),
                               helper.make_tensor_value_info("z", TensorProto.FLOAT, [4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    onnx.save(model, str(tmp_path / "fp32.onnx"))
    to_fp16(tmp_path / "fp32.onnx", tmp_path / "fp16.onnx")
    model = onnx.load(str(tmp_path / "fp16.onnx"))
    onnx.checker.check_model(model)
    outputs = [o for n in model.graph.node for o in n.output]
    assert len(outputs) == len(set(outputs)) and len({n.name for n in model.graph.node}) == len(model.graph.node)
    x = np.array([1.0, np.nan, -2.0, 0.5], dtype=np.float32)
    session = ort.InferenceSession(str(tmp_path / "fp16.onnx"), providers=["CPUExecutionProvider"])
    any_nan, z = session.run(None, {"x": x})
    np.testing.assert_array_equal(any_nan, np.isnan(x))
    np.testing.assert_allclose(z, x * x + x, rtol=1e-3)


def test_one_copy_serves_every_quantized_reader():
    table = numpy_helper.from_array(np.ones((VOCAB, HIDDEN), dtype=np.float32), "w")
    nodes = [helper.make_node("Gather", ["w", "ids"], ["h"]),
             helper.make_node("Gemm", ["h", "w"], ["a"], transB=1),
             helper.make_node("Gemm", ["h", "w"], ["b"], transB=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [2])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, VOCAB]) for n in "ab"],
                              [table])
    assert untie_weights(graph) == 1
    assert nodes[0].input[0] == "w" and graph.node[1].input[1] == graph.node[2].input[1] != "w"
    assert len(graph.initializer) == 2


def _cast(src, dst, to, name):
    return helper.make_node("Cast", [src], [dst], name=name, to=to)


def test_dedupe_drops_only_identical_casts():
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu"),
             _cast("y", "y32", TensorProto.FLOAT, "c1"),
             _cast("y", "y32", TensorProto.FLOAT, "c2"),  # the converter's repeat: same input, output and type
             _cast("y", "y64", TensorProto.DOUBLE, "c3"),  # another cast of y: kept
             helper.make_node("Neg", ["y32"], ["z"], name="neg")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [3])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [3]),
                               helper.make_tensor_value_info("y64", TensorProto.DOUBLE, [3])])
    _dedupe_casts(graph)
    assert [n.name for n in graph.node] == ["relu", "c1", "c3", "neg"]
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    onnx.checker.check_model(model)
    x = np.array([-1.0, 0.5, 2.0], dtype=np.float16)
    z, y64 = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_array_equal(z, -np.maximum(x, 0).astype(np.float32))
    assert y64.dtype == np.float64


def test_node_names_made_unique_keep_the_first():
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="n"), helper.make_node("Neg", ["a"], ["b"], name="n"),
             helper.make_node("Abs", ["b"], ["c"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [2])])
    _unique_node_names(graph)
    names = [n.name for n in graph.node]
    assert names[0] == "n" and len(set(names)) == 3 and all(names)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
