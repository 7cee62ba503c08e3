"""Compile the kernels for NVIDIA targets on a machine without a GPU: does the *compiled* path build?

    MIGR_RT_TRITON_COMPILE_ONLY=1 python -m migr_rt.kernels.compile_check [--quick] [--arch 90 --arch 80]

The interpreter runs a kernel's Python body with numpy, so it cannot catch
what only the compiler rejects (types of loop-carried values across an
``if``, constexpr handling, ``tl.dot`` shapes and precisions). This lowers
each kernel through Triton's full pipeline (TTIR -> TTGIR -> LLVM IR -> PTX
-> cubin with the ptxas that ships in the triton wheel) for the given
architectures, without launching anything. ``MIGR_RT_TRITON_COMPILE_ONLY=1``
must be in the environment before ``migr_rt.kernels`` is imported: it makes
the package decorate compiled kernels although no CUDA device is present.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _attention_signature(dtype: str) -> dict[str, str]:
    sig = {name: "*" + dtype for name in ("Q", "K", "V", "O")}
    sig.update(SEQ_LENS="*i32", LAYOUT="*i32", SPANS="*i32", PRESENT="*i8", VISITED="*i32")
    for tensor in "qkvo":
        for dim in ("b", "v", "h", "l", "d"):
            sig[f"s{tensor}_{dim}"] = "i32"
    sig.update(qk_scale="fp32", q_len="i32", key_len="i32", head_dim="i32")
    for name in ("HEADS", "GROUP", "NUM_VARIANTS", "NUM_MODALITIES", "BLOCK_M", "BLOCK_N", "BLOCK_D", "BLOCK_MOD",
                 "UPCAST", "DOT_PRECISION", "COUNT_BLOCKS", "EVEN_D"):
        sig[name] = "constexpr"
    return sig


def _mi_signature(dtype: str) -> dict[str, str]:
    names = ["LOGITS", "TARGET_IN", "PRESENT", "LOG_PROBS", "TARGET", "MI", "IMPORTANCE", "DOMINANT",
             "bsz", "num_labels", "sl_b", "sl_v", "sl_c"]
    types = ["*" + dtype, "*i32", "*i8", "*fp32", "*i64", "*fp32", "*fp32", "*i64", "i32", "i32", "i32", "i32", "i32"]
    sig = dict(zip(names, types))
    for name in ("NUM_VARIANTS", "NUM_MODALITIES", "HAS_TARGET", "BLOCK_B", "BLOCK_C", "BLOCK_MOD"):
        sig[name] = "constexpr"
    return sig


def compile_all(archs: list[int], quick: bool) -> list[str]:
    """Compile every kernel variant for ``archs``; returns one line per compiled kernel (raises on failure)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import ASTSource

    from migr_rt.kernels._triton import INTERPRET
    from migr_rt.kernels.fused_mi import _fused_mi_kernel
    from migr_rt.kernels.masked_attention import _masked_attention_kernel

    if INTERPRET:
        raise RuntimeError("the kernels were decorated for the interpreter: set MIGR_RT_TRITON_COMPILE_ONLY=1 "
                           "(and not TRITON_INTERPRET=1) before importing migr_rt.kernels")
    dtypes = [("fp16", None)] if quick else [("fp16", None), ("bf16", None), ("fp32", "ieee")]
    tiles = [(64, 64, 4)] if quick else [(16, 64, 4), (64, 64, 4), (128, 64, 8), (128, 128, 8)]
    lines = []
    for arch in archs:
        target = GPUTarget("cuda", arch, 32)
        for dtype, precision in dtypes:
            for bm, bn, warps in tiles:
                # M = 2 (the MI variants: span checks) and M = 0 (plain causal attention: the unmasked loop)
                for count, num_m in ((False, 2), (False, 0)) if quick else ((False, 2), (True, 2), (False, 0)):
                    consts = dict(HEADS=14, GROUP=7, NUM_VARIANTS=1 + num_m, NUM_MODALITIES=num_m, BLOCK_M=bm,
                                  BLOCK_N=bn, BLOCK_D=64, BLOCK_MOD=2, UPCAST=False, DOT_PRECISION=precision,
                                  COUNT_BLOCKS=count, EVEN_D=True)
                    start = time.perf_counter()
                    kernel = triton.compile(ASTSource(_masked_attention_kernel, _attention_signature(dtype), consts),
                                            target=target, options={"num_warps": warps, "num_stages": 3})
                    lines.append(f"masked_attention sm_{arch} {dtype} {bm}x{bn} w{warps} M={num_m} count={count}: "
                                 f"{len(kernel.asm['cubin'])} B cubin, {time.perf_counter() - start:.1f} s")
            for has_target in ((False,) if quick else (False, True)):
                consts = dict(NUM_VARIANTS=3, NUM_MODALITIES=2, HAS_TARGET=has_target, BLOCK_B=16, BLOCK_C=8,
                              BLOCK_MOD=2)
                kernel = triton.compile(ASTSource(_fused_mi_kernel, _mi_signature(dtype), consts), target=target,
                                        options={"num_warps": 4})
                lines.append(f"fused_mi sm_{arch} {dtype} target={has_target}: {len(kernel.asm['cubin'])} B cubin")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, action="append", help="SM version(s), default 90 and 80")
    parser.add_argument("--quick", action="store_true", help="one tile, fp16 only")
    args = parser.parse_args(argv)
    if os.environ.get("MIGR_RT_TRITON_COMPILE_ONLY") != "1":
        print("set MIGR_RT_TRITON_COMPILE_ONLY=1 in the environment first", file=sys.stderr)
        return 2
    for line in compile_all(args.arch or [90, 80], args.quick):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
