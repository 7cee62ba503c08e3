"""Leave realistic garbage in freed heap blocks, so a C library that reads memory it never wrote shows it.

glibc's ``MALLOC_PERTURB_`` fills blocks with one byte, which can hide such a
read (x264's macroblock-tree assembly gave the same output for 0x55 and 0xAA
and different outputs for leftovers like these): here blocks of many sizes
are allocated with ``malloc``, filled with zeros, small integers, floats or
random bytes, and freed in random order, so the allocator hands them out next.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np

_LIBC = ctypes.CDLL(ctypes.util.find_library("c"))
_LIBC.malloc.restype = ctypes.c_void_p
_LIBC.malloc.argtypes = [ctypes.c_size_t]
_LIBC.free.argtypes = [ctypes.c_void_p]


def _garbage(rng: np.random.Generator, size: int) -> bytes:
    kind = int(rng.integers(0, 5))
    if kind == 0:
        return bytes(size)
    if kind == 1:
        return rng.integers(-40, 40, size // 4 + 1, dtype=np.int32).tobytes()[:size]
    if kind == 2:
        return rng.integers(-300, 300, size // 2 + 1, dtype=np.int16).tobytes()[:size]
    if kind == 3:
        return rng.normal(0.0, 3.0, size // 4 + 1).astype(np.float32).tobytes()[:size]
    return rng.integers(0, 256, size, dtype=np.uint8).tobytes()


def scribble_freed_heap(seed: int, blocks: int = 400, max_size: int = 200_000) -> None:
    """Allocate ``blocks`` blocks, fill each with garbage drawn from ``seed``, free them all."""
    rng = np.random.default_rng(seed)
    pointers = []
    for _ in range(blocks):
        size = int(rng.integers(16, max_size))
        pointer = _LIBC.malloc(size)
        if pointer:
            ctypes.memmove(pointer, _garbage(rng, size), size)
            pointers.append(pointer)
    for i in rng.permutation(len(pointers)):
        _LIBC.free(pointers[i])
