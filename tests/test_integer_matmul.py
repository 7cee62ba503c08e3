"""onnxruntime's int8 matmul on this CPU: worst-case inputs, exact for 7-bit weights."""

from __future__ import annotations

import platform

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from migr_rt.backends.integer_matmul import (  # noqa: E402
    VNNI_FLAGS, full_range_int8_overflows, matmul_integer_error, worst_case_activations)
from migr_rt.perf.system import cpu_flags  # noqa: E402


def test_worst_case_activations_drive_every_column_to_its_extremes():
    w = np.array([[3, -2], [-1, 5], [0, 7]], np.int8)
    a = worst_case_activations(w)
    assert a.dtype == np.uint8 and a.shape == (4, 3)
    sums = a.astype(np.int64) @ w.astype(np.int64)
    assert sums[0, 0] == 255 * 3 and sums[1, 1] == 255 * 12  # each column's largest sum
    assert sums[2, 0] == -255 * 1 and sums[3, 1] == -255 * 2  # and its most negative one


@pytest.mark.parametrize("bad", [np.zeros((4, 2), np.uint8), np.zeros(4, np.int8), np.zeros((2, 2, 2), np.int8)])
def test_weights_that_are_not_a_int8_matrix_are_refused(bad):
    with pytest.raises(ValueError, match="weight: expected a \\(K, N\\) int8 matrix"):
        worst_case_activations(bad)


@pytest.mark.parametrize("k,n", [(2, 1), (64, 8), (257, 33)])
def test_7_bit_weights_are_summed_exactly(k, n):
    w = np.random.default_rng(k).integers(-64, 65, (k, n)).astype(np.int8)
    w[0, 0], w[-1, -1] = -64, 64
    assert matmul_integer_error(w) == 0


def test_the_overflow_probe_answers_for_full_range_weights_of_any_shape():
    w = np.random.default_rng(1).integers(-128, 128, (256, 16)).astype(np.int8)
    assert full_range_int8_overflows() == (matmul_integer_error(w) != 0)


def test_the_probe_finds_the_int16_overflow_exactly_where_the_cpu_lacks_vnni():
    """AVX2 / AVX-512BW sum u8 x s8 pairs in saturating int16 (vpmaddubsw); VNNI sums into int32 (vpdpbusd)."""
    flags = cpu_flags() if platform.machine().lower() in ("x86_64", "amd64") else None
    if flags is None or "avx2" not in flags:
        pytest.skip("needs an x86 CPU with AVX2 whose /proc/cpuinfo lists its flags")
    error = matmul_integer_error(np.full((2, 1), 127, np.int8))
    if flags & VNNI_FLAGS:
        assert error == 0 and not full_range_int8_overflows()
    else:  # one pair: 2 x 255 x 127 = 64770 comes out as int16's 32767
        assert error == 64770 - 32767 and full_range_int8_overflows()
