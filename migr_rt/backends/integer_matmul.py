"""Does onnxruntime's int8 matmul compute exact sums on this CPU?

Dynamically quantised graphs multiply uint8 activations by int8 weights
(``MatMulInteger``). On x86 CPUs without VNNI (AVX2, AVX-512F) onnxruntime's
kernel multiplies them in pairs summed into int16 (``vpmaddubsw``), which
saturates once a pair exceeds 32767: with full-range weights (2 x 255 x 127 =
64770) the sums come out wrong, not rounded. With 7-bit weights (|w| <= 64) a
pair stays within 32640. These checks run the real kernel on worst-case
inputs, so they answer for the machine they run on.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: Bits of the int8 export's dynamically quantised weights: values in [-64, 64] (onnxruntime's reduce_range).
#: A pair of their products with uint8 activations stays within 2 x 255 x 64 = 32640, inside int16, so no
#: CPU overflows them. On the bundled model real activations rarely reach the overflow of full-range
#: weights (max MI error vs torch 0.40 with 8-bit weights on an AVX2 CPU, 0.24 summed exactly, 0.22 with
#: 7-bit), and 7-bit weights measured about as accurate as 8-bit ones summed exactly
#: (benchmarks/results/int8_saturation.md).
INT8_WEIGHT_BITS = 7
#: x86 feature flags whose dot-product instructions sum u8 x s8 products into int32 (no int16 pairs).
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def worst_case_activations(weight: np.ndarray) -> np.ndarray:
    """``(2N, K)`` uint8 rows driving each of ``weight``'s ``N`` columns to its largest positive and negative sum."""
    if weight.ndim != 2 or weight.dtype != np.int8:
        raise ValueError(f"weight: expected a (K, N) int8 matrix, got {weight.dtype} of shape {weight.shape}")
    positive = np.where(weight.T > 0, 255, 0).astype(np.uint8)
    negative = np.where(weight.T < 0, 255, 0).astype(np.uint8)
    return np.concatenate([positive, negative])


def matmul_integer_error(weight: np.ndarray) -> int:
    """Largest |onnxruntime ``MatMulInteger`` - exact integer product| for ``weight`` on worst-case activations.

    The weight is an initializer, as in the quantised graphs (onnxruntime packs those ahead of time).
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    a = worst_case_activations(weight)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "w"], ["y"])], "matmul_integer",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, list(a.shape))],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [a.shape[0], weight.shape[1]])],
        initializer=[numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    got = session.run(None, {"a": a})[0].astype(np.int64)
    return int(np.abs(got - a.astype(np.int64) @ weight.astype(np.int64)).max())


@lru_cache(maxsize=1)
def full_range_int8_overflows() -> bool:
    """Whether onnxruntime's CPU kernel here gets a full-range (8-bit weight) product wrong."""
    return matmul_integer_error(np.full((2, 1), 127, np.int8)) != 0
