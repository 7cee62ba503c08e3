"""Timing of warm calls on a shared CPU: rotating blocks, pauses between them, warm-up first.

Shared by ``migr-rt bench`` and ``benchmarks/backends.py``.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

#: Pause before each timing block of an entry (see :func:`sample_rounds`).
BLOCK_PAUSE_S = 0.1


def _sync() -> None:
    if torch.cuda.is_initialized():  # ~30 ns when CUDA was never used
        torch.cuda.synchronize()


class Timed:
    """A call to time, and optionally an untimed reset after each call (to keep a mutable cache's length)."""

    def __init__(self, call: Callable[[], object], reset: Callable[[], None] | None = None) -> None:
        self.call, self.reset = call, reset

    def __call__(self) -> float:
        _sync()  # nothing queued before (a reset, the previous call) is counted in this call
        t0 = time.perf_counter()
        self.call()
        _sync()  # GPU work is asynchronous: a call is done when its kernels are
        elapsed = time.perf_counter() - t0
        if self.reset is not None:
            self.reset()
        return elapsed


def sample_rounds(fns: dict[str, Callable[[], Any]], runs: int, warmup: int, rounds: int,
                  pause: float = BLOCK_PAUSE_S, settle: int = 3) -> dict[str, list[Any]]:
    """What ``runs`` warm calls of each entry returned, taken in ``rounds`` rotating blocks of consecutive calls.

    Each entry first gets ``warmup`` untimed calls. Each block starts after a
    pause and with ``settle`` more untimed calls: the thread pools of the backend
    that ran before (onnxruntime's and OpenMP's) spin-wait for a while after
    their last call, and two busy pools on two cores slow each other down
    many times over; a deployment runs one backend, so each is timed warm
    and alone. The rotation gives every entry a like share of any
    background load. The garbage collector is off while timing.
    """
    names = list(fns)
    values: dict[str, list[Any]] = {n: [] for n in names}
    for n in names:
        for _ in range(warmup):
            fns[n]()
    rounds = max(1, min(rounds, runs))
    per_round = math.ceil(runs / rounds)
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            for n in names[r % len(names):] + names[: r % len(names)]:
                time.sleep(pause)
                for _ in range(settle):
                    fns[n]()
                for _ in range(min(per_round, runs - len(values[n]))):
                    values[n].append(fns[n]())
    finally:
        gc.enable()
    return values


def time_rounds(fns: dict[str, Timed], runs: int, warmup: int, rounds: int, settle: int = 3) -> dict[str, np.ndarray]:
    """Milliseconds of ``runs`` warm calls per entry (:func:`sample_rounds` of :class:`Timed` calls)."""
    values = sample_rounds(fns, runs, warmup, rounds, settle=settle)
    return {n: np.asarray(v, dtype=np.float64) * 1000.0 for n, v in values.items()}


def summary(ms: np.ndarray | list[float]) -> dict:
    """p50 / p95 / p99 / mean / min / max of a sample of milliseconds."""
    ms = np.asarray(ms, dtype=np.float64)
    p50, p95, p99 = (float(v) for v in np.percentile(ms, [50, 95, 99]))
    return {"p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "mean_ms": float(ms.mean()), "min_ms": float(ms.min()),
            "max_ms": float(ms.max()), "runs": int(len(ms))}
