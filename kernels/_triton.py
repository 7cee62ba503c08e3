"""Where Triton comes from, and whether the kernels compile for a GPU or run in Triton's interpreter.

Triton decides at *decoration* time (``@triton.jit``) whether a function is
compiled or interpreted: it reads ``TRITON_INTERPRET`` when the function is
defined. A machine without CUDA can only interpret, so :func:`jit` decorates
our kernels with ``TRITON_INTERPRET=1`` set around the decoration alone and
puts the previous value back: the process environment is left as it was, the
rest of a test suite never sees the variable, and no conftest or import order
is needed. That matters because Triton is usually imported long before us,
in compiled mode (``torch._dynamo`` imports it as soon as ``transformers``
loads), so its own language library (``tl.sum``, ``tl.max``, ``tl.zeros``:
themselves ``@jit`` functions) cannot be called from an interpreted kernel.
The kernels therefore use only Triton *builtins* plus the reductions below:
``tl.reduce`` with the library's combine functions, which the interpreter
recognises and runs as one numpy call, and the public ``tl.max``/``tl.sum``
when compiled. An explicit ``TRITON_INTERPRET=1`` is honoured on a CUDA
machine too (interpreted kernels then need CPU tensors).

The interpreter runs each program in numpy: fp32 and fp16 are exact there,
bf16 ``tl.dot`` is not, so the kernels upcast bf16 operands to fp32 before
``tl.dot`` when interpreting (loads and stores stay bf16).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch

HAS_TRITON: bool = importlib.util.find_spec("triton") is not None

#: Compile (never interpret) even without CUDA: for ``python -m migr_rt.kernels.compile_check`` only.
COMPILE_ONLY: bool = os.environ.get("MIGR_RT_TRITON_COMPILE_ONLY", "0") == "1"

#: True when the kernels of this package are (or will be) interpreted instead of compiled.
INTERPRET: bool = os.environ.get("TRITON_INTERPRET", "0") == "1" or (
    not torch.cuda.is_available() and not COMPILE_ONLY)


@contextmanager
def _interpreting() -> Iterator[None]:
    """``TRITON_INTERPRET=1`` for the duration of the block only."""
    previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = previous


if HAS_TRITON:
    import triton  # noqa: F401  (re-exported for the kernel modules)
    import triton.language as tl  # noqa: F401
else:  # pragma: no cover - exercised only where triton is absent
    triton = None  # type: ignore[assignment]
    tl = None  # type: ignore[assignment]


def jit(fn: Callable[..., Any]) -> Any:
    """``triton.jit``, interpreted when :data:`INTERPRET` (without leaking ``TRITON_INTERPRET`` into ``os.environ``)."""
    if not HAS_TRITON:
        return fn  # never launched: every entry point checks :func:`unavailable_reason` first
    with _interpreting() if INTERPRET else nullcontext():
        return triton.jit(fn)


def unavailable_reason(device: torch.device | str) -> str | None:
    """Why the kernels cannot run on tensors of ``device`` here, or ``None`` when they can."""
    device = torch.device(device)
    if not HAS_TRITON:
        return "triton is not installed (pip install 'migr-rt[kernels]')"
    if INTERPRET and device.type != "cpu":
        return f"the kernels are interpreted here (TRITON_INTERPRET=1 or no CUDA) and need CPU tensors, not {device}"
    if not INTERPRET and device.type != "cuda":
        return (f"the kernels are compiled for CUDA here and need CUDA tensors, not {device} "
                "(set TRITON_INTERPRET=1 before importing migr_rt.kernels to interpret them on the CPU)")
    return None


def check_device(device: torch.device | str) -> None:
    """Raise ``RuntimeError`` with the reason when the kernels cannot run on ``device``."""
    reason = unavailable_reason(device)
    if reason is not None:
        raise RuntimeError(reason)


def next_pow2(n: int, minimum: int = 16) -> int:
    """Smallest power of two >= ``max(n, minimum)`` (``tl.arange`` and ``tl.dot`` need powers of two, >= 16)."""
    return max(minimum, 1 << max(0, int(n) - 1).bit_length())


# ---------------------------------------------------------------------------------------------------------------
# reductions that work interpreted whatever mode triton.language was imported in (see the module docstring)
# ---------------------------------------------------------------------------------------------------------------
if HAS_TRITON and INTERPRET:
    _MAX = getattr(tl.standard, "_elementwise_max", None)
    _MIN = getattr(tl.standard, "_elementwise_min", None)
    _SUM = getattr(tl.standard, "_sum_combine", None)

    @jit
    def _max_combine(a, b):  # fallback (slow generic interpreter path) should triton rename its combine functions
        return tl.maximum(a, b)

    @jit
    def _min_combine(a, b):
        return tl.minimum(a, b)

    @jit
    def _add_combine(a, b):
        return a + b

    _MAX, _MIN, _SUM = _MAX or _max_combine, _MIN or _min_combine, _SUM or _add_combine

    @jit
    def reduce_max(x, axis: tl.constexpr):
        return tl.reduce(x, axis, _MAX)

    @jit
    def reduce_min(x, axis: tl.constexpr):
        return tl.reduce(x, axis, _MIN)

    @jit
    def reduce_sum(x, axis: tl.constexpr):
        return tl.reduce(x, axis, _SUM)

elif HAS_TRITON:

    @jit
    def reduce_max(x, axis: tl.constexpr):
        return tl.max(x, axis=axis)

    @jit
    def reduce_min(x, axis: tl.constexpr):
        return tl.min(x, axis=axis)

    @jit
    def reduce_sum(x, axis: tl.constexpr):
        return tl.sum(x, axis=axis)

else:  # pragma: no cover
    reduce_max = reduce_min = reduce_sum = None
